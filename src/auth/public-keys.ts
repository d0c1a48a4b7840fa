// Checks on ed25519 public keys from elsewhere, their curve25519 form and
// their node:crypto key objects, remembered per key: the subgroup check
// costs about a millisecond in JavaScript, and the same peers come back
// connection after connection.

import { createHash } from "node:crypto";
import * as ed from "@noble/ed25519";
import { ed25519 } from "@noble/curves/ed25519.js";
import type { KeyObject } from "node:crypto";
import { ed25519PublicKey, x25519PublicKey } from "./curve-keys.js";

// @noble/ed25519 needs a synchronous SHA-512 for its sync API; node's is fast.
if (ed.hashes.sha512 === undefined) {
  ed.hashes.sha512 = (message) => createHash("sha512").update(message).digest();
}

/** A usable peer key, ready for use. */
export interface PeerKey {
  /** For verifying its ed25519 signatures. */
  readonly verifying: KeyObject;
  /** Its curve25519 form, for x25519. */
  readonly exchange: KeyObject;
}

interface Checked {
  /** Why the key is unusable, or undefined. */
  problem: string | undefined;
  key: PeerKey | undefined;
}

/** Keys remembered at most; past it the oldest is forgotten. */
const CAPACITY = 4096;
const checked = new Map<string, Checked>();

function check(key: Uint8Array): Checked {
  const name = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("base64");
  let result = checked.get(name);
  if (result !== undefined) return result;
  result = inspect(key);
  if (checked.size >= CAPACITY) checked.delete(checked.keys().next().value!);
  checked.set(name, result);
  return result;
}

// libsodium's checks (crypto_sign_ed25519_pk_to_curve25519): a point of the
// curve, not of small order, inside the prime-order subgroup.
function inspect(key: Uint8Array): Checked {
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(key);
  } catch {
    return { problem: "not a point of the curve", key: undefined };
  }
  if (point.isSmallOrder()) return { problem: "a point of small order", key: undefined };
  if (!point.isTorsionFree()) return { problem: "a point outside the prime-order subgroup", key: undefined };
  return {
    problem: undefined,
    key: { verifying: ed25519PublicKey(key), exchange: x25519PublicKey(ed25519.utils.toMontgomery(key)) },
  };
}

/** Why 32 bytes are not a usable ed25519 public key, or undefined if they are. */
export function publicKeyProblem(key: Uint8Array): string | undefined {
  return check(key).problem;
}

/** A usable ed25519 public key made ready for verifying and x25519, else null. */
export function peerKey(key: Uint8Array): PeerKey | null {
  return check(key).key ?? null;
}

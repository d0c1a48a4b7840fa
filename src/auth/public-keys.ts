// Checks on ed25519 public keys from elsewhere, and their curve25519 form,
// remembered per key: the checks cost up to a millisecond (in JavaScript),
// and the same peers come back connection after connection.

import { createHash } from "node:crypto";
import * as ed from "@noble/ed25519";
import { curves } from "./curves.js";

// @noble/ed25519 needs a synchronous SHA-512 for its sync API; node's is fast.
if (ed.hashes.sha512 === undefined) {
  ed.hashes.sha512 = (message) => createHash("sha512").update(message).digest();
}

/** Keys remembered at most; past it the oldest is forgotten. */
const CAPACITY = 4096;
const checked = new Map<string, Uint8Array | null>();

/**
 * The curve25519 form of a usable ed25519 public key, for x25519; null if
 * it is not a point, of small order, or outside the prime-order subgroup.
 */
export function peerCurveKey(key: Uint8Array): Uint8Array | null {
  const name = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("base64");
  let curve = checked.get(name);
  if (curve === undefined) {
    curve = curves.publicToCurve(key);
    if (checked.size >= CAPACITY) checked.delete(checked.keys().next().value!);
    checked.set(name, curve);
  }
  return curve;
}

/** Why 32 bytes are not a usable ed25519 public key, or undefined if they are. */
export function publicKeyProblem(key: Uint8Array): string | undefined {
  if (peerCurveKey(key) !== null) return undefined;
  // Unusable: say why (the slow way, for this rare case only).
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(key);
  } catch {
    return "not a point of the curve";
  }
  if (point.isSmallOrder()) return "a point of small order";
  if (!point.isTorsionFree()) return "a point outside the prime-order subgroup";
  return "refused by the key conversion";
}

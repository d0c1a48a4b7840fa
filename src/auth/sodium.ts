// libsodium through sodium-native: an optional dependency (it ships prebuilt
// binaries for the common platforms) that does the handshake's and
// box-stream's cryptography as SSB's own stack does, several times faster
// than JavaScript. Absent, or with CAPMESH_CRYPTO=noble, capmesh uses
// node:crypto and the @noble libraries instead.

import { createRequire } from "node:module";

/** The part of sodium-native's API that capmesh uses. */
export interface SodiumNative {
  crypto_secretbox_detached(c: Uint8Array, mac: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_detached(m: Uint8Array, c: Uint8Array, mac: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  crypto_sign_ed25519_pk_to_curve25519(x25519pk: Uint8Array, ed25519pk: Uint8Array): void;
  crypto_sign_ed25519_sk_to_curve25519(x25519sk: Uint8Array, ed25519sk: Uint8Array): void;
  crypto_hash_sha256(out: Uint8Array, data: Uint8Array): void;
  crypto_auth(out: Uint8Array, message: Uint8Array, key: Uint8Array): void;
}

function load(): SodiumNative | null {
  if (process.env.CAPMESH_CRYPTO === "noble") return null;
  try {
    return createRequire(import.meta.url)("sodium-native") as SodiumNative;
  } catch {
    return null;
  }
}

/** sodium-native, or null where it is not installed or is turned off. */
export const sodium: SodiumNative | null = load();

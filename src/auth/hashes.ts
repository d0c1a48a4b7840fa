// The handshake's hash functions: SHA-256 and crypto_auth (HMAC-SHA-512
// truncated to 32 bytes). libsodium's where sodium-native is installed: on
// inputs this small, node:crypto's per-call object setup costs five times the
// hashing. Both give the same bytes.

import { createHash, createHmac } from "node:crypto";
import { sodium, type SodiumNative } from "./sodium.js";

export interface Hashes {
  readonly name: "libsodium" | "node:crypto";
  sha256(data: Uint8Array): Uint8Array;
  /** crypto_auth: HMAC-SHA-512-256 of `message` under a 32-byte `key`. */
  auth(key: Uint8Array, message: Uint8Array): Uint8Array;
}

export const nodeHashes: Hashes = {
  name: "node:crypto",
  sha256: (data) => new Uint8Array(createHash("sha256").update(data).digest()),
  auth: (key, message) => new Uint8Array(createHmac("sha512", key).update(message).digest().subarray(0, 32)),
};

function sodiumHashesOf(lib: SodiumNative): Hashes {
  return {
    name: "libsodium",
    sha256(data) {
      const out = new Uint8Array(32);
      lib.crypto_hash_sha256(out, data);
      return out;
    },
    auth(key, message) {
      const out = new Uint8Array(32);
      lib.crypto_auth(out, message, key);
      return out;
    },
  };
}

/** libsodium's, or null where sodium-native is not installed. */
export const sodiumHashes: Hashes | null = sodium === null ? null : sodiumHashesOf(sodium);

/** The implementation in use. */
export const hashes: Hashes = sodiumHashes ?? nodeHashes;

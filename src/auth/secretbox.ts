// NaCl's secretbox (xsalsa20-poly1305), detached and in place: the cipher
// under box-stream and the handshake's boxes. libsodium where sodium-native
// is installed (see sodium.ts), @noble/ciphers otherwise. Both produce the
// same bytes.

import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { sodium } from "./sodium.js";

export const MAC_LENGTH = 16;

export interface SecretBox {
  /** Which implementation this is. */
  readonly name: "libsodium" | "noble";
  /** Encrypts `data` in place and writes its 16-byte MAC into `mac`. */
  seal(data: Uint8Array, mac: Uint8Array, nonce: Uint8Array, key: Uint8Array): void;
  /** Decrypts `data` in place if `mac` authenticates it; false (data untouched) if not. */
  open(data: Uint8Array, mac: Uint8Array, nonce: Uint8Array, key: Uint8Array): boolean;
}

/** noble leaves MAC || ciphertext 16 bytes into its output, after 16 bytes of scratch. */
const NOBLE_SCRATCH = 32;

export const nobleSecretBox: SecretBox = {
  name: "noble",
  seal(data, mac, nonce, key) {
    const out = new Uint8Array(data.length + NOBLE_SCRATCH);
    xsalsa20poly1305(key, nonce).encrypt(data, out);
    mac.set(out.subarray(MAC_LENGTH, NOBLE_SCRATCH));
    data.set(out.subarray(NOBLE_SCRATCH));
  },
  open(data, mac, nonce, key) {
    const boxed = new Uint8Array(MAC_LENGTH + data.length);
    boxed.set(mac);
    boxed.set(data, MAC_LENGTH);
    let plain: Uint8Array;
    try {
      plain = xsalsa20poly1305(key, nonce).decrypt(boxed);
    } catch {
      return false;
    }
    data.set(plain);
    return true;
  },
};

/** libsodium's secretbox, or null where sodium-native is not installed. */
export const sodiumSecretBox: SecretBox | null = ((lib) =>
  lib === null
    ? null
    : {
        name: "libsodium",
        // libsodium allows the ciphertext and the plaintext to be one buffer.
        seal: (data, mac, nonce, key) => lib.crypto_secretbox_detached(data, mac, data, nonce, key),
        open: (data, mac, nonce, key) => lib.crypto_secretbox_open_detached(data, data, mac, nonce, key),
      })(sodium);

/** The implementation in use. */
export const secretBox: SecretBox = sodiumSecretBox ?? nobleSecretBox;

/** crypto_secretbox_easy: MAC || ciphertext. */
export function boxEasy(plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(MAC_LENGTH + plaintext.length);
  const body = out.subarray(MAC_LENGTH);
  body.set(plaintext);
  secretBox.seal(body, out.subarray(0, MAC_LENGTH), nonce, key);
  return out;
}

/** crypto_secretbox_open_easy; null if the box does not authenticate. */
export function openEasy(boxed: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | null {
  if (boxed.length < MAC_LENGTH) return null;
  const plain = boxed.slice(MAC_LENGTH);
  return secretBox.open(plain, boxed.subarray(0, MAC_LENGTH), nonce, key) ? plain : null;
}

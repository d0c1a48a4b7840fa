// x25519 and ed25519 in node:crypto (OpenSSL), many times faster than
// JavaScript, with each key imported once: importing a key costs more than
// the arithmetic done with it. Raw keys are wrapped in the DER forms of
// RFC 8410; private keys go in as JWK with their public half, which spares
// OpenSSL recomputing it (as libsodium, signing uses the public key kept in
// the 64-byte secret key).

import { createPrivateKey, createPublicKey, diffieHellman, sign, verify, type KeyObject } from "node:crypto";

const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");
const X25519_SPKI = Buffer.from("302a300506032b656e032100", "hex");
const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/** A private key of either curve from its raw secret and public halves. */
export function okpPrivateKey(curve: "X25519" | "Ed25519", secret: Uint8Array, publicKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: { kty: "OKP", crv: curve, d: b64url(secret), x: b64url(publicKey) }, format: "jwk" });
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([X25519_SPKI, raw]), format: "der", type: "spki" });
}

export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI, raw]), format: "der", type: "spki" });
}

/** An x25519 private key from a secret scalar, and its public key. */
export function x25519KeyPair(secret: Uint8Array): { privateKey: KeyObject; publicKey: Uint8Array } {
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, secret]), format: "der", type: "pkcs8" });
  const publicKey = new Uint8Array(Buffer.from(createPublicKey(privateKey).export({ format: "jwk" }).x!, "base64url"));
  return { privateKey, publicKey };
}

/** x25519; null when their key is refused or of low order (all-zero shared secret). */
export function x25519(privateKey: KeyObject, publicKey: KeyObject): Uint8Array | null {
  try {
    const shared = diffieHellman({ privateKey, publicKey });
    return shared.every((byte) => byte === 0) ? null : shared;
  } catch {
    return null;
  }
}

export function ed25519Sign(message: Uint8Array, privateKey: KeyObject): Uint8Array {
  return sign(null, message, privateKey);
}

/** RFC 8032 verification; false for a malformed signature too. */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: KeyObject): boolean {
  try {
    return verify(null, message, publicKey, signature);
  } catch {
    return false;
  }
}

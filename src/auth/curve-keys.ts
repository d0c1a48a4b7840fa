// x25519 and ed25519 in node:crypto (OpenSSL), many times faster than
// JavaScript. Raw keys go in as JWK: OpenSSL 3 imports DER (PKCS#8, SPKI)
// through its generic decoders, ten times slower than the arithmetic done
// with the key afterwards.

import { createPrivateKey, createPublicKey, diffieHellman, sign, verify, type KeyObject } from "node:crypto";

/** Stands in for the public half of a private JWK, which Node derives from d itself (it checks only x's length). */
const UNKNOWN_PUBLIC = new Uint8Array(32);

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/** A private key of either curve from its raw secret and public halves. */
export function okpPrivateKey(curve: "X25519" | "Ed25519", secret: Uint8Array, publicKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: { kty: "OKP", crv: curve, d: b64url(secret), x: b64url(publicKey) }, format: "jwk" });
}

function okpPublicKey(curve: "X25519" | "Ed25519", raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: curve, x: b64url(raw) }, format: "jwk" });
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  return okpPublicKey("X25519", raw);
}

export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return okpPublicKey("Ed25519", raw);
}

/** An x25519 private key from a secret scalar, and its public key. */
export function x25519KeyPair(secret: Uint8Array): { privateKey: KeyObject; publicKey: Uint8Array } {
  const privateKey = okpPrivateKey("X25519", secret, UNKNOWN_PUBLIC);
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

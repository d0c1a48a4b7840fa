// ed25519 and x25519 on raw keys, as the handshake needs them: libsodium
// where sodium-native is installed (what SSB's own stack runs), node:crypto
// (OpenSSL) with @noble/curves for the key conversions otherwise. Both give
// the same bytes; tests hold each against the other and the shs1 vectors.

import { createPrivateKey, createPublicKey, diffieHellman, sign, verify, type KeyObject } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sodium, type SodiumNative } from "./sodium.js";

export interface Curves {
  readonly name: "libsodium" | "node:crypto";
  /** The x25519 public key of a secret scalar. */
  x25519Base(secret: Uint8Array): Uint8Array;
  /** x25519; null for a refused or low-order public key (all-zero shared secret). */
  x25519(secret: Uint8Array, theirPublic: Uint8Array): Uint8Array | null;
  /** ed25519 signature with a 64-byte secret key (seed || public key, libsodium's form). */
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array;
  /** ed25519 verification; false for a malformed signature or key too. */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  /**
   * The curve25519 form of an ed25519 public key; null if it is not a point,
   * of small order, or outside the prime-order subgroup. (libsodium's
   * subgroup check looks at one coordinate and so lets a torsion component
   * of order 2 through, as in SSB's stack; harmless here, since x25519's
   * clamped scalars are multiples of 8.)
   */
  publicToCurve(publicKey: Uint8Array): Uint8Array | null;
  /** The curve25519 form of an ed25519 secret key (seed, or seed || public key). */
  secretToCurve(secretKey: Uint8Array): Uint8Array;
}

// ---------------------------------------------------------------- libsodium

function sodiumCurvesOf(lib: SodiumNative): Curves {
  return {
    name: "libsodium",
    x25519Base(secret) {
      const out = new Uint8Array(32);
      lib.crypto_scalarmult_base(out, secret);
      return out;
    },
    x25519(secret, theirPublic) {
      const out = new Uint8Array(32);
      try {
        lib.crypto_scalarmult(out, secret, theirPublic);
      } catch {
        return null; // libsodium refuses low-order points
      }
      return out;
    },
    sign(message, secretKey) {
      const out = new Uint8Array(64);
      lib.crypto_sign_detached(out, message, secretKey);
      return out;
    },
    verify: (signature, message, publicKey) =>
      signature.length === 64 && publicKey.length === 32 && lib.crypto_sign_verify_detached(signature, message, publicKey),
    publicToCurve(publicKey) {
      const out = new Uint8Array(32);
      try {
        lib.crypto_sign_ed25519_pk_to_curve25519(out, publicKey);
      } catch {
        return null;
      }
      return out;
    },
    secretToCurve(secretKey) {
      const out = new Uint8Array(32);
      if (secretKey.length === 64) {
        lib.crypto_sign_ed25519_sk_to_curve25519(out, secretKey);
        return out;
      }
      // libsodium reads only the seed half of the 64-byte form: pad a bare seed.
      const padded = new Uint8Array(64);
      padded.set(secretKey.subarray(0, 32));
      lib.crypto_sign_ed25519_sk_to_curve25519(out, padded);
      padded.fill(0);
      return out;
    },
  };
}

/** libsodium's, or null where sodium-native is not installed. */
export const sodiumCurves: Curves | null = sodium === null ? null : sodiumCurvesOf(sodium);

// -------------------------------------------------------------- node:crypto
//
// Raw keys go in as JWK: OpenSSL 3 imports DER (PKCS#8, SPKI) through its
// generic decoders, ten times slower than the arithmetic done with the key.
// Each key object is made once: private keys are remembered by the array
// that holds them (our long-term key, a handshake's ephemeral key), public
// keys by their bytes (peers come back).

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/** Stands in for a private JWK's public half, which Node derives from d (it checks only x's length). */
const UNKNOWN_PUBLIC = b64url(new Uint8Array(32));

function okpPrivateKey(curve: "X25519" | "Ed25519", secret: Uint8Array): KeyObject {
  return createPrivateKey({ key: { kty: "OKP", crv: curve, d: b64url(secret), x: UNKNOWN_PUBLIC }, format: "jwk" });
}

const privateKeys = new WeakMap<Uint8Array, KeyObject>();

function privateKeyOf(curve: "X25519" | "Ed25519", secret: Uint8Array): KeyObject {
  let key = privateKeys.get(secret);
  if (key === undefined) privateKeys.set(secret, (key = okpPrivateKey(curve, secret.subarray(0, 32))));
  return key;
}

/** Public key objects remembered at most; past it the oldest is forgotten. */
const PUBLIC_KEY_CAPACITY = 4096;
const publicKeys = new Map<string, KeyObject>();

function publicKeyOf(curve: "X25519" | "Ed25519", raw: Uint8Array): KeyObject {
  const name = curve + b64url(raw);
  let key = publicKeys.get(name);
  if (key === undefined) {
    key = createPublicKey({ key: { kty: "OKP", crv: curve, x: b64url(raw) }, format: "jwk" });
    if (publicKeys.size >= PUBLIC_KEY_CAPACITY) publicKeys.delete(publicKeys.keys().next().value!);
    publicKeys.set(name, key);
  }
  return key;
}

export const nodeCurves: Curves = {
  name: "node:crypto",
  x25519Base: (secret) =>
    new Uint8Array(Buffer.from(createPublicKey(privateKeyOf("X25519", secret)).export({ format: "jwk" }).x!, "base64url")),
  x25519(secret, theirPublic) {
    try {
      const shared = diffieHellman({ privateKey: privateKeyOf("X25519", secret), publicKey: publicKeyOf("X25519", theirPublic) });
      return shared.every((byte) => byte === 0) ? null : new Uint8Array(shared);
    } catch {
      return null;
    }
  },
  sign: (message, secretKey) => new Uint8Array(sign(null, message, privateKeyOf("Ed25519", secretKey))),
  verify(signature, message, publicKey) {
    try {
      return verify(null, message, publicKeyOf("Ed25519", publicKey), signature);
    } catch {
      return false;
    }
  },
  publicToCurve(publicKey) {
    try {
      const point = ed25519.Point.fromBytes(publicKey);
      if (point.isSmallOrder() || !point.isTorsionFree()) return null;
    } catch {
      return null;
    }
    return ed25519.utils.toMontgomery(publicKey);
  },
  secretToCurve: (secretKey) => ed25519.utils.toMontgomerySecret(secretKey.subarray(0, 32)),
};

/** The implementation in use. */
export const curves: Curves = sodiumCurves ?? nodeCurves;

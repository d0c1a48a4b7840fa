// The two implementations of the cryptography — libsodium through
// sodium-native, and node:crypto with the @noble libraries — against each
// other: either end of a connection may have either.
import { randomBytes } from "node:crypto";
import * as ed from "@noble/ed25519";
import { describe, expect, it } from "vitest";
import { BoxDecoder, BoxEncoder } from "../../src/auth/box-stream.js";
import { curves, nodeCurves, sodiumCurves } from "../../src/auth/curves.js";
import { nodeHashes, sodiumHashes } from "../../src/auth/hashes.js";
import { generateIdentity } from "../../src/auth/identity.js";
import { nobleSecretBox, secretBox, sodiumSecretBox, type SecretBox } from "../../src/auth/secretbox.js";

const CI = process.env.CI === "true";

describe("secretbox implementations", () => {
  it("libsodium is present (an optional dependency, prebuilt for this platform), and in use", () => {
    if (sodiumSecretBox === null) {
      // Not a skip: the noble fallback below is still checked. Under CI the
      // prebuilt binary must have installed.
      expect(CI, "sodium-native did not load under CI: npm install should have installed its prebuilt binary").toBe(false);
      console.warn("sodium-native is not installed here: box-stream runs on @noble/ciphers (slower)");
      return;
    }
    expect(secretBox.name).toBe("libsodium");
    expect(curves.name).toBe("libsodium");
  });

  const pairs: [string, SecretBox, SecretBox][] = [["noble → noble", nobleSecretBox, nobleSecretBox]];
  if (sodiumSecretBox !== null) {
    pairs.push(["libsodium → noble", sodiumSecretBox, nobleSecretBox], ["noble → libsodium", nobleSecretBox, sodiumSecretBox]);
  }

  it.each(pairs)("%s: the same bytes, opened in place, and tampering refused", (_name, sealer, opener) => {
    for (const size of [0, 1, 18, 4095, 4096, 70_000]) {
      const key = randomBytes(32);
      const nonce = randomBytes(24);
      const plain = randomBytes(size);
      const data = Buffer.from(plain);
      const mac = Buffer.alloc(16);
      sealer.seal(data, mac, nonce, key);
      if (size >= 16) expect(data.equals(plain)).toBe(false);
      const other = Buffer.from(plain);
      const otherMac = Buffer.alloc(16);
      opener.seal(other, otherMac, nonce, key);
      expect(other.equals(data) && otherMac.equals(mac)).toBe(true);

      if (size > 0) {
        const tampered = Buffer.from(data);
        tampered[size >> 1]! ^= 0x40;
        expect(opener.open(tampered, mac, nonce, key)).toBe(false);
      }
      const badMac = Buffer.from(mac);
      badMac[0]! ^= 1;
      expect(opener.open(Buffer.from(data), badMac, nonce, key)).toBe(false);
      expect(opener.open(data, mac, nonce, key)).toBe(true);
      expect(data.equals(plain)).toBe(true);
    }
  });

  it.each(pairs)("%s: box-stream encoded by one opens with the other", (_name, sealer, opener) => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const encoder = new BoxEncoder(key, nonce, sealer);
    const plain = randomBytes(3 * 4096 + 77);
    const wire = Buffer.concat([encoder.encode([plain.subarray(0, 5000), plain.subarray(5000)]), encoder.goodbye()]);
    const decoder = new BoxDecoder(key, nonce, opener);
    const out: Buffer[] = [];
    decoder.update(wire, (chunk) => void out.push(chunk));
    decoder.end();
    expect(decoder.ended).toBe(true);
    expect(Buffer.concat(out).equals(plain)).toBe(true);
  });

  it.skipIf(sodiumCurves === null)("ed25519 and x25519: libsodium and node:crypto agree, on good keys and bad", () => {
    const other = sodiumCurves!;
    for (let round = 0; round < 20; round++) {
      const a = generateIdentity();
      const b = generateIdentity();
      const message = randomBytes(round * 7);
      const signature = nodeCurves.sign(message, a.secretKey);
      expect(Buffer.from(other.sign(message, a.secretKey)).equals(Buffer.from(signature))).toBe(true);
      for (const impl of [nodeCurves, other]) {
        expect(impl.verify(signature, message, a.publicKey)).toBe(true);
        expect(impl.verify(signature, Buffer.concat([message, Buffer.from([1])]), a.publicKey)).toBe(false);
        expect(impl.verify(signature, message, b.publicKey)).toBe(false);
      }
      const curveA = nodeCurves.publicToCurve(a.publicKey)!;
      expect(Buffer.from(other.publicToCurve(a.publicKey)!).equals(Buffer.from(curveA))).toBe(true);
      const secretB = nodeCurves.secretToCurve(b.secretKey);
      expect(Buffer.from(other.secretToCurve(b.secretKey)).equals(Buffer.from(secretB))).toBe(true);
      const shared = nodeCurves.x25519(secretB, curveA)!;
      expect(Buffer.from(other.x25519(secretB, curveA)!).equals(Buffer.from(shared))).toBe(true);
      // Diffie-Hellman both ways round.
      const back = other.x25519(other.secretToCurve(a.secretKey), other.publicToCurve(b.publicKey)!)!;
      expect(Buffer.from(back).equals(Buffer.from(shared))).toBe(true);
      expect(Buffer.from(other.x25519Base(secretB)).equals(Buffer.from(nodeCurves.x25519Base(secretB)))).toBe(true);
      // A bare 32-byte seed (how the handshake derives its ephemeral key).
      const seed = randomBytes(32);
      expect(Buffer.from(other.secretToCurve(seed)).equals(Buffer.from(nodeCurves.secretToCurve(seed)))).toBe(true);
    }

    // Keys both must refuse: the identity (small order), a point with a
    // torsion component of order 4, bytes that are no point, and a low-order
    // x25519 key. (libsodium lets a torsion component of order 2 through, as
    // SSB's stack does: its subgroup check looks at one coordinate only.)
    const good = ed.Point.fromBytes(generateIdentity().publicKey);
    const orderFour = ed.Point.fromBytes(new Uint8Array(32));
    const bad = [
      Buffer.from("0100000000000000000000000000000000000000000000000000000000000000", "hex"),
      Buffer.from(good.add(orderFour).toBytes()),
      Buffer.from("0200000000000000000000000000000000000000000000000000000000000000", "hex"),
    ];
    for (const key of bad) {
      expect(nodeCurves.publicToCurve(key)).toBeNull();
      expect(other.publicToCurve(key)).toBeNull();
    }
    const secret = randomBytes(32);
    expect(nodeCurves.x25519(secret, new Uint8Array(32))).toBeNull();
    expect(other.x25519(secret, new Uint8Array(32))).toBeNull();
  });
});

describe("hash implementations", () => {
  it.skipIf(sodiumHashes === null)("SHA-256 and crypto_auth: libsodium and node:crypto agree", () => {
    for (let round = 0; round < 20; round++) {
      const data = randomBytes(round * 13);
      const key = randomBytes(32);
      expect(Buffer.from(sodiumHashes!.sha256(data))).toEqual(Buffer.from(nodeHashes.sha256(data)));
      expect(Buffer.from(sodiumHashes!.auth(key, data))).toEqual(Buffer.from(nodeHashes.auth(key, data)));
    }
    // RFC 6234 / FIPS 180-2 test vector for "abc".
    expect(Buffer.from(nodeHashes.sha256(Buffer.from("abc"))).toString("hex")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});

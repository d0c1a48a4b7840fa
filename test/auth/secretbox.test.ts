// The two secretbox implementations (libsodium through sodium-native, and
// @noble/ciphers) against each other, alone and under box-stream: either end
// of a connection may have either.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { BoxDecoder, BoxEncoder } from "../../src/auth/box-stream.js";
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
    expect(secretBox.name).toBe(process.env.CAPMESH_CRYPTO === "noble" ? "noble" : "libsodium");
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
      if (size > 0) expect(data.equals(plain)).toBe(false);
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
});

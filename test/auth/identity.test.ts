import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  IdentityError,
  formatId,
  formatKeyFile,
  generateIdentity,
  identityFromSecretKey,
  identityFromSeed,
  loadIdentity,
  loadOrCreateIdentity,
  parseId,
  parseKeyFile,
  saveIdentity,
  toPublicKey,
} from "../../src/auth/index.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "capmesh-identity-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function identityError(run: () => unknown): IdentityError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(IdentityError);
    return error as IdentityError;
  }
  throw new Error("expected an IdentityError");
}

async function rejection(promise: Promise<unknown>): Promise<IdentityError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IdentityError);
  return error as IdentityError;
}

describe("identities", () => {
  it("generates ed25519 key pairs in libsodium form with an @<base64>.ed25519 id", () => {
    const identity = generateIdentity();
    expect(identity.publicKey.length).toBe(32);
    expect(identity.secretKey.length).toBe(64);
    expect(Buffer.from(identity.secretKey.subarray(32)).equals(Buffer.from(identity.publicKey))).toBe(true);
    expect(identity.id).toMatch(/^@[A-Za-z0-9+/]{43}=\.ed25519$/);
    expect(identity.id).toBe(`@${Buffer.from(identity.publicKey).toString("base64")}.ed25519`);
    expect(generateIdentity().id).not.toBe(identity.id);
  });

  it("derives the RFC 8032 public key from a seed", () => {
    // RFC 8032, section 7.1, test 1.
    const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
    const identity = identityFromSeed(seed);
    expect(Buffer.from(identity.publicKey).toString("hex")).toBe("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    expect(identityFromSecretKey(identity.secretKey).id).toBe(identity.id);
  });

  it("refuses a secret key whose halves do not belong together", () => {
    const secretKey = new Uint8Array(generateIdentity().secretKey);
    secretKey.set(generateIdentity().publicKey, 32);
    expect(identityError(() => identityFromSecretKey(secretKey)).code).toBe("INVALID_KEY");
  });

  it("parses ids back to keys", () => {
    const identity = generateIdentity();
    expect(Buffer.from(parseId(identity.id)).equals(Buffer.from(identity.publicKey))).toBe(true);
    expect(formatId(parseId(identity.id))).toBe(identity.id);
    expect(Buffer.from(toPublicKey(identity.id)).equals(Buffer.from(identity.publicKey))).toBe(true);
    expect(toPublicKey(identity.publicKey)).toBe(identity.publicKey);
  });

  it("rejects malformed ids with a message saying what is wrong", () => {
    const good = generateIdentity().id;
    const cases: Array<[string, RegExp]> = [
      [good.slice(1), /must start with "@"/],
      [good.replace(".ed25519", ""), /must end with ".ed25519"/],
      [good.replace(".ed25519", ".sha256"), /unsupported curve "sha256"/],
      ["@abc.ed25519", /base64 .* of a 32-byte key/],
      [`@${Buffer.alloc(33).toString("base64")}.ed25519`, /32-byte key/],
      [`@${"!".repeat(43)}=.ed25519`, /base64/],
      // y = 2^255 - 20 is not canonical: not a curve point.
      [`@${Buffer.from("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "hex").toString("base64")}.ed25519`, /not a usable ed25519 public key/],
      // The neutral element: a point of small order.
      [`@${Buffer.from("01".padEnd(64, "0"), "hex").toString("base64")}.ed25519`, /small order/],
    ];
    for (const [id, message] of cases) {
      const error = identityError(() => parseId(id));
      expect(error.code, id).toBe("INVALID_ID");
      expect(error.message, id).toMatch(message);
    }
    expect(identityError(() => toPublicKey(new Uint8Array(31))).code).toBe("INVALID_KEY");
  });
});

describe("key files", () => {
  it("are SSB's JSON, written with mode 0600, and load back", async () => {
    const identity = generateIdentity();
    const path = join(dir, "secret");
    await saveIdentity(path, identity);
    if (process.platform !== "win32") expect((await stat(path)).mode & 0o777).toBe(0o600);
    const json = JSON.parse(await readFile(path, "utf8")) as Record<string, string>;
    expect(json).toEqual({
      curve: "ed25519",
      public: `${Buffer.from(identity.publicKey).toString("base64")}.ed25519`,
      private: `${Buffer.from(identity.secretKey).toString("base64")}.ed25519`,
      id: identity.id,
    });
    const loaded = await loadIdentity(path);
    expect(loaded.id).toBe(identity.id);
    expect(Buffer.from(loaded.secretKey).equals(Buffer.from(identity.secretKey))).toBe(true);
  });

  it.skipIf(process.platform === "win32")("refuses a key file readable by group or others, saying to chmod 600", async () => {
    const path = join(dir, "secret");
    await saveIdentity(path, generateIdentity());
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(path, mode);
      const error = await rejection(loadIdentity(path));
      expect(error.code).toBe("INSECURE_KEY_FILE");
      expect(error.path).toBe(path);
      expect(error.message).toContain(`chmod 600 ${path}`);
      expect(error.message).toContain(mode.toString(8));
    }
    await chmod(path, 0o400);
    await expect(loadIdentity(path)).resolves.toBeDefined();
  });

  it("does not overwrite an existing key file unless asked, and tightens its mode when it does", async () => {
    const path = join(dir, "secret");
    const first = generateIdentity();
    await saveIdentity(path, first);
    expect((await rejection(saveIdentity(path, generateIdentity()))).code).toBe("KEY_FILE_EXISTS");
    expect((await loadIdentity(path)).id).toBe(first.id);
    if (process.platform !== "win32") await chmod(path, 0o644);
    const second = generateIdentity();
    await saveIdentity(path, second, { overwrite: true });
    if (process.platform !== "win32") expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await loadIdentity(path)).id).toBe(second.id);
  });

  it("loadOrCreateIdentity creates the file once and then reuses it", async () => {
    const path = join(dir, "secret");
    const created = await loadOrCreateIdentity(path);
    if (process.platform !== "win32") expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await loadOrCreateIdentity(path)).id).toBe(created.id);
  });

  it("accepts SSB's comment lines around the JSON", () => {
    const identity = generateIdentity();
    const text = `# this is your SECRET name.\n# never show it to anyone\n${formatKeyFile(identity)}# WARNING! never show this to anyone.\n`;
    expect(parseKeyFile(text).id).toBe(identity.id);
  });

  it("rejects broken key files clearly", async () => {
    const identity = generateIdentity();
    const good = JSON.parse(formatKeyFile(identity)) as Record<string, string>;
    const other = generateIdentity();
    const cases: Array<[string, RegExp]> = [
      ["not json", /not valid JSON/],
      ["[]", /JSON object/],
      [JSON.stringify({ ...good, curve: "p256" }), /"curve" must be "ed25519"/],
      [JSON.stringify({ ...good, public: "abc" }), /"public"/],
      [JSON.stringify({ ...good, private: `${Buffer.alloc(32).toString("base64")}.ed25519` }), /"private" must be the base64 of 64 bytes/],
      [JSON.stringify({ ...good, public: `${Buffer.from(other.publicKey).toString("base64")}.ed25519` }), /"public" does not match "private"/],
      [JSON.stringify({ ...good, id: other.id }), /"id" .* does not match the key/],
    ];
    for (const [text, message] of cases) {
      const error = identityError(() => parseKeyFile(text, "my-key"));
      expect(error.code).toBe("INVALID_KEY_FILE");
      expect(error.message).toMatch(/^my-key/);
      expect(error.message).toMatch(message);
    }
    const path = join(dir, "broken");
    await writeFile(path, "{", { mode: 0o600 });
    expect((await rejection(loadIdentity(path))).message).toContain(path);
  });
});

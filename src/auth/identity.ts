// Long-term ed25519 identities: generation, SSB-style key files, printable ids.

import { createPrivateKey, createPublicKey, randomBytes, timingSafeEqual } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import { publicKeyProblem } from "./public-keys.js";

/** A long-term ed25519 key pair and its printable id. */
export interface Identity {
  /** 32-byte ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** 64-byte secret key in libsodium's form: 32-byte seed followed by the public key. */
  readonly secretKey: Uint8Array;
  /** `@<base64 of publicKey>.ed25519` */
  readonly id: string;
}

export type IdentityErrorCode =
  | "INVALID_ID"
  | "INVALID_KEY"
  | "INVALID_KEY_FILE"
  | "INSECURE_KEY_FILE"
  | "KEY_FILE_EXISTS";

/** A malformed id, key or key file, or a key file others may read. */
export class IdentityError extends Error {
  readonly code: IdentityErrorCode;
  /** The key file concerned, if any. */
  readonly path: string | undefined;
  constructor(code: IdentityErrorCode, message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "IdentityError";
    this.code = code;
    this.path = options?.path;
  }
}

const SUFFIX = ".ed25519";
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes canonical standard base64 (with padding) or returns undefined. */
function decodeBase64(text: string, expectedLength: number): Uint8Array | undefined {
  if (!BASE64.test(text) || text.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== expectedLength) return undefined;
  // Reject non-canonical encodings (stray bits in the last character).
  if (bytes.toString("base64") !== text) return undefined;
  return new Uint8Array(bytes);
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** `@<base64 of the 32-byte public key>.ed25519` */
export function formatId(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new IdentityError("INVALID_KEY", `an ed25519 public key is 32 bytes, got ${describeBytes(publicKey)}`);
  }
  return `@${toBase64(publicKey)}${SUFFIX}`;
}

/**
 * Parses `@<base64>.ed25519` into the 32-byte public key.
 * Throws an IdentityError saying what is wrong otherwise.
 */
export function parseId(id: string): Uint8Array {
  if (typeof id !== "string") {
    throw new IdentityError("INVALID_ID", `an id is a string like "@<base64>.ed25519", got ${typeof id}`);
  }
  const shown = id.length > 80 ? `${JSON.stringify(id.slice(0, 80))}...` : JSON.stringify(id);
  if (!id.startsWith("@")) {
    throw new IdentityError("INVALID_ID", `invalid id ${shown}: it must start with "@" (form "@<base64>.ed25519")`);
  }
  if (!id.endsWith(SUFFIX)) {
    const dot = id.lastIndexOf(".");
    const curve = dot > 0 ? id.slice(dot + 1) : "";
    throw new IdentityError(
      "INVALID_ID",
      curve !== "" && !curve.includes("=")
        ? `invalid id ${shown}: unsupported curve "${curve}", only ed25519 ids are supported`
        : `invalid id ${shown}: it must end with "${SUFFIX}" (form "@<base64>.ed25519")`,
    );
  }
  const key = decodeBase64(id.slice(1, -SUFFIX.length), 32);
  if (key === undefined) {
    throw new IdentityError(
      "INVALID_ID",
      `invalid id ${shown}: the part between "@" and "${SUFFIX}" must be the standard base64 (44 characters, with "=" padding) of a 32-byte key`,
    );
  }
  const problem = publicKeyProblem(key);
  if (problem !== undefined) throw new IdentityError("INVALID_ID", `invalid id ${shown}: not a usable ed25519 public key (${problem})`);
  return key;
}

/**
 * Accepts a public key as bytes or as an id; returns the 32 bytes. Throws an
 * IdentityError if they are not a usable ed25519 public key.
 */
export function toPublicKey(key: Uint8Array | string): Uint8Array {
  if (typeof key === "string") return parseId(key);
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new IdentityError("INVALID_KEY", `an ed25519 public key is 32 bytes, got ${describeBytes(key)}`);
  }
  const problem = publicKeyProblem(key);
  if (problem !== undefined) throw new IdentityError("INVALID_KEY", `not a usable ed25519 public key (${problem})`);
  return key;
}

function describeBytes(value: unknown): string {
  return value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
}

// RFC 8410's PKCS#8 wrapping of a raw ed25519 seed.
const ED25519_PKCS8 = Buffer.from("302e020100300506032b657004220420", "hex");

/** The public key of a seed, by node:crypto (OpenSSL): many times faster than JavaScript. */
function publicKeyOfSeed(seed: Uint8Array): Uint8Array {
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, seed]), format: "der", type: "pkcs8" });
  return new Uint8Array(Buffer.from(createPublicKey(privateKey).export({ format: "jwk" }).x!, "base64url"));
}

/** The identity whose secret seed is `seed` (32 bytes). */
export function identityFromSeed(seed: Uint8Array): Identity {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new IdentityError("INVALID_KEY", `an ed25519 seed is 32 bytes, got ${describeBytes(seed)}`);
  }
  const publicKey = publicKeyOfSeed(seed);
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(publicKey, 32);
  return { publicKey, secretKey, id: formatId(publicKey) };
}

/**
 * The identity of a 64-byte libsodium secret key (seed || public key).
 * Throws if the public half does not belong to the seed.
 */
export function identityFromSecretKey(secretKey: Uint8Array): Identity {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 64) {
    throw new IdentityError("INVALID_KEY", `an ed25519 secret key is 64 bytes (seed and public key), got ${describeBytes(secretKey)}`);
  }
  const identity = identityFromSeed(secretKey.subarray(0, 32));
  if (!timingSafeEqual(identity.publicKey, secretKey.subarray(32))) {
    throw new IdentityError("INVALID_KEY", "the secret key's second half is not the public key of its seed");
  }
  return identity;
}

/** A fresh random identity. */
export function generateIdentity(): Identity {
  return identityFromSeed(new Uint8Array(randomBytes(32)));
}

/** The key file text (SSB's format). */
export function formatKeyFile(identity: Identity): string {
  const file = {
    curve: "ed25519",
    public: `${toBase64(identity.publicKey)}${SUFFIX}`,
    private: `${toBase64(identity.secretKey)}${SUFFIX}`,
    id: identity.id,
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/**
 * Parses key file text. Lines starting with "#" are ignored, as SSB's secret
 * files carry a comment header.
 */
export function parseKeyFile(text: string, path = "key file"): Identity {
  const json = text
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("#"))
    .join("\n");
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (cause) {
    throw new IdentityError("INVALID_KEY_FILE", `${path} is not valid JSON: ${(cause as Error).message}`, { path, cause });
  }
  const bad = (what: string): never => {
    throw new IdentityError("INVALID_KEY_FILE", `${path}: ${what}`, { path });
  };
  if (typeof data !== "object" || data === null || Array.isArray(data)) return bad("expected a JSON object");
  const record = data as Record<string, unknown>;
  if (record.curve !== "ed25519") return bad(`"curve" must be "ed25519", got ${JSON.stringify(record.curve)}`);
  const field = (name: "public" | "private", length: number): Uint8Array => {
    const value = record[name];
    if (typeof value !== "string" || !value.endsWith(SUFFIX)) {
      return bad(`"${name}" must be a string "<base64>${SUFFIX}"`);
    }
    const bytes = decodeBase64(value.slice(0, -SUFFIX.length), length);
    return bytes ?? bad(`"${name}" must be the base64 of ${length} bytes followed by "${SUFFIX}"`);
  };
  const publicKey = field("public", 32);
  const secretKey = field("private", 64);
  let identity: Identity;
  try {
    identity = identityFromSecretKey(secretKey);
  } catch (cause) {
    throw new IdentityError("INVALID_KEY_FILE", `${path}: "private" is not a valid ed25519 secret key: ${(cause as Error).message}`, { path, cause });
  }
  if (!timingSafeEqual(identity.publicKey, publicKey)) return bad(`"public" does not match "private"`);
  if (record.id !== undefined && record.id !== identity.id) {
    return bad(`"id" ${JSON.stringify(record.id)} does not match the key (expected ${identity.id})`);
  }
  return identity;
}

export interface SaveIdentityOptions {
  /** Replace an existing file. Default false: an existing file is an error. */
  overwrite?: boolean;
}

/** Writes the identity's key file with mode 0600. */
export async function saveIdentity(path: string, identity: Identity, options: SaveIdentityOptions = {}): Promise<void> {
  let handle;
  try {
    handle = await open(path, options.overwrite === true ? "w" : "wx", 0o600);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "EEXIST") {
      throw new IdentityError("KEY_FILE_EXISTS", `${path} already exists; refusing to overwrite a key file`, { path, cause });
    }
    throw cause;
  }
  try {
    // An existing file keeps its mode on open: tighten it before writing secrets.
    if (process.platform !== "win32") await handle.chmod(0o600);
    await handle.writeFile(formatKeyFile(identity), "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Reads a key file. Refuses (IdentityError "INSECURE_KEY_FILE") a file that
 * its group or others may read or write, saying how to fix it.
 */
export async function loadIdentity(path: string): Promise<Identity> {
  if (process.platform !== "win32") {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
      throw new IdentityError(
        "INSECURE_KEY_FILE",
        `key file ${path} has mode ${mode}: it is accessible to group or others, which must not be for a secret key; fix it with: chmod 600 ${path}`,
        { path },
      );
    }
  }
  return parseKeyFile(await readFile(path, "utf8"), path);
}

/** Loads the key file, creating it with a fresh identity if it does not exist. */
export async function loadOrCreateIdentity(path: string): Promise<Identity> {
  try {
    return await loadIdentity(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const identity = generateIdentity();
  try {
    await saveIdentity(path, identity);
  } catch (error) {
    // Lost a race with another process creating it: use theirs.
    if (error instanceof IdentityError && error.code === "KEY_FILE_EXISTS") return loadIdentity(path);
    throw error;
  }
  return identity;
}

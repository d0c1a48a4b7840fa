// Typed handles on SSB's CommonJS packages: secret-handshake, pull-box-stream,
// pull-stream and stream-to-pull-stream (the same ones the interop tests use).
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type { Identity } from "../../src/auth/identity.js";

const require = createRequire(import.meta.url);

export type End = null | true | Error;
export type Source = (end: End, cb: (end: End, data?: Buffer) => void) => void;
export type Sink = (source: Source) => void;
export type Through = (source: Source) => Source;
export interface PullDuplex {
  source: Source;
  sink: Sink;
}
type KeyPair = { publicKey: Buffer; secretKey: Buffer };
type OnSecure = (err: Error | null, stream?: PullDuplex) => void;

interface Shs {
  createClient(keys: KeyPair, appKey: Buffer, timeout?: number): (serverKey: Buffer, cb: OnSecure) => PullDuplex;
  createServer(
    keys: KeyPair,
    authorize: (pub: Buffer, cb: (err: Error | null, ok?: boolean) => void) => void,
    appKey: Buffer,
    timeout?: number,
  ): (cb: OnSecure) => PullDuplex;
}

export const shs = require("secret-handshake") as Shs;
export const pull = require("pull-stream") as ((...parts: unknown[]) => unknown) & {
  values(values: Buffer[]): Source;
  collect(cb: (err: Error | null, values: Buffer[]) => void): Sink;
  drain(op?: (data: Buffer) => void, done?: (err: End) => void): Sink;
};
export const boxes = require("pull-box-stream") as {
  createBoxStream(key: Buffer, nonce: Buffer): Through;
  createUnboxStream(key: Buffer, nonce: Buffer): Through;
};
export const toPull = require("stream-to-pull-stream") as { duplex(stream: Duplex): PullDuplex };

/** What chloride (SSB's crypto) runs on here: it falls back to JavaScript without sodium-native. */
export const ssbCrypto = ((): string => {
  if (process.env.CHLORIDE_JS) return "SSB crypto in JavaScript (CHLORIDE_JS is set)";
  try {
    require("sodium-native");
    return "SSB crypto is native libsodium (chloride → sodium-native)";
  } catch {
    return "SSB crypto in JavaScript (sodium-native did not load)";
  }
})();

export const buffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** An identity as secret-handshake takes it (same ed25519 key layout as ours). */
export function keyPair(identity: Identity): KeyPair {
  return { publicKey: buffer(identity.publicKey), secretKey: buffer(identity.secretKey) };
}

/** secret-handshake over a Node socket: resolves with the plaintext pull duplex. */
export function handshake(socket: Duplex, start: (cb: OnSecure) => PullDuplex): Promise<PullDuplex> {
  return new Promise((resolve, reject) => {
    const cipher = start((err, secure) => (err || !secure ? reject(err ?? new Error("no stream")) : resolve(secure)));
    const wire = toPull.duplex(socket);
    pull(wire, cipher, wire);
  });
}

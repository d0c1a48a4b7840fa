// Handshake and box-stream between ours and SSB's JavaScript implementation
// (secret-handshake + pull-box-stream) over real TCP sockets on 127.0.0.1,
// both ways round, with data both ways and the goodbyes.

import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  HandshakeError,
  NetworkKeyMismatchError,
  generateIdentity,
  secureClient,
  secureServer,
  type Identity,
} from "../../src/auth/index.js";
import { Cleanup, connect as connectTo, listen as listenOn } from "./helpers.js";

const require = createRequire(import.meta.url);

// Minimal shapes of the CommonJS packages used here.
type End = null | true | Error;
type Source = (end: End, cb: (end: End, data?: Buffer) => void) => void;
type Sink = (source: Source) => void;
interface PullDuplex {
  source: Source;
  sink: Sink;
}
interface SecureStream extends PullDuplex {
  remote: Buffer;
}
type KeyPair = { publicKey: Buffer; secretKey: Buffer };
interface Shs {
  createClient(keys: KeyPair, appKey: Buffer, timeout?: number): (serverKey: Buffer, cb: (err: Error | null, stream?: SecureStream) => void) => PullDuplex;
  createServer(
    keys: KeyPair,
    authorize: (pub: Buffer, cb: (err: Error | null, ok?: boolean) => void) => void,
    appKey: Buffer,
    timeout?: number,
  ): (cb: (err: Error | null, stream?: SecureStream) => void) => PullDuplex;
}
const shs = require("secret-handshake") as Shs;
const pull = require("pull-stream") as ((...parts: unknown[]) => unknown) & {
  values(values: Buffer[]): Source;
  collect(cb: (err: Error | null, values: Buffer[]) => void): Sink;
};
const toPull = require("stream-to-pull-stream") as { duplex(stream: Duplex): PullDuplex };

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

function keyPair(identity: Identity): KeyPair {
  return { publicKey: Buffer.from(identity.publicKey), secretKey: Buffer.from(identity.secretKey) };
}

/** A promise settled later by another promise (from a connection handler). */
function deferred<T>(): { promise: Promise<T>; settle(from: Promise<T>): void } {
  let settle!: (from: Promise<T>) => void;
  const promise = new Promise<T>((resolve, reject) => {
    settle = (from) => from.then(resolve, reject);
  });
  return { promise, settle };
}

/** Pieces of assorted sizes, some over a box's 4096 bytes. */
function payload(): Buffer[] {
  return [1, 100, 4095, 4096, 4097, 20_000, 3, 70_000].map((n) => randomBytes(n));
}

/** Writes the pieces and ends; resolves with everything read until a clean end (the peer's goodbye). */
function exchange(stream: Duplex, pieces: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const received: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => received.push(chunk));
    stream.on("error", reject);
    stream.on("end", () => resolve(Buffer.concat(received)));
    for (const piece of pieces) stream.write(piece);
    stream.end();
  });
}

/** Sends and collects through a secret-handshake secure stream; rejects unless it ends with the goodbye. */
function pullExchange(stream: SecureStream, pieces: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pull(pull.values(pieces), stream.sink);
    pull(
      stream.source,
      pull.collect((err, values) => (err ? reject(err) : resolve(Buffer.concat(values)))),
    );
  });
}

describe("interop with secret-handshake and pull-box-stream", () => {
  it("their client, our server: handshake, data both ways, goodbyes", async () => {
    const networkKey = randomBytes(32);
    const server = generateIdentity();
    const client = generateIdentity();
    const toClient = payload();
    const toServer = payload();

    const serverSide = deferred<{ remoteId: string; received: Buffer }>();
    const port = await listenOn(cleanup, (socket) => {
      serverSide.settle(
        (async () => {
          const connection = await secureServer(socket, { identity: server, networkKey });
          return { remoteId: connection.remoteId, received: await exchange(connection.stream, toClient) };
        })(),
      );
    });

    const socket = await connectTo(cleanup, port);
    const clientSide = new Promise<{ remote: Buffer; received: Buffer }>((resolve, reject) => {
      const handshake = shs.createClient(keyPair(client), networkKey, 5000)(Buffer.from(server.publicKey), (err, secure) => {
        if (err || !secure) return reject(err);
        pullExchange(secure, toServer).then((received) => resolve({ remote: secure.remote, received }), reject);
      });
      const wire = toPull.duplex(socket);
      pull(wire, handshake, wire);
    });

    const [ours, theirs] = await Promise.all([serverSide.promise, clientSide]);
    expect(ours.remoteId).toBe(client.id);
    expect(Buffer.from(theirs.remote).equals(Buffer.from(server.publicKey))).toBe(true);
    expect(ours.received.equals(Buffer.concat(toServer))).toBe(true);
    expect(theirs.received.equals(Buffer.concat(toClient))).toBe(true);
  });

  it("our client, their server: handshake, data both ways, goodbyes", async () => {
    const networkKey = randomBytes(32);
    const server = generateIdentity();
    const client = generateIdentity();
    const toClient = payload();
    const toServer = payload();

    const serverSide = deferred<{ remote: Buffer; received: Buffer }>();
    const port = await listenOn(cleanup, (socket) => {
      serverSide.settle(
        new Promise((resolve, reject) => {
          const handshake = shs.createServer(keyPair(server), (_pub, cb) => cb(null, true), networkKey, 5000)((err, secure) => {
            if (err || !secure) return reject(err);
            pullExchange(secure, toClient).then((received) => resolve({ remote: secure.remote, received }), reject);
          });
          const wire = toPull.duplex(socket);
          pull(wire, handshake, wire);
        }),
      );
    });

    const socket = await connectTo(cleanup, port);
    const connection = await secureClient(socket, { identity: client, networkKey, remoteKey: server.id });
    expect(connection.remoteId).toBe(server.id);
    const [received, theirs] = await Promise.all([exchange(connection.stream, toServer), serverSide.promise]);

    expect(received.equals(Buffer.concat(toClient))).toBe(true);
    expect(theirs.received.equals(Buffer.concat(toServer))).toBe(true);
    expect(Buffer.from(theirs.remote).equals(Buffer.from(client.publicKey))).toBe(true);
  });

  it("their client with another network key: our server hangs up without a byte", async () => {
    const server = generateIdentity();
    const serverError = deferred<unknown>();
    const port = await listenOn(cleanup, (socket) => {
      serverError.settle(
        secureServer(socket, { identity: server, networkKey: randomBytes(32) }).then(
          () => undefined,
          (error: unknown) => error,
        ),
      );
    });
    const socket = await connectTo(cleanup, port);
    let bytesFromServer = 0;
    socket.on("data", (chunk: Buffer) => (bytesFromServer += chunk.length));
    const clientError = await new Promise<Error | null>((resolve) => {
      const handshake = shs.createClient(keyPair(generateIdentity()), randomBytes(32), 5000)(Buffer.from(server.publicKey), (err) =>
        resolve(err),
      );
      const wire = toPull.duplex(socket);
      pull(wire, handshake, wire);
    });
    expect(clientError).toBeInstanceOf(Error);
    expect(await serverError.promise).toBeInstanceOf(NetworkKeyMismatchError);
    expect(bytesFromServer).toBe(0);
  });

  it("our client with another network key: their server hangs up and we say why", async () => {
    const server = generateIdentity();
    const serverError = deferred<Error | null>();
    const port = await listenOn(cleanup, (socket) => {
      serverError.settle(
        new Promise((resolve) => {
          const handshake = shs.createServer(keyPair(server), (_pub, cb) => cb(null, true), randomBytes(32), 5000)((err) => resolve(err));
          const wire = toPull.duplex(socket);
          pull(wire, handshake, wire);
        }),
      );
    });
    const socket = await connectTo(cleanup, port);
    const error = await secureClient(socket, { identity: generateIdentity(), networkKey: randomBytes(32), remoteKey: server.publicKey }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NetworkKeyMismatchError);
    expect((error as HandshakeError).code).toBe("NETWORK_KEY_MISMATCH");
    expect(await serverError.promise).toBeInstanceOf(Error);
  });
});

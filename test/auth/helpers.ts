// Sockets for the auth tests: TCP on 127.0.0.1, everything closed after each test.

import { randomBytes } from "node:crypto";
import * as net from "node:net";
import type { BoxStreamKeys } from "../../src/auth/index.js";

export class Cleanup {
  readonly #steps: Array<() => void | Promise<void>> = [];

  add(step: () => void | Promise<void>): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) await step();
  }
}

/** A server on 127.0.0.1 (closed with its connections by `cleanup`). */
export async function listen(cleanup: Cleanup, onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.add(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

export async function connect(cleanup: Cleanup, port: number): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  cleanup.add(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** Both ends of one TCP connection. */
export async function socketPair(cleanup: Cleanup): Promise<[net.Socket, net.Socket]> {
  let accepted!: (socket: net.Socket) => void;
  const serverSide = new Promise<net.Socket>((resolve) => (accepted = resolve));
  const port = await listen(cleanup, (socket) => accepted(socket));
  const client = await connect(cleanup, port);
  return [client, await serverSide];
}

/** Matching keys for the two ends of a box-stream. */
export function keyPairs(): [BoxStreamKeys, BoxStreamKeys] {
  const a = { key: randomBytes(32), nonce: randomBytes(24) };
  const b = { key: randomBytes(32), nonce: randomBytes(24) };
  return [
    { encryptKey: a.key, encryptNonce: a.nonce, decryptKey: b.key, decryptNonce: b.nonce },
    { encryptKey: b.key, encryptNonce: b.nonce, decryptKey: a.key, decryptNonce: a.nonce },
  ];
}

/** Collects a readable until end; rejects on error. */
export function readAll(stream: NodeJS.ReadableStream & { on(event: string, listener: (...args: never[]) => void): unknown }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", (error: Error) => reject(error));
  });
}

/** Resolves with the first 'error' of a stream. */
export function nextError(stream: { once(event: "error", listener: (error: Error) => void): unknown }): Promise<Error> {
  return new Promise((resolve) => stream.once("error", resolve));
}

/** Resolves once the stream emitted 'close'. */
export function closed(stream: { closed?: boolean; once(event: "close", listener: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed === true) resolve();
    else stream.once("close", () => resolve());
  });
}

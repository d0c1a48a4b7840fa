// A connection's send batch: kept while it is busy, given back once it is idle.
import type * as net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  dialSocket,
  listenSocket,
  releaseIdleSendBuffers,
  sendBufferStats,
  streamFromDuplex,
  type MessageStream,
} from "../../src/transport/index.js";
import { Recorder, makeMessage, makeTempDir, readMessage } from "./helpers.js";

let dir: string;
let cleanupDir: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup: cleanupDir } = await makeTempDir());
});
afterAll(async () => {
  await cleanupDir();
});

/** A unix-socket connection: our stream on the dialling side, a Recorder on the accepting side. */
async function connection(name: string): Promise<{ stream: MessageStream; peer: Recorder; close: () => Promise<void> }> {
  let accepted!: (r: Recorder) => void;
  const peerReady = new Promise<Recorder>((resolve) => (accepted = resolve));
  const listener = await listenSocket(`unix:${join(dir, name)}`, (socket) => accepted(new Recorder(streamFromDuplex(socket))));
  const socket: net.Socket = await dialSocket(listener.address, { timeoutMs: 5000 });
  const stream = streamFromDuplex(socket);
  stream.onMessage = () => {};
  const peer = await peerReady;
  return {
    stream,
    peer,
    async close() {
      const closed = new Promise<void>((resolve) => (stream.onClose = () => resolve()));
      stream.close();
      await Promise.all([closed, peer.closed()]);
      await listener.close();
    },
  };
}

/** Sends `count` frames of about `bytes` each, all in the current tick. */
function burst(stream: MessageStream, from: number, count: number, bytes: number): void {
  for (let i = from; i < from + count; i++) stream.send(makeMessage(i, [bytes]));
}

describe("send batch of a socket stream", () => {
  it("stays small through a burst the socket keeps up with: the batch is reused once the kernel took it", async () => {
    const c = await connection("small.sock");
    try {
      // 200 frames (~30 KB) in one tick overflow a 4 KiB batch many times over.
      burst(c.stream, 0, 200, 100);
      await c.peer.waitFor(200);
      expect(c.peer.messages.map((m) => readMessage(m).seq)).toEqual([...Array(200).keys()]);
      expect(c.stream.sendBufferBytes).toBeGreaterThan(0);
      expect(c.stream.sendBufferBytes).toBeLessThan(8 * 1024);
    } finally {
      await c.close();
    }
  });

  it("is kept while the connection sends, and given back once it has sent nothing since the last sweep", async () => {
    const c = await connection("burst.sock");
    try {
      // A burst larger than the socket's kernel buffer (the peer, in this
      // process, cannot read until the tick ends): the socket backs up, so the
      // stream moves to full-size (64 KiB) batches.
      const n = 4000;
      burst(c.stream, 0, n, 1000);
      await c.peer.waitFor(n);
      // The next tick's send takes a full-size batch, kept after the kernel took the bytes.
      burst(c.stream, n, 1, 100);
      await c.peer.waitFor(n + 1);
      expect(c.peer.messages.map((m) => readMessage(m).seq)).toEqual([...Array(n + 1).keys()]);
      expect(c.stream.sendBufferBytes).toBe(64 * 1024);
      expect(sendBufferStats().bytes).toBeGreaterThanOrEqual(64 * 1024);

      // It sent since the last sweep: busy, so it keeps the batch (no reallocation per burst).
      expect(releaseIdleSendBuffers()).toBe(0);
      expect(c.stream.sendBufferBytes).toBe(64 * 1024);

      // Nothing sent since: idle, the batch is given back.
      expect(releaseIdleSendBuffers()).toBeGreaterThanOrEqual(64 * 1024);
      expect(c.stream.sendBufferBytes).toBe(0);
      expect(sendBufferStats().bytes).toBe(0);

      // Sending again works, and starts from a small batch (pooled), not 64 KiB.
      burst(c.stream, n + 1, 1, 100);
      await c.peer.waitFor(n + 2);
      expect(readMessage(c.peer.messages[n + 1]!).seq).toBe(n + 1);
      expect(c.stream.sendBufferBytes).toBeGreaterThan(0);
      expect(c.stream.sendBufferBytes).toBeLessThan(8 * 1024);
    } finally {
      await c.close();
    }
  });

  it("is dropped when the stream closes", async () => {
    const c = await connection("close.sock");
    burst(c.stream, 0, 4000, 1000);
    await c.peer.waitFor(4000);
    burst(c.stream, 4000, 1, 100);
    await c.peer.waitFor(4001);
    expect(c.stream.sendBufferBytes).toBe(64 * 1024);
    await c.close();
    expect(c.stream.sendBufferBytes).toBe(0);
    expect(sendBufferStats().bytes).toBe(0);
  });
});

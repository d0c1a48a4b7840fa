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
import { utils } from "capnp-es";
import { builderPoolBytes, newMessage } from "../../src/codec/message.js";
import { Recorder, TestStruct, checkPattern, fillPattern, makeMessage, makeTempDir, readMessage } from "./helpers.js";

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
      // The next tick's send takes a full-size batch, kept after the kernel
      // took the bytes, with at most one finished batch kept for reuse.
      burst(c.stream, n, 1, 100);
      await c.peer.waitFor(n + 1);
      expect(c.peer.messages.map((m) => readMessage(m).seq)).toEqual([...Array(n + 1).keys()]);
      const held = c.stream.sendBufferBytes!;
      expect([64 * 1024, 128 * 1024]).toContain(held);
      expect(sendBufferStats().bytes).toBeGreaterThanOrEqual(held);

      // It sent since the last sweep: busy, so it keeps the batch (no reallocation per burst).
      expect(releaseIdleSendBuffers()).toBe(0);
      expect(c.stream.sendBufferBytes).toBe(held);

      // Nothing sent since: idle, the batch is given back, and with every
      // stream idle, the process's pools of message buffers too.
      expect(releaseIdleSendBuffers()).toBeGreaterThanOrEqual(64 * 1024);
      expect(c.stream.sendBufferBytes).toBe(0);
      expect(sendBufferStats().bytes).toBe(0);
      expect(builderPoolBytes()).toBe(0);

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
    expect(c.stream.sendBufferBytes).toBeGreaterThanOrEqual(64 * 1024);
    await c.close();
    expect(c.stream.sendBufferBytes).toBe(0);
    expect(sendBufferStats().bytes).toBe(0);
  });

  it("copies bulk frames (up to 128 KiB) into its batches: they arrive intact while the socket is backed up", async () => {
    const c = await connection("bulk.sock");
    try {
      // 64 frames of 64 KiB in one tick: far more than the kernel takes at once.
      burst(c.stream, 0, 64, 64 * 1024);
      // and a frame too large to copy, which goes by reference, in between
      burst(c.stream, 64, 1, 200 * 1024);
      burst(c.stream, 65, 16, 64 * 1024);
      await c.peer.waitFor(81);
      c.peer.messages.forEach((m, i) => {
        const { seq, payloads } = readMessage(m, 1);
        expect(seq).toBe(i);
        expect(payloads[0]!.byteLength).toBe(i === 64 ? 200 * 1024 : 64 * 1024);
        expect(checkPattern(payloads[0]!, i)).toBe(true);
      });
      // A stream of bulk frames keeps its batch and at most one finished one (264 KiB each), not one per frame.
      expect(c.stream.sendBufferBytes).toBeLessThanOrEqual(2 * 264 * 1024);
    } finally {
      await c.close();
    }
  });

  it("gives a recyclable message's buffer back once its frame is copied, zeroed, for the next message", async () => {
    const c = await connection("recycle.sock");
    try {
      const build = (seq: number, recyclable: boolean) => {
        const m = newMessage(512);
        m.recyclable = recyclable;
        const root = m.initRoot(TestStruct);
        utils.setUint64(0, BigInt(seq), root);
        fillPattern(utils.initData(0, 64 * 1024, root).toUint8Array(), seq);
        return m;
      };
      const first = build(0, true);
      const buffer = first._capnp.segments[0]!.buffer;
      const pooled = builderPoolBytes();
      c.stream.send(first);
      // Copied and given back: the message is empty now, its buffer in the pool.
      expect(first._capnp.segments[0]!.byteLength).toBe(0);
      expect(builderPoolBytes()).toBe(pooled + buffer.byteLength);
      // The next message of that size is built in the same buffer, which reads as zero.
      const probe = newMessage(buffer.byteLength);
      expect(probe._capnp.segments[0]!.buffer).toBe(buffer);
      expect(new Uint8Array(buffer).every((b) => b === 0)).toBe(true);
      // A message that did not opt in keeps its buffer.
      const kept = build(1, false);
      c.stream.send(kept);
      expect(kept._capnp.segments[0]!.byteLength).toBeGreaterThan(64 * 1024);
      await c.peer.waitFor(2);
      c.peer.messages.forEach((m, i) => {
        const { seq, payloads } = readMessage(m, 1);
        expect(seq).toBe(i);
        expect(checkPattern(payloads[0]!, i)).toBe(true);
      });
      // Once every stream has gone idle the pool is emptied as well.
      c.stream.send(build(2, true));
      expect(builderPoolBytes()).toBeGreaterThan(0);
      await c.peer.waitFor(3);
      releaseIdleSendBuffers(); // sent since the last sweep: kept
      expect(builderPoolBytes()).toBeGreaterThan(0);
      releaseIdleSendBuffers(); // idle now: batch and pool given back
      expect(builderPoolBytes()).toBe(0);
    } finally {
      await c.close();
    }
  });
});

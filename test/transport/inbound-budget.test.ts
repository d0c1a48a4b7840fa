// Inbound buffers hold what a peer actually sent, not what its frame header
// announced (issue 8, finding 3), and the process-wide total of buffered
// inbound bytes is bounded (the inbound budget).
import * as net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect, listen, type Listener } from "../../src/rpc/index.js";
import { FrameDecoder } from "../../src/transport/framing.js";
import {
  InboundBudget,
  inboundBudgetStats,
  setInboundBudget,
  DEFAULT_INBOUND_BUDGET_BYTES,
} from "../../src/transport/inbound-budget.js";
import { Trees } from "../rpc/schema/trees.js";
import { RawPeer, until } from "../rpc/helpers/raw-peer.js";
import { callFrame, dataBlob, structAround } from "../rpc/helpers/words.js";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "capmesh-budget-"));

/** A frame header (one segment) announcing `words` words. */
function header(words: number): Uint8Array {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setUint32(4, words, true);
  return h;
}

describe("FrameDecoder and the budget", () => {
  it("holds only what arrived of a frame announced at 64 MiB, and gives it back", () => {
    const budget = new InboundBudget(8 * MiB);
    const delivered: number[] = [];
    const decoder = new FrameDecoder(undefined, (m) => delivered.push(m._capnp.segments[0]!.byteLength), budget);
    decoder.push(header(8 * MiB / 8 * 8));
    expect(decoder.heldBytes).toBe(0);
    decoder.push(new Uint8Array(100));
    expect(decoder.heldBytes).toBeLessThanOrEqual(4096);
    expect(budget.stats().usedBytes).toBe(decoder.heldBytes);
    // The rest arrives in pieces: held bytes stay within twice what arrived.
    let received = 100;
    const piece = new Uint8Array(1 * MiB);
    while (received + piece.byteLength <= 64 * MiB) {
      decoder.push(piece);
      received += piece.byteLength;
      expect(decoder.heldBytes).toBeLessThanOrEqual(2 * received + 4096);
    }
    decoder.push(new Uint8Array(64 * MiB - received));
    expect(delivered).toEqual([64 * MiB]);
    expect(decoder.heldBytes).toBe(0);
    expect(budget.stats().usedBytes).toBe(0);
  });

  it("gives back an incomplete frame's bytes when the stream is closed", () => {
    const budget = new InboundBudget();
    const decoder = new FrameDecoder(undefined, () => {}, budget);
    decoder.push(header(1024 * 1024));
    decoder.push(new Uint8Array(300_000));
    expect(budget.stats().usedBytes).toBeGreaterThanOrEqual(300_000);
    decoder.dispose();
    expect(budget.stats().usedBytes).toBe(0);
    expect(() => decoder.push(new Uint8Array(8))).toThrow(/closed/);
  });

  it("still copies small frames and whole frames straight into their segments", () => {
    const budget = new InboundBudget();
    const sizes: number[] = [];
    const decoder = new FrameDecoder(undefined, (m) => sizes.push(m._capnp.segments[0]!.byteLength), budget);
    // A 1 MiB frame arriving in one chunk never touches the budget.
    const whole = new Uint8Array(8 + MiB);
    whole.set(header(MiB / 8));
    decoder.push(whole);
    expect(sizes).toEqual([MiB]);
    expect(budget.stats().usedBytes).toBe(0);
  });

  it("refuses a budget below one connection's free allowance", () => {
    expect(() => new InboundBudget(1000)).toThrow(/at least 65536/);
    expect(() => setInboundBudget({ maxBytes: Number.NaN })).toThrow(RangeError);
  });
});

describe("over real sockets", () => {
  let listener: Listener;
  const raw: net.Socket[] = [];

  beforeAll(async () => {
    listener = await listen(`unix:${join(dir, "budget.sock")}`, {
      bootstrap: Trees.server({
        make: () => ({ tree: {} }),
        count: () => ({ nodes: 0n }),
        blob: () => ({}),
        ping: () => {},
      }),
    });
  });

  afterEach(() => {
    for (const s of raw.splice(0)) s.destroy();
    setInboundBudget({ maxBytes: DEFAULT_INBOUND_BUDGET_BYTES });
  });

  afterAll(async () => {
    await listener.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function openRaw(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: listener.address.slice("unix:".length) });
      socket.on("error", () => {});
      socket.once("error", reject);
      socket.once("connect", () => resolve(socket));
      raw.push(socket);
    });
  }

  it("200 peers announcing 64 MiB frames cost what they sent, not 12.5 GiB", async () => {
    const before = process.memoryUsage().arrayBuffers;
    const sockets = await Promise.all(Array.from({ length: 200 }, () => openRaw()));
    for (const s of sockets) s.write(Buffer.concat([header(8 * MiB), Buffer.alloc(8)]));
    // Each holds one 4 KiB block for its 8 bytes.
    await until(() => inboundBudgetStats().usedBytes === 200 * 4096, () => `usedBytes = ${inboundBudgetStats().usedBytes}`);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * MiB);
    // The server is fine meanwhile.
    const client = await connect(listener.address);
    await client.bootstrap(Trees).ping();
    await client.close();
    for (const s of sockets) s.destroy();
    await until(() => inboundBudgetStats().usedBytes === 0, "the closed peers' bytes to be given back");
  });

  it("past the process-wide budget, one large frame completes while the others wait, and nothing is lost", async () => {
    setInboundBudget({ maxBytes: 1 * MiB });
    const a = await RawPeer.connect(listener.address.slice("unix:".length));
    const b = await RawPeer.connect(listener.address.slice("unix:".length));
    try {
      const targetA = await a.bootstrap(1);
      const targetB = await b.bootstrap(1);
      const frameA = callFrame(2, targetA, Trees.id, 3, structAround(dataBlob(4 * MiB)));
      const frameB = callFrame(2, targetB, Trees.id, 3, structAround(dataBlob(2 * MiB)));
      // A sends three quarters of its 4 MiB frame: past the 1 MiB budget, it
      // holds the overdraft and goes on.
      a.write(frameA.subarray(0, 3 * MiB));
      await until(() => inboundBudgetStats().usedBytes >= 3 * MiB, () => `usedBytes = ${inboundBudgetStats().usedBytes}`);
      // B sends its whole frame: it must wait.
      b.write(frameB);
      await until(() => inboundBudgetStats().waiting === 1, () => JSON.stringify(inboundBudgetStats()));
      const held = inboundBudgetStats().usedBytes;
      expect(held).toBeLessThan(1 * MiB + 4 * MiB + 2 * 128 * 1024);
      // Small frames are never held up.
      const client = await connect(listener.address);
      await client.bootstrap(Trees).ping();
      await client.close();
      // A finishes; then B is read and answered.
      a.write(frameA.subarray(3 * MiB));
      expect((await a.returnFor(2))._isResults).toBe(true);
      expect((await b.returnFor(2))._isResults).toBe(true);
      await until(() => inboundBudgetStats().usedBytes === 0, "every frame's bytes to be given back");
      expect(inboundBudgetStats().waiting).toBe(0);
    } finally {
      a.destroy();
      b.destroy();
    }
  });
});

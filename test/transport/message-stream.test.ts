import { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  FrameDecoder,
  FrameError,
  frameBytes,
  memoryStreamPair,
  streamFromDuplex,
  type MessageStream,
} from "../../src/transport/index.js";
import { Recorder, concat, makeMessage, readMessage, tick } from "./helpers.js";

/** Two in-process duplexes wired to each other; destroy resets the other. */
function duplexPair(): [Duplex, Duplex] {
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        peer().push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
      destroy(this: Duplex, err, cb) {
        // Like TCP: torn down before both directions finished = reset.
        const p = peer();
        const clean = this.writableFinished && this.readableEnded;
        if (!p.destroyed && !clean) {
          p.destroy(Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" }));
        }
        cb(err);
      },
    });
  const a: Duplex = make(() => b);
  const b: Duplex = make(() => a);
  // Tests that wrap only one side must not die of the other side's reset.
  a.on("error", () => {});
  b.on("error", () => {});
  return [a, b];
}

/** A duplex that records how its writes reach it. */
class RecordingDuplex extends Duplex {
  batches: Uint8Array[][] = [];
  constructor() {
    super({ read() {} });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.batches.push([chunk]);
    cb();
  }
  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    this.batches.push(chunks.map((c) => c.chunk));
    cb();
  }
}

function seqs(r: Recorder): number[] {
  return r.messages.map((m) => readMessage(m).seq);
}

describe("streamFromDuplex", () => {
  it("sends everything of one tick in one corked write", async () => {
    const d = new RecordingDuplex();
    const s = streamFromDuplex(d);
    s.onMessage = () => {};
    for (let i = 0; i < 10; i++) s.send(makeMessage(i, [i * 3]));
    expect(d.batches.length).toBe(0);
    expect(s.bufferedBytes).toBeGreaterThan(0);
    await tick();
    expect(d.batches.length).toBe(1);
    expect(s.bufferedBytes).toBe(0);
    const out: number[] = [];
    const dec = new FrameDecoder(undefined, (m) => out.push(readMessage(m).seq));
    dec.push(concat(d.batches[0]!));
    expect(out).toEqual([...Array(10).keys()]);
    // The next tick's sends are a new batch.
    s.send(makeMessage(10));
    await tick();
    expect(d.batches.length).toBe(2);
    d.destroy();
  });

  it("keeps order and content when one tick's small frames overflow the batch buffer", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const b = new Recorder(streamFromDuplex(db));
    // Frames of ~1-4 KiB, 400 of them in one tick: several batch buffers,
    // with a large (by-reference) frame in between.
    for (let i = 0; i < 400; i++) a.stream.send(makeMessage(i, [1000 + (i % 3) * 1000]));
    a.stream.send(makeMessage(400, [100_000]));
    for (let i = 401; i < 450; i++) a.stream.send(makeMessage(i, [2000]));
    await b.waitFor(450);
    expect(seqs(b)).toEqual([...Array(450).keys()]);
    a.stream.close();
    expect(await a.closed()).toBeUndefined();
    expect(await b.closed()).toBeUndefined();
  });

  it("delivers messages in order both ways", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const b = new Recorder(streamFromDuplex(db));
    for (let i = 0; i < 200; i++) {
      a.stream.send(makeMessage(i));
      b.stream.send(makeMessage(1000 + i));
      if (i % 50 === 0) await tick();
    }
    await Promise.all([a.waitFor(200), b.waitFor(200)]);
    expect(seqs(b)).toEqual([...Array(200).keys()]);
    expect(seqs(a)).toEqual([...Array(200).keys()].map((i) => 1000 + i));
    a.stream.close();
    expect(await a.closed()).toBeUndefined();
    expect(await b.closed()).toBeUndefined();
  });

  it("close() flushes queued sends, then both sides see a clean end", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const b = new Recorder(streamFromDuplex(db));
    for (let i = 0; i < 100; i++) a.stream.send(makeMessage(i));
    a.stream.close();
    expect(a.stream.closed).toBe(true);
    a.stream.close(); // idempotent
    a.stream.send(makeMessage(999)); // dropped silently
    expect(await b.closed()).toBeUndefined();
    expect(seqs(b)).toEqual([...Array(100).keys()]);
    expect(await a.closed()).toBeUndefined();
    expect(a.closeCount).toBe(1);
    expect(b.closeCount).toBe(1);
    expect(b.stream.closed).toBe(true);
  });

  it("close(error) reports that error locally; the peer sees a clean end", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const b = new Recorder(streamFromDuplex(db));
    a.stream.send(makeMessage(1));
    const reason = new Error("protocol violation");
    a.stream.close(reason);
    expect(await a.closed()).toBe(reason);
    expect(await b.closed()).toBeUndefined();
    expect(seqs(b)).toEqual([1]);
  });

  it("a FrameError closes the stream and destroys the duplex, without crashing", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    db.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f])); // 2^31 segments
    const err = await a.closed();
    expect(err).toBeInstanceOf(FrameError);
    expect((err as FrameError).code).toBe("segment-count");
    expect(a.stream.closed).toBe(true);
    expect(da.destroyed).toBe(true);
    expect(db.destroyed).toBe(true);
  });

  it("a truncated frame followed by end of stream reports 'truncated'", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const bytes = frameBytes(makeMessage(5, [100]));
    db.write(bytes.subarray(0, 50));
    db.end();
    const err = await a.closed();
    expect((err as FrameError).code).toBe("truncated");
    expect(a.messages).toEqual([]);
  });

  it("a throw from onMessage closes that stream with the error; the peer sees a reset", async () => {
    const [da, db] = duplexPair();
    const boom = new Error("engine bug");
    const a = new Recorder(streamFromDuplex(da), (m) => {
      if (readMessage(m).seq === 3) throw boom;
    });
    const b = new Recorder(streamFromDuplex(db));
    for (let i = 0; i < 10; i++) b.stream.send(makeMessage(i));
    expect(await a.closed()).toBe(boom);
    // Messages after the failing one are not delivered.
    expect(seqs(a)).toEqual([0, 1, 2]);
    const peerErr = await b.closed();
    expect(peerErr?.message).toMatch(/reset/);
  });

  it("does not read until onMessage is set", async () => {
    const [da, db] = duplexPair();
    const s = streamFromDuplex(da);
    const b = streamFromDuplex(db);
    b.onMessage = () => {};
    for (let i = 0; i < 5; i++) b.send(makeMessage(i));
    await tick();
    await tick();
    const r = new Recorder(s);
    await r.waitFor(5);
    expect(seqs(r)).toEqual([0, 1, 2, 3, 4]);
    s.close();
    await r.closed();
  });

  it("a duplex destroyed without an end of stream is reported as an error", async () => {
    const [da] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    da.destroy();
    const err = await a.closed();
    expect(err?.message).toMatch(/closed abruptly/);
  });

  it("reports a duplex error", async () => {
    const [da] = duplexPair();
    const a = new Recorder(streamFromDuplex(da));
    const e = new Error("EPIPE-ish");
    da.destroy(e);
    expect(await a.closed()).toBe(e);
  });

  it("enforces receive limits", async () => {
    const [da, db] = duplexPair();
    const a = new Recorder(streamFromDuplex(da, { maxMessageBytes: 1024 }));
    const b = new Recorder(streamFromDuplex(db));
    b.stream.send(makeMessage(1, [100]));
    b.stream.send(makeMessage(2, [5000]));
    const err = await a.closed();
    expect((err as FrameError).code).toBe("message-too-large");
    expect(err?.message).toMatch(/over this receiver's limit of 1024 bytes/);
    expect(seqs(a)).toEqual([1]);
    await b.closed();
  });

  it("uses the duplex's own remoteAddress when it has one", () => {
    const d = new RecordingDuplex() as RecordingDuplex & { remoteAddress?: string };
    d.remoteAddress = "box:peer-key";
    expect(streamFromDuplex(d).remoteAddress).toBe("box:peer-key");
    expect(streamFromDuplex(new RecordingDuplex(), undefined, { remoteAddress: "x" }).remoteAddress).toBe("x");
    expect(streamFromDuplex(new RecordingDuplex()).remoteAddress).toBe("unknown");
  });
});

describe("memoryStreamPair", () => {
  it("delivers in order, asynchronously, through real framing", async () => {
    const [sa, sb] = memoryStreamPair();
    const a = new Recorder(sa);
    const b = new Recorder(sb);
    for (let i = 0; i < 300; i++) {
      sa.send(makeMessage(i, i % 10 === 0 ? [3000, 3000] : [], i % 10 === 0));
      sb.send(makeMessage(10_000 + i));
    }
    expect(b.messages.length).toBe(0); // nothing synchronous
    expect(sa.bufferedBytes).toBeGreaterThan(0);
    await Promise.all([a.waitFor(300), b.waitFor(300)]);
    expect(seqs(b)).toEqual([...Array(300).keys()]);
    expect(seqs(a)).toEqual([...Array(300).keys()].map((i) => 10_000 + i));
    expect(sa.bufferedBytes).toBe(0);
    // Received messages are independent copies.
    expect(readMessage(b.messages[0]!, 2).payloads[0]!.length).toBe(3000);
  });

  it("close delivers what was sent first; both sides close cleanly once", async () => {
    const [sa, sb] = memoryStreamPair();
    const a = new Recorder(sa);
    const b = new Recorder(sb);
    sa.send(makeMessage(1));
    sa.send(makeMessage(2));
    sa.close();
    sa.close();
    sa.send(makeMessage(3));
    expect(sa.closed).toBe(true);
    expect(await b.closed()).toBeUndefined();
    expect(seqs(b)).toEqual([1, 2]);
    expect(await a.closed()).toBeUndefined();
    await tick();
    expect([a.closeCount, b.closeCount]).toEqual([1, 1]);
    sb.send(makeMessage(4)); // dropped, no throw
  });

  it("applies limits: the receiver fails with a FrameError, the sender sees a reset", async () => {
    const [sa, sb] = memoryStreamPair({ maxMessageBytes: 1024 });
    const a = new Recorder(sa);
    const b = new Recorder(sb);
    sa.send(makeMessage(1, [4096]));
    const err = await b.closed();
    expect((err as FrameError).code).toBe("message-too-large");
    expect((await a.closed())?.message).toMatch(/reset by peer/);
  });

  it("a throw from onMessage closes that side with the error", async () => {
    const [sa, sb] = memoryStreamPair();
    const boom = new Error("boom");
    const a = new Recorder(sa);
    const b = new Recorder(sb, () => {
      throw boom;
    });
    sa.send(makeMessage(1));
    sa.send(makeMessage(2));
    expect(await b.closed()).toBe(boom);
    expect(b.messages).toEqual([]);
    expect((await a.closed())?.message).toMatch(/reset/);
  });

  it("holds messages until onMessage is set, keeping order", async () => {
    const [sa, sb] = memoryStreamPair();
    sa.onMessage = () => {};
    sa.send(makeMessage(1));
    sa.send(makeMessage(2));
    await tick();
    sa.send(makeMessage(3));
    const b = new Recorder(sb);
    sa.send(makeMessage(4));
    await b.waitFor(4);
    expect(seqs(b)).toEqual([1, 2, 3, 4]);
  });

  it("implements the MessageStream interface", () => {
    const [sa]: MessageStream[] = memoryStreamPair();
    expect(typeof sa!.remoteAddress).toBe("string");
    expect(sa!.closed).toBe(false);
  });
});

import { Message, ObjectSize, Struct, utils } from "capnp-es";
import { describe, expect, it } from "vitest";
import {
  FrameDecoder,
  FrameError,
  InboundMessage,
  decodeFrame,
  encodeFrame,
  frameBytes,
  frameHeaderBytes,
  messageFromSegments,
} from "../../src/transport/index.js";
import { TestStruct, checkPattern, concat, makeMessage, readMessage, rng } from "./helpers.js";

function collect(limits?: ConstructorParameters<typeof FrameDecoder>[0]) {
  const out: InboundMessage[] = [];
  const decoder = new FrameDecoder(limits, (m) => out.push(m));
  return { decoder, out };
}

function header(sizesInWords: number[], countField = sizesInWords.length - 1): Uint8Array {
  const h = new Uint8Array(frameHeaderBytes(Math.max(sizesInWords.length, 1)));
  const dv = new DataView(h.buffer);
  dv.setUint32(0, countField >>> 0, true);
  sizesInWords.forEach((s, i) => dv.setUint32(4 + 4 * i, s, true));
  return h;
}

function frameError(fn: () => void): FrameError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FrameError);
    return e as FrameError;
  }
  throw new Error("expected a FrameError");
}

describe("encodeFrame", () => {
  it("writes the standard header and views of the used part of each segment", () => {
    const m = makeMessage(7, [3000, 3000, 3000], true);
    const segs = m._capnp.segments;
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const parts = encodeFrame(m);
    const dv = new DataView(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.byteLength);
    expect(dv.getUint32(0, true)).toBe(segs.length - 1);
    expect(parts[0]!.byteLength).toBe(frameHeaderBytes(segs.length));
    segs.forEach((s, i) => {
      expect(dv.getUint32(4 + 4 * i, true)).toBe(s.byteLength / 8);
      // No copy: the view is over the segment's own buffer...
      expect(parts[i + 1]!.buffer).toBe(s.buffer);
      // ...and covers only the used bytes, not the spare capacity.
      expect(parts[i + 1]!.byteLength).toBe(s.byteLength);
    });
    expect(segs.some((s) => s.buffer.byteLength > s.byteLength)).toBe(true);
    // Byte-identical to capnp-es's own serialisation.
    expect(frameBytes(m)).toEqual(new Uint8Array(m.toArrayBuffer()));
  });

  it("headers are padded to whole words", () => {
    expect([1, 2, 3, 4, 5].map(frameHeaderBytes)).toEqual([8, 16, 16, 24, 24]);
  });

  it("frames a message that was never touched (null root)", () => {
    const bytes = frameBytes(new Message());
    expect(bytes).toEqual(new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    const m = decodeFrame(bytes);
    expect(m._capnp.segments.length).toBe(1);
  });
});

describe("FrameDecoder round trips", () => {
  it("decodes a multi-segment message with far pointers", () => {
    const m = makeMessage(42, [3000, 5000, 100, 7000], true);
    expect(m._capnp.segments.length).toBeGreaterThanOrEqual(3);
    const d = decodeFrame(frameBytes(m));
    expect(d).toBeInstanceOf(Message);
    expect(d._capnp.segments.length).toBe(m._capnp.segments.length);
    const r = readMessage(d, 4);
    expect(r.seq).toBe(42);
    expect(r.payloads.map((p) => p.length)).toEqual([3000, 5000, 100, 7000]);
    r.payloads.forEach((p, i) => expect(checkPattern(p, 42 + i)).toBe(true));
  });

  it("copies each message exactly once, into exactly-sized per-segment buffers", () => {
    const m = makeMessage(1, [3000, 3000], true);
    const bytes = frameBytes(m);
    const d = decodeFrame(bytes);
    m._capnp.segments.forEach((s, i) => {
      const got = d._capnp.segments[i]!;
      expect(got.buffer).not.toBe(s.buffer);
      expect(got.buffer.byteLength).toBe(s.byteLength);
      expect(got.byteLength).toBe(s.byteLength);
    });
    // The input may be reused afterwards without affecting the message.
    bytes.fill(0xff);
    expect(readMessage(d, 2).payloads.every((p, i) => checkPattern(p, 1 + i))).toBe(true);
  });

  it("handles a split at every byte boundary", () => {
    const a = frameBytes(makeMessage(1, [3000, 3000, 3000], true));
    const b = frameBytes(makeMessage(2, [10]));
    const stream = concat([a, b]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const { decoder, out } = collect();
      decoder.push(stream.subarray(0, cut));
      decoder.push(stream.subarray(cut));
      decoder.end();
      expect(out.map((m) => readMessage(m).seq)).toEqual([1, 2]);
    }
  });

  it("handles one byte at a time", () => {
    const frames = [
      frameBytes(makeMessage(1, [3000, 3000, 3000], true)),
      frameBytes(makeMessage(2)),
      frameBytes(makeMessage(3, [17, 0, 5])),
      frameBytes(new Message()),
    ];
    const stream = concat(frames);
    const boundaries: number[] = [];
    let at = 0;
    for (const f of frames) boundaries.push((at += f.length));
    const { decoder, out } = collect();
    for (let i = 0; i < stream.length; i++) {
      decoder.push(stream.subarray(i, i + 1));
      // A message is emitted exactly when the last byte of its frame arrives.
      const done = boundaries.filter((b) => b <= i + 1).length;
      expect(out.length).toBe(done);
      expect(decoder.midFrame).toBe(!boundaries.includes(i + 1));
    }
    decoder.end();
    expect(out.length).toBe(4);
    expect(out.slice(0, 3).map((m) => readMessage(m).seq)).toEqual([1, 2, 3]);
    const r = readMessage(out[0]!, 3);
    r.payloads.forEach((p, i) => expect(checkPattern(p, 1 + i)).toBe(true));
  });

  it("handles many frames coalesced in one chunk", () => {
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) frames.push(frameBytes(makeMessage(i, i % 7 === 0 ? [i] : [])));
    const { decoder, out } = collect();
    decoder.push(concat(frames));
    expect(decoder.midFrame).toBe(false);
    expect(out.map((m) => readMessage(m).seq)).toEqual([...Array(500).keys()]);
  });

  it("decodes a large message arriving in many chunks", () => {
    const size = 8 * 1024 * 1024;
    const bytes = frameBytes(makeMessage(9, [size]));
    const { decoder, out } = collect();
    const t0 = performance.now();
    for (let at = 0; at < bytes.length; at += 65536) decoder.push(bytes.subarray(at, at + 65536));
    const ms = performance.now() - t0;
    expect(out.length).toBe(1);
    const r = readMessage(out[0]!, 1);
    expect(checkPattern(r.payloads[0]!, 9)).toBe(true);
    // Linear copying: generous bound that O(n^2) re-buffering would blow.
    expect(ms).toBeLessThan(2000);
  });

  it("a zero-length chunk is a no-op, and end() with nothing buffered is clean", () => {
    const { decoder, out } = collect();
    decoder.push(new Uint8Array(0));
    expect(decoder.midFrame).toBe(false);
    decoder.end();
    expect(out).toEqual([]);
  });

  it("allows empty segments after the first", () => {
    // Segment 0: root pointer to a struct in segment 0 with one data word.
    // Segment 1: empty. Segment 2: one word, unused.
    const seg0 = new Uint8Array(16);
    const dv = new DataView(seg0.buffer);
    dv.setUint32(0, 0, true); // struct pointer, offset 0
    dv.setUint16(4, 1, true); // 1 data word
    dv.setUint32(8, 99, true);
    const bytes = concat([header([2, 0, 1]), seg0, new Uint8Array(8)]);
    const m = decodeFrame(bytes);
    expect(m._capnp.segments.map((s) => s.byteLength)).toEqual([16, 0, 8]);
    expect(utils.getUint32(0, m.getRoot(TestStruct))).toBe(99);
  });
});

describe("FrameDecoder limits and bad input", () => {
  it("rejects a segment count of 2^31 from the first 4 bytes", () => {
    for (const field of [0x7fffffff, 0x80000000]) {
      const { decoder } = collect();
      const h = new Uint8Array(4);
      new DataView(h.buffer).setUint32(0, field, true);
      const err = frameError(() => decoder.push(h));
      expect(err.code).toBe("segment-count");
      expect(err.message).toMatch(/declares \d+ segments, over this receiver's limit of 512/);
      expect(err.message).toMatch(/maxSegments/);
    }
  });

  it("enforces maxSegments exactly", () => {
    const frameWith = (n: number) => {
      const sizes = [1, ...Array<number>(n - 1).fill(0)];
      return concat([header(sizes), new Uint8Array(8)]);
    };
    expect(decodeFrame(frameWith(4), { maxSegments: 4 })._capnp.segments.length).toBe(4);
    expect(frameError(() => decodeFrame(frameWith(5), { maxSegments: 4 })).code).toBe("segment-count");
    expect(decodeFrame(frameWith(512))._capnp.segments.length).toBe(512);
    expect(frameError(() => decodeFrame(frameWith(513))).code).toBe("segment-count");
  });

  it("rejects a zero-segment count (0xFFFFFFFF wraps)", () => {
    const { decoder } = collect();
    const err = frameError(() => decoder.push(new Uint8Array([0xff, 0xff, 0xff, 0xff])));
    expect(err.code).toBe("malformed");
    expect(err.message).toMatch(/zero segments/);
  });

  it("rejects an empty first segment", () => {
    const err = frameError(() => decodeFrame(header([0])));
    expect(err.code).toBe("malformed");
    expect(err.message).toMatch(/first segment is empty/);
  });

  it("rejects an oversized message as soon as the segment table is read", () => {
    const { decoder, out } = collect({ maxMessageBytes: 1024 });
    // 129 words = 1032 bytes > 1024; no body bytes sent at all.
    const err = frameError(() => decoder.push(header([129])));
    expect(err.code).toBe("message-too-large");
    expect(err.message).toMatch(/is 1032 bytes \(1 segment\), over this receiver's limit of 1024 bytes/);
    expect(err.message).toMatch(/raise the transport limit maxMessageBytes/);
    expect(out).toEqual([]);
    // A dead decoder keeps failing.
    expect(() => decoder.push(new Uint8Array(8))).toThrow(err);
  });

  it("counts all segments toward the size limit", () => {
    const err = frameError(() => collect({ maxMessageBytes: 1024 }).decoder.push(header([100, 20, 10])));
    expect(err.code).toBe("message-too-large");
    expect(err.message).toMatch(/1040 bytes \(3 segments\)/);
    // Exactly at the limit is fine.
    const ok = collect({ maxMessageBytes: 1024 });
    ok.decoder.push(concat([header([100, 28]), new Uint8Array(1024)]));
    expect(ok.out.length).toBe(1);
  });

  it("rejects huge declared sizes without allocating", () => {
    // 4 Gi words = 32 GiB: rejected from the header by the default 64 MiB limit.
    const err = frameError(() => collect().decoder.push(header([0xffffffff, 0xffffffff])));
    expect(err.code).toBe("message-too-large");
  });

  it("reports a truncated frame at end of stream", () => {
    const bytes = frameBytes(makeMessage(1, [100]));
    for (const cut of [1, 4, 7, 8, 20, bytes.length - 1]) {
      const { decoder, out } = collect();
      decoder.push(bytes.subarray(0, cut));
      expect(decoder.midFrame).toBe(true);
      const err = frameError(() => decoder.end());
      expect(err.code).toBe("truncated");
      expect(err.message).toMatch(/ended in the middle of a Cap'n Proto frame/);
      expect(out).toEqual([]);
    }
  });

  it("survives random bytes: only FrameErrors, and decoded garbage fails only when read", () => {
    const next = rng(1234);
    let frameErrors = 0;
    let decoded = 0;
    for (let round = 0; round < 2000; round++) {
      const len = Math.floor(next() * 200);
      const bytes = new Uint8Array(len);
      for (let i = 0; i < len; i++) bytes[i] = Math.floor(next() * 256);
      if (round % 2 === 0 && len >= 8) {
        // Make half the inputs plausible frames: one segment that fits.
        const dv = new DataView(bytes.buffer);
        dv.setUint32(0, 0, true);
        dv.setUint32(4, Math.floor((len - 8) / 8), true);
      }
      const { decoder, out } = collect({ maxMessageBytes: 4096 });
      try {
        decoder.push(bytes);
        decoder.end();
      } catch (e) {
        expect(e).toBeInstanceOf(FrameError);
        frameErrors++;
      }
      for (const m of out) {
        decoded++;
        try {
          const root = m.getRoot(TestStruct);
          utils.getUint64(0, root);
          for (let p = 0; p < 4; p++) utils.getData(p, root).toUint8Array();
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
        }
      }
    }
    expect(frameErrors).toBeGreaterThan(0);
    expect(decoded).toBeGreaterThan(0);
  });

  it("a root pointer outside its segment decodes, and throws (catchably) when read", () => {
    // One 1-word segment whose root struct pointer says: 100 words ahead.
    const seg = new Uint8Array(8);
    const dv = new DataView(seg.buffer);
    dv.setUint32(0, 100 << 2, true);
    dv.setUint16(4, 1, true);
    const m = decodeFrame(concat([header([1]), seg]));
    // Framing does not validate pointers: the error surfaces when the RPC
    // engine reads the message, as an ordinary exception.
    expect(() => utils.getUint64(0, m.getRoot(TestStruct))).toThrow(Error);
  });

  it("a list running past the end of its segment throws when read", () => {
    // Root struct with one pointer: a byte list of 1000 elements in a 3-word segment.
    const seg = new Uint8Array(24);
    const dv = new DataView(seg.buffer);
    dv.setUint32(0, 0, true);
    dv.setUint16(4, 0, true);
    dv.setUint16(6, 1, true);
    dv.setUint32(8, 1, true); // list pointer, offset 0
    dv.setUint32(12, (1000 << 3) | 2, true); // 1000 x byte
    const m = decodeFrame(concat([header([3]), seg]));
    expect(() => utils.getData(0, m.getRoot(TestStruct)).toUint8Array()).toThrow(RangeError);
  });

  it("a far pointer to a missing segment throws when read", () => {
    const seg = new Uint8Array(8);
    const dv = new DataView(seg.buffer);
    dv.setUint32(0, 2, true); // far pointer, landing pad offset 0
    dv.setUint32(4, 7, true); // segment 7: does not exist
    const m = decodeFrame(concat([header([1]), seg]));
    expect(() => utils.getUint64(0, m.getRoot(TestStruct))).toThrow(Error);
  });

  it("applies the traversal limit to decoded messages", () => {
    const bytes = frameBytes(makeMessage(3, [8, 8, 8, 8]));
    const generous = decodeFrame(bytes);
    // A small message's read budget is the floor (1 MiB), not the 64 MiB limit.
    expect(generous._capnp.traversalLimit).toBe(1024 * 1024);
    expect(readMessage(generous, 4).seq).toBe(3);
    const tight = decodeFrame(bytes, { traversalLimitWords: 4 });
    expect(() => readMessage(tight, 4)).toThrow(/Traversal limit exceeded/);
  });

  it("applies the nesting limit to decoded messages", () => {
    class Node extends Struct {
      static override readonly _capnp = { displayName: "Node", id: "77", size: new ObjectSize(8, 1) };
    }
    const m = new Message();
    let s = m.initRoot(Node);
    for (let depth = 0; depth < 10; depth++) {
      utils.setUint32(0, depth, s);
      s = utils.initStructAt(0, Node, s);
    }
    const walk = (msg: Message) => {
      let n = msg.getRoot(Node);
      for (let depth = 0; depth < 10; depth++) {
        expect(utils.getUint32(0, n)).toBe(depth);
        n = utils.getStruct(0, Node, n);
      }
    };
    const bytes = frameBytes(m);
    walk(decodeFrame(bytes));
    expect(() => walk(decodeFrame(bytes, { nestingLimit: 5 }))).toThrow(/Nesting depth limit exceeded/);
  });

  it("a throwing onMessage propagates from push() and leaves the decoder unusable", () => {
    const decoder = new FrameDecoder(undefined, () => {
      throw new Error("handler failed");
    });
    expect(() => decoder.push(frameBytes(makeMessage(1)))).toThrow("handler failed");
    expect(() => decoder.push(frameBytes(makeMessage(2)))).toThrow("handler failed");
  });
});

describe("messageFromSegments", () => {
  it("wraps buffers without copying and validates them", () => {
    const seg = new ArrayBuffer(8);
    const m = messageFromSegments([seg]);
    expect(m._capnp.segments[0]!.buffer).toBe(seg);
    expect(() => messageFromSegments([])).toThrow(FrameError);
    expect(() => messageFromSegments([new ArrayBuffer(0)])).toThrow(/first segment is empty/);
    expect(() => messageFromSegments([new ArrayBuffer(8), new ArrayBuffer(12)])).toThrow(/not a whole number of words/);
  });
});

import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import type * as net from "node:net";
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { afterEach, describe, expect, it } from "vitest";
import {
  BOX_HEADER_LENGTH,
  BoxDecoder,
  BoxEncoder,
  BoxStreamError,
  MAX_BOX_BODY,
  boxStream,
  type BoxStreamKeys,
} from "../../src/auth/index.js";
import { Cleanup, closed, keyPairs, nextError, readAll, socketPair } from "./helpers.js";

const require = createRequire(import.meta.url);
type End = null | true | Error;
type Source = (end: End, cb: (end: End, data?: Buffer) => void) => void;
const pull = require("pull-stream") as ((...parts: unknown[]) => unknown) & {
  values(values: Buffer[]): Source;
  collect(cb: (err: Error | null, values: Buffer[]) => void): unknown;
};
const pullBoxStream = require("pull-box-stream") as {
  createBoxStream(key: Buffer, nonce: Buffer): unknown;
  createUnboxStream(key: Buffer, nonce: Buffer): unknown;
};

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const key = randomBytes(32);
const nonce = randomBytes(24);

/** Boxes for each piece (one encode call each), as separate wire buffers, then the goodbye. */
function boxesOf(pieces: Buffer[]): { boxes: Buffer[]; goodbye: Buffer } {
  const encoder = new BoxEncoder(key, nonce);
  return { boxes: pieces.map((p) => encoder.encode([p])), goodbye: encoder.goodbye() };
}

function decodeAll(wire: Buffer[], splitEvery?: number, inPlace = false): Buffer {
  const decoder = new BoxDecoder(key, nonce);
  const out: Buffer[] = [];
  // Copied at once: in place, a later chunk's plaintext may not overwrite an earlier one's.
  const deliver = (plaintext: Buffer): void => void out.push(Buffer.from(plaintext));
  // In place, each chunk is a fresh copy (as a socket's reads are): the wire stays as it was.
  const update = (chunk: Buffer): void => (inPlace ? decoder.updateInPlace(Buffer.from(chunk), deliver) : decoder.update(chunk, deliver));
  for (const piece of wire) {
    if (splitEvery === undefined) update(piece);
    else for (let i = 0; i < piece.length; i += splitEvery) update(piece.subarray(i, i + splitEvery));
  }
  decoder.end();
  return Buffer.concat(out);
}

function fault(run: () => void): BoxStreamError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BoxStreamError);
    return error as BoxStreamError;
  }
  throw new Error("expected a BoxStreamError");
}

describe("box-stream encoding", () => {
  it("frames bodies of at most 4096 bytes behind 34-byte headers, and a 34-byte goodbye", () => {
    const encoder = new BoxEncoder(key, nonce);
    expect(encoder.encode([randomBytes(10)]).length).toBe(BOX_HEADER_LENGTH + 10);
    expect(encoder.encode([randomBytes(MAX_BOX_BODY)]).length).toBe(BOX_HEADER_LENGTH + MAX_BOX_BODY);
    expect(encoder.encode([randomBytes(MAX_BOX_BODY + 1)]).length).toBe(2 * BOX_HEADER_LENGTH + MAX_BOX_BODY + 1);
    // Many small chunks fill boxes instead of making a box each.
    const small = Array.from({ length: 1000 }, () => randomBytes(9));
    expect(encoder.encode(small).length).toBe(3 * BOX_HEADER_LENGTH + 9000);
    expect(encoder.encode([]).length).toBe(0);
    expect(encoder.goodbye().length).toBe(BOX_HEADER_LENGTH);
    expect(() => encoder.encode([randomBytes(1)])).toThrow(/after goodbye/);
  });

  it("round-trips whatever the chunking of the wire", () => {
    const pieces = [1, 4095, 4096, 4097, 9000, 2].map((n) => randomBytes(n));
    const { boxes, goodbye } = boxesOf(pieces);
    const expected = Buffer.concat(pieces);
    for (const split of [undefined, 1, 7, 33, 34, 35, 4130, 5000]) {
      expect(decodeAll([...boxes, goodbye], split).equals(expected), `split ${split}`).toBe(true);
      expect(decodeAll([...boxes, goodbye], split, true).equals(expected), `in place, split ${split}`).toBe(true);
    }
    // In place, one read's boxes come out as one view (no copy per box).
    const decoder = new BoxDecoder(key, nonce);
    const views: Buffer[] = [];
    const wire = Buffer.concat(boxes);
    decoder.updateInPlace(wire, (p) => void views.push(p));
    expect(views).toHaveLength(1);
    expect(views[0]!.buffer).toBe(wire.buffer);
    expect(Buffer.concat(views).equals(expected)).toBe(true);
  });

  it("opened in place, hands over the boxes before a fault, then names it", () => {
    const { boxes, goodbye } = boxesOf([randomBytes(100), randomBytes(100), randomBytes(100)]);
    const wire = Buffer.concat([...boxes, goodbye]);
    wire[BOX_HEADER_LENGTH + 100 + BOX_HEADER_LENGTH + 3]! ^= 1; // the second box's body
    const got: Buffer[] = [];
    const error = fault(() => new BoxDecoder(key, nonce).updateInPlace(wire, (p) => void got.push(Buffer.from(p))));
    expect(error.code).toBe("TAMPERED");
    expect(error.boxIndex).toBe(1);
    expect(Buffer.concat(got).length).toBe(100);
    const once = boxesOf([randomBytes(10)]);
    const extra = Buffer.concat([...once.boxes, once.goodbye, Buffer.from([1, 2, 3])]);
    expect(fault(() => new BoxDecoder(key, nonce).updateInPlace(extra, () => {})).code).toBe("DATA_AFTER_GOODBYE");
  });

  it("is byte-compatible with pull-box-stream both ways", async () => {
    const pieces = [5, 4096, 10_000, 1].map((n) => randomBytes(n));
    const theirs = await new Promise<Buffer[]>((resolve, reject) =>
      pull(pull.values(pieces), pullBoxStream.createBoxStream(key, nonce), pull.collect((err, v) => (err ? reject(err) : resolve(v)))),
    );
    expect(decodeAll(theirs, 13).equals(Buffer.concat(pieces))).toBe(true);
    // pull-box-stream boxes each write separately; so does one encode per piece.
    const { boxes, goodbye } = boxesOf(pieces);
    expect(Buffer.concat([...boxes, goodbye]).equals(Buffer.concat(theirs))).toBe(true);

    const encoder = new BoxEncoder(key, nonce);
    const ours = [encoder.encode(pieces), encoder.goodbye()];
    const opened = await new Promise<Buffer[]>((resolve, reject) =>
      pull(pull.values(ours), pullBoxStream.createUnboxStream(key, nonce), pull.collect((err, v) => (err ? reject(err) : resolve(v)))),
    );
    expect(Buffer.concat(opened).equals(Buffer.concat(pieces))).toBe(true);
  });

  it("detects a modified header", () => {
    const { boxes } = boxesOf([randomBytes(100), randomBytes(100)]);
    boxes[1]![5]! ^= 1;
    const error = fault(() => decodeAll(boxes));
    expect(error.code).toBe("TAMPERED");
    expect(error.boxIndex).toBe(1);
    expect(error.message).toMatch(/header of box #1 failed authentication.*modified/);
  });

  it("detects a modified body", () => {
    const { boxes } = boxesOf([randomBytes(100), randomBytes(100)]);
    boxes[0]![BOX_HEADER_LENGTH + 50]! ^= 0x80;
    const error = fault(() => decodeAll(boxes));
    expect(error.code).toBe("TAMPERED");
    expect(error.message).toMatch(/body of box #0 failed authentication/);
  });

  it("detects reordered boxes", () => {
    const { boxes } = boxesOf([randomBytes(10), randomBytes(20), randomBytes(30)]);
    const error = fault(() => decodeAll([boxes[0]!, boxes[2]!, boxes[1]!]));
    expect(error.code).toBe("REORDERED");
    expect(error.message).toMatch(/box #2 arrived in place of box #1/);
  });

  it("detects a dropped box", () => {
    const { boxes, goodbye } = boxesOf([randomBytes(10), randomBytes(20), randomBytes(30)]);
    const error = fault(() => decodeAll([boxes[0]!, boxes[2]!, goodbye]));
    expect(error.code).toBe("REORDERED");
  });

  it("detects a replayed box", () => {
    const { boxes } = boxesOf([randomBytes(10), randomBytes(20), randomBytes(30)]);
    const error = fault(() => decodeAll([boxes[0]!, boxes[1]!, boxes[0]!]));
    expect(error.code).toBe("REPLAYED");
    expect(error.message).toMatch(/box #2 is a replay of box #0/);
  });

  it("detects truncation: an end without the goodbye, between boxes or inside one", () => {
    const { boxes } = boxesOf([randomBytes(10), randomBytes(20)]);
    let error = fault(() => decodeAll(boxes));
    expect(error.code).toBe("TRUNCATED");
    expect(error.message).toMatch(/without a goodbye after 2 boxes/);
    error = fault(() => decodeAll([boxes[0]!, boxes[1]!.subarray(0, 40)]));
    expect(error.code).toBe("TRUNCATED");
    expect(error.message).toMatch(/in the middle of a box \(40 bytes/);
  });

  it("refuses data after the goodbye", () => {
    const { boxes, goodbye } = boxesOf([randomBytes(10)]);
    const error = fault(() => decodeAll([boxes[0]!, goodbye, Buffer.from([1, 2, 3])]));
    expect(error.code).toBe("DATA_AFTER_GOODBYE");
  });

  it("refuses an authentic header announcing a body over 4096 bytes", () => {
    const header = new Uint8Array(18);
    header[0] = 0x10;
    header[1] = 0x01;
    header[2] = 1;
    const boxed = Buffer.from(xsalsa20poly1305(key, nonce).encrypt(header));
    const error = fault(() => new BoxDecoder(key, nonce).update(boxed, () => {}));
    expect(error.code).toBe("BODY_TOO_LONG");
  });

  it("hands over the boxes before a fault", () => {
    const { boxes } = boxesOf([Buffer.from("good"), Buffer.from("bad")]);
    boxes[1]![0]! ^= 1;
    const got: string[] = [];
    const decoder = new BoxDecoder(key, nonce);
    expect(() => decoder.update(Buffer.concat(boxes), (p) => got.push(p.toString()))).toThrow(/header of box #1/);
    expect(got).toEqual(["good"]);
  });

  it("stays failed after a fault", () => {
    const decoder = new BoxDecoder(key, nonce);
    const { boxes } = boxesOf([randomBytes(10)]);
    boxes[0]![0]! ^= 1;
    expect(() => decoder.update(boxes[0]!, () => {})).toThrow(BoxStreamError);
    expect(() => decoder.update(Buffer.alloc(0), () => {})).toThrow(BoxStreamError);
    expect(() => decoder.end()).toThrow(BoxStreamError);
  });
});

/** The far end of a connection, speaking box-stream by hand. */
function rawPeer(socket: net.Socket, keys: BoxStreamKeys) {
  const encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
  const decoder = new BoxDecoder(keys.decryptKey, keys.decryptNonce);
  const raw: Buffer[] = [];
  const plain: Buffer[] = [];
  const ended = new Promise<void>((resolve) => socket.on("end", resolve));
  socket.on("data", (chunk: Buffer) => {
    raw.push(chunk);
    decoder.update(chunk, (plaintext) => plain.push(plaintext));
  });
  return { encoder, decoder, raw, plain, ended };
}

describe("boxStream over a socket", () => {
  it("keeps every byte through reused output buffers and in-place reads: many writes of 16-80 KiB, over several ticks", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const left = boxStream(a, ka);
    const right = boxStream(b, kb);
    const pieces = Array.from({ length: 200 }, (_, i) => randomBytes(16 * 1024 + ((i * 7919) % (64 * 1024))));
    const got = readAll(right);
    for (const [i, piece] of pieces.entries()) {
      if (!left.write(piece)) await new Promise((resolve) => left.once("drain", resolve));
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    left.end();
    right.end();
    left.resume(); // nothing comes that way, but its end must be read for it to close
    expect((await got).equals(Buffer.concat(pieces))).toBe(true);
    await Promise.all([closed(left), closed(right)]);
  });

  it("carries data both ways and closes after both goodbyes", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const left = boxStream(a, ka);
    const right = boxStream(b, kb);
    const toRight = randomBytes(3 * 1024 * 1024 + 17);
    const toLeft = Array.from({ length: 200 }, (_, i) => randomBytes(i * 50));
    const gotRight = readAll(right);
    const gotLeft = readAll(left);
    left.end(toRight);
    for (const piece of toLeft) right.write(piece);
    right.end();
    expect((await gotRight).equals(toRight)).toBe(true);
    expect((await gotLeft).equals(Buffer.concat(toLeft))).toBe(true);
    await Promise.all([closed(left), closed(right), closed(a), closed(b)]);
  });

  it("batches the writes of one tick into full boxes and one socket write", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const stream = boxStream(a, ka);
    const peer = rawPeer(b, kb);
    const writes: number[] = [];
    const write = a.write.bind(a);
    a.write = ((chunk: Buffer, ...rest: never[]) => {
      writes.push(chunk.length);
      return write(chunk, ...rest);
    }) as typeof a.write;
    for (let i = 0; i < 1000; i++) stream.write(Buffer.from("0123456789"));
    stream.end();
    await new Promise<void>((resolve) => stream.once("finish", resolve));
    // 10,000 bytes: three boxes in one write, then the goodbye.
    expect(writes).toEqual([3 * BOX_HEADER_LENGTH + 10_000, BOX_HEADER_LENGTH]);
    // Our socket stays open until the peer's goodbye.
    expect(a.writableEnded).toBe(false);
    b.write(peer.encoder.goodbye());
    await peer.ended;
    expect(peer.decoder.ended).toBe(true);
    expect(Buffer.concat(peer.plain).toString()).toBe("0123456789".repeat(1000));
  });

  it("the peer's goodbye ends our readable side and (by default) sends ours", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const stream = boxStream(a, ka);
    const peer = rawPeer(b, kb);
    const received = readAll(stream);
    b.write(Buffer.concat([peer.encoder.encode([Buffer.from("bye now")]), peer.encoder.goodbye()]));
    expect((await received).toString()).toBe("bye now");
    await peer.ended;
    expect(peer.decoder.ended).toBe(true);
    await closed(stream);
  });

  for (const [name, code, wire] of [
    [
      "a modified box",
      "TAMPERED",
      (e: BoxEncoder) => {
        const box = e.encode([Buffer.from("hello")]);
        box[BOX_HEADER_LENGTH]! ^= 1;
        return [box];
      },
    ],
    [
      "a replayed box",
      "REPLAYED",
      (e: BoxEncoder) => {
        const first = e.encode([Buffer.from("one")]);
        return [first, e.encode([Buffer.from("two")]), first];
      },
    ],
    [
      "reordered boxes",
      "REORDERED",
      (e: BoxEncoder) => {
        const first = e.encode([Buffer.from("one")]);
        const second = e.encode([Buffer.from("two")]);
        return [second, first];
      },
    ],
  ] as const) {
    it(`destroys the stream and the socket on ${name}`, async () => {
      const [a, b] = await socketPair(cleanup);
      const [ka, kb] = keyPairs();
      const stream = boxStream(a, ka);
      const encoder = new BoxEncoder(kb.encryptKey, kb.encryptNonce);
      const error = nextError(stream);
      stream.resume();
      b.write(Buffer.concat(wire(encoder)));
      const fault = await error;
      expect(fault).toBeInstanceOf(BoxStreamError);
      expect((fault as BoxStreamError).code).toBe(code);
      await Promise.all([closed(stream), closed(a), closed(b)]);
      expect(a.destroyed).toBe(true);
    });
  }

  it("reports a connection ended without the goodbye as truncation", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const stream = boxStream(a, ka);
    const encoder = new BoxEncoder(kb.encryptKey, kb.encryptNonce);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    const error = nextError(stream);
    b.end(encoder.encode([Buffer.from("partial story")]));
    const fault = (await error) as BoxStreamError;
    expect(fault.code).toBe("TRUNCATED");
    expect(fault.message).toMatch(/the connection ended without a goodbye after 1 boxes/);
    expect(Buffer.concat(chunks).toString()).toBe("partial story");
    await closed(a);
  });

  it("reports a reset connection", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka] = keyPairs();
    const stream = boxStream(a, ka);
    stream.resume();
    const error = nextError(stream);
    b.resetAndDestroy();
    const fault = (await error) as BoxStreamError;
    expect(["TRANSPORT", "TRUNCATED"]).toContain(fault.code);
    await closed(a);
  });

  it("passes backpressure through: a slow reader pauses the socket", async () => {
    const [a, b] = await socketPair(cleanup);
    const [ka, kb] = keyPairs();
    const sender = boxStream(a, ka);
    const receiver = boxStream(b, kb, { highWaterMark: 16 * 1024 });
    sender.resume();
    const total = 4 * 1024 * 1024;
    const paused = new Promise<void>((resolve) => {
      const pause = b.pause.bind(b);
      b.pause = () => {
        resolve();
        return pause();
      };
    });
    sender.end(randomBytes(total));
    // Nothing reads until the receiver has paused its socket.
    await paused;
    expect(b.isPaused()).toBe(true);
    expect(receiver.readableLength).toBeLessThan(total);
    const got = await readAll(receiver);
    expect(got.length).toBe(total);
    await Promise.all([closed(sender), closed(receiver), closed(a), closed(b)]);
  });
});

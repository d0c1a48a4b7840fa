// Streams over a real unix socket between two sessions of this process:
// bytes and values both ways (a stream in params, in results, and both at
// once), large transfers checked by hash, the JS shapes a consumer reads
// with, errors and cancellation both ways.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  byteStreamValue,
  ByteSource,
  CapabilityClient,
  connect,
  ErrorValue,
  fromByteSource,
  fromValue,
  fromValueSource,
  listen,
  readStreamValue,
  RpcError,
  StreamReader,
  StreamValue,
  toByteSource,
  toValue,
  toValueSource,
  type Capability,
  type Listener,
  type Session,
} from "../../src/index.js";
import { Counter } from "../../src/gen/demo.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { seeded, served, sha256Of, Tasks, tasks } from "./tasks.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-stream-"));
let listener: Listener;
let session: Session;
let remote: Tasks;

beforeAll(async () => {
  listener = await listen(`unix:${join(dir, "s.sock")}`, { bootstrap: Tasks.server(tasks) });
  session = await connect(listener.address);
  remote = session.bootstrap(Tasks);
});
afterAll(async () => {
  remote.release();
  await session.close();
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  // Every stream's calls and capabilities are gone once it has settled.
  await eventually(
    () => session.connection.stats().questions === 0 && session.connection.stats().exports === 0 && session.connection.stats().imports === 1,
    () => `the client's tables to drain: ${JSON.stringify(session.connection.stats())}`,
  );
});

/** Array.fromAsync (Node 22) for Node 20. */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of items) out.push(x);
  return out;
}

const run = (value: unknown, extra: { bytes?: unknown; values?: unknown } = {}) => remote.run({ value: toValue(value), ...extra } as never);

describe("byte streams", () => {
  it("come back in results: 64 MiB with the same hash", async () => {
    const size = 64 * 1024 * 1024;
    const expected = await sha256Of(seeded(size, 42));
    const { bytes } = await run({ op: "download", size, seed: 42 });
    const got = await sha256Of(fromByteSource(bytes!));
    bytes!.release();
    expect(got).toEqual(expected);
    expect(served.finished).toContain("download: ran to its end");
  });

  it("go out in params: 64 MiB from a Node Readable, hashed by the server", async () => {
    const size = 64 * 1024 * 1024;
    const expected = await sha256Of(seeded(size, 7));
    using source = toByteSource(Readable.from(seeded(size, 7)));
    const { value } = await run({ op: "upload" }, { bytes: source });
    expect(fromValue(value)).toEqual(expected);
  });

  it("go both ways at once, and come back as the consumer's shapes", async () => {
    const size = 3 * 1024 * 1024 + 17;
    const expected = await sha256Of(seeded(size, 9));
    // A Web ReadableStream out; a Web ReadableStream back, piped into a WritableStream.
    const web = Readable.toWeb(Readable.from(seeded(size, 9))) as ReadableStream<Uint8Array>;
    using out = toByteSource(web);
    const first = await run({ op: "echo" }, { bytes: out });
    const chunks: Uint8Array[] = [];
    await fromByteSource(first.bytes!).readable().pipeTo(new WritableStream({ write: (c) => void chunks.push(c) }));
    first.bytes!.release();
    expect(await sha256Of(Readable.from(chunks))).toEqual(expected);
    // Chunks are the reader's own: none became empty after its write returned.
    expect(chunks.every((c) => c.byteLength > 0)).toBe(true);

    // A Node Readable back, through pipeline().
    using again = toByteSource(chunks);
    const second = await run({ op: "echo" }, { bytes: again });
    const hash = (await import("node:crypto")).createHash("sha256");
    let n = 0;
    await pipeline(
      fromByteSource(second.bytes!).nodeReadable(),
      new Writable({ write: (c: Buffer, _e, cb) => ((n += c.byteLength), hash.update(c), cb()) }),
    );
    second.bytes!.release();
    expect({ bytes: n, sha256: hash.digest("hex") }).toEqual(expected);
  });

  it("carry small chunks and strings, joined while the window is full", async () => {
    const parts = Array.from({ length: 5000 }, (_, i) => (i % 2 ? `line ${i}\n` : new TextEncoder().encode(`line ${i}\n`)));
    using out = toByteSource(parts);
    const { bytes } = await run({ op: "echo" }, { bytes: out });
    const text = Buffer.concat(await collect(fromByteSource(bytes!))).toString();
    bytes!.release();
    expect(text).toBe(parts.map((p) => (typeof p === "string" ? p : new TextDecoder().decode(p))).join(""));
  });

  it("travel inside values", async () => {
    const size = 200_000;
    const expected = await sha256Of(seeded(size, 3));
    const sent = byteStreamValue(seeded(size, 3));
    const { bytes } = await run({ op: "echo" }, { bytes: sent.capability });
    sent.capability.release();
    // And a StreamValue through toValue/fromValue: a reader of its kind comes back (fromValue released the capability).
    const wrapped = fromValue(toValue({ s: new StreamValue("bytes", bytes!) })) as { s: StreamReader<Uint8Array> };
    expect(wrapped.s).toBeInstanceOf(StreamReader);
    expect(wrapped.s.kind).toBe("bytes");
    const got = await sha256Of(readStreamValue(wrapped.s));
    expect(got).toEqual(expected);
  });

  it("a producer's failure rejects the consumer's read with its message and code, after the data before it", async () => {
    const { bytes } = await run({ op: "fail", size: 300_000, seed: 1, message: "the disk is on fire" });
    let received = 0;
    const error = await (async () => {
      for await (const c of fromByteSource(bytes!)) received += c.byteLength;
    })().then(
      () => null,
      (e: unknown) => e,
    );
    bytes!.release();
    expect(error).toBeInstanceOf(ErrorValue);
    expect((error as ErrorValue).message).toBe("the disk is on fire");
    expect((error as ErrorValue).code).toBe("EPRODUCER");
    expect(received).toBe(300_000);
  });

  it("a producer that releases the sink without end: disconnected, also through a relay", async () => {
    // A hand-made producer breaking the contract: a write, then it lets go of the sink.
    const rude = ByteSource.server({
      pipeTo: async ({ sink }) => {
        await sink!.write({ bytes: new Uint8Array([1, 2, 3]) });
      },
    });
    // The server reads it and serves it back to us (echo): a relay.
    const { bytes } = await run({ op: "echo" }, { bytes: rude });
    rude.release();
    const chunks: Uint8Array[] = [];
    const error = await (async () => {
      for await (const c of fromByteSource(bytes!)) chunks.push(c);
    })().then(
      () => null,
      (e: unknown) => e,
    );
    bytes!.release();
    expect(error).toBeInstanceOf(RpcError);
    expect(error).toMatchObject({ type: "disconnected" });
    expect((error as Error).message).toMatch(/producer went away before ending it/);
  });

  it("a consumer that breaks out of for await stops the producer: its finally runs", async () => {
    const before = served.finished.length;
    const { bytes } = await run({ op: "endless", name: "broken-off" });
    let n = 0;
    for await (const _ of fromByteSource(bytes!)) if (++n === 10) break;
    bytes!.release();
    await eventually(() => served.finished.length > before, "the producer's generator to finish");
    expect(served.finished.slice(before)).toEqual(["broken-off: returned early"]);
  });

  it("a consumer that cancels its ReadableStream stops the producer too", async () => {
    const before = served.finished.length;
    const { bytes } = await run({ op: "endless", name: "web-canceled" });
    const reader = fromByteSource(bytes!).readable().getReader();
    await reader.read();
    await reader.cancel("enough");
    bytes!.release();
    await eventually(() => served.finished.length > before, "the producer's generator to finish");
    expect(served.finished.slice(before)).toEqual(["web-canceled: returned early"]);
  });

  it("a source dropped unread is finished without being read: a Readable destroyed, a ReadableStream canceled", async () => {
    let pulled = 0;
    const node = new Readable({ read: () => void (pulled++, node.push(new Uint8Array(10))) });
    let canceled: unknown = null;
    const web = new ReadableStream<Uint8Array>({ pull: (c) => void (pulled++, c.enqueue(new Uint8Array(10))), cancel: (r) => void (canceled = r ?? "canceled") }, { highWaterMark: 0 });
    toByteSource(node).release();
    toByteSource(web).release();
    // A generator never started: closed (its body never runs).
    const generator = (async function* () {
      pulled++;
      yield new Uint8Array(1);
    })();
    toByteSource(generator).release();
    // Sent to the peer, which drops it unread.
    const dropped = new Readable({ read: () => void pulled++ });
    using sent = toByteSource(dropped);
    const { value } = await run({ op: "drop" }, { bytes: sent });
    expect(fromValue(value)).toBe("dropped");
    sent.release();
    await eventually(() => node.destroyed && canceled !== null && dropped.destroyed, "the dropped sources to be finished");
    expect(await generator.next()).toEqual({ done: true, value: undefined });
    expect(pulled).toBe(0);
  });

  it("a source is read once", async () => {
    const { bytes } = await run({ op: "download", size: 10, seed: 1 });
    const first = await sha256Of(fromByteSource(bytes!));
    expect(first.bytes).toBe(10);
    const again = await collect(fromByteSource(bytes!)).then(
      () => null,
      (e: unknown) => e,
    );
    bytes!.release();
    expect(again).toBeInstanceOf(RpcError);
    expect((again as Error).message).toMatch(/read already; a stream is read once/);
  });

  it("refuses what is no stream, saying what is", () => {
    expect(() => toByteSource(42 as never)).toThrow(/async iterable, an iterable, a Web ReadableStream or a Node Readable, got number/);
  });
});

describe("value streams", () => {
  it("come back in results, converted to plain values the reader keeps", async () => {
    const { values } = await run({ op: "values", size: 5000 });
    const items = await collect(fromValueSource(values!));
    values!.release();
    expect(items.length).toBe(5000);
    expect(items[4999]).toEqual({ i: 4999, text: "item 4999", bytes: new Uint8Array([4999 & 0xff, 1, 2]) });
  });

  it("go out in params and come back (echo), in order", async () => {
    const input = Array.from({ length: 3000 }, (_, i) => ({ i, nested: [i, { deep: `x${i}` }], big: i === 5 ? 2n ** 60n : null }));
    using out = toValueSource(input);
    const { values } = await run({ op: "echoValues" }, { values: out });
    const back = await collect(fromValueSource(values!));
    values!.release();
    expect(back).toEqual(input);
    using sum = toValueSource(input);
    const { value } = await run({ op: "sumValues" }, { values: sum });
    expect(fromValue(value)).toEqual({ count: 3000, sum: (3000 * 2999) / 2 });
  });

  it("an item with no Value form fails the stream for the reader, with the reason", async () => {
    using out = toValueSource([1, 2, Symbol("no value form")]);
    const { values } = await run({ op: "echoValues" }, { values: out });
    const got: unknown[] = [];
    const error = await (async () => {
      for await (const v of fromValueSource(values!)) got.push(v);
    })().then(
      () => null,
      (e: unknown) => e as Error,
    );
    values!.release();
    expect(got).toEqual([1, 2]);
    expect(error?.message).toMatch(/symbol/i);
  });

  it("carry capabilities the reader owns: callable after their write returned", async () => {
    let total = 0;
    const counter = () => Counter.server({ add: ({ by }) => ({ total: (total += by) }), get: () => ({ total }) });
    using out = toValueSource(Array.from({ length: 20 }, (_, i) => ({ i, counter: counter() })));
    const { values } = await run({ op: "echoValues" }, { values: out });
    const items = (await collect(fromValueSource(values!))) as { i: number; counter: Capability }[];
    values!.release();
    // Every write has returned by now: the references are the reader's own.
    for (const { i, counter } of items) {
      using typed = (counter as CapabilityClient).castAs(Counter);
      await typed.add({ by: i });
    }
    expect(total).toBe((20 * 19) / 2);
    for (const { counter } of items) counter.release();
  });

  it("read as an object-mode Node Readable", async () => {
    const { values } = await run({ op: "values", size: 100 });
    const items = await fromValueSource(values!).nodeReadable().toArray();
    values!.release();
    expect(items.map((x: { i: number }) => x.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});

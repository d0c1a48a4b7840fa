// Streams inside values, plugin to plugin over real sockets: a plugin
// process (test/value/stream-child.ts) answers with records that hold a Node
// Readable of bytes and an async generator of values, and this process (a
// plugin too) reads them as the readers fromValue gives; and the other way,
// this process sends such a record in a call's arguments and the plugin reads
// it. The hub is a process of its own (test/engine/hub-child.ts). Checked:
// the data arrives whole, the producer stays within its window of a reader
// that stops reading, and cancellation and failure travel both ways.
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callable, ErrorValue, joinMesh, RpcError, StreamReader, type CallableClosure, type MeshPeer } from "../../src/index.js";
import { Closure } from "../../src/gen/engine.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { killLeftAndWait, start, startTsPlugin, TSX, type Started } from "../mesh/helpers/processes.js";

const CHILD = "test/value/stream-child.ts";
const MiB = 1024 * 1024;
const home = mkdtempSync(join(tmpdir(), "capmesh-value-streams-"));
const children: ChildProcess[] = [];
let hubEnv: Record<string, string>;
let me: MeshPeer;

beforeAll(async () => {
  const hub: Started = start(process.execPath, [...TSX, "test/engine/hub-child.ts", home, join(home, "hub.sock")], { children });
  hubEnv = JSON.parse((await hub.waitFor(/^hub (.*)$/m, "the hub to start"))[1]!) as Record<string, string>;
  me = await joinMesh({
    name: "reader",
    provide: Closure.server({ call: () => ({ result: { which: "null", null: true }, output: null }) }),
    handleSignals: false,
    hub: hubEnv.CAPMESH_HUB,
    hubId: hubEnv.CAPMESH_HUB_ID,
    networkKey: hubEnv.CAPMESH_NETWORK_KEY,
  });
});

afterAll(async () => {
  await me?.close();
  await killLeftAndWait(children);
  rmSync(home, { recursive: true, force: true });
});

async function producer(name: string): Promise<{ process: Started; call: CallableClosure }> {
  const p = await startTsPlugin(name, { script: CHILD, env: { ...process.env, ...hubEnv }, children });
  return { process: p, call: callable(me.connect(name, Closure)) };
}

type Streams = { bytes: StreamReader<Uint8Array>; values: StreamReader<unknown> };
type Status = { bytes: number; values: number; finished: string[] };

/** The error a read of `reader` ends with (fails the test if it ends cleanly); `got` counts what came before. */
async function failure<T>(reader: AsyncIterable<T>, got: T[]): Promise<unknown> {
  try {
    for await (const x of reader) got.push(x);
  } catch (e) {
    return e;
  }
  throw new Error(`the stream ended without an error after ${got.length} items`);
}

describe("streams inside values, plugin to plugin", () => {
  let p: Awaited<ReturnType<typeof producer>>;
  beforeAll(async () => {
    p = await producer("streamer");
  });

  it("a record holding a byte stream and a value stream is read whole on the other side", async () => {
    const size = 8 * MiB + 12345;
    const got = (await p.call("record", size, 5000)) as { sha256: string } & Streams;
    expect(got.bytes).toBeInstanceOf(StreamReader);
    expect(got.bytes.kind).toBe("bytes");
    expect(got.values.kind).toBe("values");
    // Both at once, each in one of the consumer's shapes: a Node Readable and a Web ReadableStream.
    const hash = createHash("sha256");
    let received = 0;
    const items: unknown[] = [];
    await Promise.all([
      (async () => {
        for await (const chunk of got.bytes.nodeReadable()) (received += (chunk as Buffer).length), hash.update(chunk as Buffer);
      })(),
      got.values.readable().pipeTo(new WritableStream({ write: (item) => void items.push(item) })),
    ]);
    expect(received).toBe(size);
    expect(hash.digest("hex")).toBe(got.sha256);
    expect(items).toHaveLength(5000);
    expect(items[4999]).toEqual({ i: 4999, square: 4999 * 4999 });
  });

  it("a reader that stops reading holds the producer within its window; stopping returns the producer's sources", async () => {
    const got = (await p.call("endless")) as Streams;
    const bytes = got.bytes[Symbol.asyncIterator]();
    const values = got.values[Symbol.asyncIterator]();
    let taken = 0;
    for (let i = 0; i < 4; i++) taken += ((await bytes.next()).value as Uint8Array).length;
    for (let i = 0; i < 10; i++) expect((await values.next()).value).toEqual({ i, text: `item ${i}` });
    // Stop reading: the producer fills its window and then waits. Settled when
    // ten status calls in a row (each a round trip through the hub) see no progress.
    let status = (await p.call("status")) as Status;
    let still = 0;
    for (const deadline = Date.now() + 15_000; still < 10 && Date.now() < deadline; ) {
      const now = (await p.call("status")) as Status;
      still = now.bytes === status.bytes && now.values === status.values ? still + 1 : 0;
      status = now;
    }
    expect(still, `the producer kept producing: ${JSON.stringify(status)}`).toBe(10);
    // The window (1 MiB), a batch, the Readable's own buffer and the chunks in hand: far from unbounded.
    expect(status.bytes - taken).toBeLessThan(3 * MiB);
    expect(status.bytes).toBeGreaterThan(taken);
    expect(status.values - 10).toBeLessThan(100_000);
    expect(status.finished).toEqual([]);
    // The reader stops: both of the producer's generators are returned (their finally runs).
    await bytes.return!();
    got.values.cancel();
    for (const deadline = Date.now() + 10_000; status.finished.length < 2 && Date.now() < deadline; ) status = (await p.call("status")) as Status;
    expect(status.finished.sort()).toEqual(["bytes", "values"]);
    await expect(values.next()).resolves.toMatchObject({ done: true });
  });

  it("a producer's failure rejects the reader's read with its message and code, after the data before it", async () => {
    const got = (await p.call("fail")) as Streams;
    const items: unknown[] = [];
    const e = await failure(got.values, items);
    expect(items).toEqual([1, 2, 3]);
    expect(e).toBeInstanceOf(ErrorValue);
    expect(e).toMatchObject({ message: "the well ran dry", code: "EDRY" });
    const chunks: Uint8Array[] = [];
    const eb = await failure(got.bytes, chunks);
    expect(Buffer.concat(chunks)).toEqual(Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(1000, 2)]));
    expect(eb).toMatchObject({ message: "the well ran dry", code: "EDRY" });
  });

  it("streams in a call's arguments: the plugin reads them whole", async () => {
    const chunks = Array.from({ length: 100 }, (_, i) => Buffer.alloc(40_000, i));
    const expected = createHash("sha256").update(Buffer.concat(chunks)).digest("hex");
    async function* rows() {
      for (let i = 0; i < 3000; i++) yield { row: i, tags: ["a", `t${i % 7}`] };
    }
    // A byte-mode Readable becomes a byte stream, an async generator a value stream.
    const answer = (await p.call("consume", { bytes: Readable.from(chunks, { objectMode: false }), values: rows() })) as {
      kinds: string[];
      sha256: string;
      size: number;
      items: unknown[];
    };
    expect(answer.kinds).toEqual(["bytes", "values"]);
    expect(answer.size).toBe(4_000_000);
    expect(answer.sha256).toBe(expected);
    expect(answer.items).toHaveLength(3000);
    expect(answer.items[2999]).toEqual({ row: 2999, tags: ["a", "t3"] });
  });

  it("a plugin that stops reading the streams it was sent returns this process's sources", async () => {
    const closed: string[] = [];
    let sent = 0;
    async function* rows() {
      try {
        for (;;) yield { row: sent++ };
      } finally {
        closed.push("values");
      }
    }
    async function* endless() {
      try {
        for (;;) yield Buffer.alloc(65536, 7);
      } finally {
        closed.push("bytes");
      }
    }
    const items = await p.call("consume-some", { bytes: Readable.from(endless(), { objectMode: false }), values: rows() }, 5);
    expect(items).toEqual([0, 1, 2, 3, 4].map((row) => ({ row })));
    await eventually(() => closed.length === 2, () => `both sources to be returned; returned: ${closed.join(", ")}`);
    expect(closed.sort()).toEqual(["bytes", "values"]);
  });

  it("a producer killed (kill -9) mid-stream, through the hub: the reader's next read rejects with disconnected, the hub's and the reader's tables at baseline", async () => {
    const doomed = await startTsPlugin("doomed", { script: CHILD, env: { ...process.env, ...hubEnv }, children });
    // A reader whose calls all go through the hub (no direct path), so that the hub carries the stream.
    const reader = await joinMesh({
      directPaths: false,
      handleSignals: false,
      hub: hubEnv.CAPMESH_HUB,
      hubId: hubEnv.CAPMESH_HUB_ID,
      networkKey: hubEnv.CAPMESH_NETWORK_KEY,
    });
    try {
      const tables = async () => {
        using pending = reader.hub.admin();
        const hubSide = (await pending.admin.stats()).stats.peers.find((x) => x.id === reader.id);
        const mine = reader.stats().connections.find((c) => c.kind === "hub");
        return {
          hub: hubSide && { imports: hubSide.imports, exports: hubSide.exports, questions: hubSide.questions, answers: hubSide.answers },
          reader: mine && { imports: mine.imports, exports: mine.exports, questions: mine.questions, answers: mine.answers },
        };
      };
      const baseline = await tables();
      const cap = reader.connect("doomed", Closure, { wait: 5000 });
      await cap.whenResolved();
      expect(reader.pathOf(cap).path).toBe("hub");
      const call = callable(cap);
      const got = (await call("endless")) as Streams;
      const values = got.values[Symbol.asyncIterator]();
      for (let i = 0; i < 3; i++) await values.next();
      expect(JSON.stringify(await tables())).not.toBe(JSON.stringify(baseline)); // the streams' sinks are held
      doomed.child.kill("SIGKILL");
      await doomed.exited;
      let error: unknown = null;
      for (let i = 0; i < 1_000_000 && error === null; i++) await values.next().catch((e: unknown) => (error = e));
      expect(error).toBeInstanceOf(RpcError);
      expect((error as RpcError).type).toBe("disconnected");
      await expect(got.bytes[Symbol.asyncIterator]().next()).rejects.toMatchObject({ type: "disconnected" });
      call.release();
      cap.release();
      let now = await tables();
      for (const deadline = Date.now() + 10_000; JSON.stringify(now) !== JSON.stringify(baseline) && Date.now() < deadline; ) now = await tables();
      expect(now).toEqual(baseline);
    } finally {
      await reader.close();
    }
  });
});

// Streams between processes: a slow consumer keeps both processes' memory
// flat, and a process killed (kill -9) mid-stream ends the stream cleanly
// for the other side, with its tables back to their baseline.
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { connect, fromByteSource, listen, RpcError, toValue } from "../../src/index.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { start, TSX } from "../mesh/helpers/processes.js";
import { served, Tasks, tasks } from "./tasks.js";

const CHILD = "test/stream/child.ts";
const EMPTY_TABLES = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "capmesh-stream-p-"));
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function serveChild(name: string, window?: number) {
  const sub = join(dir, name);
  mkdirSync(sub);
  const args = ["--expose-gc", ...TSX, CHILD, "serve", sub, ...(window ? [String(window)] : [])];
  const child = start(process.execPath, args, { children });
  const [, address] = (await child.waitFor(/listening (\S+)/, "the producer to listen"))!;
  return { process: child, address: address! };
}

describe("streams between processes", () => {
  it("a slow consumer keeps both processes' memory flat (32 MiB through, growth within the window)", async () => {
    // The window fixed at 2 MiB (it adapts between 256 KiB and 16 MiB) so that the bound is exact.
    const producer = await serveChild("memory", 2 * MiB);
    const size = 32 * MiB;
    const consumer = start(process.execPath, ["--expose-gc", ...TSX, CHILD, "slow-read", producer.address, String(size)], { children });
    const [line] = (await consumer.waitFor(/^\{.*\}$/m, "the consumer's figures", 60_000))!;
    const figures = JSON.parse(line!) as {
      received: number;
      consumer: { heap: number; buffers: number; rss: number };
      producer: { heap: number; buffers: number; rss: number };
    };
    expect(figures.received).toBe(size);
    // Without backpressure the producer would be tens of MiB ahead: in its
    // send queue or in the consumer's. With it, each side holds at most a
    // window of data (2 MiB), the inbound segment pool (2 MiB) and a chunk or two.
    for (const side of [figures.consumer, figures.producer]) {
      expect(side.heap + side.buffers, JSON.stringify(figures)).toBeLessThan(12 * MiB);
      expect(side.rss, JSON.stringify(figures)).toBeLessThan(64 * MiB);
    }
  }, 90_000);

  it("a producer killed mid-stream: the consumer's next read rejects with disconnected, its tables at baseline", async () => {
    const producer = await serveChild("killed");
    const session = await connect(producer.address);
    const remote = session.bootstrap(Tasks);
    const { bytes } = await remote.run({ value: toValue({ op: "endless", name: "to-be-killed" }) });
    const reader = fromByteSource(bytes!)[Symbol.asyncIterator]();
    for (let i = 0; i < 4; i++) expect((await reader.next()).done).toBe(false);
    producer.process.child.kill("SIGKILL");
    await producer.process.exited;
    // Whatever arrived before the kill may still be read; then the read fails.
    let error: unknown = null;
    for (let i = 0; i < 10_000 && error === null; i++) await reader.next().catch((e: unknown) => (error = e));
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).type).toBe("disconnected");
    // Later reads fail the same way rather than hang.
    await expect(reader.next()).rejects.toMatchObject({ type: "disconnected" });
    bytes!.release();
    remote.release();
    await session.closed.catch(() => {});
    expect(session.connection.stats()).toMatchObject(EMPTY_TABLES);
  }, 30_000);

  it("a consumer killed mid-stream: the producer's source is returned, its tables at baseline", async () => {
    const listener = await listen(`unix:${join(dir, "producer.sock")}`, { bootstrap: Tasks.server(tasks) });
    try {
      const before = served.finished.length;
      const consumer = start(process.execPath, [...TSX, CHILD, "read-endless", listener.address], { children });
      await consumer.waitFor(/reading/, "the consumer to be reading");
      const [serverSide] = [...listener.sessions];
      expect(serverSide).toBeDefined();
      consumer.child.kill("SIGKILL");
      await consumer.exited;
      await eventually(() => served.finished.length > before, "the producer's source to finish");
      expect(served.finished.slice(before)).toEqual(["child-reader: returned early"]);
      await eventually(() => listener.sessions.size === 0, "the listener to drop the dead session");
      expect(serverSide!.connection.stats()).toMatchObject(EMPTY_TABLES);
    } finally {
      await listener.close();
    }
  }, 30_000);
});

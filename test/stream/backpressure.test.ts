// Backpressure, measured where it matters: how far the producer's source is
// pulled ahead of what the consumer has taken, over a real socket, with the
// flow-control window fixed so that the bound is exact.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, fromByteSource, listen, setStreamWindow, toByteSource, toValue, type Listener, type Session } from "../../src/index.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { CHUNK, seeded, served, sha256Of, Tasks, tasks } from "./tasks.js";

const WINDOW = 256 * 1024;
// The write that crosses the window is sent whole, a batch may be filling
// while the window is full, and the reader holds one chunk: three chunks.
const BOUND = WINDOW + 3 * CHUNK;
const dir = mkdtempSync(join(tmpdir(), "capmesh-stream-bp-"));
let listener: Listener;
let session: Session;
let remote: Tasks;

beforeAll(async () => {
  setStreamWindow(WINDOW);
  listener = await listen(`unix:${join(dir, "s.sock")}`, { bootstrap: Tasks.server(tasks) });
  session = await connect(listener.address);
  remote = session.bootstrap(Tasks);
});
afterAll(async () => {
  setStreamWindow(null);
  remote.release();
  await session.close();
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("backpressure", () => {
  it("a stream outlasts the connection's callTimeoutMs: its calls wait for the reader, not for the call timeout", async () => {
    await using timed = await connect(listener.address, { callTimeoutMs: 100 });
    using tasksWithTimeout = timed.bootstrap(Tasks);
    const { bytes } = await tasksWithTimeout.run({ value: toValue({ op: "download", size: 2 * 1024 * 1024, seed: 4 }) });
    const started = Date.now();
    let taken = 0;
    for await (const chunk of fromByteSource(bytes!)) {
      taken += chunk.byteLength;
      await new Promise((r) => setTimeout(r, 10));
    }
    bytes!.release();
    expect(taken).toBe(2 * 1024 * 1024);
    expect(Date.now() - started).toBeGreaterThan(300);
  });

  it("a stream read in the vat that made it (no connection) is the same stream", async () => {
    const chunks: Uint8Array[] = [];
    for await (const c of fromByteSource(toByteSource(seeded(1_000_000, 8)))) chunks.push(c);
    expect(await sha256Of(seeded(1_000_000, 8))).toEqual(await sha256Of((async function* () { yield* chunks; })()));
  });

  it("a slow consumer holds the producer within the window", async () => {
    const size = 8 * 1024 * 1024;
    const pulledBefore = served.pulled;
    const { bytes } = await remote.run({ value: toValue({ op: "download", size, seed: 2, name: "slow" }) });
    let taken = 0;
    let ahead = 0;
    for await (const chunk of fromByteSource(bytes!)) {
      taken += chunk.byteLength;
      ahead = Math.max(ahead, served.pulled - pulledBefore - taken);
      await new Promise((r) => setTimeout(r, 1)); // the slow consumer
    }
    bytes!.release();
    expect(taken).toBe(size);
    expect(ahead).toBeLessThanOrEqual(BOUND);
    // The bound was reached (the producer did run ahead, then waited), so it was tested.
    expect(ahead).toBeGreaterThanOrEqual(WINDOW / 2);
  });

  it("a consumer that never reads costs the producer a window, no more; cancel() ends it", async () => {
    const pulledBefore = served.pulled;
    const finishedBefore = served.finished.length;
    const { bytes } = await remote.run({ value: toValue({ op: "endless", name: "unread" }) });
    const reader = fromByteSource(bytes!);
    // Wait until the producer stops pulling: the same count over 20 polls.
    let last = -1;
    let still = 0;
    await eventually(() => {
      const now = served.pulled;
      still = now === last ? still + 1 : 0;
      last = now;
      return still >= 20;
    }, "the producer to stop pulling");
    expect(served.pulled - pulledBefore).toBeGreaterThan(0);
    expect(served.pulled - pulledBefore).toBeLessThanOrEqual(BOUND);
    reader.cancel();
    bytes!.release();
    await eventually(() => served.finished.length > finishedBefore, "the producer's source to finish");
    expect(served.finished.slice(finishedBefore)).toEqual(["unread: returned early"]);
  });
});

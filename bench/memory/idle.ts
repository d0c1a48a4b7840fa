// The idle-peer figure of the memory bench: a hub (bench/memory/hub.ts) with
// `peers` peers (bench/mesh/crowd.ts, spread over `processes` processes),
// once on its unix socket and once on TCP, each in a fresh hub. The hub's
// RSS per peer with the peers connected and registered, then again after
// every peer did one burst through the hub (calls and a stream to itself,
// crowd.ts `burst`) and went idle: the hub's memory is polled until its
// connections keep no send buffer, with a deadline, before it is read.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { prepareHub } from "../lib/mesh.js";
import { ROOT } from "../lib/processes.js";
import { tsxCommand } from "../lib/systems.js";
import { Worker } from "../mesh/workers.js";

export interface IdleOptions {
  peers: number;
  processes: number;
  concurrency: number;
  burstCalls: number;
  burstBytes: number;
  /** How long the hub may take to give its send buffers back, and its RSS to settle, after the burst. */
  releaseDeadlineMs: number;
  /** RSS has settled once it has not fallen by 1% for this long. */
  settleMs: number;
  /** Also read the hub's RSS after malloc_trim(0) (through gdb). */
  trim: boolean;
}

export interface HubMemory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  connections: number;
  sendBuffers: number;
  sendBufferStreams: number;
}

export interface IdleResult {
  transport: "unix" | "tcp";
  peers: number;
  base: HubMemory;
  joined: HubMemory;
  /** Right after the burst, before any release. */
  busy: HubMemory;
  idle: HubMemory;
  /** After malloc_trim(0), if asked for and gdb could do it. */
  trimmed: HubMemory | null;
  /** ms from the end of the burst until the hub kept no send buffer (null: not within the deadline). */
  releasedMs: number | null;
  joinMs: number;
  burstMs: number;
}

const HERE = path.join(ROOT, "bench");

async function memoryOf(hub: Worker): Promise<HubMemory> {
  return (await hub.request("memory")) as unknown as HubMemory;
}

export async function measureIdle(transport: "unix" | "tcp", opts: IdleOptions, log: (line: string) => void): Promise<IdleResult> {
  const setup = await prepareHub(`memory-${transport}`, { directPaths: false });
  const workers: Worker[] = [];
  try {
    const [node, ...rest] = tsxCommand(path.join(HERE, "memory", "hub.ts"));
    const hub = await Worker.start("hub", [node!, "--expose-gc", ...rest, setup.home, setup.socket], setup.env);
    workers.push(hub);
    const address = String(hub.readyLine[transport]);
    const env = { ...setup.env, CAPMESH_HUB: address };
    const crowds: Worker[] = [];
    const per = Math.ceil(opts.peers / opts.processes);
    const starting: Promise<Worker>[] = [];
    for (let p = 0, first = 0; first < opts.peers; p++, first += per) {
      const count = Math.min(per, opts.peers - first);
      starting.push(
        Worker.start(`crowd ${p}`, [...tsxCommand(path.join(HERE, "mesh", "crowd.ts")), String(first), String(count), String(opts.concurrency), "schema"], env),
      );
    }
    const started = await Promise.allSettled(starting);
    for (const s of started) if (s.status === "fulfilled") workers.push(s.value), crowds.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) throw new Error(`a crowd process did not start: ${String((failed as PromiseRejectedResult).reason)}`);
    // The crowds' warm-up peers have come and gone: the hub has run every path once.
    const base = await memoryOf(hub);
    let t0 = performance.now();
    await Promise.all(crowds.map((c) => c.request("join", {}, 300_000)));
    const joinMs = performance.now() - t0;
    const joined = await memoryOf(hub);
    log(`  ${transport}: ${joined.connections} peers joined in ${(joinMs / 1000).toFixed(1)} s, hub rss +${kib((joined.rss - base.rss) / opts.peers)} KiB/peer`);
    t0 = performance.now();
    await Promise.all(crowds.map((c) => c.request("burst", { calls: opts.burstCalls, bytes: opts.burstBytes }, 600_000)));
    const burstMs = performance.now() - t0;
    const ended = performance.now();
    const busy = await memoryOf(hub);
    log(`  ${transport}: bursts done in ${(burstMs / 1000).toFixed(1)} s: hub rss +${kib((busy.rss - base.rss) / opts.peers)} KiB/peer, ${busy.sendBufferStreams} connections keep ${kib(busy.sendBuffers)} KiB of send buffers`);
    // Wait for the connections to give their buffers back (polled, with a
    // deadline), then for RSS to settle: V8 gives its grown young generation
    // back by itself some seconds after a burst. Light polls (no collection,
    // which would hold that back), every 500 ms.
    const deadline = ended + opts.releaseDeadlineMs;
    let releasedMs: number | null = null;
    let low = busy.rss;
    let lowAt = performance.now();
    while (performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const m = (await hub.request("memory", { collect: false })) as unknown as HubMemory;
      if (releasedMs === null && m.sendBuffers === 0) releasedMs = performance.now() - ended;
      if (m.rss < low * 0.99) {
        low = m.rss;
        lowAt = performance.now();
      }
      if (releasedMs !== null && performance.now() - lowAt > opts.settleMs) break;
    }
    const idle = await memoryOf(hub);
    log(
      `  ${transport}: idle${releasedMs === null ? " (send buffers NOT released within the deadline)" : `, buffers released after ${(releasedMs / 1000).toFixed(1)} s`}: ` +
        `hub rss +${kib((idle.rss - base.rss) / opts.peers)} KiB/peer`,
    );
    // What of that the C allocator holds as free memory: RSS once malloc_trim(0) has
    // given it back (in the hub, through gdb, when there is one).
    let trimmed: HubMemory | null = null;
    if (opts.trim) {
      try {
        execFileSync("gdb", ["-p", String(hub.pid), "-batch", "-ex", "call (int)malloc_trim(0)"], { stdio: "ignore", timeout: 60_000 });
        trimmed = await memoryOf(hub);
        log(`  ${transport}: after malloc_trim(0): hub rss +${kib((trimmed.rss - base.rss) / opts.peers)} KiB/peer`);
      } catch (err) {
        log(`  ${transport}: malloc_trim through gdb failed: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
      }
    }
    return { transport, peers: opts.peers, base, joined, busy, idle, trimmed, releasedMs, joinMs, burstMs };
  } finally {
    for (const w of workers.slice(1).reverse()) await w.stop();
    await workers[0]?.stop();
  }
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

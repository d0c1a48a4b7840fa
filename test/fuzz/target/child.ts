// The server under fuzz, in its own process:
//   node --import tsx --expose-gc test/fuzz/target/child.ts <dir> <identity-seed-hex>
// It serves TestService (bounded: service.ts) on two unix sockets in <dir>:
// plain.sock (plain Cap'n Proto, straight to the frame decoder) and
// secure.sock (an identity: the secret handshake then box-stream, and plain
// peers too, so the sniffing that tells them apart is exercised). It watches
// itself — event-loop delay, memory, uncaught errors — and answers the
// fuzzer's requests over IPC (protocol.ts).
import { rmSync } from "node:fs";
import * as net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import path from "node:path";
import { identityFromSeed } from "../../../src/auth/identity.js";
import { TestService } from "../../interop/schema/interop.js";
import { listen, type Listener } from "../../../src/rpc/index.js";
import type {
  BeginResult,
  ChildError,
  ListenerName,
  MemorySample,
  QuiesceResult,
  RequestMessage,
  ResponseMessage,
  SettleResult,
  StatsResult,
} from "./protocol.js";
import { BoundedTestService } from "./service.js";

const [dir, seedHex] = process.argv.slice(2);
if (!dir || !seedHex || !process.send) {
  console.error("usage: child.ts <dir> <identity-seed-hex> (spawned with an IPC channel)");
  process.exit(2);
}
const send = process.send.bind(process);

// ---------------------------------------------------------------------------
// Self-observation

const errors: ChildError[] = [];
process.on("uncaughtException", (e) => errors.push({ kind: "uncaughtException", message: describe(e) }));
process.on("unhandledRejection", (e) => errors.push({ kind: "unhandledRejection", message: describe(e) }));
process.on("warning", (w) => errors.push({ kind: "warning", message: `${w.name}: ${w.message}` }));

function describe(e: unknown): string {
  return e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
}

const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

// The same delay in CPU time: for each 10 ms tick, how late it came, counting
// no more than the CPU time this process used meanwhile. A loop held by our
// own work shows in both; a process merely starved of a core (other test
// files running on a 2-core machine) shows only in the wall-clock delay.
const TICK_MS = 10;
let cpuBlockMs = 0;
let lastTick = performance.now();
let lastCpu = process.cpuUsage();
/** Starts the next tick's measure from now (after a pause we caused ourselves). */
function restartCpuTicks(): void {
  lastTick = performance.now();
  lastCpu = process.cpuUsage();
}
setInterval(() => {
  const now = performance.now();
  const cpu = process.cpuUsage();
  const lateMs = now - lastTick - TICK_MS;
  const usedMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
  cpuBlockMs = Math.max(cpuBlockMs, Math.min(lateMs, usedMs));
  lastTick = now;
  lastCpu = cpu;
}, TICK_MS).unref();

function sample(): MemorySample {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, external: m.external };
}
let atBegin = sample();
let peak = atBegin;
function samplePeak(): MemorySample {
  const now = sample();
  peak = {
    rss: Math.max(peak.rss, now.rss),
    heapUsed: Math.max(peak.heapUsed, now.heapUsed),
    arrayBuffers: Math.max(peak.arrayBuffers, now.arrayBuffers),
    external: Math.max(peak.external, now.external),
  };
  return now;
}
// Allocations a frame header makes before its body arrives are what the
// memory rule is about: sample often enough to see them while they live.
setInterval(samplePeak, 5).unref();

// Sockets accepted per listener since `begin`, in accept order. The parent
// opens its connections to a listener one after the other and a unix
// socket's accept queue is FIFO, so the n-th here is the parent's n-th.
// The engine gives no access to its sockets; this watches the servers'
// 'connection' events (observation only: nothing is changed).
const accepted: Record<ListenerName, net.Socket[]> = { plain: [], secure: [] };
const listenerOfPath = new Map<string, ListenerName>();
const emit = net.Server.prototype.emit as (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;
net.Server.prototype.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
  if (event === "connection") {
    const address = this.address();
    const name = typeof address === "string" ? listenerOfPath.get(address) : undefined;
    if (name) accepted[name].push(args[0] as net.Socket);
  }
  return emit.call(this, event, ...args);
} as typeof net.Server.prototype.emit;

// ---------------------------------------------------------------------------
// The server

const service = new BoundedTestService();
const identity = identityFromSeed(Buffer.from(seedHex, "hex"));
const plainPath = path.join(dir, "plain.sock");
const securePath = path.join(dir, "secure.sock");
listenerOfPath.set(plainPath, "plain");
listenerOfPath.set(securePath, "secure");

const listeners: Record<ListenerName, Listener> = {
  plain: await listen(`unix:${plainPath}`, { bootstrap: () => TestService.server(service) }),
  secure: await listen(`unix:${securePath}`, {
    identity,
    plain: true,
    encrypt: true,
    handshakeTimeoutMs: 3000,
    bootstrap: () => TestService.server(service),
  }),
};

// ---------------------------------------------------------------------------
// Requests

/** Resolves once `done()` holds or `timeoutMs` passes (checked every millisecond). */
function waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const check = () => {
      if (done()) resolve(true);
      else if (Date.now() >= deadline) resolve(false);
      else setTimeout(check, 1);
    };
    check();
  });
}

/**
 * Full collections (two, with turns between them for FinalizationRegistry
 * callbacks). The delay monitor is off meanwhile: a forced GC is ours, not
 * the engine's.
 */
async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("the child needs --expose-gc");
  loop.disable();
  try {
    for (let i = 0; i < 2; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    loop.enable();
    restartCpuTicks();
  }
}

const openCount = (name: ListenerName) => accepted[name].filter((s) => !s.destroyed).length;
const sessionCount = (name: ListenerName) => listeners[name].sessions.size;

async function handle(req: RequestMessage): Promise<unknown> {
  switch (req.op) {
    case "begin": {
      // Start from a collected heap, so that growth during the batch is the batch's.
      await collect();
      loop.reset();
      cpuBlockMs = 0;
      accepted.plain = [];
      accepted.secure = [];
      atBegin = sample();
      peak = atBegin;
      return { memory: atBegin } satisfies BeginResult;
    }
    case "settle": {
      const pending = () =>
        req.expect.flatMap((e) => {
          const socket = accepted[e.listener][e.index];
          if (socket && (socket.destroyed || socket.bytesRead >= e.bytes)) return [];
          return [{ listener: e.listener, index: e.index, read: socket?.bytesRead ?? -1, expected: e.bytes }];
        });
      const settled = await waitFor(() => pending().length === 0, req.timeoutMs);
      return { settled, pending: pending() } satisfies SettleResult;
    }
    case "stats": {
      const now = samplePeak();
      const result: StatsResult = {
        eventLoop: { maxMs: loop.max / 1e6, meanMs: loop.mean / 1e6, p99Ms: loop.percentile(99) / 1e6, cpuBlockMs },
        memory: { atBegin, peak, now },
        errors: errors.splice(0),
        sessions: { plain: sessionCount("plain"), secure: sessionCount("secure") },
        liveTracked: service.live,
        openSockets: { plain: openCount("plain"), secure: openCount("secure") },
      };
      return result;
    }
    case "quiesce": {
      // Pending later() calls hold service state, not engine state: settle them.
      service.resolveLater();
      const quiet = () =>
        openCount("plain") === 0 &&
        openCount("secure") === 0 &&
        sessionCount("plain") <= req.sessions.plain &&
        sessionCount("secure") <= req.sessions.secure &&
        service.live === 0;
      const ok = await waitFor(quiet, req.timeoutMs);
      const leftovers: QuiesceResult["leftovers"] = [];
      if (!ok) {
        for (const name of ["plain", "secure"] as const) {
          for (const s of listeners[name].sessions) {
            leftovers.push({ listener: name, stats: s.connection.stats(), error: s.connection.error?.message ?? null });
          }
        }
      }
      return {
        quiet: ok,
        sessions: { plain: sessionCount("plain"), secure: sessionCount("secure") },
        liveTracked: service.live,
        openSockets: { plain: openCount("plain"), secure: openCount("secure") },
        leftovers,
      } satisfies QuiesceResult;
    }
    case "gc":
      await collect();
      return sample();
  }
}

process.on("message", (req: RequestMessage) => {
  handle(req).then(
    (result) => send({ id: req.id, ok: true, result } satisfies ResponseMessage),
    (err: unknown) => send({ id: req.id, ok: false, error: describe(err) } satisfies ResponseMessage),
  );
});
// The fuzzer went away: so do we, and our directory with us.
process.on("disconnect", () => {
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});

send({ event: "ready", info: { pid: process.pid, plainPath, securePath, serverId: identity.id } });

// npm run bench:memory -- [--seconds N] [--transport unix|tcp|both] [--systems capmesh,cpp]
//                         [--parts load,idle] [--peers N] [--processes N] [--concurrency N]
//                         [--burst-calls N] [--burst-kib N] [--no-trim] [--quick] [--out FILE]
//
// What memory capmesh uses beside the C++ reference (issue 12, "Memory"):
//   1. under load (load.ts): figures (b) and (c) of the main bench for
//      `--seconds`; heap bytes allocated per 100k calls and per GiB (capmesh),
//      RSS of server and client, and their growth from the first to the last
//      tenth of the run;
//   2. idle peers (idle.ts): a hub holding `--peers` peers, on unix and on
//      TCP (handshake and box-stream), RSS per peer before any traffic and
//      after each peer did one burst through the hub and went idle.
// Writes the "Memory" section of bench/RESULTS.md, keeping the other sections.
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { commonFlags, eachFlag, positiveInteger, takeCommonFlag, transportsOf, listFlag } from "../lib/cli.js";
import { ROOT, cleanupAll } from "../lib/processes.js";
import { commandLine, fmt, machineFacts, sourceState, writeSection } from "../lib/report.js";
import { measureIdle, type IdleOptions, type IdleResult } from "./idle.js";
import { measureLoad, type LoadFigure, type LoadResult, type LoadSystem, type Side } from "./load.js";

const SECTION = "## Memory";
/** Issue 12: a hub holding once-busy idle peers. */
const TARGET_KIB_PER_PEER = 40;
const SYSTEMS: LoadSystem[] = ["capmesh", "cpp"];
const FIGURES: LoadFigure[] = ["calls", "stream"];
const PARTS = ["load", "idle"] as const;
type Part = (typeof PARTS)[number];

interface Options {
  seconds: number;
  transports: ("unix" | "tcp")[];
  systems: LoadSystem[];
  parts: Part[];
  idle: IdleOptions;
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:memory: ${message}\n`);
  process.stderr.write(
    "usage: npm run bench:memory -- [--seconds N] [--transport unix|tcp|both] [--systems capmesh,cpp] [--parts load,idle]\n" +
      "                               [--peers N] [--processes N] [--concurrency N] [--burst-calls N] [--burst-kib N]\n" +
      "                               [--no-trim] [--quick] [--out FILE]\n",
  );
  process.exit(message ? 2 : 0);
}

function hasGdb(): boolean {
  try {
    execFileSync("gdb", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function parseOptions(argv: string[]): Options {
  const common = commonFlags();
  let systems = SYSTEMS;
  let parts: Part[] = [...PARTS];
  let peers: number | undefined;
  let processes = 4;
  let concurrency = 16;
  let burstCalls = 1000;
  let burstKib = 256;
  let trim = true;
  eachFlag(argv, usage, (flag, value, arg) => {
    if (takeCommonFlag(common, flag, value, usage)) return;
    switch (flag) {
      case "--systems":
        systems = listFlag(value(), SYSTEMS, "system", usage);
        break;
      case "--parts":
        parts = listFlag(value(), PARTS, "part", usage);
        break;
      case "--peers":
        peers = positiveInteger(value(), flag, usage);
        break;
      case "--processes":
        processes = positiveInteger(value(), flag, usage);
        break;
      case "--concurrency":
        concurrency = positiveInteger(value(), flag, usage);
        break;
      case "--burst-calls":
        burstCalls = positiveInteger(value(), flag, usage);
        break;
      case "--burst-kib":
        burstKib = positiveInteger(value(), flag, usage);
        break;
      case "--no-trim":
        trim = false;
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  return {
    seconds: common.seconds ?? (common.quick ? 2 : 15),
    transports: transportsOf(common),
    systems,
    parts: PARTS.filter((p) => parts.includes(p)),
    idle: {
      peers: peers ?? (common.quick ? 100 : 1000),
      processes,
      concurrency,
      burstCalls,
      burstBytes: burstKib * 1024,
      releaseDeadlineMs: 60_000,
      settleMs: common.quick ? 5_000 : 12_000,
      trim: trim && hasGdb(),
    },
    out: common.out ?? (common.quick || parts.length < PARTS.length ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- report

const KIB = 1024;
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** Per 100k calls or per GiB streamed. */
function perUnit(r: LoadResult, bytes: number): number {
  return r.figure === "calls" ? (bytes / r.work) * 1e5 : (bytes / r.work) * GIB;
}

function signedKib(bytes: number): string {
  const k = bytes / KIB;
  return `${k >= 0 ? "+" : "−"}${fmt(Math.abs(k))} KiB`;
}

function cellsOf(r: LoadResult | undefined, s: "server" | "client"): string[] {
  if (r === undefined) return ["n/a", "n/a", "n/a", "n/a"];
  const side: Side = r[s];
  const rss = `${fmt(side.rss / MIB)} MiB${side.rise === null ? "" : ` (${signedKib(side.rise)} over idle)`}`;
  const alloc = side.heapAllocated === null ? "RSS only" : `${fmt(perUnit(r, side.heapAllocated) / MIB)} MiB`;
  const growth =
    `${signedKib(side.rssGrowth)}` + (side.heapGrowth === null ? "" : ` / ${signedKib(side.heapGrowth)}`);
  const rssPer = `${signedKib(perUnit(r, side.rssGrowth))}`;
  return [alloc, rss, growth, rssPer];
}

function renderLoad(results: LoadResult[], failures: string[], opts: Options): string[] {
  const out: string[] = [];
  const unit = (f: LoadFigure): string => (f === "calls" ? "per 100k calls" : "per GiB");
  out.push(
    `### Under load: ${opts.seconds} s of each figure, server and client`,
    "",
    "| figure | side | system | rate | JS heap allocated, " + "per 100k calls / per GiB | RSS at the end | growth, first → last tenth: RSS / JS heap | RSS growth per 100k calls / per GiB |",
    "|---|---|---|--:|--:|--:|--:|--:|",
  );
  for (const transport of opts.transports) {
    for (const figure of FIGURES) {
      for (const s of ["server", "client"] as const) {
        for (const system of opts.systems) {
          const r = results.find((x) => x.system === system && x.figure === figure && x.transport === transport);
          const rate = r === undefined ? "failed" : figure === "calls" ? `${fmt(r.rate / 1000)}k calls/s` : `${fmt(r.rate / 1e6)} MB/s`;
          const label = figure === "calls" ? "(b) 100 calls in flight" : "(c) `-> stream` 64 KiB";
          out.push(`| ${label}, ${transport} (${unit(figure)}) | ${s} | ${system === "cpp" ? "C++" : system} | ${rate} | ${cellsOf(r, s).join(" | ")} |`);
        }
      }
    }
  }
  out.push("");
  if (failures.length > 0) out.push(...failures.map((f) => `- failed: ${f}`), "");
  return out;
}

function renderIdle(results: IdleResult[], opts: Options): string[] {
  if (results.length === 0) return [];
  const o = opts.idle;
  const per = (r: IdleResult, m: { rss: number } | null): string => (m === null ? "n/a" : `${fmt((m.rss - r.base.rss) / KIB / r.peers)} KiB`);
  const heap = (r: IdleResult, m: { heapUsed: number }): string => `${fmt((m.heapUsed - r.base.heapUsed) / KIB / r.peers)} KiB`;
  const label = (t: string): string => (t === "unix" ? "unix socket (handshake)" : "TCP (handshake + box-stream)");
  const row = (name: string, cell: (r: IdleResult) => string): string => `| ${name} | ${results.map(cell).join(" | ")} |`;
  const n = results[0]!.peers.toLocaleString("en-US");
  return [
    `### A hub holding ${n} peers, before and after a burst each`,
    "",
    `| hub RSS per peer (JS heap) | ${results.map((r) => label(r.transport)).join(" | ")} |`,
    `|---|${results.map(() => "--:").join("|")}|`,
    row("connected and registered, before any traffic", (r) => `${per(r, r.joined)} (${heap(r, r.joined)})`),
    row("right after every peer's burst", (r) => `${per(r, r.busy)} (${heap(r, r.busy)})`),
    row(`**after the burst, idle** (target < ${TARGET_KIB_PER_PEER} KiB)`, (r) => `**${per(r, r.idle)}** (${heap(r, r.idle)})`),
    row("… of which the C allocator keeps free: after `malloc_trim(0)`", (r) => per(r, r.trimmed)),
    row("send buffers kept by the hub's connections: right after the bursts → idle", (r) => `${fmt(r.busy.sendBuffers / KIB)} KiB in ${r.busy.sendBufferStreams} → ${fmt(r.idle.sendBuffers / KIB)} KiB`),
    row("… given back after", (r) => (r.releasedMs === null ? "not within 60 s" : `${fmt(r.releasedMs / 1000)} s`)),
    row("joining took; the bursts took", (r) => `${fmt(r.joinMs / 1000)} s; ${fmt(r.burstMs / 1000)} s`),
    "",
    `Each peer is its own identity and connection (\`bench/mesh/crowd.ts\`, ${o.processes} processes, ${o.concurrency} at a time in each), ` +
      `and its burst goes through the hub (direct paths off) to itself: ${o.burstCalls.toLocaleString("en-US")} \`ping\`s, 100 in flight, ` +
      `then ${o.burstBytes / KIB} KiB to a sink in 64 KiB \`-> stream\` writes. Per peer = (hub RSS − its RSS before the peers came) ÷ peers, ` +
      "after full collections (`--expose-gc`). \"Idle\" is read once the hub's connections keep no send buffer and its RSS has not fallen by 1% for " +
      `${o.settleMs / 1000} s (polled without collections, which would hold V8's own shrinking back), at most 60 s after the bursts. ` +
      (o.trim
        ? "The `malloc_trim(0)` row is the same hub once glibc has given its free memory back (called through gdb): the difference is memory the " +
          "allocator kept after the burst's buffers were freed, not memory anything still holds."
        : "The `malloc_trim(0)` row needs gdb (or was turned off with `--no-trim`)."),
    "",
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const loadStart = os.loadavg();
  const log = (line: string): void => console.log(line);
  const load: LoadResult[] = [];
  const failures: string[] = [];
  if (opts.parts.includes("load")) {
    log(`under load, ${opts.seconds} s per figure:`);
    for (const transport of opts.transports) {
      for (const figure of FIGURES) {
        for (const system of opts.systems) {
          try {
            load.push(await measureLoad(system, figure, transport, opts.seconds, log));
          } catch (err) {
            const why = err instanceof Error ? err.message : String(err);
            failures.push(`${system} ${figure} ${transport}: ${why}`);
            log(`  ${system} ${figure} ${transport} failed: ${why}`);
          }
        }
      }
    }
  }
  const idle: IdleResult[] = [];
  if (opts.parts.includes("idle")) {
    log(`a hub with ${opts.idle.peers} peers:`);
    for (const transport of opts.transports) idle.push(await measureIdle(transport, opts.idle, log));
  }
  const loadEnd = os.loadavg();
  const out: string[] = [
    SECTION,
    "",
    "```",
    commandLine(argv, "bench:memory", "bench/memory/run.ts"),
    "```",
    "",
    `- Run ${started.toISOString()}, ${Math.round((Date.now() - started.getTime()) / 1000)} s; load average ${loadStart[0]!.toFixed(1)} at the start, ${loadEnd[0]!.toFixed(1)} at the end (other processes share this machine)`,
    ...machineFacts(["capnp-es"]),
    ...sourceState(),
    "",
  ];
  if (opts.parts.includes("load")) out.push(...renderLoad(load, failures, opts));
  out.push(...renderIdle(idle, opts));
  out.push(
    "Notes:",
    "",
    "- Every server and client is its own process, as in the main bench (`bench/systems/capmesh`, `bench/systems/cpp`); the runner samples each one's " +
      "RSS from `/proc/<pid>/status` every 100 ms. The figures cover the client's last `--seconds` (its start-up and most of its warm-up left out); " +
      "the work done in them is the client's rate × their length.",
    "- JS heap allocated: capmesh processes load `bench/memory/probe.ts`, which sums what each V8 collection freed (`v8.GCProfiler`) and the heap's growth. " +
      "ArrayBuffer/Buffer memory outside the JS heap is not in it (V8's statistics do not see it whole); the RSS columns include it. " +
      "**The C++ reference has RSS only** (no allocation counter): its cells say so.",
    "- Growth: the mean RSS of the run's last tenth minus that of its first tenth; for the JS heap, the lowest `heapUsed` of each tenth (after a " +
      "collection). About 0 means nothing piles up per call or per byte; the last column divides the RSS growth by the work done.",
    "",
  );
  const markdown = out.join("\n");
  console.log("\n" + markdown);
  if (opts.out !== undefined) {
    writeSection(opts.out, SECTION, markdown);
    console.log(`wrote the "${SECTION.slice(3)}" section of ${path.relative(process.cwd(), opts.out) || opts.out}`);
  } else {
    console.log("(quick or partial run: results not written; pass --out FILE to keep them)");
  }
}

try {
  await main();
} finally {
  cleanupAll();
}
process.exit(0);

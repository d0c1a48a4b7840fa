// npm run bench:engine -- [--seconds N] [--repeat N] [--quick] [--out FILE] [--profile DIR]
//
// What issue 13's engine calls, closures and streams cost, every party in a
// process of its own (hub, plugin B, plugin A), on unix sockets with the
// secret handshake on every connection, in one run:
//   1. closure round trips: A's engine (the hub) evaluates a closure that
//      lives in B, one at a time and with 100 in flight;
//   2. value-stream items per second: small records from A to B, as the
//      input stream of a call of B's closure;
//   3. byte-stream MB/s from A to B in 64 KiB chunks, through the hub (A's
//      direct paths off) and over the direct path, beside the raw socket
//      floor (bench/systems/raw: two processes, one unix socket) run in the
//      same turns; the issue's target is through-the-hub >= 0.5x the floor.
// Writes the "Engine calls, closures and streams (issue 13)" section of
// bench/RESULTS.md, keeping the other sections. `--profile DIR` instead runs
// the through-the-hub byte stream once with --cpu-prof in all three processes
// and prints the functions with the most self time in each (writes no results).
import os from "node:os";
import path from "node:path";
import { commonFlags, eachFlag, positiveNumber, takeCommonFlag, listFlag } from "../lib/cli.js";
import { CHUNK_BYTES, INFLIGHT, STREAM_WINDOW, warmupSeconds } from "../lib/client.js";
import { prepareHub } from "../lib/mesh.js";
import { ROOT, cleanupAll, runClientProcess, scratchDir, startServer, stopServer, type Metrics, type Outcome } from "../lib/processes.js";
import { commandLine, fmt, machineFacts, sourceState, writeSection } from "../lib/report.js";
import { median } from "../lib/stats.js";
import { tsxCommand } from "../lib/systems.js";
import { pool } from "../mesh/child.js";
import { Worker } from "../mesh/workers.js";
import { summarizeProfiles } from "./profile.js";

const B_NAME = "bench.engine.b";
export const SECTION = "## Engine calls, closures and streams (issue 13)";
/** Issue 13: the byte stream through the hub at least this share of the raw floor's MB/s. */
const TARGET = 0.5;

// ---------------------------------------------------------------- options

interface Options {
  seconds: number;
  repeat: number;
  quick: boolean;
  /** Where the profiled run writes its .cpuprofile files. */
  profile: string | undefined;
  /** The rows to run (all but a partial run). */
  rows: RowKey[];
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:engine: ${message}\n`);
  process.stderr.write("usage: npm run bench:engine -- [--seconds N] [--repeat N] [--rows a,b] [--quick] [--out FILE] [--profile DIR]\n");
  process.exit(message ? 2 : 0);
}

function parseOptions(argv: string[]): Options {
  const common = commonFlags();
  let profile: string | undefined;
  let rows: RowKey[] = ROWS.map((r) => r.key);
  eachFlag(argv, usage, (flag, value, arg) => {
    if (flag === "--transport") usage("the engine bench runs on unix sockets only (the mesh's default)");
    if (takeCommonFlag(common, flag, value, usage)) return;
    if (flag === "--profile") profile = path.resolve(value());
    else if (flag === "--rows") {
      rows = listFlag(value(), ROWS.map((row) => row.key), "row", usage);
    } else usage(`unknown option "${arg}"`);
  });
  const seconds = common.seconds ?? (common.quick ? 0.5 : profile !== undefined ? 4 : 2);
  positiveNumber(String(seconds), "--seconds", usage);
  return {
    seconds,
    repeat: common.repeat ?? (common.quick ? 1 : 3),
    quick: common.quick,
    profile,
    rows,
    // A quick, partial or profiled run is not a result: it does not touch the results unless asked.
    out: common.out ?? (common.quick || profile !== undefined || rows.length < ROWS.length ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- rows

type RowKey = "closureSeq" | "closureInflight" | "closureSeqHub" | "closureInflightHub" | "values" | "bytesHub" | "bytesDirect" | "raw";

interface Row {
  key: RowKey;
  label: string;
  /** bench/engine/caller.ts's figure, or the raw floor's client. */
  figure: "seq" | "inflight" | "stream" | "values";
  /** A's direct paths, and the path it checks B's closure is on. */
  path?: "direct" | "hub";
  /** The metric of the JSON line the row shows, and how. */
  metric: string;
  unit: string;
}

const ROWS: Row[] = [
  { key: "closureSeq", label: "(1) closure round trips, one at a time: A → A's engine (hub) → B's closure → back", figure: "seq", path: "direct", metric: "rps", unit: "calls/s" },
  { key: "closureInflight", label: `(1) closure round trips, ${INFLIGHT} in flight`, figure: "inflight", path: "direct", metric: "cps", unit: "calls/s" },
  { key: "closureSeqHub", label: "(1) the same, one at a time, A's direct paths off (B's closure reaches A through the hub)", figure: "seq", path: "hub", metric: "rps", unit: "calls/s" },
  { key: "closureInflightHub", label: `(1) the same, ${INFLIGHT} in flight, A's direct paths off`, figure: "inflight", path: "hub", metric: "cps", unit: "calls/s" },
  { key: "values", label: "(2) value stream A → B, small records (`{ id, name, score, ok }`)", figure: "values", path: "direct", metric: "ips", unit: "items/s" },
  { key: "bytesHub", label: `(3i) byte stream A → B, ${CHUNK_BYTES / 1024} KiB chunks, through the hub (A's direct paths off)`, figure: "stream", path: "hub", metric: "mbps", unit: "MB/s" },
  { key: "bytesDirect", label: `(3ii) byte stream A → B, ${CHUNK_BYTES / 1024} KiB chunks, direct path (the default)`, figure: "stream", path: "direct", metric: "mbps", unit: "MB/s" },
  { key: "raw", label: `raw socket floor: bench/systems/raw, ${CHUNK_BYTES / 1024} KiB writes, ≤ ${STREAM_WINDOW} unacked`, figure: "stream", metric: "mbps", unit: "MB/s" },
];

/** What B took during a run, from its `cpu` reply: the unit the hub's forwarded calls are counted per. */
const B_UNIT: Partial<Record<RowKey, "echoes" | "chunks" | "items">> = {
  closureSeq: "echoes",
  closureInflight: "echoes",
  closureSeqHub: "echoes",
  closureInflightHub: "echoes",
  values: "items",
  bytesHub: "chunks",
  bytesDirect: "chunks",
};

interface Counters {
  /** Handoffs A made as an introducer (its MeshPeer.stats()), summed over runs; 0 from counters(). */
  introductions: number;
  forwarded: number;
  echoes: number;
  chunks: number;
  items: number;
}

async function counters(hub: Worker, b: Worker): Promise<Counters> {
  const h = await hub.request("cpu", { calls: true });
  const own = await b.request("cpu");
  return { introductions: 0, forwarded: Number(h.forwardedCalls), echoes: Number(own.echoes), chunks: Number(own.chunks), items: Number(own.items) };
}

interface Results {
  /** Per row, the measured runs (with the turn they ran in). */
  runs: Map<RowKey, (Metrics & { round: number })[]>;
  /** Per row, over its measured runs: the calls the hub forwarded, and what B took. */
  counted: Map<RowKey, Counters>;
  failures: string[];
}

/** The processes every run needs: the hub, B, and the raw floor's server. */
interface Parties {
  hub: Worker;
  b: Worker;
  raw: Awaited<ReturnType<typeof startServer>>;
  env: Record<string, string>;
}

function profileFlags(opts: Options, who: string): string[] {
  return opts.profile === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.join(opts.profile, who)];
}

/** argv of a TypeScript file under tsx, with node flags before it. */
function tsx(file: string, flags: string[] = []): string[] {
  const [node, ...rest] = tsxCommand(path.join(ROOT, "bench", file));
  return [node!, ...flags, ...rest];
}

async function startParties(opts: Options): Promise<Parties> {
  const setup = await prepareHub("hub-engine", { directPaths: true });
  const hub = await Worker.start("hub", [...tsx("mesh/hub.ts", profileFlags(opts, "hub")), setup.home, setup.socket], setup.env);
  let b: Worker | undefined;
  try {
    const [started, raw] = await Promise.all([
      Worker.start("B", [...tsx("engine/plugin.ts", profileFlags(opts, "B")), B_NAME], setup.env),
      startServer(tsx("systems/raw/server.ts"), `unix:${path.join(scratchDir(), "raw.sock")}`, false),
    ]);
    b = started;
    return { hub, b, raw, env: setup.env };
  } catch (err) {
    await b?.stop();
    await hub.stop();
    throw err;
  }
}

async function stopParties(p: Parties): Promise<void> {
  // B first, then the hub, so that nothing waits on a hub that is gone.
  await Promise.all([p.b.stop(), stopServer(p.raw)]);
  await p.hub.stop();
}

function runRow(opts: Options, p: Parties, row: Row, seconds: number, flags: string[] = []): Promise<Outcome> {
  const limitMs = (seconds * 3 + warmupSeconds(seconds) + 45) * 1000;
  if (row.key === "raw") return runClientProcess([...tsx("systems/raw/client.ts"), p.raw.address, "stream", String(seconds)], limitMs, false);
  // runClientProcess passes the runner's environment on.
  Object.assign(process.env, p.env, {
    BENCH_ENGINE_NAME: B_NAME,
    BENCH_ENGINE_EXPECT_PATH: row.path,
    CAPMESH_DIRECT_PATHS: row.path === "hub" ? "0" : "1",
  });
  return runClientProcess([...tsx("engine/caller.ts", flags), p.env.CAPMESH_HUB!, row.figure, String(seconds)], limitMs, false);
}

function describe(outcome: Outcome): string {
  if (!outcome.ok) return `failed: ${outcome.reason}`;
  return Object.entries(outcome.metrics).map(([m, v]) => `${m}=${v}`).join(" ") + (outcome.note ? ` (${outcome.note})` : "");
}

function rowsOf(opts: Options): Row[] {
  return ROWS.filter((r) => opts.rows.includes(r.key));
}

async function measure(opts: Options, p: Parties, log: (line: string) => void): Promise<Results> {
  const results: Results = { runs: new Map(), counted: new Map(), failures: [] };
  // One short uncounted run of each row first: the hub and B are fresh
  // processes, and their first calls run on code V8 has not optimised yet.
  if (!opts.quick) {
    for (const row of rowsOf(opts)) log(`  ${row.key.padEnd(18)} warm-up  ${describe(await runRow(opts, p, row, Math.min(0.5, opts.seconds)))}`);
  }
  if (opts.quick && opts.repeat === 1) {
    // A smoke run: two rows at a time (one per CPU of a small machine), since only
    // whether each runs matters, and starting a process under tsx costs more CPU
    // time than its run does.
    const rows = rowsOf(opts);
    const outcomes: Outcome[] = [];
    await pool(rows.length, 2, async (i) => void (outcomes[i] = await runRow(opts, p, rows[i]!, opts.seconds)));
    rows.forEach((row, i) => {
      const outcome = outcomes[i]!;
      const value = outcome.ok ? outcome.metrics[row.metric] : undefined;
      if (typeof value === "number" && value > 0) results.runs.set(row.key, [{ ...(outcome.ok ? outcome.metrics : {}), round: 0 }]);
      else results.failures.push(`${row.key} #1: ${outcome.ok ? `${row.metric} is ${String(value)}` : outcome.reason}`);
      log(`  ${row.key.padEnd(18)} #1  ${describe(outcome)}`);
    });
    return results;
  }
  // The rows take turns, run by run, so that load from elsewhere spreads over all of them
  // (and the byte streams run right beside the floor they are compared with).
  for (let r = 0; r < opts.repeat; r++) {
    for (const row of rowsOf(opts)) {
      const before = row.key === "raw" ? undefined : await counters(p.hub, p.b);
      const outcome = await runRow(opts, p, row, opts.seconds);
      const after = row.key === "raw" ? undefined : await counters(p.hub, p.b);
      let shown = describe(outcome);
      if (outcome.ok) {
        const value = outcome.metrics[row.metric];
        if (typeof value !== "number" || !(value > 0)) {
          results.failures.push(`${row.key} #${r + 1}: ${row.metric} is ${String(value)}`);
        } else {
          results.runs.set(row.key, [...(results.runs.get(row.key) ?? []), { ...outcome.metrics, round: r }]);
        }
        if (before !== undefined && after !== undefined) {
          const sum = results.counted.get(row.key) ?? { forwarded: 0, echoes: 0, chunks: 0, items: 0, introductions: 0 };
          sum.introductions += outcome.metrics.introductions ?? 0;
          for (const k of ["forwarded", "echoes", "chunks", "items"] as const) sum[k] += after[k] - before[k];
          results.counted.set(row.key, sum);
          shown += `  (hub forwarded ${after.forwarded - before.forwarded})`;
        }
      } else {
        results.failures.push(`${row.key} #${r + 1}: ${outcome.reason}`);
      }
      log(`  ${row.key.padEnd(18)} #${r + 1}  ${shown}`);
    }
  }
  return results;
}

// ---------------------------------------------------------------- results

function valueOf(results: Results, key: RowKey, metric: string): number | undefined {
  const values = (results.runs.get(key) ?? []).map((m) => m[metric]).filter((v): v is number => typeof v === "number");
  return values.length > 0 ? median(values) : undefined;
}

/** `key` ÷ the raw floor, turn by turn (the runs of one turn ran back to back). */
function ratios(results: Results, key: RowKey): number[] {
  const floor = results.runs.get("raw") ?? [];
  const out: number[] = [];
  for (const run of results.runs.get(key) ?? []) {
    const f = floor.find((x) => x.round === run.round);
    if (typeof run.mbps === "number" && typeof f?.mbps === "number") out.push(run.mbps / f.mbps);
  }
  return out;
}

/** Every figure of the table, by name: what the smoke test checks and the runner prints as JSON. */
export function figuresOf(results: Results): Record<string, number | undefined> {
  const floor = valueOf(results, "raw", "mbps");
  const hub = valueOf(results, "bytesHub", "mbps");
  const direct = valueOf(results, "bytesDirect", "mbps");
  return {
    closureSeqRps: valueOf(results, "closureSeq", "rps"),
    closureSeqP50Us: valueOf(results, "closureSeq", "p50us"),
    closureInflightCps: valueOf(results, "closureInflight", "cps"),
    closureSeqHubRps: valueOf(results, "closureSeqHub", "rps"),
    closureInflightHubCps: valueOf(results, "closureInflightHub", "cps"),
    valueItemsPerS: valueOf(results, "values", "ips"),
    bytesHubMBps: hub,
    bytesDirectMBps: direct,
    rawFloorMBps: floor,
    hubToFloor: hub !== undefined && floor !== undefined ? hub / floor : undefined,
    directToFloor: direct !== undefined && floor !== undefined ? direct / floor : undefined,
  };
}

function renderTable(results: Results): string[] {
  const lines = ["| figure | median | p50 µs | ÷ raw floor | hub forwarded per B call | A's handoffs per B call |", "|---|---:|---:|---:|---:|---:|"];
  const floor = valueOf(results, "raw", "mbps");
  for (const row of ROWS) {
    if (!results.runs.has(row.key) && !results.failures.some((f) => f.startsWith(`${row.key} `))) continue;
    const v = valueOf(results, row.key, row.metric);
    const p50 = row.figure === "seq" ? valueOf(results, row.key, "p50us") : undefined;
    const ratio = row.unit === "MB/s" && v !== undefined && floor !== undefined ? `${(v / floor).toFixed(2)}×` : "";
    const c = results.counted.get(row.key);
    const unit = B_UNIT[row.key];
    const per = (n: keyof Counters): string => (c !== undefined && unit !== undefined && c[unit] > 0 ? (c[n] / c[unit]).toFixed(2) : "");
    lines.push(`| ${row.label} | ${v === undefined ? "failed" : `${fmt(v)} ${row.unit}`} | ${p50 === undefined ? "" : fmt(p50)} | ${ratio} | ${per("forwarded")} | ${per("introductions")} |`);
  }
  return lines;
}

function verdict(results: Results): string[] {
  const f = figuresOf(results);
  const range = (xs: number[]): string => (xs.length < 2 ? "" : `, ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}× turn by turn`);
  if (f.hubToFloor === undefined) return [`- byte stream through the hub ≥ ${TARGET}× the raw floor: not measured (no through-the-hub figure or no floor in this run)`];
  return [
    `- byte stream through the hub ≥ ${TARGET}× the raw floor's MB/s (default node flags): ${f.hubToFloor >= TARGET ? "**met**" : "**not met**"} ` +
      `(**${f.hubToFloor.toFixed(2)}×**: ${fmt(f.bytesHubMBps!)} ÷ ${fmt(f.rawFloorMBps!)} MB/s, medians${range(ratios(results, "bytesHub"))})`,
    ...(f.directToFloor === undefined
      ? []
      : [`- over the direct path: ${f.directToFloor.toFixed(2)}× the floor (${fmt(f.bytesDirectMBps!)} MB/s${range(ratios(results, "bytesDirect"))})`]),
  ];
}

interface Run {
  argv: string[];
  source: string[];
  started: Date;
  finished: Date;
  uptimeStart: string;
  uptimeEnd: string;
}

function uptime(): string {
  const [a, b, c] = os.loadavg();
  return `load average ${a!.toFixed(2)}, ${b!.toFixed(2)}, ${c!.toFixed(2)}`;
}

function belowTarget(results: Results): boolean {
  const ratio = figuresOf(results).hubToFloor;
  return ratio !== undefined && ratio < TARGET;
}

function renderSection(results: Results, opts: Options, run: Run): string {
  const out: string[] = [SECTION, ""];
  out.push(`Run ${run.started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((run.finished.getTime() - run.started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(run.argv, "bench:engine", "bench/engine/run.ts"), "```", "");
  out.push(...machineFacts(["sodium-native", "tsx"]));
  out.push(...run.source);
  out.push(`- \`uptime\` at the start: ${run.uptimeStart}; at the end: ${run.uptimeEnd} (2 CPUs shared with other work: figures are noisy)`, "");
  out.push(...renderTable(results), "");
  out.push(
    "Every party is its own process: the hub (bench/mesh/hub.ts, `startHub`, direct paths on), plugin B " +
      "(bench/engine/plugin.ts: `joinMesh({ name })` serving one `closure()`), and plugin A (bench/engine/caller.ts: " +
      "`joinMesh` under a name of its own, then `connect(name, Closure)`; a new process and identity per run), on unix " +
      "sockets with the secret handshake on every connection. A checks with `pathOf` that B's closure is on the path " +
      "the row says before it starts. " +
      "(1) is bench/lib/client.ts's (a) and (b) where a round trip is `peer.engine.eval({ closure: B's, args: [\"echo\", n] })` " +
      "returning n: A → hub (A's Engine) → B's closure → hub → A. " +
      "(2) is `callable(B).invoke({ args: [\"values\"], input })` with a generator of small records as the input stream " +
      "(a `ValueSource` that B's closure reads with `for await` over `this.input`, counting items; the producer batches them into `write` calls). " +
      `(3) is bench/lib/client.ts's (c): A calls B's closure with \`byteStreamValue\` of a generator yielding one ${CHUNK_BYTES / 1024} KiB chunk ` +
      "until the time is up; B reads it to its end (`for await` over the stream its argument brings) and answers the byte count (MB = 10^6 bytes); " +
      "through the hub, A runs with `CAPMESH_DIRECT_PATHS=0`, so its source and B's sink are both proxied by the hub. " +
      "The raw floor is bench/systems/raw's server and client (a bare `node:net` unix socket, length-prefixed 64 KiB writes " +
      "acknowledged one by one, at most 16 unacknowledged), two processes, run in the same turns. " +
      `${opts.seconds} s per run after a ${warmupSeconds(opts.seconds)} s warm-up in the same process, one short uncounted run of ` +
      `each row first, the rows taking turns; median of ${opts.repeat} run(s). ` +
      "\"hub forwarded per B call\" is the hub's `forwardedCalls` over the measured runs ÷ what B took (closure calls, " +
      "64 KiB chunks, items): about 1 per chunk through the hub, about 0 on the direct path; the engine's own `eval` is " +
      "not a forwarded call. \"A's handoffs per B call\" is the Level 3 introductions A made (`stats().handoffs.introductions`) " +
      "÷ the same: with A's direct paths on, A holds B's closure over its direct connection to B, so each `eval` that passes " +
      "it to the hub introduces the hub to B afresh (a Provide to B, a contact to the hub) before the hub can call it; " +
      "with A's direct paths off, A holds the hub's own import of B's closure and none is made.",
    "",
  );
  out.push("Targets (issue 13):", "", ...verdict(results));
  if (belowTarget(results)) {
    out.push(
      "- below the target: `npm run bench:engine -- --profile DIR` runs the through-the-hub stream with `--cpu-prof` in the hub, A and B " +
        "and prints each one's functions with the most self time",
    );
  }
  out.push(...results.failures.map((f) => `- failed run: ${f}`));
  out.push("");
  return out.join("\n");
}

// ---------------------------------------------------------------- main

async function profileRun(opts: Options, log: (line: string) => void): Promise<void> {
  const dir = opts.profile!;
  const p = await startParties(opts);
  try {
    const row = ROWS.find((r) => r.key === "bytesHub")!;
    log(`  warm-up        ${describe(await runRow({ ...opts, profile: undefined }, p, row, 0.5))}`);
    log(`  bytesHub       ${describe(await runRow(opts, p, row, opts.seconds, profileFlags(opts, "A")))}`);
    log(`  raw            ${describe(await runRow(opts, p, ROWS.find((r) => r.key === "raw")!, opts.seconds))}`);
  } finally {
    // Profiles are written when the processes exit.
    await stopParties(p);
  }
  console.log("");
  for (const who of ["A", "hub", "B"]) console.log(summarizeProfiles(path.join(dir, who), who, 15).join("\n") + "\n");
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const source = sourceState();
  const uptimeStart = uptime();
  const log = (line: string): void => console.log(`${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s ${line}`);
  console.log(`bench:engine: ${opts.seconds} s × ${opts.repeat} per figure | ${uptimeStart}`);
  try {
    if (opts.profile !== undefined) {
      await profileRun(opts, log);
      return;
    }
    const p = await startParties(opts);
    let results: Results;
    try {
      results = await measure(opts, p, log);
    } finally {
      await stopParties(p);
    }
    const section = renderSection(results, opts, { argv, source, started, finished: new Date(), uptimeStart, uptimeEnd: uptime() });
    console.log("\n" + section);
    // For scripts (the smoke test): every figure, as one JSON line.
    console.log(`figures ${JSON.stringify(figuresOf(results))}`);
    if (opts.out !== undefined) {
      writeSection(opts.out, SECTION, section);
      console.log(`wrote the "${SECTION.slice(3)}" section of ${path.relative(process.cwd(), opts.out) || opts.out}`);
    } else {
      console.log("(a quick or profiled run: results not written; pass --out FILE to keep them)");
    }
    if (results.failures.length > 0) process.exitCode = 1;
  } finally {
    cleanupAll();
  }
}

await main();

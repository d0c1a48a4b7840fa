// npm run bench:direct -- [--seconds N] [--repeat N] [--samples N] [--parts calls,handoff] [--quick] [--out FILE]
//
// What direct paths (rpc.capnp Level 3 three-party handoff in the mesh,
// issue 11) give, every party in a process of its own (hub, B, A), on unix
// sockets with the secret handshake on every connection. A calls B's Bench:
//   direct  A takes B's capability from the hub's connect(name) and picks it
//           up from B over a direct connection (checked: pathOf is "direct",
//           and the hub forwards none of the calls);
//   hub     the same, with A's direct paths off: the hub forwards every call
//           (checked: pathOf is "hub", the hub's forwarded calls grow by B's);
//   plain   A connect()s to B's own listen() (the same B process and identity).
// Figures: sequential round trips, 100 calls in flight, `-> stream` MB/s in
// 64 KiB chunks (bench/lib/client.ts's (a), (b), (c)); then the handoff's
// latency, a fresh peer per sample, direct vs through the hub.
// Writes the "Direct paths" section of bench/RESULTS.md, keeping the others.
import os from "node:os";
import path from "node:path";
import { eachFlag, positiveInteger, positiveNumber, takeCommonFlag, commonFlags, listFlag } from "../lib/cli.js";
import { CHUNK_BYTES, INFLIGHT, warmupSeconds } from "../lib/client.js";
import { prepareHub } from "../lib/mesh.js";
import { ROOT, cleanupAll, runClientProcess, scratchDir, type Metrics } from "../lib/processes.js";
import { commandLine, fmt, machineFacts, sourceState, writeSection } from "../lib/report.js";
import { median, quantile } from "../lib/stats.js";
import { tsxCommand } from "../lib/systems.js";
import { Worker } from "../mesh/workers.js";

const MESH = path.join(ROOT, "bench", "mesh");
const B_NAME = "bench.b";
const SECTION = "## Direct paths";
/** Issue 11: direct within this factor of two-party on every figure. */
const TARGET = 1.2;

// ---------------------------------------------------------------- options

const PARTS = ["calls", "handoff"] as const;
type Part = (typeof PARTS)[number];

interface Options {
  seconds: number;
  repeat: number;
  samples: number;
  parts: Part[];
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:direct: ${message}\n`);
  process.stderr.write("usage: npm run bench:direct -- [--seconds N] [--repeat N] [--samples N] [--parts calls,handoff] [--quick] [--out FILE]\n");
  process.exit(message ? 2 : 0);
}

function parseOptions(argv: string[]): Options {
  const common = commonFlags();
  let samples: number | undefined;
  let parts: Part[] = [...PARTS];
  eachFlag(argv, usage, (flag, value, arg) => {
    if (flag === "--transport") usage("the direct-path bench runs on unix sockets only (the mesh's default)");
    if (takeCommonFlag(common, flag, value, usage)) return;
    switch (flag) {
      case "--samples":
        samples = positiveInteger(value(), flag, usage);
        break;
      case "--parts":
        parts = listFlag(value(), PARTS, "part", usage);
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  const seconds = common.seconds ?? (common.quick ? 0.3 : 1.5);
  positiveNumber(String(seconds), "--seconds", usage);
  return {
    seconds,
    repeat: common.repeat ?? (common.quick ? 1 : 3),
    samples: samples ?? (common.quick ? 5 : 50),
    parts: PARTS.filter((p) => parts.includes(p)),
    // A quick or partial run is not a result: it does not touch the results unless asked.
    out: common.out ?? (common.quick || parts.length < PARTS.length ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- calls

type RowKey = "direct" | "hub" | "plain";
const ROWS: { key: RowKey; label: string }[] = [
  { key: "direct", label: "direct path after handoff: A → B" },
  { key: "hub", label: "through the hub: A → hub → B (A's direct paths off)" },
  { key: "plain", label: "plain two-party connection: A → B's `listen()`" },
];
const FIGURES = ["seq", "inflight", "stream"] as const;
type Figure = (typeof FIGURES)[number];

interface Counters {
  /** The hub's forwarded calls and introductions so far. */
  forwarded: number;
  introductions: number;
  /** The calls B has answered so far (pings and stream writes). */
  bCalls: number;
  /** CPU time (user + system, µs) the hub and B have used so far. */
  hubCpuUs: number;
  bCpuUs: number;
  /** A's, as its JSON line reports it (from when it is connected, after any handoff, to the end of its figure). */
  aCpuUs: number;
}

const ZERO: Counters = { forwarded: 0, introductions: 0, bCalls: 0, hubCpuUs: 0, bCpuUs: 0, aCpuUs: 0 };

interface CallResults {
  runs: Map<string, Metrics[]>; // `${row}/${figure}` -> runs
  failures: string[];
  /** Per row, over its measured runs: what the hub forwarded and introduced, what B answered. */
  counted: Map<RowKey, Counters>;
  /** Per `${row}/${figure}`, over its measured runs: the same, for CPU time per call. */
  cpu: Map<string, Counters>;
  /** Runs whose hub counters contradict the row's path (a direct run the hub forwarded calls of, …). */
  violations: string[];
}

async function counters(hub: Worker, b: Worker): Promise<Counters> {
  const h = await hub.request("cpu", { calls: true });
  const own = await b.request("cpu");
  return {
    forwarded: Number(h.forwardedCalls),
    introductions: Number(h.introductions),
    bCalls: Number(own.calls),
    hubCpuUs: Number(h.cpuUs),
    bCpuUs: Number(own.cpuUs),
    aCpuUs: 0,
  };
}

function add(a: Counters, b: Counters, sign = 1): Counters {
  const out = { ...a };
  for (const k of Object.keys(out) as (keyof Counters)[]) out[k] += sign * b[k];
  return out;
}

async function measureCalls(opts: Options, hub: Worker, b: Worker, env: Record<string, string>, log: (line: string) => void): Promise<CallResults> {
  const results: CallResults = { runs: new Map(), failures: [], counted: new Map(), cpu: new Map(), violations: [] };
  const rowEnv: Record<RowKey, { address: string; env: Record<string, string> }> = {
    direct: {
      address: env.CAPMESH_HUB!,
      env: { BENCH_MESH_PATH: "mesh", BENCH_MESH_NAME: B_NAME, BENCH_MESH_EXPECT_PATH: "direct", CAPMESH_DIRECT_PATHS: "1" },
    },
    hub: {
      address: env.CAPMESH_HUB!,
      env: { BENCH_MESH_PATH: "mesh", BENCH_MESH_NAME: B_NAME, BENCH_MESH_EXPECT_PATH: "hub", CAPMESH_DIRECT_PATHS: "0" },
    },
    plain: { address: String(b.readyLine.address), env: { BENCH_MESH_PATH: "plain", BENCH_MESH_REMOTE_ID: String(b.readyLine.id) } },
  };
  const caller = tsxCommand(path.join(MESH, "caller.ts"));
  const limitMs = (opts.seconds * 3 + warmupSeconds(opts.seconds) + 45) * 1000;
  const run = (key: RowKey, figure: Figure, seconds: number) => {
    // runClientProcess passes the runner's environment on.
    Object.assign(process.env, env, { BENCH_MESH_EXPECT_PATH: "" }, rowEnv[key].env);
    return runClientProcess([...caller, rowEnv[key].address, figure, String(seconds)], limitMs, false);
  };
  // One short run of each row, calls and stream, first, not counted: the hub and
  // B are fresh processes, and their first calls run on code V8 has not optimised yet.
  for (const { key } of ROWS) {
    for (const figure of ["inflight", "stream"] as const) {
      const warm = await run(key, figure, Math.min(0.5, opts.seconds));
      log(`  ${key.padEnd(6)} ${figure.padEnd(8)} warm-up  ${warm.ok ? "done" : `failed: ${warm.reason}`}`);
    }
  }
  // The rows take turns, run by run, so that load from elsewhere spreads over all three.
  for (let r = 0; r < opts.repeat; r++) {
    for (const figure of FIGURES) {
      for (const { key } of ROWS) {
        const before = await counters(hub, b);
        const outcome = await run(key, figure, opts.seconds);
        const after = await counters(hub, b);
        const delta = add(after, before, -1);
        if (outcome.ok) delta.aCpuUs = outcome.metrics.cpuUs ?? 0;
        const k = `${key}/${figure}`;
        if (outcome.ok) {
          // `round`: which turn it was, so that the rows' runs of one turn can be compared.
          results.runs.set(k, [...(results.runs.get(k) ?? []), { ...outcome.metrics, round: r }]);
          results.counted.set(key, add(results.counted.get(key) ?? ZERO, delta));
          results.cpu.set(k, add(results.cpu.get(k) ?? ZERO, delta));
          // The path each row claims, by the hub's own counters.
          if (key === "direct" && delta.forwarded !== 0) results.violations.push(`direct ${figure} #${r + 1}: the hub forwarded ${delta.forwarded} calls`);
          if (key === "direct" && delta.introductions < 1) results.violations.push(`direct ${figure} #${r + 1}: the hub introduced nobody`);
          if (key === "hub" && delta.forwarded < delta.bCalls) results.violations.push(`hub ${figure} #${r + 1}: the hub forwarded ${delta.forwarded} calls, B answered ${delta.bCalls}`);
          if (key === "plain" && delta.forwarded !== 0) results.violations.push(`plain ${figure} #${r + 1}: the hub forwarded ${delta.forwarded} calls`);
        } else {
          results.failures.push(`${key} ${figure} #${r + 1}: ${outcome.reason}`);
        }
        const shown = outcome.ok ? Object.entries(outcome.metrics).map(([m, v]) => `${m}=${v}`).join(" ") : `failed: ${outcome.reason}`;
        log(`  ${key.padEnd(6)} ${figure.padEnd(8)} #${r + 1}  ${shown}  (hub forwarded ${delta.forwarded}, introduced ${delta.introductions}; B answered ${delta.bCalls})`);
      }
    }
  }
  return results;
}

// ---------------------------------------------------------------- handoff

interface HandoffSample {
  first: number;
  resolved: number;
  then: number;
}

type HandoffSet = Record<"direct" | "hub", HandoffSample[]>;
/** `fresh`: a new peer per sample (each direct one dials B); `again`: one peer for many samples (B's connection stays open). */
type HandoffResults = { fresh: HandoffSet; again: HandoffSet };

async function measureHandoff(opts: Options, env: Record<string, string>, log: (line: string) => void): Promise<HandoffResults> {
  // The bench's own environment variable does not decide: each sample asks joinMesh for its path.
  const probe = await Worker.start("handoff", [...tsxCommand(path.join(ROOT, "bench", "direct", "handoff.ts"))], env);
  try {
    const results: HandoffResults = { fresh: { direct: [], hub: [] }, again: { direct: [], hub: [] } };
    const take = async (cmd: "handoff" | "again", direct: boolean, samples: number): Promise<HandoffSample[]> =>
      (await probe.request(cmd, { name: B_NAME, samples, direct }, 300_000)).samples as HandoffSample[];
    // Warm-up samples of both, not counted.
    const warmups = Math.min(5, opts.samples);
    await take("handoff", true, warmups);
    await take("handoff", false, warmups);
    log(`  warm-up: ${warmups} samples of each, done`);
    // Blocks of ten, taking turns, so that load from elsewhere spreads over both.
    for (const cmd of ["handoff", "again"] as const) {
      const into = cmd === "handoff" ? results.fresh : results.again;
      for (let done = 0; done < opts.samples; ) {
        const n = Math.min(10, opts.samples - done);
        into.direct.push(...(await take(cmd, true, n)));
        into.hub.push(...(await take(cmd, false, n)));
        done += n;
        log(`  ${cmd === "handoff" ? "fresh peers" : "one peer   "} ${done}/${opts.samples} samples of each`);
      }
    }
    return results;
  } finally {
    await probe.stop();
  }
}

// ---------------------------------------------------------------- results

/** The table's columns; `target`: a figure of the issue's (the others are the same runs seen another way). */
const METRICS: { figure: Figure; metric: string; head: string; better: "higher" | "lower"; target?: true }[] = [
  { figure: "seq", metric: "us", head: "(a) µs/call", better: "lower", target: true },
  { figure: "seq", metric: "rps", head: "(a) calls/s", better: "higher" },
  { figure: "seq", metric: "p50us", head: "(a) p50 µs", better: "lower" },
  { figure: "seq", metric: "p99us", head: "(a) p99 µs", better: "lower" },
  { figure: "inflight", metric: "cps", head: `(b) ${INFLIGHT} in flight calls/s`, better: "higher", target: true },
  { figure: "stream", metric: "mbps", head: "(c) `-> stream` MB/s", better: "higher", target: true },
];

function metricOf(run: Metrics, m: (typeof METRICS)[number]): number | null | undefined {
  return m.metric === "us" ? (typeof run.rps === "number" ? 1e6 / run.rps : null) : run[m.metric];
}

function valueOf(calls: CallResults, key: RowKey, m: (typeof METRICS)[number]): number | undefined {
  const runs = calls.runs.get(`${key}/${m.figure}`) ?? [];
  const values = runs.map((r) => metricOf(r, m)).filter((x): x is number => typeof x === "number");
  return values.length > 0 ? median(values) : undefined;
}

/** The cost of `key` relative to `base`, turn by turn (the runs of one turn ran back to back): its lowest and highest. */
function costRange(calls: CallResults, key: RowKey, base: RowKey, m: (typeof METRICS)[number]): string {
  const runs = (k: RowKey) => calls.runs.get(`${k}/${m.figure}`) ?? [];
  const costs: number[] = [];
  for (const run of runs(key)) {
    const other = runs(base).find((b) => b.round === run.round);
    const [v, w] = [metricOf(run, m), other && metricOf(other, m)];
    if (typeof v === "number" && typeof w === "number") costs.push(cost(v, w, m.better));
  }
  if (costs.length < 2) return "";
  return `, ${Math.min(...costs).toFixed(2)}–${Math.max(...costs).toFixed(2)}× turn by turn`;
}

/** How much worse `value` is than `base` (1 = as good; 1.5 = 50 % slower), whatever the metric's direction. */
function cost(value: number, base: number, better: "higher" | "lower"): number {
  return better === "higher" ? base / value : value / base;
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined ? "—" : `${(a / b).toFixed(2)}×`;
}

function renderCalls(calls: CallResults): string[] {
  const lines = [`| A → B | ${METRICS.map((m) => m.head).join(" | ")} |`, `|---|${METRICS.map(() => "---:").join("|")}|`];
  for (const { key, label } of ROWS) {
    lines.push(`| ${label} | ${METRICS.map((m) => { const v = valueOf(calls, key, m); return v === undefined ? "failed" : fmt(v); }).join(" | ")} |`);
  }
  lines.push(`| **direct ÷ two-party** | ${METRICS.map((m) => `**${ratio(valueOf(calls, "direct", m), valueOf(calls, "plain", m))}**`).join(" | ")} |`);
  lines.push(`| **direct ÷ hub** | ${METRICS.map((m) => `**${ratio(valueOf(calls, "direct", m), valueOf(calls, "hub", m))}**`).join(" | ")} |`);
  return lines;
}

function renderCpu(calls: CallResults): string[] {
  const per = (key: RowKey, figure: Figure, who: "aCpuUs" | "hubCpuUs" | "bCpuUs"): string => {
    const c = calls.cpu.get(`${key}/${figure}`);
    return c === undefined || c.bCalls === 0 ? "—" : fmt(c[who] / c.bCalls);
  };
  const lines = [
    "| CPU time per call, µs | (a) A | (a) B | (a) hub | (b) A | (b) B | (b) hub | (c) A per write | (c) B | (c) hub |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const { key, label } of ROWS) {
    lines.push(`| ${label} | ${FIGURES.flatMap((f) => [per(key, f, "aCpuUs"), per(key, f, "bCpuUs"), per(key, f, "hubCpuUs")]).join(" | ")} |`);
  }
  return lines;
}

function renderHandoff(h: HandoffResults): string[] {
  const cell = (xs: number[]): string => (xs.length === 0 ? "— | —" : `${fmt(median(xs))} | ${fmt(quantile(xs, 0.9))}`);
  const row = (set: HandoffSet, label: string, field: keyof HandoffSample): string => {
    const d = set.direct.map((s) => s[field]);
    const b = set.hub.map((s) => s[field]);
    return `| ${label} | ${cell(d)} | ${cell(b)} | ${d.length && b.length ? `${(median(d) / median(b)).toFixed(2)}×` : "—"} |`;
  };
  const rows = (set: HandoffSet, who: string): string[] => [
    row(set, `${who}: \`connect(name)\` and a first \`ping\` at once (pipelined), until its answer`, "first"),
    row(set, `${who}: \`connect(name)\` until the capability has resolved (direct: picked up from B)`, "resolved"),
    row(set, `${who}: … then a first \`ping\`, until its answer (from \`connect\`)`, "then"),
  ];
  return [
    `| ${h.fresh.direct.length} samples each | direct: median µs | p90 µs | through the hub: median µs | p90 µs | direct ÷ hub (medians) |`,
    "|---|---:|---:|---:|---:|---:|",
    ...rows(h.fresh, "**a fresh peer**"),
    ...rows(h.again, "a peer already connected to B"),
  ];
}

/** The issue's targets against the figures: one line each. */
function verdicts(calls: CallResults | undefined, h: HandoffResults | undefined): string[] {
  const out: string[] = [];
  if (calls !== undefined) {
    const costs = METRICS.filter((m) => m.target).map((m) => {
      const d = valueOf(calls, "direct", m);
      const p = valueOf(calls, "plain", m);
      const hb = valueOf(calls, "hub", m);
      return {
        m,
        plain: d && p ? cost(d, p, m.better) : undefined,
        hub: d && hb ? cost(d, hb, m.better) : undefined,
        plainRange: costRange(calls, "direct", "plain", m),
        hubRange: costRange(calls, "hub", "direct", m),
      };
    });
    const over = costs.filter((c) => c.plain === undefined || c.plain > TARGET);
    out.push(
      `- direct within ${TARGET}× of two-party on every figure: ${over.length === 0 ? "**met**" : "**not met**"} (direct's cost relative to two-party: ` +
        costs.map((c) => `${c.m.head} ${c.plain === undefined ? "n/a" : `${c.plain.toFixed(2)}×${c.plainRange}`}`).join("; ") +
        ")",
    );
    const notFaster = costs.filter((c) => c.hub === undefined || c.hub >= 1);
    out.push(
      `- direct faster than through the hub: ${notFaster.length === 0 ? "**met**" : "**not met**"} (hub's cost relative to direct: ` +
        costs.map((c) => `${c.m.head} ${c.hub === undefined ? "n/a" : `${(1 / c.hub).toFixed(2)}×${c.hubRange}`}`).join("; ") +
        ")",
    );
  }
  if (h !== undefined && h.fresh.direct.length > 0 && h.fresh.hub.length > 0) {
    const d = median(h.fresh.direct.map((s) => s.first));
    const b = median(h.fresh.hub.map((s) => s.first));
    out.push(`- handoff: a fresh caller's first answer takes ${fmt(d)} µs with direct paths, ${fmt(b)} µs through the hub (medians)`);
  }
  return out;
}

interface Run {
  argv: string[];
  /** sourceState() when the run started: the code under test. */
  source: string[];
  started: Date;
  finished: Date;
  loadStart: number;
  loadEnd: number;
}

function renderSection(calls: CallResults | undefined, handoff: HandoffResults | undefined, opts: Options, run: Run): string {
  const out: string[] = [SECTION, ""];
  out.push(`Run ${run.started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((run.finished.getTime() - run.started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(run.argv, "bench:direct", "bench/direct/run.ts"), "```", "");
  out.push(...machineFacts(["sodium-native", "tsx"]));
  out.push(...run.source);
  out.push(`- Load average (1 min) at the start and the end: ${run.loadStart.toFixed(2)} and ${run.loadEnd.toFixed(2)}`, "");
  out.push(
    "Every party is its own process (hub, B, A), all on unix sockets, and every connection passes the secret handshake " +
      "(authentication only, no box-stream: the default on unix sockets, the direct connection's too). One hub and one B " +
      "serve every row: B registers `Bench` with the hub (`joinMesh({ name })`) and also serves it on a `listen()` of its " +
      "own, as the same identity.",
    "",
  );
  if (calls !== undefined) {
    out.push("### Calls A → B", "", ...renderCalls(calls), "");
    const c = (k: RowKey) => calls.counted.get(k) ?? ZERO;
    out.push(
      "A is bench/mesh/caller.ts on bench/lib/client.ts's figures: (a) one call at a time, (b) " +
        `${INFLIGHT} calls kept in flight, (c) \`-> stream\` writes of ${CHUNK_BYTES / 1024} KiB to a \`BenchSink\` ` +
        "(capmesh's own flow control) then `done()`, MB = 10^6 bytes; " +
        `${opts.seconds} s each after a ${warmupSeconds(opts.seconds)} s warm-up, a new A process (and identity) each time; ` +
        `the rows take turns, after one short uncounted (b) and (c) run of each row; median of ${opts.repeat} run(s); ` +
        "µs/call is 10^6 ÷ calls/s. " +
        "Direct: A joins the mesh, takes B's capability from `connect(name)`, waits until it has resolved and checks that " +
        "`pathOf` says \"direct\" before the first call; the hub forwarded " +
        `${c("direct").forwarded.toLocaleString("en-US")} calls during these runs (B answered ${c("direct").bCalls.toLocaleString("en-US")}) ` +
        `and made ${c("direct").introductions} introductions. ` +
        "Through the hub: the same with `CAPMESH_DIRECT_PATHS=0` in A (pathOf says \"hub\"); the hub forwarded " +
        `${c("hub").forwarded.toLocaleString("en-US")} calls (B answered ${c("hub").bCalls.toLocaleString("en-US")}: pings and stream writes; ` +
        "the rest are the sinks' `sink()` and `done()`). Two-party: A `connect()`s to B's listener with B's key, " +
        "a standalone session. Ratios are of the values as printed, so ≥ 1 is better for calls/s and MB/s, ≤ 1 for µs.",
      "",
    );
  }
  if (calls !== undefined) {
    out.push(...renderCpu(calls), "");
    out.push(
      "CPU time per call: B's and the hub's `process.cpuUsage()` before and after each run, and A's from when it is " +
        "connected (after the handoff) until its figure ends, over the measured runs, divided by the calls B answered in " +
        "them (pings; for (c), 64 KiB writes). B's and the hub's include what A's connecting (and the handoff) costs them " +
        "once per run, and the hub's idling in the runs that do not go through it. It moves with the machine's load " +
        "too (fewer calls per read and write, colder caches), but much less than the times above.",
      "",
    );
  }
  if (handoff !== undefined) {
    out.push("### Handoff latency", "", ...renderHandoff(handoff), "");
    out.push(
      "One more process (bench/direct/handoff.ts) joins the mesh afresh for every sample (`joinMesh` with `directPaths` on " +
        "or off, a new identity each time, so with direct paths each sample dials B, passes the handshake and picks the " +
        "capability up), times it, checks the path `pathOf` reports, and closes. The first row and the other two are " +
        "separate samples (separate peers). Direct and hub samples alternate in blocks of ten after five uncounted " +
        "samples of each. The last three rows are the same on one peer per block of ten that has made one uncounted " +
        "sample first: its direct connection to B is open already, so a handoff needs no dial and no handshake. With direct paths a call made at once is sent to the hub before the handoff ends (it is " +
        "pipelined there, and calls after the handoff wait for it: the embargo), so the first row is what a caller waits " +
        "for before its first answer; the third is when its first call over the direct connection returns.",
      "",
    );
  }
  out.push("### Targets (issue 11)", "", ...verdicts(calls, handoff));
  const cpus = os.availableParallelism();
  const load = Math.max(run.loadStart, run.loadEnd);
  if (load > cpus / 2) {
    out.push(
      `- the machine was busy (load average up to ${load.toFixed(1)} on ${cpus} CPUs): the times above move with it, from one ` +
        "turn to the next (see the ranges), more than the CPU time per call does",
    );
  }
  if (calls !== undefined) {
    out.push(...calls.violations.map((v) => `- path check failed: ${v}`));
    out.push(...calls.failures.map((f) => `- failed run: ${f}`));
  }
  out.push("");
  return out.join("\n");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const source = sourceState();
  const loadStart = os.loadavg()[0]!;
  const log = (line: string): void => console.log(`${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s ${line}`);
  console.log(`bench:direct: calls ${opts.seconds} s × ${opts.repeat} | handoff ${opts.samples} samples each | load ${loadStart.toFixed(2)}`);
  const setup = await prepareHub("hub-direct", { directPaths: true });
  const workers: Worker[] = [];
  let calls: CallResults | undefined;
  let handoff: HandoffResults | undefined;
  try {
    const [node, ...rest] = tsxCommand(path.join(MESH, "hub.ts"));
    const hub = await Worker.start("hub", [node!, ...rest, setup.home, setup.socket], setup.env);
    workers.push(hub);
    const b = await Worker.start("B", [...tsxCommand(path.join(MESH, "plugin.ts")), "both", B_NAME, `unix:${path.join(scratchDir(), "b.sock")}`], setup.env);
    workers.push(b);
    if (opts.parts.includes("calls")) {
      console.log("\n== calls A → B");
      calls = await measureCalls(opts, hub, b, setup.env, log);
    }
    if (opts.parts.includes("handoff")) {
      console.log("\n== handoff latency");
      handoff = await measureHandoff(opts, setup.env, log);
    }
  } finally {
    // B first, then the hub, so that nothing waits on a hub that is gone.
    await Promise.all(workers.slice(1).map((w) => w.stop()));
    await workers[0]?.stop();
  }
  const section = renderSection(calls, handoff, opts, { argv, source, started, finished: new Date(), loadStart, loadEnd: os.loadavg()[0]! });
  console.log("\n" + section);
  if (opts.out !== undefined) {
    writeSection(opts.out, SECTION, section);
    console.log(`wrote the "${SECTION.slice(3)}" section of ${path.relative(process.cwd(), opts.out) || opts.out}`);
  } else {
    console.log("(a quick or partial run: results not written; pass --out FILE to keep them)");
  }
  cleanupAll();
}

await main();

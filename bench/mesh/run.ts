// npm run bench:mesh -- [--seconds N] [--repeat N] [--peers N] [--processes N]
//                       [--concurrency N] [--trials N] [--parts calls,hub]
//                       [--schemas schema,noschema] [--profile DIR] [--quick] [--out FILE]
//
// What the mesh hub costs (issue 10), every party in a process of its own:
//   1. calls from A to B through the hub (A holds B's capability from the
//      hub's connect(name), so the hub forwards every call) beside a plain
//      two-party connection from A to B, both with the handshake: sequential
//      round trips and 100 calls in flight; then connect(name) latency;
//   2. a fresh hub with `--peers` idle peers (each its own identity and
//      connection, registered under a name, spread over `--processes`
//      processes): the time to register them all, list() latency, the hub's
//      RSS per peer, and the time from a register to the last of as many
//      watchers seeing `joined`; once with the peers publishing their
//      schema (joinMesh's default), once without;
//   3. beside each figure, the hub's own CPU time for it.
// Writes the "Mesh" section of bench/RESULTS.md, keeping the other sections.
import os from "node:os";
import path from "node:path";
import { eachFlag, positiveInteger, positiveNumber, takeCommonFlag, commonFlags, listFlag } from "../lib/cli.js";
import { INFLIGHT, warmupSeconds } from "../lib/client.js";
import { ROOT, cleanupAll, runClientProcess, scratchDir, type Metrics } from "../lib/processes.js";
import { prepareHub as prepareMeshHub, type HubSetup } from "../lib/mesh.js";
import { commandLine, fmt, machineFacts, relative, writeSection } from "../lib/report.js";
import { median } from "../lib/stats.js";
import { tsxCommand } from "../lib/systems.js";
import { Worker, type Line } from "./workers.js";

const HERE = path.join(ROOT, "bench", "mesh");
const B_NAME = "bench.b";
/** Issue 10: the hub's memory per connected idle peer. */
const TARGET_RSS_PER_PEER_KIB = 100;
const SECTION = "## Mesh";

// ---------------------------------------------------------------- options

interface Options {
  seconds: number;
  repeat: number;
  peers: number;
  processes: number;
  concurrency: number;
  trials: number;
  listCalls: number;
  parts: Part[];
  variants: Variant[];
  /** Where the hub writes a CPU profile (node --cpu-prof) and, with the idle peers connected, a heap snapshot. */
  profile: string | undefined;
  out: string | undefined;
}

const PARTS = ["calls", "hub"] as const;
type Part = (typeof PARTS)[number];

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:mesh: ${message}\n`);
  process.stderr.write(
    "usage: npm run bench:mesh -- [--seconds N] [--repeat N] [--peers N] [--processes N]\n" +
      "                             [--concurrency N] [--trials N] [--parts calls,hub] [--schemas schema,noschema]\n" +
      "                             [--profile DIR] [--quick] [--out FILE]\n",
  );
  process.exit(message ? 2 : 0);
}

function parseOptions(argv: string[]): Options {
  const common = commonFlags();
  let peers: number | undefined;
  let processes = 4;
  let concurrency = 16;
  let trials: number | undefined;
  let parts: Part[] = [...PARTS];
  let variants: Variant[] = VARIANTS.map((v) => v.key);
  let profile: string | undefined;
  eachFlag(argv, usage, (flag, value, arg) => {
    if (flag === "--transport") usage("the mesh bench runs on unix sockets only (the hub's default)");
    if (takeCommonFlag(common, flag, value, usage)) return;
    switch (flag) {
      case "--peers":
        peers = positiveInteger(value(), flag, usage);
        break;
      case "--processes":
        processes = positiveInteger(value(), flag, usage);
        break;
      case "--concurrency":
        concurrency = positiveInteger(value(), flag, usage);
        break;
      case "--trials":
        trials = positiveInteger(value(), flag, usage);
        break;
      case "--parts":
        parts = listFlag(value(), PARTS, "part", usage);
        break;
      case "--schemas":
        variants = listFlag(value(), VARIANTS.map((x) => x.key), "--schemas", usage);
        break;
      case "--profile":
        profile = path.resolve(value());
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  const seconds = common.seconds ?? (common.quick ? 0.3 : 2);
  positiveNumber(String(seconds), "--seconds", usage);
  return {
    seconds,
    repeat: common.repeat ?? (common.quick ? 1 : 3),
    peers: peers ?? (common.quick ? 100 : 1000),
    processes,
    concurrency,
    trials: trials ?? (common.quick ? 5 : 20),
    listCalls: common.quick ? 20 : 200,
    parts: PARTS.filter((p) => parts.includes(p)),
    variants: VARIANTS.map((v) => v.key).filter((v) => variants.includes(v)),
    profile,
    // A quick run, a partial one or a profiled one is not a result: it does not touch the results unless asked.
    out: common.out ?? (common.quick || parts.length < PARTS.length || profile !== undefined ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- processes

/** A home with an identity and a network key made here, so that the peers' environment is known up front. */
function prepareHub(name: string): Promise<HubSetup> {
  // These figures are the hub's own: calls through it, and what an idle
  // peer costs it. Direct paths (bench/direct) would take the calls away.
  return prepareMeshHub(name, { directPaths: false });
}

function startHub(setup: HubSetup, opts: Options): Promise<Worker> {
  const [node, ...rest] = tsxCommand(path.join(HERE, "hub.ts"));
  // One profile per thread (tsx's loader runs in a thread of its own): the main thread's is the large one.
  const profile = opts.profile === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.join(opts.profile, path.basename(setup.home))];
  return Worker.start("hub", [node!, "--expose-gc", ...profile, ...rest, setup.home, setup.socket], setup.env);
}

function startChild(name: string, file: string, args: string[], env: Record<string, string>): Promise<Worker> {
  return Worker.start(name, [...tsxCommand(path.join(HERE, file)), ...args], env);
}

interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  connections: number;
  registrations: number;
  watchers: number;
  forwardedCalls: number;
}

async function memoryOf(hub: Worker): Promise<Memory> {
  return (await hub.request("memory")) as unknown as Memory;
}

interface Cpu {
  cpuUs: number;
  /** The hub's, only when asked for (it walks every session). */
  forwardedCalls: number;
  /** B's: the pings it has answered. */
  calls: number;
}

/** The CPU time the hub has used so far: what it spent on a figure, whatever else loads the machine. */
async function cpuOf(hub: Worker, calls = false): Promise<Cpu> {
  return (await hub.request("cpu", { calls })) as unknown as Cpu;
}

// ---------------------------------------------------------------- part 1: calls

type PathKey = "plain" | "mesh";
const PATHS: { key: PathKey; label: string }[] = [
  { key: "plain", label: "plain two-party connection A → B" },
  { key: "mesh", label: "through the hub: A → hub → B" },
];

interface CallResults {
  runs: Map<string, Metrics[]>; // `${path}/${figure}` -> runs
  failures: string[];
  connect: { withPing: Line; alone: Line } | null;
  forwardedCalls: number;
  /** Per `${path}/${figure}`, over its runs: CPU time of the hub and of B, and the calls B answered. */
  cpu: Map<string, { hubUs: number; bUs: number; calls: number }>;
}

async function measureCalls(opts: Options, log: (line: string) => void): Promise<CallResults> {
  const setup = await prepareHub("hub-calls");
  const results: CallResults = {
    runs: new Map(),
    failures: [],
    connect: null,
    forwardedCalls: 0,
    cpu: new Map(),
  };
  const workers: Worker[] = [];
  try {
    const hub = await startHub(setup, opts);
    workers.push(hub);
    const meshB = await startChild("B (plugin)", "plugin.ts", ["mesh", B_NAME], setup.env);
    workers.push(meshB);
    const plainB = await startChild("B (listener)", "plugin.ts", ["plain", `unix:${path.join(scratchDir(), "b.sock")}`], setup.env);
    workers.push(plainB);
    const targets: Record<PathKey, { address: string; env: Record<string, string> }> = {
      plain: { address: String(plainB.readyLine.address), env: { BENCH_MESH_PATH: "plain", BENCH_MESH_REMOTE_ID: String(plainB.readyLine.id) } },
      mesh: { address: setup.env.CAPMESH_HUB!, env: { BENCH_MESH_PATH: "mesh", BENCH_MESH_NAME: B_NAME } },
    };
    const caller = tsxCommand(path.join(HERE, "caller.ts"));
    const limitMs = (opts.seconds * 3 + warmupSeconds(opts.seconds) + 45) * 1000;
    // One run of each path first, not counted: the hub and both Bs are fresh
    // processes, and their first calls run on code V8 has not optimised yet.
    for (const { key } of PATHS) {
      Object.assign(process.env, setup.env, targets[key].env);
      const warm = await runClientProcess([...caller, targets[key].address, "seq", String(Math.min(1, opts.seconds))], limitMs, false);
      log(`  ${key.padEnd(6)} warm-up    ${warm.ok ? "done" : `failed: ${warm.reason}`}`);
    }
    // The paths take turns, run by run, so that load from elsewhere spreads over both.
    for (let r = 0; r < opts.repeat; r++) {
      for (const { key } of PATHS) {
        for (const figure of ["seq", "inflight"] as const) {
          // runClientProcess passes the runner's environment on.
          Object.assign(process.env, setup.env, targets[key].env);
          const b = key === "mesh" ? meshB : plainB;
          const [hub0, b0] = [await cpuOf(hub, true), await cpuOf(b)];
          const outcome = await runClientProcess([...caller, targets[key].address, figure, String(opts.seconds)], limitMs, false);
          const [hub1, b1] = [await cpuOf(hub, true), await cpuOf(b)];
          if (outcome.ok) {
            const k = `${key}/${figure}`;
            const sum = results.cpu.get(k) ?? { hubUs: 0, bUs: 0, calls: 0 };
            // The plain runs do not go through the hub: what it spent then is its idling.
            if (key === "mesh") sum.hubUs += hub1.cpuUs - hub0.cpuUs;
            sum.bUs += b1.cpuUs - b0.cpuUs;
            sum.calls += b1.calls - b0.calls;
            results.cpu.set(k, sum);
          }
          if (outcome.ok) {
            const k = `${key}/${figure}`;
            results.runs.set(k, [...(results.runs.get(k) ?? []), outcome.metrics]);
          } else {
            results.failures.push(`${key} ${figure}: ${outcome.reason}`);
          }
          const shown = outcome.ok ? Object.entries(outcome.metrics).map(([m, v]) => `${m}=${v}`).join(" ") : `failed: ${outcome.reason}`;
          log(`  ${key.padEnd(6)} ${figure.padEnd(9)} #${r + 1}  ${shown}`);
        }
      }
    }
    results.forwardedCalls = (await cpuOf(hub, true)).forwardedCalls;

    const probe = await startChild("probe", "probe.ts", [], setup.env);
    workers.push(probe);
    const reply = await probe.request("connect", { name: B_NAME, seconds: Math.max(1, opts.seconds) });
    results.connect = { withPing: reply.withPing as Line, alone: reply.alone as Line };
    log(`  connect(name): ${JSON.stringify(results.connect)}`);
  } finally {
    // Peers first, then the hub, so that nothing waits on a hub that is gone.
    await Promise.all(workers.slice(1).map((w) => w.stop()));
    await workers[0]?.stop();
  }
  return results;
}

// ---------------------------------------------------------------- part 2: many idle peers

/** The idle peers join in this many steps, the hub's memory measured after each. */
const JOIN_STEPS = 4;

interface Step {
  ms: number;
  /** Hub CPU time during the step. */
  cpuUs: number;
  memory: Memory;
}

type Variant = "schema" | "noschema";
const VARIANTS: { key: Variant; label: string }[] = [
  { key: "schema", label: "each peer publishes its schema (joinMesh's default)" },
  { key: "noschema", label: "no schemas (`interfaces: []`)" },
];

interface CrowdResults {
  variant: Variant;
  peers: number;
  registerMs: number;
  processes: number;
  /** The hub after each step of joins. */
  steps: Step[];
  before: Memory;
  after: Memory;
  watching: Memory;
  list: Line;
  /** Hub CPU time per list() call. */
  listCpuUs: number;
  watchMs: number;
  /** Hub CPU time to start every watch. */
  watchCpuUs: number;
  /** Hub CPU time over the measured fan-out trials (a joined and a left event each, to every watcher). */
  fanoutCpuUs: number;
  fanout: { lastUs: number[]; firstUs: number[]; registerReturnedUs: number[] };
}

async function measureCrowd(opts: Options, variant: Variant, log: (line: string) => void): Promise<CrowdResults> {
  const setup = await prepareHub(`hub-${variant}`);
  const workers: Worker[] = [];
  try {
    const hub = await startHub(setup, opts);
    workers.push(hub);
    const probe = await startChild("probe", "probe.ts", [], setup.env);
    workers.push(probe);
    // Exercise the hub's request paths once before the baseline, so that
    // code loaded and compiled on first use is not counted as per-peer memory.
    await probe.request("list", { count: 20 });
    await probe.request("register", { name: "warmup" });
    await probe.request("unregister", { name: "warmup" });
    const before = await memoryOf(hub);
    log(`  hub before: rss ${(before.rss / 2 ** 20).toFixed(1)} MiB, heap ${(before.heapUsed / 2 ** 20).toFixed(1)} MiB, ${before.connections} connection(s)`);

    const crowds: Worker[] = [];
    const share = Math.ceil(opts.peers / opts.processes);
    const starting: Promise<Worker>[] = [];
    for (let first = 0, p = 0; first < opts.peers; first += share, p++) {
      const count = Math.min(share, opts.peers - first);
      starting.push(startChild(`crowd ${p}`, "crowd.ts", [String(first), String(count), String(opts.concurrency), variant], setup.env));
    }
    for (const w of await Promise.allSettled(starting)) {
      if (w.status === "fulfilled") {
        crowds.push(w.value);
        workers.push(w.value);
      }
    }
    if (crowds.length !== starting.length) throw new Error("a crowd process did not start");

    // In steps, with the hub's memory after each: the per-peer cost is the
    // slope, so what the hub's first connections and its heap's start-up
    // slack cost once does not count.
    const steps: Step[] = [];
    const perStep = Math.ceil(share / JOIN_STEPS);
    for (let s = 0; s < JOIN_STEPS; s++) {
      const cpu0 = await cpuOf(hub);
      const t0 = performance.now();
      await Promise.all(crowds.map((c) => c.request("join", { count: perStep })));
      const ms = performance.now() - t0;
      const cpuUs = (await cpuOf(hub)).cpuUs - cpu0.cpuUs;
      const memory = await memoryOf(hub);
      steps.push({ ms, cpuUs, memory });
      log(
        `  ${memory.registrations} registered (+${fmt(ms)} ms): hub rss ${fmt(memory.rss / 2 ** 20)} MiB, heap ${fmt(memory.heapUsed / 2 ** 20)} MiB, ` +
          `array buffers ${fmt(memory.arrayBuffers / 2 ** 20)} MiB`,
      );
    }
    const after = steps[steps.length - 1]!.memory;
    const registerMs = steps.reduce((sum, s) => sum + s.ms, 0);
    if (after.registrations !== opts.peers || after.connections !== opts.peers + 1) {
      throw new Error(`the hub has ${after.registrations} registrations and ${after.connections} connections, not ${opts.peers} and ${opts.peers + 1}`);
    }
    if (opts.profile !== undefined) {
      const snapshot = await hub.request("snapshot", { path: path.join(opts.profile, `hub-${variant}-${opts.peers}-peers.heapsnapshot`) });
      log(`  heap snapshot: ${String(snapshot.path)}`);
    }

    const listCpu0 = await cpuOf(hub);
    const list = await probe.request("list", { count: opts.listCalls });
    // The probe makes a few warm-up calls first: they count as calls here.
    const listCpuUs = ((await cpuOf(hub)).cpuUs - listCpu0.cpuUs) / (opts.listCalls + Math.min(20, opts.listCalls));
    if (list.entries !== opts.peers) throw new Error(`list() returned ${String(list.entries)} entries, not ${opts.peers}`);
    log(`  list(): ${JSON.stringify(list)}`);

    const watchCpu0 = await cpuOf(hub);
    const w0 = performance.now();
    await Promise.all(crowds.map((c) => c.request("watch")));
    const watchMs = performance.now() - w0;
    const watchCpuUs = (await cpuOf(hub)).cpuUs - watchCpu0.cpuUs;
    const watching = await memoryOf(hub);
    log(
      `  ${watching.watchers} watchers in ${fmt(watchMs)} ms: hub rss ${fmt(watching.rss / 2 ** 20)} MiB, heap ${fmt(watching.heapUsed / 2 ** 20)} MiB, ` +
        `array buffers ${fmt(watching.arrayBuffers / 2 ** 20)} MiB`,
    );

    const fanout: CrowdResults["fanout"] = { lastUs: [], firstUs: [], registerReturnedUs: [] };
    const warmups = Math.min(3, Math.max(0, opts.trials - 1));
    let fanoutCpuUs = 0;
    for (let k = 0; k < opts.trials + warmups; k++) {
      const cpu0 = await cpuOf(hub);
      const name = `fanout.${k}`;
      const seen = crowds.map((c) => c.next((l) => l.seen === name, 60_000, `every watcher seeing ${name} join`));
      const reg = await probe.request("register", { name, like: "idle.0" });
      const sightings = await Promise.all(seen);
      const gone = crowds.map((c) => c.next((l) => l.gone === name, 60_000, `every watcher seeing ${name} leave`));
      await probe.request("unregister", { name });
      await Promise.all(gone);
      if (k < warmups) continue;
      fanoutCpuUs += (await cpuOf(hub)).cpuUs - cpu0.cpuUs;
      const t = reg.t0 as number;
      fanout.lastUs.push(Math.max(...sightings.map((s) => s.last as number)) - t);
      fanout.firstUs.push(Math.min(...sightings.map((s) => s.first as number)) - t);
      fanout.registerReturnedUs.push(reg.returnedUs as number);
    }
    log(`  fan-out to ${watching.watchers}: last watcher ${fmt(median(fanout.lastUs) / 1000)} ms median over ${fanout.lastUs.length} registers`);
    return {
      variant,
      peers: opts.peers,
      registerMs,
      processes: crowds.length,
      steps,
      before,
      after,
      watching,
      list,
      listCpuUs,
      watchMs,
      watchCpuUs,
      fanout,
      fanoutCpuUs,
    };
  } finally {
    await Promise.all(workers.slice(1).map((w) => w.stop()));
    await workers[0]?.stop();
  }
}

// ---------------------------------------------------------------- results

const KiB = 1024;

function renderCalls(calls: CallResults): string[] {
  const v = (key: PathKey, figure: string, metric: string): number | undefined => {
    const values = (calls.runs.get(`${key}/${figure}`) ?? []).map((m) => m[metric]).filter((x): x is number => typeof x === "number");
    return values.length > 0 ? median(values) : undefined;
  };
  const lines = [
    `| A → B | (a) seq calls/s | (a) µs/call | (a) p50 µs | (a) p99 µs | (b) ${INFLIGHT} in flight calls/s |`,
    "|---|---:|---:|---:|---:|---:|",
  ];
  for (const { key, label } of PATHS) {
    const cells: string[] = [];
    const cellOf = (value: number | undefined, base: number | undefined, better: "higher" | "lower"): string => {
      if (value === undefined) return "failed";
      const cost = key === "plain" || base === undefined ? "" : relative(better === "higher" ? base / value : value / base);
      return fmt(value) + cost;
    };
    const rps = v(key, "seq", "rps");
    const plainRps = v("plain", "seq", "rps");
    cells.push(cellOf(rps, plainRps, "higher"));
    cells.push(cellOf(rps === undefined ? undefined : 1e6 / rps, plainRps === undefined ? undefined : 1e6 / plainRps, "lower"));
    cells.push(cellOf(v(key, "seq", "p50us"), v("plain", "seq", "p50us"), "lower"));
    cells.push(cellOf(v(key, "seq", "p99us"), v("plain", "seq", "p99us"), "lower"));
    cells.push(cellOf(v(key, "inflight", "cps"), v("plain", "inflight", "cps"), "higher"));
    lines.push(`| ${label} | ${cells.join(" | ")} |`);
  }
  return lines;
}

function renderCpu(calls: CallResults): string[] {
  const per = (key: PathKey, figure: string, who: "hubUs" | "bUs"): string => {
    const c = calls.cpu.get(`${key}/${figure}`);
    return c === undefined || c.calls === 0 ? "—" : fmt(c[who] / c.calls);
  };
  const lines = [
    "| CPU time per call, µs | (a) B | (a) hub | (b) B | (b) hub |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const { key, label } of PATHS) {
    const hub = (figure: string): string => (key === "plain" ? "—" : per(key, figure, "hubUs"));
    lines.push(`| ${label} | ${per(key, "seq", "bUs")} | ${hub("seq")} | ${per(key, "inflight", "bUs")} | ${hub("inflight")} |`);
  }
  return lines;
}

function renderConnect(calls: CallResults): string[] {
  const c = calls.connect;
  const us = (l: Line | undefined, key: string): string => (l === undefined ? "failed" : fmt(l[key] as number));
  return [
    "| on an idle hub, one at a time | median µs | p99 µs |",
    "|---|---:|---:|",
    `| \`connect(name)\` + first call through the hub | ${us(c?.withPing, "p50us")} | ${us(c?.withPing, "p99us")} |`,
    `| \`Hub.connect(name)\` alone, until the capability arrives | ${us(c?.alone, "p50us")} | ${us(c?.alone, "p99us")} |`,
  ];
}

/** Least-squares slope of `field` over the registrations, in KiB per peer, across the join steps. */
function perPeerKiB(crowd: CrowdResults, field: keyof Memory): number {
  const points = crowd.steps.map((s) => [s.memory.registrations, s.memory[field]] as const);
  const mx = points.reduce((a, [x]) => a + x, 0) / points.length;
  const my = points.reduce((a, [, y]) => a + y, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den / KiB;
}

function rssPerPeerKiB(crowd: CrowdResults): number {
  return perPeerKiB(crowd, "rss");
}

function renderHub(crowds: CrowdResults[], opts: Options): string[] {
  const n = crowds[0]!.peers.toLocaleString("en-US");
  const row = (label: string, cell: (c: CrowdResults) => string): string => `| ${label} | ${crowds.map(cell).join(" | ")} |`;
  const perWatcher = (c: CrowdResults, field: keyof Memory): number => (c.watching[field] - c.after[field]) / c.peers / KiB;
  const ms = (us: number): string => `${fmt(us / 1000)} ms`;
  return [
    `| figure | ${crowds.map((c) => VARIANTS.find((v) => v.key === c.variant)!.label).join(" | ")} |`,
    `|---|${crowds.map(() => "---:").join("|")}|`,
    row(`register ${n} idle peers (each: connect, handshake, hello, register)`, (c) => `${fmt(c.registerMs / 1000)} s (${fmt(c.peers / (c.registerMs / 1000))}/s)`),
    row(`… the first and the last step of ${(crowds[0]!.peers / JOIN_STEPS).toLocaleString("en-US")} peers`, (c) => `${fmt(c.steps[0]!.ms / 1000)} s, ${fmt(c.steps[c.steps.length - 1]!.ms / 1000)} s`),
    row("… hub CPU time per peer joining", (c) => ms(c.steps.reduce((a, st) => a + st.cpuUs, 0) / c.peers)),
    row(`\`list()\` with ${n} entries, median (p99)`, (c) => `${ms(c.list.p50us as number)} (${ms(c.list.p99us as number)})`),
    row("… hub CPU time per `list()`", (c) => ms(c.listCpuUs)),
    row(`**hub RSS per idle peer** (target < ${TARGET_RSS_PER_PEER_KIB} KiB)`, (c) => `**${fmt(rssPerPeerKiB(c))} KiB**`),
    row("… of which JS heap (heapUsed)", (c) => `${fmt(perPeerKiB(c, "heapUsed"))} KiB`),
    row(`start ${n} watches, ${opts.concurrency} at a time per process (each gets a snapshot of ${n} entries)`, (c) => `${fmt(c.watchMs / 1000)} s`),
    row("… hub CPU time per watch started", (c) => ms(c.watchCpuUs / c.peers)),
    row("hub RSS per watcher, on top (JS heap)", (c) => `${fmt(perWatcher(c, "rss"))} KiB (${fmt(perWatcher(c, "heapUsed"))} KiB)`),
    row(`**fan-out**: register → the last of ${n} watchers sees \`joined\`, median (max)`, (c) => `${ms(median(c.fanout.lastUs))} (${ms(Math.max(...c.fanout.lastUs))})`),
    row("register → the first watcher sees `joined`, median", (c) => ms(median(c.fanout.firstUs))),
    row("register → the register call returns, median", (c) => ms(median(c.fanout.registerReturnedUs))),
    row("hub CPU time per event per watcher", (c) => `${fmt(c.fanoutCpuUs / (2 * c.fanout.lastUs.length * c.peers))} µs`),
  ];
}

interface Run {
  argv: string[];
  started: Date;
  finished: Date;
  loadStart: number;
  loadEnd: number;
}

function renderSection(calls: CallResults | undefined, crowds: CrowdResults[], opts: Options, run: Run): string {
  const out: string[] = [SECTION, ""];
  out.push(`Run ${run.started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((run.finished.getTime() - run.started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(run.argv, "bench:mesh", "bench/mesh/run.ts"), "```", "");
  out.push(...machineFacts(["sodium-native", "tsx"]));
  out.push(`- Load average (1 min) at the start and the end: ${run.loadStart.toFixed(2)} and ${run.loadEnd.toFixed(2)}`, "");
  out.push(
    "Every party is its own process (the hub too, so that its memory is its own), all on unix sockets, and every " +
      "connection passes the secret handshake (authentication only, no box-stream: the default on unix sockets). " +
      "`npm run bench` has the engine's own figures without a handshake.",
    "",
  );
  if (calls !== undefined) {
    out.push("### Calls A → B", "", ...renderCalls(calls), "");
    out.push(
      "A and B are the `Bench` client and server (bench/schema/bench.capnp). A runs bench/lib/client.ts's " +
        `figures (a), one call at a time, and (b), ${INFLIGHT} calls kept in flight, for ${opts.seconds} s each after a ` +
        `${warmupSeconds(opts.seconds)} s warm-up, a new A process (and identity) each time, the two rows taking turns ` +
        `after one uncounted run of each (the hub and B are fresh processes); ` +
        `median of ${opts.repeat} run(s); µs/call is 10^6 ÷ calls/s. Through the hub, B is a plugin (\`joinMesh({ name })\`) ` +
        "and A takes its capability from `connect(name)`, so the hub forwards every call and return " +
        `(it counted ${calls.forwardedCalls.toLocaleString("en-US")} forwarded calls). ` +
        "Plain: B is `listen()` with an identity and A `connect()`s with its key. (N×) is the cost relative to the plain row.",
      "",
    );
    out.push(...renderCpu(calls), "");
    out.push(
      "CPU time per call: each process's `process.cpuUsage()` before and after each run, over all runs, divided by " +
        "the pings B answered (warm-ups included; A joining the mesh is in the hub's figure too). It hardly moves with " +
        "the machine's load, unlike the times above.",
      "",
    );
    out.push("### connect(name)", "", ...renderConnect(calls), "");
    out.push(
      `One client, one \`connect\` at a time, for ${Math.max(1, opts.seconds) / 2} s each after a warm-up; the capability ` +
        "is released after each. With `joinMesh`'s `connect(name)` the capability is usable at once (pipelined): " +
        "the first row is what a caller waits for before its first answer.",
      "",
    );
  }
  if (crowds.length > 0) {
    const first = crowds[0]!;
    const n = first.peers.toLocaleString("en-US");
    const mib = (bytes: number): string => `${fmt(bytes / 2 ** 20)} MiB`;
    out.push(`### A hub with ${n} idle peers`, "", ...renderHub(crowds, opts), "");
    out.push(
      `A fresh hub for each column. ${n} peers, each with its own identity and its own connection, in ` +
        `${first.processes} processes joining ${opts.concurrency} at a time each ` +
        "(`joinMesh({ name: \"idle.<i>\", provide: Bench.server(...) })`); the time runs from telling every process to " +
        `join until the last registration has returned, in ${JOIN_STEPS} steps (the identities are made beforehand). ` +
        "Memory is the hub process's `process.memoryUsage()` after full GCs; per peer is the least-squares slope over the " +
        "registrations, measured after each step, so that what the hub's first connections and its heap's start-up slack " +
        "cost once is left out. The hub's RSS and heap with one probe client connected, then with all the peers, then once " +
        "every peer watches: " +
        crowds.map((c) => `${mib(c.before.rss)}, ${mib(c.before.heapUsed)} → ${mib(c.after.rss)}, ${mib(c.after.heapUsed)} → ${mib(c.watching.rss)}, ${mib(c.watching.heapUsed)}`).join("; ") +
        `. \`list()\` from the probe, ${opts.listCalls} calls one at a time. Fan-out: while every peer watches, the ` +
        `probe registers a name ${first.fanout.lastUs.length} times (after a few warm-up registers) with the same ` +
        "info as the peers' (their schema too), and each watcher notes when it sees `joined` (CLOCK_MONOTONIC, which " +
        "the processes share).",
      "",
    );
    for (const c of crowds) {
      const rss = rssPerPeerKiB(c);
      const label = VARIANTS.find((v) => v.key === c.variant)!.label;
      out.push(`- hub RSS per idle peer under ${TARGET_RSS_PER_PEER_KIB} KiB, ${label}: ${rss < TARGET_RSS_PER_PEER_KIB ? "**met**" : "**not met**"}, ${fmt(rss)} KiB`);
    }
  }
  if (calls !== undefined && calls.failures.length > 0) out.push(...calls.failures.map((f) => `- failed run: ${f}`));
  out.push("");
  return out.join("\n");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const loadStart = os.loadavg()[0]!;
  const log = (line: string): void => console.log(line);
  console.log(
    `bench:mesh: calls ${opts.seconds} s × ${opts.repeat} | ${opts.peers} idle peers in ${opts.processes} processes, ` +
      `${opts.concurrency} joins at a time each | ${opts.trials} fan-out registers`,
  );
  let calls: CallResults | undefined;
  const crowds: CrowdResults[] = [];
  if (opts.parts.includes("calls")) {
    console.log("\n== calls A → B");
    calls = await measureCalls(opts, log);
  }
  if (opts.parts.includes("hub")) {
    console.log(`\n== a hub with ${opts.peers} idle peers`);
    for (const variant of opts.variants) {
      console.log(`-- ${VARIANTS.find((v) => v.key === variant)!.label}`);
      crowds.push(await measureCrowd(opts, variant, log));
    }
  }
  const section = renderSection(calls, crowds, opts, { argv, started, finished: new Date(), loadStart, loadEnd: os.loadavg()[0]! });
  console.log("\n" + section);
  if (opts.out !== undefined) {
    writeSection(opts.out, SECTION, section);
    console.log(`wrote the "${SECTION.slice(3)}" section of ${path.relative(process.cwd(), opts.out) || opts.out}`);
  } else {
    console.log("(a quick, partial or profiled run: results not written; pass --out FILE to keep them)");
  }
  cleanupAll();
}

await main();

// npm run bench -- [--systems a,b] [--figures seq,inflight,stream,chain]
//                  [--seconds N] [--repeat N] [--transport unix|tcp|both]
//                  [--no-pin] [--quick] [--out FILE]
//
// Runs every system's server and client as separate processes over a unix
// socket and/or TCP loopback, figure by figure, prints a table with each
// figure's cost relative to the raw floor, and writes bench/RESULTS.md.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FIGURES, warmupSeconds, type Figure } from "./lib/client.js";
import { median } from "./lib/stats.js";
import { listSystems, prepareSystem, type Commands, type Launch } from "./lib/systems.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FLOOR = "raw";
/** Figures also run with both processes pinned to one CPU. */
const PINNED_FIGURES: readonly Figure[] = ["seq", "chain"];

// ---------------------------------------------------------------- options

interface Options {
  systems: string[];
  figures: Figure[];
  seconds: number;
  repeat: number;
  transports: ("unix" | "tcp")[];
  pin: boolean;
  quick: boolean;
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench: ${message}\n`);
  process.stderr.write(
    "usage: npm run bench -- [--systems a,b] [--figures seq,inflight,stream,chain] [--seconds N]\n" +
      "                        [--repeat N] [--transport unix|tcp|both] [--no-pin] [--quick] [--out FILE]\n" +
      `systems: ${listSystems().join(", ")}\n`,
  );
  process.exit(message ? 2 : 0);
}

function parseOptions(argv: string[]): Options {
  const all = listSystems();
  let systems = all;
  let figures: Figure[] = [...FIGURES];
  let seconds: number | undefined;
  let repeat: number | undefined;
  let transport = "both";
  let pin = true;
  let quick = false;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--systems":
        systems = value().split(",").filter(Boolean);
        for (const s of systems) if (!all.includes(s)) usage(`unknown system "${s}"`);
        break;
      case "--figures":
        figures = value().split(",").filter(Boolean) as Figure[];
        for (const f of figures) if (!(FIGURES as readonly string[]).includes(f)) usage(`unknown figure "${f}"`);
        break;
      case "--seconds":
        seconds = Number(value());
        if (!(seconds > 0)) usage("--seconds wants a positive number");
        break;
      case "--repeat":
        repeat = Number(value());
        if (!Number.isInteger(repeat) || repeat < 1) usage("--repeat wants a positive integer");
        break;
      case "--transport":
        transport = value();
        if (!["unix", "tcp", "both"].includes(transport)) usage("--transport wants unix, tcp or both");
        break;
      case "--no-pin":
        pin = false;
        break;
      case "--quick":
        quick = true;
        break;
      case "--out":
        out = value();
        break;
      case "--help":
      case "-h":
        usage();
      default:
        usage(`unknown option "${arg}"`);
    }
  }
  if (systems.includes(FLOOR)) systems = [FLOOR, ...systems.filter((s) => s !== FLOOR)];
  return {
    systems,
    figures: FIGURES.filter((f) => figures.includes(f)),
    seconds: seconds ?? (quick ? 0.2 : 3),
    repeat: repeat ?? (quick ? 1 : 3),
    transports: transport === "both" ? ["unix", "tcp"] : [transport as "unix" | "tcp"],
    pin,
    quick,
    // A quick run is a smoke test: it does not overwrite the results unless asked.
    out: out ?? (quick ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- processes

const live = new Set<ChildProcess>();
let scratch: string | undefined;

function cleanup(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  live.clear();
  if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

/** Removes scratch and repository paths from text that goes into the results. */
function scrub(text: string): string {
  let t = text;
  if (scratch !== undefined) t = t.split(scratch).join("<tmp>");
  t = t.split(ROOT.replace(/\/$/, "")).join(".");
  return t.split(os.homedir()).join("~").replace(/\s+/g, " ").trim();
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function pinned(argv: readonly string[], pin: boolean): string[] {
  return pin ? ["taskset", "-c", "0", ...argv] : [...argv];
}

function tail(chunks: string[], max = 400): string {
  const text = chunks.join("");
  return text.length > max ? text.slice(-max) : text;
}

interface RunningServer {
  child: ChildProcess;
  address: string;
  stderr: string[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function startServer(cmd: Commands, address: string, pin: boolean): Promise<RunningServer> {
  const argv = pinned([...cmd.server, address], pin);
  // stdin stays open while the server should run: closing it is a stop request
  // that the C++ peer honours.
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  child.stdin!.on("error", () => undefined);
  const stderr: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr.push(d);
    if (stderr.length > 50) stderr.splice(0, stderr.length - 50);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      stopServer({ child, address, stderr });
      reject(new Error(`server did not print "listening" within 60 s ${tail(stderr)}`));
    }, 60_000);
    const onData = (d: string): void => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("listening "));
      if (line !== undefined) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        resolve({ child, address: line.slice("listening ".length).trim() || address, stderr });
      }
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      live.delete(child);
      clearTimeout(timer);
      reject(new Error(`server exited (${signal ?? code}) before listening: ${tail(stderr)}`));
    });
  });
}

function stopServer(server: RunningServer): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) {
    live.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 2000);
    child.once("exit", () => {
      clearTimeout(kill);
      live.delete(child);
      resolve();
    });
    child.stdin!.end();
    child.kill("SIGTERM");
  });
}

type Metrics = Record<string, number | null>;
type Outcome = { ok: true; metrics: Metrics; note?: string } | { ok: false; reason: string };

async function runClient(cmd: Commands, address: string, figure: Figure, seconds: number, pin: boolean): Promise<Outcome> {
  const argv = pinned([...cmd.client, address, figure, String(seconds)], pin);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout!.setEncoding("utf8").on("data", (d: string) => stdout.push(d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
  // Warm-up plus the measured time (twice for chain), plus start-up slack.
  const limit = (seconds * 2 + warmupSeconds(seconds) * 2) * 1000 + 45_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limit);
  const code = await new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(-1));
    child.once("close", (c) => resolve(c));
  });
  clearTimeout(timer);
  live.delete(child);
  if (timedOut) return { ok: false, reason: `timed out after ${Math.round(limit / 1000)} s` };
  const lines = stdout.join("").split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{"));
  let parsed: Record<string, unknown> | undefined;
  for (const line of lines.reverse()) {
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
      break;
    } catch {
      // not the JSON line
    }
  }
  if (parsed === undefined) {
    const why = tail(stderr, 300) || `exit code ${code}, no output`;
    return { ok: false, reason: scrub(why) };
  }
  if (typeof parsed.error === "string") return { ok: false, reason: scrub(parsed.error) };
  if (typeof parsed.unsupported === "string") return { ok: true, metrics: {}, note: parsed.unsupported };
  if (code !== 0) return { ok: false, reason: `exit code ${code}: ${scrub(tail(stderr, 200))}` };
  const metrics: Metrics = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === "number" || v === null) metrics[k] = v;
  }
  return { ok: true, metrics, note: typeof parsed.note === "string" ? parsed.note : undefined };
}

// ---------------------------------------------------------------- results

interface Cell {
  runs: Metrics[];
  failures: string[];
  notes: Set<string>;
}
interface Setting {
  key: string;
  title: string;
  transport: "unix" | "tcp";
  pin: boolean;
  figures: Figure[];
}
const results = new Map<string, Map<string, Map<Figure, Cell>>>(); // setting -> system -> figure
const unavailable = new Map<string, string>();

function cell(setting: string, system: string, figure: Figure): Cell {
  let bySystem = results.get(setting);
  if (!bySystem) results.set(setting, (bySystem = new Map()));
  let byFigure = bySystem.get(system);
  if (!byFigure) bySystem.set(system, (byFigure = new Map()));
  let c = byFigure.get(figure);
  if (!c) byFigure.set(figure, (c = { runs: [], failures: [], notes: new Set() }));
  return c;
}

interface Column {
  figure: Figure;
  metric: string;
  header: string;
  /** Higher is better (throughput) or lower is better (latency). */
  better: "higher" | "lower";
}
const COLUMNS: Column[] = [
  { figure: "seq", metric: "rps", header: "(a) seq calls/s", better: "higher" },
  { figure: "seq", metric: "p50us", header: "(a) p50 µs", better: "lower" },
  { figure: "seq", metric: "p99us", header: "(a) p99 µs", better: "lower" },
  { figure: "inflight", metric: "cps", header: "(b) 100 in flight calls/s", better: "higher" },
  { figure: "stream", metric: "mbps", header: "(c) stream MB/s", better: "higher" },
  { figure: "chain", metric: "pipelinedUs", header: "(d) chain pipelined µs", better: "lower" },
  { figure: "chain", metric: "awaitedUs", header: "(d) chain awaited µs", better: "lower" },
];

/** Median of the successful runs; null when the system reported n/a. */
function value(c: Cell | undefined, metric: string): number | null | undefined {
  if (c === undefined) return undefined;
  const values = c.runs.map((r) => r[metric]).filter((v): v is number => typeof v === "number");
  if (values.length > 0) return median(values);
  if (c.runs.some((r) => r[metric] === null || !(metric in r))) return null;
  return undefined;
}

function fmt(v: number): string {
  if (v >= 100) return Math.round(v).toLocaleString("en-US");
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

// "system: text" -> figures it applies to, to print each note once.
const notes = new Map<string, { system: string; text: string; figures: Set<Figure> }>();

function renderNotes(): string[] {
  return [...notes.values()].map((n) => `${n.system} (${[...n.figures].join(", ")}): ${n.text}`);
}

function renderTable(setting: Setting, systems: string[]): string {
  const cols = COLUMNS.filter((c) => setting.figures.includes(c.figure));
  const lines: string[] = [];
  const note = (system: string, figure: Figure, text: string): void => {
    const key = `${system}\u0000${text}`;
    let n = notes.get(key);
    if (!n) notes.set(key, (n = { system, text, figures: new Set() }));
    n.figures.add(figure);
  };
  const dashes = (n: number): string => Array.from({ length: n }, () => " — |").join("");
  lines.push(`| system | ${cols.map((c) => c.header).join(" | ")} |`);
  lines.push(`|---|${cols.map(() => "---:").join("|")}|`);
  const bySystem = results.get(setting.key);
  for (const system of systems) {
    const why = unavailable.get(system);
    if (why !== undefined) {
      lines.push(`| ${system} | ${why} |${dashes(cols.length - 1)}`);
      continue;
    }
    const row = bySystem?.get(system);
    for (const figure of setting.figures) {
      const c = row?.get(figure);
      if (c === undefined) continue;
      for (const n of c.notes) note(system, figure, n);
      if (c.failures.length > 0) {
        const distinct = [...new Set(c.failures)].join(" / ");
        const total = c.failures.length + c.runs.length;
        note(system, figure, c.runs.length > 0 ? `${c.failures.length} of ${total} runs failed: ${distinct}` : `failed: ${distinct}`);
      }
    }
    const failedReasons = setting.figures.map((f) => {
      const c = row?.get(f);
      return c !== undefined && c.runs.length === 0 ? (c.failures[0] ?? "no result") : undefined;
    });
    if (failedReasons.every((r) => r !== undefined) && new Set(failedReasons).size === 1) {
      // Every figure failed the same way: say it once.
      lines.push(`| ${system} | failed: ${failedReasons[0]!.slice(0, 160)} |${dashes(cols.length - 1)}`);
      continue;
    }
    const cells: string[] = [];
    const reported = new Set<Figure>();
    for (const col of cols) {
      const c = row?.get(col.figure);
      if (c === undefined) {
        cells.push("—");
        continue;
      }
      if (c.runs.length === 0) {
        cells.push(reported.has(col.figure) ? "″" : `failed: ${(c.failures[0] ?? "no result").slice(0, 90)}`);
        reported.add(col.figure);
        continue;
      }
      const v = value(c, col.metric);
      if (v === null || v === undefined) {
        cells.push("n/a");
        continue;
      }
      let text = fmt(v);
      const floor = value(bySystem?.get(FLOOR)?.get(col.figure), col.metric);
      if (system !== FLOOR && typeof floor === "number" && floor > 0 && v > 0) {
        const cost = col.better === "higher" ? floor / v : v / floor;
        text += ` (${cost < 1 ? cost.toPrecision(2) : cost.toFixed(1)}×)`;
      }
      cells.push(text);
    }
    lines.push(`| ${system} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

function machineFacts(): string[] {
  let cpu = "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1]!.trim();
  } catch {
    // no /proc
  }
  let nproc = String(os.availableParallelism());
  try {
    nproc = execFileSync("nproc", { encoding: "utf8" }).trim();
  } catch {
    // keep Node's count
  }
  let capnp = "not installed";
  try {
    capnp = execFileSync("capnp", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    // none
  }
  const version = (pkg: string): string => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;
    } catch {
      return "not installed";
    }
  };
  return [
    `- CPU: ${cpu}, nproc ${nproc}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    `- OS: ${os.type()} ${os.release()}`,
    `- Node ${process.version}; ${capnp}`,
    `- capnweb ${version("capnweb")}, @grpc/grpc-js ${version("@grpc/grpc-js")}, vscode-jsonrpc ${version("vscode-jsonrpc")}, ` +
      `capnp-es ${version("capnp-es")}, capnp-ts ${version("capnp-ts")}`,
  ];
}

function commandLine(argv: string[]): string {
  const args = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
  if (process.env.npm_lifecycle_event === "bench") return args ? `npm run bench -- ${args}` : "npm run bench";
  return `npx tsx bench/run.ts ${args}`.trim();
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const canPin = opts.pin && hasTaskset();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "capmesh-bench-"));

  const settings: Setting[] = [];
  for (const transport of opts.transports) {
    settings.push({ key: transport, title: `${transport === "unix" ? "unix socket" : "TCP loopback"}`, transport, pin: false, figures: opts.figures });
  }
  const pinFigures = opts.figures.filter((f) => PINNED_FIGURES.includes(f));
  if (canPin && pinFigures.length > 0) {
    for (const transport of opts.transports) {
      settings.push({
        key: `${transport}-pinned`,
        title: `${transport === "unix" ? "unix socket" : "TCP loopback"}, both processes pinned to CPU 0 (taskset -c 0)`,
        transport,
        pin: true,
        figures: pinFigures,
      });
    }
  }

  console.log(`bench: ${opts.systems.join(", ")} | figures ${opts.figures.join(", ")} | ${opts.seconds} s × ${opts.repeat} | ${opts.transports.join(" + ")}${canPin ? " | pinned runs of " + pinFigures.join(", ") : opts.pin ? " | taskset missing: no pinned runs" : ""}`);

  const launches = new Map<string, Launch>();
  for (const system of opts.systems) {
    const launch = await prepareSystem(system);
    launches.set(system, launch);
    if ("unavailable" in launch) {
      unavailable.set(system, scrub(launch.unavailable));
      console.log(`  ${system}: ${scrub(launch.unavailable)}`);
    }
  }

  for (const setting of settings) {
    console.log(`\n== ${setting.title}`);
    for (const system of opts.systems) {
      const launch = launches.get(system)!;
      if ("unavailable" in launch) continue;
      const address = async (): Promise<string> =>
        setting.transport === "unix" ? `unix:${path.join(scratch!, `${system}.sock`)}` : `127.0.0.1:${await freePort()}`;
      let server: RunningServer | undefined;
      let serverFailure: string | undefined;
      const ensureServer = async (): Promise<RunningServer | undefined> => {
        if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) return server;
        if (server !== undefined) await stopServer(server);
        try {
          server = await startServer(launch, await address(), setting.pin);
          serverFailure = undefined;
          return server;
        } catch (err) {
          server = undefined;
          serverFailure = `server: ${scrub(err instanceof Error ? err.message : String(err))}`;
          return undefined;
        }
      };
      for (const figure of setting.figures) {
        const c = cell(setting.key, system, figure);
        for (let r = 0; r < opts.repeat; r++) {
          const s = await ensureServer();
          let outcome: Outcome;
          if (s === undefined) outcome = { ok: false, reason: serverFailure ?? "server did not start" };
          else {
            outcome = await runClient(launch, s.address, figure, opts.seconds, setting.pin);
            if (!outcome.ok && (s.child.exitCode !== null || s.child.signalCode !== null)) {
              const why = scrub(tail(s.stderr, 200));
              outcome = { ok: false, reason: `${outcome.reason} (server died${why ? ": " + why : ""})` };
            }
          }
          if (launch.note !== undefined) c.notes.add(launch.note);
          if (outcome.ok) {
            c.runs.push(outcome.metrics);
            if (outcome.note) for (const n of outcome.note.split("; ")) c.notes.add(n);
          } else {
            c.failures.push(outcome.reason);
          }
          const shown = outcome.ok
            ? Object.entries(outcome.metrics).map(([k, v]) => `${k}=${v === null ? "n/a" : v}`).join(" ")
            : `failed: ${outcome.reason}`;
          console.log(`  ${system.padEnd(15)} ${figure.padEnd(9)} #${r + 1}  ${shown}`);
        }
      }
      if (server !== undefined) await stopServer(server);
    }
  }

  const finished = new Date();
  const out: string[] = [];
  out.push("# capmesh benchmark results", "");
  out.push(`Run ${started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((finished.getTime() - started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(argv), "```", "");
  out.push(...machineFacts(), "");
  out.push(
    `Each client and server is its own process. Figures: (a) sequential ping(n) → n; (b) ${100} calls kept in flight; ` +
      `(c) 64 KiB chunks streamed to a sink, MB = 10^6 bytes; (d) 10 dependent next() calls, each on the capability the previous one returned, ` +
      `then a ping — pipelined (no awaits) and awaited, median µs per chain. ` +
      `${opts.seconds} s per measurement after a ${warmupSeconds(opts.seconds)} s warm-up; median of ${opts.repeat} run(s). ` +
      `(N×) is the cost relative to the raw floor in the same table: floor ÷ value for throughput, value ÷ floor for latency; ` +
      `below 1× means faster than the floor, which is itself a Node process. ` +
      `Unpinned runs leave placement to the scheduler: a ping-pong pair may share a CPU or not, and on a small VM ` +
      `round trips can differ several-fold between the two, so single runs of (a) and (d) are noisy; the pinned tables are the steadier ones.`,
    "",
  );
  for (const setting of settings) {
    out.push(`## ${setting.title}`, "", renderTable(setting, opts.systems), "");
  }
  const distinctNotes = renderNotes();
  if (distinctNotes.length > 0 || unavailable.size > 0) {
    out.push("## Notes", "");
    for (const [system, why] of unavailable) out.push(`- ${system}: ${why}`);
    for (const n of distinctNotes) out.push(`- ${n}`);
    out.push("");
  }
  const markdown = out.join("\n");
  console.log("\n" + markdown);
  if (opts.out !== undefined) {
    fs.writeFileSync(opts.out, markdown);
    console.log(`wrote ${path.relative(process.cwd(), opts.out) || opts.out}`);
  } else {
    console.log("(--quick: results not written; pass --out FILE to keep them)");
  }
  cleanup();
}

await main();

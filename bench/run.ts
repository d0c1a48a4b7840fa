// npm run bench -- [--systems a,b] [--figures seq,inflight,stream,chain]
//                  [--seconds N] [--repeat N] [--transport unix|tcp|both]
//                  [--no-pin] [--quick] [--out FILE]
//
// Runs every system's server and client as separate processes over a unix
// socket and/or TCP loopback, figure by figure, prints a table with each
// figure's cost relative to the raw floor, and writes bench/RESULTS.md.
import path from "node:path";
import { FIGURES, warmupSeconds, type Figure } from "./lib/client.js";
import { median } from "./lib/stats.js";
import { listSystems, prepareSystem, type Commands, type Launch } from "./lib/systems.js";
import { commonFlags, eachFlag, takeCommonFlag, transportsOf, listFlag } from "./lib/cli.js";
import {
  ROOT,
  cleanupAll,
  explainFailure,
  freePort,
  hasTaskset,
  runClientProcess,
  scratchDir,
  scrub,
  serverAlive,
  startServer,
  stopServer,
  type Metrics,
  type Outcome,
  type RunningServer,
} from "./lib/processes.js";
import { commandLine, fmt, machineFacts, publish, relative, sectionOf } from "./lib/report.js";

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
  let pin = true;
  const common = commonFlags();
  eachFlag(argv, usage, (flag, value, arg) => {
    if (takeCommonFlag(common, flag, value, usage)) return;
    switch (flag) {
      case "--systems":
        systems = value().split(",").filter(Boolean);
        for (const s of systems) if (!all.includes(s)) usage(`unknown system "${s}"`);
        break;
      case "--figures":
        figures = listFlag(value(), FIGURES, "figure", usage);
        break;
      case "--no-pin":
        pin = false;
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  if (systems.includes(FLOOR)) systems = [FLOOR, ...systems.filter((s) => s !== FLOOR)];
  return {
    systems,
    figures: FIGURES.filter((f) => figures.includes(f)),
    seconds: common.seconds ?? (common.quick ? 0.2 : 3),
    repeat: common.repeat ?? (common.quick ? 1 : 3),
    transports: transportsOf(common),
    pin,
    quick: common.quick,
    // A quick run is a smoke test: it does not overwrite the results unless asked.
    out: common.out ?? (common.quick ? undefined : path.join(ROOT, "bench", "RESULTS.md")),
  };
}

// ---------------------------------------------------------------- processes

/** Runs a client for one figure; gives up after warm-up, measurement (twice for chain) and start-up slack. */
function runClient(launch: Commands, address: string, figure: Figure, seconds: number, pin: boolean): Promise<Outcome> {
  const limit = (seconds * 2 + warmupSeconds(seconds) * 2) * 1000 + 45_000;
  return runClientProcess([...launch.client, address, figure, String(seconds)], limit, pin);
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
        text += relative(cost);
      }
      cells.push(text);
    }
    lines.push(`| ${system} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const canPin = opts.pin && hasTaskset();
  const scratch = scratchDir();

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
        setting.transport === "unix" ? `unix:${path.join(scratch, `${system}.sock`)}` : `127.0.0.1:${await freePort()}`;
      let server: RunningServer | undefined;
      let serverFailure: string | undefined;
      const ensureServer = async (): Promise<RunningServer | undefined> => {
        if (server !== undefined && serverAlive(server)) return server;
        if (server !== undefined) await stopServer(server);
        try {
          server = await startServer(launch.server, await address(), setting.pin);
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
            outcome = explainFailure(await runClient(launch, s.address, figure, opts.seconds, setting.pin), s);
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
  out.push("```", commandLine(argv, "bench", "bench/run.ts"), "```", "");
  out.push(...machineFacts(["capnweb", "@grpc/grpc-js", "vscode-jsonrpc", "capnp-es", "capnp-ts"]), "");
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
  // `npm run bench:mesh`, `bench:direct`, `bench:engine` and `bench:memory` keep their own sections in the same file.
  for (const heading of ["## Mesh", "## Direct paths", "## Engine calls, closures and streams (issue 13)", "## Memory"]) {
    const kept = opts.out !== undefined ? sectionOf(opts.out, heading) : "";
    if (kept !== "") out.push(kept);
  }
  publish(out.join("\n"), opts.out);
  cleanupAll();
}

await main();

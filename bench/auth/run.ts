// npm run bench:auth -- [--figures connect,box] [--systems floor,capmesh,capmesh-plain,ssb]
//                       [--seconds N] [--mib N] [--repeat N] [--transport unix|tcp|both]
//                       [--quick] [--out FILE]
//
// The cost of capmesh's security layer (issue 3), each server and client in
// its own process: new connections per second (dial + handshake + first
// round trip) on unix and TCP loopback, and box-stream MB/s on TCP loopback,
// beside a bare socket and beside SSB's own secret-handshake and
// pull-box-stream in the same run. Writes bench/RESULTS-auth.md.
import path from "node:path";
import { commonFlags, eachFlag, positiveNumber, takeCommonFlag, transportsOf, listFlag } from "../lib/cli.js";
import {
  ROOT,
  cleanupAll,
  explainFailure,
  freePort,
  runClientProcess,
  scratchDir,
  scrub,
  serverAlive,
  startServer,
  stopServer,
  type Metrics,
  type RunningServer,
} from "../lib/processes.js";
import { commandLine, fmt, machineFacts, publish, relative } from "../lib/report.js";
import { median } from "../lib/stats.js";
import { tsxCommand } from "../lib/systems.js";
import { AUTH_FIGURES, BOX_CHUNK, connectWarmupSeconds, type AuthFigure } from "./harness.js";
import { ROWS, TARGET_CONNECT_US, rowLabel, type Row, type Transport } from "./rows.js";

const SYSTEMS_DIR = path.join(ROOT, "bench", "auth", "systems");

// ---------------------------------------------------------------- options

interface Options {
  figures: AuthFigure[];
  rows: Row[];
  seconds: number;
  mib: number;
  repeat: number;
  transports: Transport[];
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:auth: ${message}\n`);
  process.stderr.write(
    "usage: npm run bench:auth -- [--figures connect,box] [--systems a,b] [--seconds N] [--mib N]\n" +
      "                             [--repeat N] [--transport unix|tcp|both] [--quick] [--out FILE]\n" +
      `systems: ${ROWS.map((r) => r.key).join(", ")}\n`,
  );
  process.exit(message ? 2 : 0);
}

function parseOptions(argv: string[]): Options {
  let figures: AuthFigure[] = [...AUTH_FIGURES];
  let rows = ROWS;
  let mib: number | undefined;
  const common = commonFlags();
  eachFlag(argv, usage, (flag, value, arg) => {
    if (takeCommonFlag(common, flag, value, usage)) return;
    switch (flag) {
      case "--figures":
        figures = listFlag(value(), AUTH_FIGURES, "figure", usage);
        break;
      case "--systems": {
        const keys = value().split(",").filter(Boolean);
        for (const k of keys) if (!ROWS.some((r) => r.key === k)) usage(`unknown system "${k}"`);
        rows = ROWS.filter((r) => r.key === "floor" || keys.includes(r.key));
        break;
      }
      case "--mib":
        mib = positiveNumber(value(), flag, usage);
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  return {
    figures: AUTH_FIGURES.filter((f) => figures.includes(f)),
    rows,
    seconds: common.seconds ?? (common.quick ? 0.3 : 2),
    mib: mib ?? (common.quick ? 16 : 256),
    // Five: on a small VM one run in a few lands on an unlucky CPU placement
    // and is far slower; the median of five shrugs that off.
    repeat: common.repeat ?? (common.quick ? 1 : 5),
    transports: transportsOf(common),
    // A quick run is a smoke test: it does not overwrite the results unless asked.
    out: common.out ?? (common.quick ? undefined : path.join(ROOT, "bench", "RESULTS-auth.md")),
  };
}

// ---------------------------------------------------------------- running

interface Setting {
  figure: AuthFigure;
  transport: Transport;
  title: string;
}

interface Cell {
  runs: Metrics[];
  failures: string[];
  notes: Set<string>;
}

function settingsOf(opts: Options): Setting[] {
  const settings: Setting[] = [];
  if (opts.figures.includes("connect")) {
    for (const transport of opts.transports) {
      settings.push({ figure: "connect", transport, title: `Connect: ${transport === "unix" ? "unix socket" : "TCP loopback"}` });
    }
  }
  // Box-stream exists for TCP: unix connections are not encrypted by default.
  if (opts.figures.includes("box")) settings.push({ figure: "box", transport: "tcp", title: "box-stream throughput: TCP loopback" });
  return settings;
}

function serverArgv(row: Row, figure: AuthFigure): string[] {
  return [...tsxCommand(path.join(SYSTEMS_DIR, row.dir, "server.ts")), figure, ...row.options];
}

/** The client's argv and how long it may take (its own watchdog plus start-up slack). */
function clientRun(row: Row, figure: AuthFigure, address: string, opts: Options): [string[], number] {
  const amount = figure === "connect" ? opts.seconds : opts.mib;
  const argv = [...tsxCommand(path.join(SYSTEMS_DIR, row.dir, "client.ts")), ...row.options, address, figure, String(amount)];
  const seconds = figure === "connect" ? amount * 3 + connectWarmupSeconds(amount) + 30 : amount / 10 + 30;
  return [argv, (seconds + 30) * 1000];
}

async function measure(setting: Setting, opts: Options, log: (line: string) => void): Promise<Map<string, Cell>> {
  const rows = opts.rows.filter((r) => r.figures.includes(setting.figure));
  const cells = new Map<string, Cell>(rows.map((r) => [r.key, { runs: [], failures: [], notes: new Set<string>() }]));
  const servers = new Map<string, RunningServer>();
  const serverFailures = new Map<string, string>();
  const ensureServer = async (row: Row): Promise<RunningServer | undefined> => {
    const running = servers.get(row.key);
    if (running !== undefined && serverAlive(running)) return running;
    if (running !== undefined) await stopServer(running);
    const address =
      setting.transport === "unix" ? `unix:${path.join(scratchDir(), `${row.key}.sock`)}` : `127.0.0.1:${await freePort()}`;
    try {
      const server = await startServer(serverArgv(row, setting.figure), address, false);
      servers.set(row.key, server);
      return server;
    } catch (err) {
      servers.delete(row.key);
      serverFailures.set(row.key, `server: ${scrub(err instanceof Error ? err.message : String(err))}`);
      return undefined;
    }
  };
  try {
    // Round robin over the systems, so that a burst of load from elsewhere
    // on the machine spreads over all of them rather than hitting one.
    for (let r = 0; r < opts.repeat; r++) {
      for (const row of rows) {
        const c = cells.get(row.key)!;
        const server = await ensureServer(row);
        if (server === undefined) {
          c.failures.push(serverFailures.get(row.key) ?? "server did not start");
          continue;
        }
        const [argv, limit] = clientRun(row, setting.figure, server.address, opts);
        const outcome = explainFailure(await runClientProcess(argv, limit, false), server);
        if (outcome.ok) {
          c.runs.push(outcome.metrics);
          if (outcome.note) c.notes.add(outcome.note);
        } else {
          c.failures.push(outcome.reason);
        }
        const shown = outcome.ok ? Object.entries(outcome.metrics).map(([k, v]) => `${k}=${v}`).join(" ") : `failed: ${outcome.reason}`;
        log(`  ${row.key.padEnd(14)} #${r + 1}  ${shown}`);
      }
    }
  } finally {
    await Promise.all([...servers.values()].map(stopServer));
  }
  return cells;
}

// ---------------------------------------------------------------- results

interface Column {
  metric: string;
  header: string;
  better: "higher" | "lower";
}
const COLUMNS: Record<AuthFigure, Column[]> = {
  connect: [
    { metric: "p50us", header: "median µs", better: "lower" },
    { metric: "p99us", header: "p99 µs", better: "lower" },
    { metric: "cps", header: "connections/s", better: "higher" },
  ],
  box: [{ metric: "mbps", header: "MB/s", better: "higher" }],
};

function value(c: Cell | undefined, metric: string): number | undefined {
  const values = (c?.runs ?? []).map((r) => r[metric]).filter((v): v is number => typeof v === "number");
  return values.length > 0 ? median(values) : undefined;
}

function renderTable(setting: Setting, cells: Map<string, Cell>, opts: Options): string {
  const cols = COLUMNS[setting.figure];
  const floor = cells.get("floor");
  const lines = [`| system | ${cols.map((c) => c.header).join(" | ")} |`, `|---|${cols.map(() => "---:").join("|")}|`];
  for (const row of opts.rows) {
    const c = cells.get(row.key);
    if (c === undefined) continue;
    const label = rowLabel(row, setting.figure, setting.transport);
    if (c.runs.length === 0) {
      lines.push(`| ${label} | failed: ${(c.failures[0] ?? "no result").slice(0, 160)} |${" — |".repeat(cols.length - 1)}`);
      continue;
    }
    const cellsText = cols.map((col) => {
      const v = value(c, col.metric);
      if (v === undefined) return "n/a";
      const f = value(floor, col.metric);
      const cost = row.key === "floor" || f === undefined || !(f > 0 && v > 0) ? "" : relative(col.better === "higher" ? f / v : v / f);
      return fmt(v) + cost;
    });
    lines.push(`| ${label} | ${cellsText.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** Each target of issue 3, met or not, with the numbers behind it. */
function renderTargets(results: Map<Setting, Map<string, Cell>>): string[] {
  const lines: string[] = [];
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  for (const [setting, cells] of results) {
    const ours = value(cells.get("capmesh"), setting.figure === "connect" ? "p50us" : "mbps");
    const ssb = value(cells.get("ssb"), setting.figure === "connect" ? "p50us" : "mbps");
    if (ours === undefined) continue;
    if (setting.figure === "connect") {
      const where = setting.transport === "unix" ? "unix" : "TCP";
      lines.push(
        `- connect + handshake + first call under ${fmt(TARGET_CONNECT_US)} µs median (${where}): ` +
          `${ours < TARGET_CONNECT_US ? "**met**" : "**not met**"}, ${fmt(ours)} µs (${ratio(ours, TARGET_CONNECT_US)} the target)`,
      );
      if (ssb !== undefined) {
        lines.push(
          `- faster than secret-handshake (${where}): ${ours < ssb ? "**met**" : "**not met**"}, ` +
            `${fmt(ours)} µs against ${fmt(ssb)} µs (${ratio(ours, ssb)} its time)`,
        );
      }
    } else if (ssb !== undefined) {
      lines.push(
        `- box-stream not slower than pull-box-stream: ${ours >= ssb ? "**met**" : "**not met**"}, ` +
          `${fmt(ours)} MB/s against ${fmt(ssb)} MB/s (${ratio(ours, ssb)} its throughput)`,
      );
    }
  }
  return lines;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const settings = settingsOf(opts);
  console.log(
    `bench:auth: ${opts.rows.map((r) => r.key).join(", ")} | connect ${opts.seconds} s, box ${opts.mib} MiB | ` +
      `median of ${opts.repeat} | ${opts.transports.join(" + ")}`,
  );
  const results = new Map<Setting, Map<string, Cell>>();
  for (const setting of settings) {
    console.log(`\n== ${setting.title}`);
    results.set(setting, await measure(setting, opts, (line) => console.log(line)));
  }

  const finished = new Date();
  const out: string[] = ["# capmesh auth benchmark results", ""];
  out.push(`Run ${started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((finished.getTime() - started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(argv, "bench:auth", "bench/auth/run.ts"), "```", "");
  out.push(
    ...machineFacts(["secret-handshake", "pull-box-stream", "chloride", "sodium-native", "@noble/ciphers", "@noble/curves", "@noble/ed25519"]),
    "",
  );
  out.push(
    `Each client and server is its own process; the systems take turns, run by run. ` +
      `Connect: one new connection at a time for ${opts.seconds} s after a ${connectWarmupSeconds(opts.seconds)} s warm-up (connection set-up code runs once per connection, and V8 needs seconds of connections to optimise it); ` +
      `the latency is dial → handshake → first reply, connections/s also counts the close. ` +
      `Box-stream: ${opts.mib} MiB in ${BOX_CHUNK / 1024} KiB writes one way over TCP loopback, timed until the server ` +
      `reports the byte count back, after a warm-up of an eighth of that on another connection; MB = 10^6 bytes; ` +
      `fixed test keys (bench/auth/keys.ts), not a handshake, since only the stream is measured. ` +
      `Median of ${opts.repeat} run(s). (N×) is the cost relative to the floor in the same table: ` +
      `value ÷ floor for latency, floor ÷ value for throughput.`,
    "",
  );
  for (const [setting, cells] of results) out.push(`## ${setting.title}`, "", renderTable(setting, cells, opts), "");
  const targets = renderTargets(results);
  if (targets.length > 0) out.push("## Targets (issue 3)", "", ...targets, "");
  // "system: text" -> where it applies, to say each note once.
  const notes = new Map<string, Set<string>>();
  const note = (key: string, where: string, text: string): void => {
    const k = `${key}: ${text}`;
    notes.set(k, (notes.get(k) ?? new Set()).add(where));
  };
  for (const [setting, cells] of results) {
    for (const [key, c] of cells) {
      for (const n of c.notes) note(key, setting.figure, n);
      if (c.failures.length > 0 && c.runs.length > 0) {
        note(key, setting.title, `${c.failures.length} of ${c.failures.length + c.runs.length} runs failed: ${[...new Set(c.failures)].join(" / ")}`);
      }
    }
  }
  out.push(
    "## Notes",
    "",
    ...opts.rows.map((r) => `- ${r.key}: ${r.description}`),
    ...[...notes].map(([text, where]) => `- ${text} (${[...where].join(", ")})`),
    "",
  );
  publish(out.join("\n"), opts.out);
  cleanupAll();
}

await main();

// npm run bench:messages -- [--sizes 1,8,64] [--shapes blob,words,tree] [--systems capmesh,cpp]
//                           [--repeat N] [--limit S] [--quick] [--out FILE]
//
// How long it takes to build and to read Cap'n Proto messages of 1, 8 and
// 64 MiB, flat (one Data, one List(UInt64)) and as a tree of small structs:
// capmesh's generated codecs (worker.ts) beside the C++ reference
// (peers/cpp/message-bench.c++). Both should grow linearly with the size, so
// the tables show ns per byte for every size. Each (shape, size, system) runs
// in a process of its own, which is killed when one run takes longer than the
// limit: "> N s (stopped)". Writes bench/RESULTS-messages.md.
import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { eachFlag, positiveInteger, positiveNumber, listFlag } from "../lib/cli.js";
import { ROOT, scrub, tail } from "../lib/processes.js";
import { commandLine, fmt, machineFacts, publish, sourceState } from "../lib/report.js";
import { median } from "../lib/stats.js";
import { buildMessageBench } from "./cpp.js";
import { countFor, SHAPE_TEXT, SHAPES, type Shape } from "./params.js";

const SYSTEMS = ["capmesh", "cpp"] as const;
type System = (typeof SYSTEMS)[number];
const SYSTEM_NAME: Record<System, string> = { capmesh: "capmesh", cpp: "C++" };
const OPS = ["build", "read"] as const;
/** capmesh also builds into one segment allocated up front (no growth at all), for the linearity table. */
type Op = (typeof OPS)[number] | "presized";

/** Set-up (making the input, a warm-up, the read input) may take this long before the first run. */
const SETUP_LIMIT_S = 300;

// ---------------------------------------------------------------- options

interface Options {
  sizes: number[];
  shapes: Shape[];
  systems: System[];
  repeat: number;
  limit: number;
  quick: boolean;
  out: string | undefined;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench:messages: ${message}\n`);
  process.stderr.write(
    "usage: npm run bench:messages -- [--sizes 1,8,64] [--shapes blob,words,tree] [--systems capmesh,cpp]\n" +
      "                                 [--repeat N] [--limit S] [--quick] [--out FILE]\n",
  );
  process.exit(message ? 2 : 0);
}

/** A list flag's items in `known`'s order (the tables' order). */
function list<T extends string>(text: string, known: readonly T[], what: string): T[] {
  const items = listFlag(text, known, what, usage);
  return known.filter((k) => items.includes(k));
}

function parseOptions(argv: string[]): Options {
  let sizes: number[] | undefined;
  let shapes: Shape[] = [...SHAPES];
  let systems: System[] = [...SYSTEMS];
  let repeat: number | undefined;
  let limit: number | undefined;
  let quick = false;
  let out: string | undefined;
  eachFlag(argv, usage, (flag, value, arg) => {
    switch (flag) {
      case "--sizes":
        sizes = value().split(",").filter(Boolean).map((s) => positiveNumber(s, flag, usage));
        break;
      case "--shapes":
        shapes = list(value(), SHAPES, "shape");
        break;
      case "--systems":
        systems = list(value(), SYSTEMS, "system");
        break;
      case "--repeat":
        repeat = positiveInteger(value(), flag, usage);
        break;
      case "--limit":
        limit = positiveNumber(value(), flag, usage);
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
        break;
      default:
        usage(`unknown option "${arg}"`);
    }
  });
  return {
    sizes: [...new Set(sizes ?? (quick ? [1, 8] : [1, 8, 64]))].sort((a, b) => a - b),
    shapes,
    systems,
    repeat: repeat ?? (quick ? 1 : 3),
    limit: limit ?? (quick ? 5 : 20),
    quick,
    // A quick run is a smoke test: it does not overwrite the results unless asked.
    out: out ?? (quick ? undefined : path.join(ROOT, "bench", "RESULTS-messages.md")),
  };
}

// ---------------------------------------------------------------- results

interface Measurement {
  runs: number[];
  /** Of each run, the time in GC pauses (capmesh only). */
  gc: number[];
  /** The run that went past the limit and was killed. */
  stoppedRun?: number;
}

interface Cell {
  /** Size of the message the program reads (its flat bytes, segment table included). */
  bytes?: number;
  segments?: number;
  /** What a build made, when that differs from the message read. */
  built?: { bytes: number; segments: number; same: boolean };
  build: Measurement;
  read: Measurement;
  presized: Measurement;
  failure?: string;
}

const cells = new Map<string, Cell>();
const key = (shape: Shape, size: number, system: System): string => `${shape}/${size}/${system}`;

function cellOf(shape: Shape, size: number, system: System): Cell {
  let c = cells.get(key(shape, size, system));
  if (!c) cells.set(key(shape, size, system), (c = { build: { runs: [], gc: [] }, read: { runs: [], gc: [] }, presized: { runs: [], gc: [] } }));
  return c;
}

// ---------------------------------------------------------------- processes

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Runs one program to the end, handing each JSON line to `onLine`. A run
 * (from its `start` line) that takes longer than `limit` seconds, or a set-up
 * longer than SETUP_LIMIT_S, gets the process killed; `onStopped` learns which.
 */
function runProgram(
  argv: readonly string[],
  limit: number,
  onLine: (event: Record<string, unknown>) => void,
  onStopped: (op: Op | "setup", rep: number) => void,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    const stderr: string[] = [];
    let pending = "";
    let stopped = false;
    let current: { op: Op | "setup"; rep: number } = { op: "setup", rep: 0 };
    let timer: NodeJS.Timeout | undefined;
    const arm = (seconds: number): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stopped = true;
        onStopped(current.op, current.rep);
        child.kill("SIGKILL");
      }, seconds * 1000);
    };
    arm(SETUP_LIMIT_S);
    child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      pending += d;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const text = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!text.startsWith("{")) continue;
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(text) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (typeof event.start === "string") {
          current = { op: event.start as Op, rep: Number(event.rep) };
          arm(limit);
        } else if (typeof event.op === "string") {
          clearTimeout(timer);
        }
        onLine(event);
      }
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      live.delete(child);
      resolve(err.message);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (stopped || code === 0) resolve(undefined);
      else resolve(scrub(tail(stderr, 300)) || `exit ${code ?? signal}`);
    });
  });
}

// ---------------------------------------------------------------- formatting

const sizeText = (mib: number): string => `${mib} MiB`;

function duration(ns: number): string {
  if (ns < 1e6) return `${fmt(ns / 1e3)} µs`;
  return `${fmt(ns / 1e6)} ms`;
}

function perByte(nsPerByte: number): string {
  if (nsPerByte < 0.01) return "< 0.01 ns/B";
  return `${nsPerByte >= 10 ? fmt(nsPerByte) : nsPerByte.toPrecision(3)} ns/B`;
}

/** Median ns of a measurement; undefined when no run finished. */
function medianNs(m: Measurement): number | undefined {
  return m.runs.length > 0 ? median(m.runs) : undefined;
}

/** Median ns of the runs less their GC pauses; undefined without GC figures. */
function medianNsWithoutGc(m: Measurement): number | undefined {
  if (m.gc.length === 0 || m.gc.length !== m.runs.length) return undefined;
  return median(m.runs.map((ns, i) => ns - m.gc[i]!));
}

/** The cost of one thing relative to another: "(1.9×)", "(0.54×)", "(1,234×)". */
function times(ratio: number): string {
  return ` (${ratio < 1 ? ratio.toPrecision(2) : ratio < 100 ? ratio.toFixed(1) : fmt(ratio)}×)`;
}

function cellText(c: Cell | undefined, op: Op, limit: number, reference?: Cell): string {
  if (c === undefined) return "—";
  const m = c[op];
  const ns = medianNs(m);
  if (ns === undefined) {
    if (m.stoppedRun !== undefined) return `> ${limit} s (stopped)`;
    return c.failure !== undefined ? "failed" : "—";
  }
  let text = `${duration(ns)} · ${perByte(ns / c.bytes!)}`;
  const ref = reference === undefined ? undefined : medianNs(reference[op]);
  if (ref !== undefined && ref > 0 && reference !== c) text += times(ns / ref);
  const withoutGc = medianNsWithoutGc(m);
  const gcShare = withoutGc === undefined ? 0 : Math.round((100 * (ns - withoutGc)) / ns);
  if (gcShare >= 1) text += ` · GC ${gcShare}%`;
  return text;
}

/** ns/byte of a cell, or a lower bound (`stopped`) when its first run was stopped. */
function nsPerByteOf(c: Cell | undefined, op: Op, limit: number, withoutGc = false): { value: number; stopped: boolean } | undefined {
  if (c === undefined || c.bytes === undefined) return undefined;
  const ns = withoutGc ? medianNsWithoutGc(c[op]) : medianNs(c[op]);
  if (ns !== undefined) return { value: ns / c.bytes, stopped: false };
  if (c[op].stoppedRun !== undefined) return { value: (limit * 1e9) / c.bytes, stopped: true };
  return undefined;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseOptions(argv);
  const started = new Date();
  const source = sourceState();
  const loadStart = os.loadavg()[0]!.toFixed(2);

  console.log(
    `bench:messages: ${opts.shapes.join(", ")} | ${opts.sizes.map(sizeText).join(", ")} | ${opts.systems.map((s) => SYSTEM_NAME[s]).join(", ")} | ` +
      `median of ≥ ${opts.repeat} | ${opts.limit} s limit per run`,
  );
  for (const line of source) console.log(line.replace(/^- /, "  "));

  const launch = new Map<System, ((shape: Shape, count: number) => string[]) | string>();
  for (const system of opts.systems) {
    if (system === "capmesh") {
      const worker = path.join(ROOT, "bench", "messages", "worker.ts");
      launch.set(system, (shape, count) => [
        process.execPath, "--expose-gc", "--import", import.meta.resolve("tsx"), worker,
        shape, String(count), String(opts.repeat), String(opts.limit),
      ]);
    } else {
      const built = await buildMessageBench();
      if ("unavailable" in built) {
        launch.set(system, scrub(built.unavailable));
        console.log(`  C++: ${scrub(built.unavailable)}`);
      } else {
        launch.set(system, (shape, count) => [built.binary, shape, String(count), String(opts.repeat), String(opts.limit)]);
      }
    }
  }

  for (const shape of opts.shapes) {
    for (const size of opts.sizes) {
      const count = countFor(shape, size);
      for (const system of opts.systems) {
        const how = launch.get(system)!;
        if (typeof how === "string") continue;
        const c = cellOf(shape, size, system);
        const label = `${shape.padEnd(5)} ${sizeText(size).padStart(7)} ${SYSTEM_NAME[system].padEnd(7)}`;
        const failure = await runProgram(
          how(shape, count),
          opts.limit,
          (event) => {
            if (event.ready === true) {
              c.bytes = Number(event.bytes);
              c.segments = Number(event.segments);
            } else if (event.op === "build" || event.op === "read" || event.op === "presized") {
              const op = event.op;
              const ns = Number(event.ns);
              c[op].runs.push(ns);
              if (typeof event.gcNs === "number") c[op].gc.push(event.gcNs);
              if (op === "build" && typeof event.bytes === "number") {
                const built = { bytes: event.bytes, segments: Number(event.segments), same: event.same === true };
                if (built.bytes !== c.bytes || built.segments !== c.segments || !built.same) c.built = built;
              }
              const gcText = typeof event.gcNs === "number" && event.gcNs > 0 ? `  GC ${duration(event.gcNs)}` : "";
              console.log(`  ${label} ${op.padEnd(5)} #${String(event.rep).padEnd(2)} ${duration(ns).padStart(11)}  ${perByte(ns / (c.bytes ?? NaN))}${gcText}`);
            }
          },
          (op, rep) => {
            if (op === "setup") {
              c.failure = `set-up took longer than ${SETUP_LIMIT_S} s`;
            } else {
              c[op].stoppedRun = rep;
            }
            console.log(`  ${label} ${op.padEnd(5)} #${String(rep).padEnd(2)} > ${op === "setup" ? SETUP_LIMIT_S : opts.limit} s (stopped)`);
          },
        );
        if (failure !== undefined) {
          c.failure = failure;
          console.log(`  ${label} failed: ${failure}`);
        }
      }
    }
  }

  // ---------------------------------------------------------------- report
  const finished = new Date();
  const shown = opts.systems.filter((s) => typeof launch.get(s) !== "string");
  const ref = (shape: Shape, size: number): Cell | undefined =>
    shown.includes("cpp") ? cells.get(key(shape, size, "cpp")) : undefined;
  const out: string[] = [];
  out.push("# capmesh message build/read benchmark results", "");
  out.push(`Run ${started.toISOString().replace(/\.\d+Z$/, "Z")} (took ${Math.round((finished.getTime() - started.getTime()) / 1000)} s) with:`, "");
  out.push("```", commandLine(argv, "bench:messages", "bench/messages/run.ts"), "```", "");
  out.push(...machineFacts(["capnp-es"]), ...source, "");
  out.push(
    "Each cell: median time · ns per byte of the message (its flat bytes, segment table included). " +
      "capmesh's cells add (N×), capmesh's time ÷ C++'s, and the share of the time V8's garbage collector paused the run (GC N%, where 1% or more). " +
      "ns/byte stays flat as the size grows when the time is linear in it. " +
      `Median of at least ${opts.repeat} run(s) (more, up to ${opts.repeat * 10}, while the runs add up to under 0.5 s); ` +
      `a run that takes longer than ${opts.limit} s is killed: "> ${opts.limit} s (stopped)". ` +
      "Each shape, size and system runs in a process of its own.",
    "",
    "- **build**: capmesh: `writeMessage(codec, object)` and `message.toArrayBuffer()`, from plain objects made beforehand " +
      "(the codec generated from `bench/messages/shapes.capnp`, over `src/codec/runtime.ts`). C++: `MallocMessageBuilder` " +
      "(default options), every field set from arrays made beforehand, `messageToFlatArray`.",
    "- **read**: capmesh: `new Message(bytes, false)` with a 2 GiB traversal limit, then `readMessage(codec, message)`, " +
      "which decodes every field into plain objects (a Data field stays a view of the message's buffer). C++: " +
      "`FlatArrayMessageReader` (traversal limit 2^28 words) and every getter of every field; ids, values, list elements and " +
      "name bytes are summed and checked. `getData()` copies nothing, so reading the blob is constant-time in C++.",
    "- The garbage of one run is collected (capmesh: `gc()`) before the next, outside the clock. The message capmesh reads " +
      "is built beforehand into one segment allocated to size, so reads are measured even where building is too slow to wait for.",
    "",
    "Shapes:",
    "",
    ...opts.shapes.map((s) => `- **${s}**: ${SHAPE_TEXT[s]}`),
    "",
  );

  const header = ["shape", "size", `bytes (${shown.length > 0 ? SYSTEM_NAME[shown[0]!] : "—"})`, ...OPS.flatMap((op) => shown.map((s) => `${op} ${SYSTEM_NAME[s]}`))];
  out.push(`| ${header.join(" | ")} |`, `|---|---|${header.slice(2).map(() => "---:").join("|")}|`);
  for (const shape of opts.shapes) {
    for (const size of opts.sizes) {
      const bytes = shown.map((s) => cells.get(key(shape, size, s))?.bytes).find((b) => b !== undefined);
      const row = [shape, sizeText(size), bytes === undefined ? "—" : fmt(bytes)];
      for (const op of OPS) {
        for (const system of shown) row.push(cellText(cells.get(key(shape, size, system)), op, opts.limit, ref(shape, size)));
      }
      out.push(`| ${row.join(" | ")} |`);
    }
  }
  out.push("");

  if (opts.sizes.length > 1) {
    const steps = opts.sizes.slice(1).map((size, i) => ({ from: i, to: i + 1, text: `${sizeText(size)} ÷ ${sizeText(opts.sizes[i]!)}` }));
    out.push(
      "## Linearity: ns per byte at each size",
      "",
      "The same ns/byte at every size is linear. The last columns divide each size's figure by the one before it: about 1× " +
        "when the time is linear in the size, about the ratio of the sizes when it grows with their square. " +
        `"> " marks a lower bound from a stopped run (its limit ÷ the bytes). "capmesh without GC" (where GC took 5% or more ` +
        "at some size) leaves out the time V8's garbage collector paused the runs for (from its `gc` performance entries). " +
        '"capmesh, segment allocated to size" builds the same message with the same codec into one segment allocated up front ' +
        "(capnp-es `Message` over a buffer of the estimated size, then `writePointer` and `toArrayBuffer`): no growth at all, " +
        "so what remains of a step there is not the message's growth but memory (caches, fresh pages) and GC.",
      "",
      `| shape | op | system | ${opts.sizes.map(sizeText).join(" | ")} | ${steps.map((s) => s.text).join(" | ")} |`,
      `|---|---|---|${opts.sizes.map(() => "---:").join("|")}|${steps.map(() => "---:").join("|")}|`,
    );
    const rows: { system: System; label: string; withoutGc: boolean; presized?: boolean }[] = [];
    for (const system of shown) {
      rows.push({ system, label: SYSTEM_NAME[system], withoutGc: false });
      if (system === "capmesh") {
        rows.push({ system, label: "capmesh without GC", withoutGc: true });
        rows.push({ system, label: "capmesh, segment allocated to size", withoutGc: false, presized: true });
      }
    }
    for (const shape of opts.shapes) {
      for (const o of OPS) {
        for (const { system, label, withoutGc, presized } of rows) {
          if (presized && o !== "build") continue;
          const op: Op = presized ? "presized" : o;
          let figures = opts.sizes.map((size) => nsPerByteOf(cells.get(key(shape, size, system)), op, opts.limit, withoutGc));
          if (withoutGc) {
            // Only where GC took a noticeable share somewhere; a stopped run's GC time is unknown.
            const all = opts.sizes.map((size) => nsPerByteOf(cells.get(key(shape, size, system)), op, opts.limit));
            if (!figures.some((f, i) => f !== undefined && !f.stopped && all[i] !== undefined && f.value < all[i]!.value * 0.95)) continue;
            figures = figures.map((f) => (f?.stopped ? undefined : f));
          }
          if (presized && figures.every((f) => f === undefined)) continue;
          const row = [shape, o, label];
          for (const f of figures) row.push(f === undefined ? "—" : `${f.stopped ? "> " : ""}${perByte(f.value).replace(" ns/B", "")}`);
          for (const step of steps) {
            const a = figures[step.from];
            const b = figures[step.to];
            if (a === undefined || b === undefined || a.stopped || a.value <= 0) row.push("—");
            else row.push(`${b.stopped ? "> " : ""}${times(b.value / a.value).slice(2, -1)}`);
          }
          out.push(`| ${row.join(" | ")} |`);
        }
      }
    }
    out.push("");
  }

  const notes: string[] = [];
  for (const [system, how] of launch) if (typeof how === "string") notes.push(`${SYSTEM_NAME[system]}: ${how}`);
  for (const shape of opts.shapes) {
    for (const size of opts.sizes) {
      for (const system of shown) {
        const c = cells.get(key(shape, size, system));
        if (c === undefined) continue;
        const where = `${shape}, ${sizeText(size)}, ${SYSTEM_NAME[system]}`;
        if (c.failure !== undefined) notes.push(`${where}: failed: ${c.failure}`);
        for (const op of OPS) {
          const m = c[op];
          if (m.stoppedRun !== undefined && m.runs.length > 0) {
            notes.push(`${where}, ${op}: run ${m.stoppedRun} was stopped after ${opts.limit} s; the median is of the ${m.runs.length} before it`);
          } else if (m.runs.length > 0 && m.runs.length < opts.repeat && m.stoppedRun === undefined && c.failure === undefined) {
            notes.push(`${where}, ${op}: ${m.runs.length} run(s) only: they took more than ${opts.limit} s together`);
          }
        }
        if (c.built !== undefined) {
          notes.push(
            `${where}: a build made ${fmt(c.built.bytes)} bytes in ${c.built.segments} segment(s)${c.built.same ? "" : ", not the same bytes as"} ` +
              `(the message read: ${fmt(c.bytes ?? 0)} bytes, ${c.segments} segment(s))`,
          );
        }
      }
    }
  }
  if (shown.includes("cpp")) {
    const segments = opts.shapes.map((shape) => {
      const counts = opts.sizes.map((size) => cells.get(key(shape, size, "cpp"))?.segments ?? "—");
      return `${shape} ${counts.join("/")}`;
    });
    notes.push(
      `C++'s messages have several segments (MallocMessageBuilder's default growth): ${segments.join(", ")} at ${opts.sizes.map(sizeText).join("/")}, ` +
        "so their flat bytes (the \"bytes\" behind C++'s ns/B) are a little larger than capmesh's one-segment messages.",
    );
  }
  if (opts.shapes.includes("blob") || opts.shapes.includes("words")) {
    notes.push(
      "The flat shapes' figures are mostly fresh memory. Node takes an ArrayBuffer's memory from malloc, which hands out " +
        "blocks above its mmap threshold (which adapts up to 32 MiB) as new mappings, so every run at 64 MiB pays the kernel's page " +
        "faults and zeroing, where smaller blocks are reused. capmesh's flat build allocates and fills two such buffers (the segment " +
        "and `toArrayBuffer`'s), its read one (`new Message` copies the segment). That, not the codec, is most of the step from 8 to 64 MiB " +
        "in those rows: `MALLOC_MMAP_THRESHOLD_=1000000000` in the environment takes most of it away.",
    );
  }
  notes.push(`Load average (1 min) at the start and the end of the run: ${loadStart} and ${os.loadavg()[0]!.toFixed(2)} (${os.availableParallelism()} CPUs).`);
  if (notes.length > 0) out.push("## Notes", "", ...notes.map((n) => `- ${n}`), "");
  publish(out.join("\n"), opts.out);
}

await main();

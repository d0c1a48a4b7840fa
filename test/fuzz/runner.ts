// The fuzz loop: batches generated from (seed, batch index) until the time
// budget is spent, each checked (batch.ts); memory after GC watched over the
// whole run; every new kind of failure minimized and saved as a finding.
import { DEFAULT_RULES, type Failure, type FailureKind, type Rules } from "./checks.js";
import { caseBytes, describeCase, type Case } from "./cases.js";
import { loadCorpus, type Conversation } from "./corpus.js";
import { findingName, loadFindings, saveFinding } from "./findings.js";
import { frameUnits } from "./frames.js";
import { generateCase } from "./generate/case.js";
import { minimize } from "./minimize.js";
import { Rng } from "./prng.js";
import { FuzzServer } from "./server.js";
import type { MemorySample } from "./target/protocol.js";
import { MiB, mib } from "./util.js";

export interface FuzzOptions {
  /** Stop after this long (minimizing does not count)… */
  seconds: number;
  /** …or after this many batches, if given: the same batches on any machine. */
  batches?: number;
  seed: number;
  /** Run only this batch of the seed (to reproduce one), on a fresh server. */
  onlyBatch?: number;
  /** Minimize new failures (costs time outside the budget). */
  minimize: boolean;
  /** Write minimized findings to this directory (none: do not write). */
  findingsDir: string | null;
  log: (line: string) => void;
  rules?: Rules;
  /** Stops the run after the current batch. */
  signal?: AbortSignal;
}

export interface SeenFailure {
  kind: FailureKind;
  signature: string;
  count: number;
  firstBatch: number;
  detail: string;
  /** The first batch's connections that failed this way. */
  cases: string[];
  /** Where the minimized finding was saved. */
  file: string | null;
  /** The saved finding it looks like (same signature), if any. */
  likeSaved: string | null;
}

export interface FuzzReport {
  seed: number;
  batches: number;
  connections: number;
  frames: number;
  bytes: number;
  restarts: number;
  elapsedMs: number;
  maxEventLoopMs: number;
  failures: SeenFailure[];
  /** The server's Abort reasons heard, most common first (what the fuzzing reached). */
  aborts: [string, number][];
}

/** Post-GC memory may grow this much over the run (JIT code, caches) before it counts as a leak. */
const RUN_GROWTH_SLACK = 64 * MiB;

export function generateBatch(seed: number, index: number, corpus: readonly Conversation[]): Case[] {
  const rng = Rng.forBatch(seed, index);
  const n = rng.range(2, 6);
  let allowBig = rng.chance(0.2);
  const cases: Case[] = [];
  for (let i = 0; i < n; i++) {
    const c = generateCase(rng, corpus, { allowBig });
    if (c.label.startsWith("big message")) allowBig = false;
    cases.push(c);
  }
  return cases;
}

function frameCount(c: Case): number {
  if (c.kind === "handshake") return 0;
  return frameUnits(Buffer.concat(c.writes)).length;
}

/** Abort reasons without their numbers, for counting. */
function reasonKey(reason: string): string {
  return reason.replace(/\d+/g, "N").slice(0, 90);
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const corpus = loadCorpus();
  const rules = options.rules ?? DEFAULT_RULES;
  const started = Date.now();
  let deadline = started + options.seconds * 1000;
  const report: FuzzReport = {
    seed: options.seed,
    batches: 0,
    connections: 0,
    frames: 0,
    bytes: 0,
    restarts: 0,
    elapsedMs: 0,
    maxEventLoopMs: 0,
    failures: [],
    aborts: [],
  };
  const seen = new Map<string, SeenFailure>();
  // Failures like a saved finding's are counted, not minimized and saved again.
  const saved = new Map(loadFindings(options.findingsDir ?? undefined).map((f) => [f.signature, f.name]));
  const aborts = new Map<string, number>();
  let baseline: MemorySample | null = null;
  let server = await FuzzServer.start();

  const record = async (failure: Failure, cases: Case[], batch: number) => {
    const again = seen.get(failure.signature);
    if (again) {
      again.count++;
      // The biggest connection of the batch, to tell a new cause behind an old signature.
      const biggest = [...cases].sort((a, b) => caseBytes(b) - caseBytes(a))[0];
      if (again.count <= 10 && biggest) options.log(`  ${failure.signature} again in batch ${batch}; biggest connection: ${describeCase(biggest).slice(0, 160)}`);
      return;
    }
    const entry: SeenFailure = {
      kind: failure.kind,
      signature: failure.signature,
      count: 1,
      firstBatch: batch,
      detail: failure.detail,
      cases: cases.map(describeCase),
      file: null,
      likeSaved: null,
    };
    seen.set(failure.signature, entry);
    options.log(`\n✗ batch ${batch} (seed ${options.seed}): ${failure.signature}\n  ${failure.detail.split("\n").join("\n  ")}`);
    const known = saved.get(failure.signature);
    if (known) {
      entry.likeSaved = known;
      options.log(`  like saved finding ${known}; not minimized again. The batch:\n    ${entry.cases.join("\n    ")}`);
      return;
    }
    if (!options.minimize || failure.signature.startsWith("memory: growth")) return;
    const paused = Date.now();
    options.log(`  minimizing (${cases.length} connections)…`);
    const minimized = await minimize(cases, failure.signature, {
      maxAttempts: 60,
      maxMs: 180_000,
      log: (line) => options.log(`  ${line}`),
    });
    for (const c of minimized) options.log(`  → ${describeCase(c)}`);
    if (options.findingsDir) {
      entry.file = saveFinding(
        {
          name: findingName(failure, minimized),
          description: "",
          kind: failure.kind,
          signature: failure.signature,
          failure: failure.detail,
          seed: options.seed,
          batch,
          summary: [],
          cases: minimized,
        },
        options.findingsDir,
      );
      options.log(`  saved ${entry.file}`);
    }
    // Minimizing is not fuzzing: it does not use up the budget.
    deadline += Date.now() - paused;
  };

  try {
    for (let index = options.onlyBatch ?? 0; ; index++) {
      if (options.signal?.aborted) break;
      if (options.batches !== undefined && report.batches >= options.batches) break;
      if (options.onlyBatch !== undefined ? index > options.onlyBatch : Date.now() >= deadline) break;
      const cases = generateBatch(options.seed, index, corpus);
      const r = await server.batch(cases, index + 1, rules);
      report.batches++;
      report.connections += r.connections;
      report.bytes += r.bytes;
      report.frames += cases.reduce((n, c) => n + frameCount(c), 0);
      report.maxEventLoopMs = Math.max(report.maxEventLoopMs, r.eventLoopMaxMs);
      for (const a of r.aborts) aborts.set(reasonKey(a), (aborts.get(reasonKey(a)) ?? 0) + 1);

      const failures = [...r.failures];
      // Memory after GC over the run (the baseline is taken once the server is warm).
      if (r.afterGc) {
        const total = (m: MemorySample) => m.heapUsed + m.arrayBuffers;
        if (!baseline && index >= 2) baseline = r.afterGc;
        else if (baseline && total(r.afterGc) - total(baseline) > RUN_GROWTH_SLACK) {
          failures.push({
            kind: "memory",
            signature: "memory: growth over the run",
            detail: `heap and ArrayBuffers after GC grew by ${mib(total(r.afterGc) - total(baseline))} since the run warmed up (allowed ${mib(RUN_GROWTH_SLACK)})`,
          });
          baseline = r.afterGc;
        }
      }
      // A dead or wedged server is stopped before any minimizing: it must not
      // keep a core busy while the minimizer's fresh servers run.
      const restart = r.needRestart || !server.target.alive;
      if (restart) await server.stop().catch(() => {});
      for (const f of failures) await record(f, cases, index);
      if (index % 25 === 0 || failures.length > 0) {
        options.log(
          `batch ${index}: ${report.connections} connections, ${report.frames} frames, ${mib(report.bytes)} sent, ` +
            `${seen.size} distinct failures, loop max ${r.eventLoopMaxMs.toFixed(0)} ms`,
        );
      }
      if (restart) {
        server = await FuzzServer.start();
        report.restarts++;
        baseline = null;
      }
    }
  } finally {
    await server.stop().catch(() => {});
  }
  report.elapsedMs = Date.now() - started;
  report.failures = [...seen.values()];
  report.aborts = [...aborts].sort((a, b) => b[1] - a[1]);
  return report;
}

export function formatReport(r: FuzzReport): string {
  const lines = [
    `seed ${r.seed}: ${r.batches} batches, ${r.connections} connections, ${r.frames} frames, ${mib(r.bytes)} sent in ${(r.elapsedMs / 1000).toFixed(1)} s` +
      ` (${r.restarts} server restarts, event loop max ${r.maxEventLoopMs.toFixed(0)} ms)`,
  ];
  if (r.failures.length === 0) lines.push("no findings");
  for (const f of r.failures) {
    const where = f.file ? `, saved as ${f.file}` : f.likeSaved ? `, like saved finding ${f.likeSaved}` : "";
    lines.push(`finding ${f.signature}: ${f.count} batch(es), first in batch ${f.firstBatch}${where}`);
    lines.push(`  ${f.detail.split("\n")[0]}`);
  }
  lines.push(`server Abort reasons heard (${r.aborts.length} distinct), most common:`);
  for (const [reason, n] of r.aborts.slice(0, 12)) lines.push(`  ${String(n).padStart(5)} × ${reason}`);
  return lines.join("\n");
}

// npm run fuzz [seconds [seed]]
// npm run fuzz -- [seconds] [--seed N] [--batch N] [--no-minimize] [--no-save]
//
// Fuzzes the engine for `seconds` (default 60) of batches, from a random seed
// unless one is given (the seed is printed: the same seed replays the same
// batches). New failures are minimized and saved to test/fuzz/findings/,
// where regressions.test.ts turns each into a named test. `--batch N` runs
// only batch N of the seed, on a fresh server. Exits 1 if anything was found.
import { randomInt } from "node:crypto";
import { FINDINGS_DIR } from "./findings.js";
import { formatReport, runFuzz } from "./runner.js";

function parse(argv: string[]): { seconds: number; seed: number; batch?: number; minimize: boolean; save: boolean } {
  let seconds = 60;
  let seed = randomInt(1, 2 ** 31);
  let batch: number | undefined;
  let minimize = true;
  let save = true;
  let positional = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === "--seed") seed = value();
    else if (a === "--batch") batch = value();
    else if (a === "--no-minimize") minimize = false;
    else if (a === "--no-save") save = false;
    else if (/^\d+(\.\d+)?$/.test(a) && positional < 2) {
      // Bare numbers: seconds, then the seed (`npm run fuzz 120 42`, since npm
      // keeps --flags given without `--` for itself).
      if (positional++ === 0) seconds = Number(a);
      else seed = Math.floor(Number(a));
    }
    else throw new Error(`unknown argument ${a}; usage: npm run fuzz -- [seconds] [--seed N] [--batch N] [--no-minimize] [--no-save]`);
  }
  return { seconds, seed, minimize, save, ...(batch !== undefined ? { batch } : {}) };
}

const args = parse(process.argv.slice(2));
console.log(
  `capmesh fuzz: seed ${args.seed}, ${args.batch !== undefined ? `batch ${args.batch} only` : `${args.seconds} s`}` +
    ` (reproduce: npm run fuzz -- ${args.seconds} --seed ${args.seed})`,
);
// Ctrl-C: finish the batch in progress, clean up and report; twice: now.
const stop = new AbortController();
process.on("SIGINT", () => {
  if (stop.signal.aborted) process.exit(130);
  console.log("\nstopping after this batch (Ctrl-C again to quit at once)");
  stop.abort();
});
const report = await runFuzz({
  signal: stop.signal,
  seconds: args.seconds,
  seed: args.seed,
  ...(args.batch !== undefined ? { onlyBatch: args.batch } : {}),
  minimize: args.minimize,
  findingsDir: args.save ? FINDINGS_DIR : null,
  log: (line) => console.log(line),
});
console.log(`\n${formatReport(report)}`);
process.exit(report.failures.length > 0 ? 1 : 0);

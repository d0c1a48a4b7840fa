// The fuzzer's fixed budget in `npm test`: the first 150 batches of a fixed
// seed (the same batches on every machine: about 20 s here, capped at 45 s),
// then 5 s from a random seed (printed, to reproduce with
// `npm run fuzz -- <seconds> --seed <seed>`). No minimization and nothing
// written here: `npm run fuzz` does that.
//
// One test per check. A check that fails because of a finding already saved
// in test/fuzz/findings/ names it, so the failing test says which fault it is
// and goes green once that fault is fixed. In the random-seed part, failures
// matching a saved finding do not fail the run (regressions.test.ts tracks
// them); anything new does.
import { randomInt } from "node:crypto";
import { Message } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { beforeAll, describe, expect, it } from "vitest";
import type { FailureKind } from "./checks.js";
import { casesToJson } from "./cases.js";
import { loadCorpus } from "./corpus.js";
import { loadFindings } from "./findings.js";
import { wrapUnimplemented } from "./generate/messages.js";
import { encodeMessage, type MessageSpec } from "./rpc-spec.js";
import { generateBatch, runFuzz, type FuzzReport, type SeenFailure } from "./runner.js";

const FIXED_SEED = 20261203;
const FIXED_BATCHES = 150;
// A cap, not a target: the fixed run stops after FIXED_BATCHES (about 20 s
// on an idle two-core machine); the cap leaves room for a loaded one.
const FIXED_MAX_SECONDS = 120;
const RANDOM_SECONDS = 5;

const CHECKS: { title: string; kinds: FailureKind[] }[] = [
  { title: "the server process never died or stopped answering", kinds: ["crash", "hang"] },
  { title: "no uncaught exception, unhandled rejection or process warning", kinds: ["uncaught", "warning"] },
  { title: "a good client always got correct answers within the deadline", kinds: ["unresponsive"] },
  { title: "no message held the event loop past 100 ms per 8 MiB (floor 250 ms)", kinds: ["event-loop"] },
  { title: "memory stayed within what peers sent, and nothing was retained", kinds: ["memory"] },
  { title: "every hostile connection was closed and freed, and every reply decoded", kinds: ["conn-not-closed", "leak", "undecodable-output"] },
];

const findings = loadFindings();
const savedSignatures = new Set(findings.map((f) => f.signature));

let fixed: FuzzReport;
let random: FuzzReport;

function describeFailures(label: string, report: FuzzReport, failures: SeenFailure[]): string {
  return failures
    .map((f) => `[${label}, seed ${report.seed}, batch ${f.firstBatch}] ${f.signature}\n  ${f.detail.split("\n").join("\n  ")}\n  input:\n    ${f.cases.join("\n    ")}`)
    .join("\n");
}

describe("fuzz: generation", () => {
  it("a batch is the same bytes every time for the same seed and index", () => {
    const corpus = loadCorpus();
    for (const index of [0, 1, 17]) {
      expect(JSON.stringify(casesToJson(generateBatch(42, index, corpus)))).toBe(JSON.stringify(casesToJson(generateBatch(42, index, corpus))));
    }
  });

  it("messages built word by word read back as meant (capnp-es's rpc schema)", () => {
    const read = (spec: MessageSpec) => new Message(encodeMessage(spec), false, false).getRoot(rpc.Message);
    const call = read({
      type: "call",
      question: 7,
      target: { promisedAnswer: 3, transform: [0, 2] },
      interfaceId: 0x9287593cdaa958een,
      methodId: 5,
      content: { kind: "empty" },
      caps: [{ kind: "senderPromise", id: 9 }, { kind: "receiverAnswer", question: 4, transform: [1] }],
      sendResultsTo: 1,
    }).call;
    expect([call.questionId, call.methodId, call.interfaceId, call.sendResultsTo.which()]).toEqual([7, 5, 0x9287593cdaa958een, 1]);
    expect(call.target.promisedAnswer.transform.get(1).getPointerField).toBe(2);
    expect(call.params.capTable.get(0).senderPromise).toBe(9);
    expect(call.params.capTable.get(1).receiverAnswer.questionId).toBe(4);
    const ret = read({ type: "return", answer: 3, releaseParamCaps: false, body: { kind: "exception", reason: "boom", type: 2 } }).return;
    expect([ret.answerId, ret.releaseParamCaps, ret.exception.reason, ret.exception.type]).toEqual([3, false, "boom", 2]);
    const finish = read({ type: "finish", question: 11, releaseResultCaps: false }).finish;
    expect([finish.questionId, finish.releaseResultCaps]).toEqual([11, false]);
    const release = read({ type: "release", id: 2, count: 5 }).release;
    expect([release.id, release.referenceCount]).toEqual([2, 5]);
    const d = read({ type: "disembargo", target: { importedCap: 6 }, context: { kind: "receiverLoopback", id: 42 } }).disembargo;
    expect([d.target.importedCap, d.context.receiverLoopback]).toEqual([6, 42]);
    expect(read({ type: "unimplemented", inner: { type: "bootstrap", question: 5 } }).unimplemented.bootstrap.questionId).toBe(5);
  });

  it("a recorded frame wrapped in an Unimplemented reads back as the same message", () => {
    const frame = encodeMessage({ type: "release", id: 12, count: 3 });
    const wrapped = new Message(wrapUnimplemented(frame)!, false, false).getRoot(rpc.Message);
    expect(wrapped._isUnimplemented).toBe(true);
    expect([wrapped.unimplemented.release.id, wrapped.unimplemented.release.referenceCount]).toEqual([12, 3]);
  });
});

describe("fuzz: fixed budget", () => {
  beforeAll(async () => {
    fixed = await runFuzz({
      seconds: FIXED_MAX_SECONDS,
      batches: FIXED_BATCHES,
      seed: FIXED_SEED,
      minimize: false,
      findingsDir: null,
      log: () => {},
    });
    const seed = randomInt(1, 2 ** 31);
    console.log(`fuzz: random seed ${seed} (reproduce: npm run fuzz -- ${RANDOM_SECONDS} --seed ${seed})`);
    random = await runFuzz({ seconds: RANDOM_SECONDS, seed, minimize: false, findingsDir: null, log: () => {} });
    console.log(`fuzz (fixed seed): ${fixed.batches} batches, ${fixed.connections} connections, ${fixed.frames} frames`);
    console.log(`fuzz (seed ${seed}): ${random.batches} batches, ${random.connections} connections, ${random.frames} frames`);
  }, 200_000);

  it("ran a real budget against a live server", () => {
    expect(fixed.batches, `${FIXED_BATCHES} batches within ${FIXED_MAX_SECONDS} s`).toBe(FIXED_BATCHES);
    expect(fixed.connections).toBeGreaterThan(60);
    // The hostile input reached past the framing into the rpc handlers.
    expect(fixed.aborts.length).toBeGreaterThan(5);
  });

  for (const check of CHECKS) {
    const open = findings.filter((f) => check.kinds.includes(f.kind)).map((f) => f.name);
    const title = open.length > 0 ? `${check.title} (open findings: ${open.join(", ")})` : check.title;
    it(title, () => {
      const mine = (r: FuzzReport) => r.failures.filter((f) => check.kinds.includes(f.kind));
      const failures = [
        describeFailures("fixed", fixed, mine(fixed)),
        describeFailures("random", random, mine(random).filter((f) => !savedSignatures.has(f.signature))),
      ].filter(Boolean);
      expect(failures.join("\n"), "failures").toBe("");
    });
  }
});

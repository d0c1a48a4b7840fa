// Every fuzz finding, as a named regression test: its minimized input
// (test/fuzz/findings/<name>.json) replayed against a fresh server under
// fuzz, which must then pass every check the fuzzer makes (batch.ts): alive,
// a good client answered promptly, nothing uncaught, the event loop within
// the rule, memory bounded, every connection closed and freed.
//
// A finding's test fails until the fault is fixed. To add one by hand, write
// a JSON file in the same form (cases.ts explains the encoding; `$messages`
// lets a case be written as rpc messages instead of bytes).
import { describe, expect, it } from "vitest";
import { describeCase } from "./cases.js";
import { loadFindings } from "./findings.js";
import { replay } from "./server.js";

const findings = loadFindings();

describe("fuzz findings replayed against a fresh server", () => {
  it("findings load and each names what it reproduces", () => {
    for (const f of findings) {
      expect(f.name, "every finding has a name").toMatch(/^[a-z0-9-]+$/);
      expect(f.cases.length, `${f.name} has an input`).toBeGreaterThan(0);
      expect(f.signature, `${f.name} names its failure`).not.toBe("");
    }
  });

  for (const f of findings) {
    it(`${f.name}: passes every check`, async () => {
      const result = await replay(f.cases);
      const report = [
        `finding ${f.name} (${f.signature}) still fails:`,
        ...result.failures.map((x) => `  ${x.signature}: ${x.detail}`),
        "input:",
        ...f.cases.map((c) => `  ${describeCase(c)}`),
      ].join("\n");
      expect(result.failures, report).toEqual([]);
    }, 90_000);
  }
});

// Prints a finding's input message by message, for triage:
//   npx tsx test/fuzz/show.ts test/fuzz/findings/<name>.json
import { readFileSync } from "node:fs";
import { casesFromJson, describeCase } from "./cases.js";
import { describeFrame } from "./describe.js";
import { concat, frameUnits } from "./frames.js";

const file = process.argv[2];
if (!file) {
  console.error("usage: npx tsx test/fuzz/show.ts <finding.json>");
  process.exit(2);
} else {
  const finding = JSON.parse(readFileSync(file, "utf8")) as { name: string; signature: string; failure: string; cases: unknown };
  console.log(`${finding.name}\n  ${finding.signature}\n  ${finding.failure.split("\n")[0]}`);
  for (const c of casesFromJson(finding.cases)) {
    console.log(`\n${describeCase(c)}`);
    if (c.kind === "handshake") continue;
    for (const unit of frameUnits(concat(c.writes))) console.log(`  ${describeFrame(unit)}`);
  }
}

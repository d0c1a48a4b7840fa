// Findings: a failing (minimized) batch saved as JSON in test/fuzz/findings/,
// replayed by regressions.test.ts as a named test. A human may rename the
// file and its `name`, and fill in `description`.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Failure, FailureKind } from "./checks.js";
import { casesFromJson, casesToJson, describeCase, type Case } from "./cases.js";

export const FINDINGS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "findings");

export interface Finding {
  /** The regression test's name (also the file name, without .json). */
  name: string;
  /** What goes wrong, in words (filled in by whoever triages it). */
  description: string;
  /** Which check it fails, and its signature (what the minimized input reproduces). */
  kind: FailureKind;
  signature: string;
  /** The failure as first seen. */
  failure: string;
  /** How to find it again: `npm run fuzz -- <seconds> --seed <seed>`, batch <batch>. */
  seed: number;
  batch: number;
  /** One line per hostile connection. */
  summary: string[];
  cases: Case[];
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 48);
}

/** A new finding's default name: its signature and a hash of its input. */
export function findingName(failure: Failure, cases: readonly Case[]): string {
  const hash = createHash("sha256").update(JSON.stringify(casesToJson(cases))).digest("hex").slice(0, 8);
  return `${slug(failure.signature)}-${hash}`;
}

export function saveFinding(finding: Finding, dir = FINDINGS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${finding.name}.json`);
  const json = { ...finding, summary: finding.cases.map(describeCase), cases: casesToJson(finding.cases) };
  writeFileSync(file, JSON.stringify(json, null, 2) + "\n");
  return file;
}

export function loadFindings(dir = FINDINGS_DIR): Finding[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  } catch {
    return [];
  }
  return files.map((f) => {
    const raw = JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Finding & { cases: unknown };
    return { ...raw, cases: casesFromJson(raw.cases) };
  });
}

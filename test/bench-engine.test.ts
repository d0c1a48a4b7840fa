// `npm run bench:engine -- --quick` (bench/engine/run.ts) still runs end to
// end, so that the bench cannot rot: a hub, two plugins and the raw floor,
// each its own process, and every figure of its table a positive number.
// The numbers themselves are not checked (a smoke run is far too short).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const FIGURES = [
  "closureSeqRps",
  "closureSeqP50Us",
  "closureInflightCps",
  "closureSeqHubRps",
  "closureInflightHubCps",
  "valueItemsPerS",
  "bytesHubMBps",
  "bytesDirectMBps",
  "rawFloorMBps",
  "hubToFloor",
  "directToFloor",
];

/** Runs the quick bench; on the deadline, SIGTERM (the runner then stops its children and removes its scratch directory). */
function quickBench(deadlineMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/engine/run.ts", "--quick"], {
    env: { ...process.env, DEBUG: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGTERM"), deadlineMs);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("bench:engine --quick", () => {
  it("measures every figure as a positive number and writes no results", async () => {
    const results = readFileSync("bench/RESULTS.md", "utf8");
    const { code, stdout, stderr } = await quickBench(50_000);
    const line = stdout.split("\n").find((l) => l.startsWith("figures "));
    expect(line, `no figures line; exit ${code}\n${stdout}\n${stderr}`).toBeDefined();
    const figures = JSON.parse(line!.slice("figures ".length)) as Record<string, unknown>;
    for (const name of FIGURES) {
      expect(typeof figures[name] === "number" && (figures[name] as number) > 0, `${name} is ${String(figures[name])}\n${stdout}`).toBe(true);
    }
    expect(stdout).toContain("| figure | median |");
    expect(stdout).not.toContain("failed run:");
    expect(code, stderr).toBe(0);
    // A quick run is a smoke test: the results stay as they were.
    expect(readFileSync("bench/RESULTS.md", "utf8")).toBe(results);
  }, 60_000);
});

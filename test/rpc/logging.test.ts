// DEBUG=capmesh:* shows what went over a connection: one structured line per
// call made and per call answered, with the method, the question ID, how
// long it took and how it ended. Without DEBUG, nothing is printed.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

function runChild(env: Record<string, string>): string {
  const result = spawnSync(process.execPath, ["--import", "tsx", "test/rpc/log-child.ts"], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  expect(result.status, result.stderr).toBe(0);
  return result.stderr;
}

describe("call logging", () => {
  it("logs each call and answer at debug level with DEBUG=capmesh:*", () => {
    const lines = runChild({ DEBUG: "capmesh:*" })
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const calls = lines.filter((l) => l.event === "call");
    const answers = lines.filter((l) => l.event === "answer");
    expect(calls.map((l) => [l.method, l.outcome])).toEqual([
      ["Counter.add", "results"],
      ["Counter.fail", "exception: as planned"],
    ]);
    expect(answers.map((l) => l.method)).toEqual(["Counter.add", "Counter.fail"]);
    for (const line of [...calls, ...answers]) {
      expect(line).toMatchObject({ ns: "capmesh:rpc", level: "debug" });
      expect(typeof line.ms).toBe("number");
      expect(typeof (line.question ?? line.answer)).toBe("number");
    }
  });

  it("prints nothing without DEBUG", () => {
    expect(runChild({ DEBUG: "" }).trim()).toBe("");
  });
});

// The README's engine example is examples/engine.ts verbatim, and it runs.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const run = promisify(execFile);

it("shows examples/engine.ts verbatim, and it runs: config, a log line, a closure through the engine", async () => {
  const readme = readFileSync("README.md", "utf8");
  const example = readFileSync("examples/engine.ts", "utf8");
  expect(readme).toContain("```ts\n" + example + "```");
  const dir = mkdtempSync(join(tmpdir(), "capmesh-engine-example-"));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
    for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
    const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/engine.ts"], { timeout: 30_000, env });
    expect(stdout.split("\n")).toEqual(["[tool] greeting mesh", "hello, mesh!", "2 peers connected, 0 call contexts open", ""]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The capmesh command line: help, errors, and `capmesh gen` for users' schemas.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const cli = (...args: string[]) => run(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { timeout: 30_000 });

function haveCapnp(): boolean {
  try {
    execFileSync("capnp", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    if (process.env.CI === "true") throw new Error("the capnp tool is missing under CI: apt-get install -y capnproto");
    return false;
  }
}

describe("capmesh CLI", () => {
  it("prints help listing its commands", async () => {
    const { stdout } = await cli("help");
    expect(stdout).toContain("capmesh <command>");
    expect(stdout).toContain("demo");
    expect(stdout).toContain("gen");
  });

  it("rejects an unknown command with exit code 2 and the help text", async () => {
    const err = (await cli("frobnicate").catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('unknown command "frobnicate"');
  });

  it.skipIf(!haveCapnp())("generates code for a user's schema that imports the capmesh package", async () => {
    const out = mkdtempSync(join(tmpdir(), "capmesh-gen-"));
    try {
      await cli("gen", "--out", out, "schema/demo.capnp");
      const code = readFileSync(join(out, "demo.ts"), "utf8");
      expect(code).toContain('from "capmesh"');
      expect(code).toContain("export interface Greeter extends Capability");
      expect(code).toContain("export const Greeter = defineInterface");
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

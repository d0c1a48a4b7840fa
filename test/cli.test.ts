// The capmesh command line: help, errors, and `capmesh gen` for users' schemas.
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const cli = (...args: string[]) => run(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { timeout: 30_000 });
const failure = (promise: Promise<unknown>) => promise.then(() => { throw new Error("expected the command to fail"); }, (e: { code: number; stderr: string }) => e);

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

  it("every command answers --help with its usage on stdout and exit code 0, and does nothing else", async () => {
    // A temporary home: a command that ignored --help would leave files here (or start a hub).
    const home = mkdtempSync(join(tmpdir(), "capmesh-help-"));
    try {
      const env = { ...process.env, CAPMESH_HOME: join(home, "home"), XDG_RUNTIME_DIR: join(home, "run") };
      const commands = ["demo", "gen", "serve", "ls", "watch", "call", "keygen", "id", "netkey"];
      await Promise.all(
        commands.map(async (command) => {
          const { stdout } = await run(process.execPath, ["--import", "tsx", "src/cli/main.ts", command, "--help"], { env, timeout: 30_000 });
          expect(stdout, command).toMatch(new RegExp(`^usage: capmesh ${command}\\b`));
        }),
      );
      expect(readdirSync(home)).toEqual([]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
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

  it("keygen writes a private key file and prints its id; id reads it back; neither clobbers nor trusts a readable file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "capmesh-keys-"));
    const file = join(dir, "nested", "secret");
    try {
      const made = await cli("keygen", file);
      const id = made.stdout.trim();
      expect(id).toMatch(/^@[A-Za-z0-9+/]{43}=\.ed25519$/);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(file, "utf8")).id).toBe(id);
      expect((await cli("id", file)).stdout.trim()).toBe(id);

      const again = await failure(cli("keygen", file));
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("already exists");
      expect((await cli("id", file)).stdout.trim()).toBe(id);

      chmodSync(file, 0o644);
      const exposed = await failure(cli("id", file));
      expect(exposed.code).toBe(1);
      expect(exposed.stderr).toContain(`chmod 600 ${file}`);

      const replaced = await cli("keygen", file, "--force");
      expect(replaced.stdout.trim()).not.toBe(id);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("id names the missing file and how to make it; netkey prints 32 random bytes", async () => {
    const missing = await failure(cli("id", join(tmpdir(), "capmesh-no-such-key")));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("capmesh keygen");
    const first = (await cli("netkey")).stdout.trim();
    expect(Buffer.from(first, "base64")).toHaveLength(32);
    expect((await cli("netkey")).stdout.trim()).not.toBe(first);
  });
});

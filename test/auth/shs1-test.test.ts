// The shs1-test suites (npm "shs1-test") against our client and server: each
// run drives 45 processes of an adapter over stdin/stdout with seeded good
// and bad handshakes.

import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "tsup";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const require = createRequire(import.meta.url);
const SEEDS = ["capmesh-1", "capmesh-2", "capmesh-3"];

let dir: string;
const executables: Record<"client" | "server", string> = { client: "", server: "" };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "capmesh-shs1-test-"));
  // Bundle each adapter into one file: 45 concurrent node processes per run
  // start several times faster than through a TypeScript loader.
  await build({
    entry: {
      client: join(here, "shs1-client-adapter.ts"),
      server: join(here, "shs1-server-adapter.ts"),
    },
    outDir: dir,
    format: ["esm"],
    platform: "node",
    target: "node20",
    noExternal: [/.*/],
    outExtension: () => ({ js: ".mjs" }),
    config: false,
    dts: false,
    sourcemap: false,
    splitting: false,
    silent: true,
  });
  for (const role of ["client", "server"] as const) {
    // shs1-test spawns the path it is given directly, so give it a script.
    const script = join(dir, `${role}.sh`);
    await writeFile(script, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(dir, `${role}.mjs`))} "$@"\n`);
    await chmod(script, 0o755);
    executables[role] = script;
  }
}, 60_000);

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function runSuite(role: "client" | "server", seed: string): Promise<{ code: number | null; output: string }> {
  const driver = require.resolve(role === "server" ? "shs1-test/test-server.js" : "shs1-test/test-client.js");
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [driver, executables[role], seed], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, output }));
  });
}

describe.skipIf(process.platform === "win32")("shs1-test", () => {
  for (const seed of SEEDS) {
    it(`server role passes shs1testserver (seed ${seed})`, async () => {
      const { code, output } = await runSuite("server", seed);
      expect(output).toContain("Passed the server test suite");
      expect(code, output).toBe(0);
    }, 120_000);

    it(`client role passes shs1testclient (seed ${seed})`, async () => {
      const { code, output } = await runSuite("client", seed);
      expect(output).toContain("Passed the client test suite");
      expect(code, output).toBe(0);
    }, 120_000);
  }
});

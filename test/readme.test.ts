// The README's promises: its example is the file it names, and it runs.
// (`npm start`'s demo and its transcript in the README: test/mesh/demo.test.ts.)
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);

describe("README", () => {
  it("shows examples/two-party.ts verbatim", () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/two-party.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    expect(example.trimEnd().split("\n").length).toBeLessThanOrEqual(20);
  });

  it("shows examples/secure.ts verbatim, and it runs", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/secure.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/secure.ts"], { timeout: 30_000 });
    expect(stdout.split("\n")).toEqual(["true true", "hello, alice", ""]);
  });

  it("the two-party example runs and prints a typed call, a pipelined call and a callback", async () => {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/two-party.ts"], { timeout: 30_000 });
    expect(stdout.split("\n")).toEqual(["hello, world", "room: welcome, me", "members: 1", ""]);
  });

  it("shows examples/mesh.ts verbatim, and it runs: a hub, a plugin and a client in one process", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/mesh.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    // On embedded defaults, kept away from the user's own hub and keys.
    const dir = mkdtempSync(join(tmpdir(), "capmesh-readme-"));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
      const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/mesh.ts"], { timeout: 30_000, env });
      expect(stdout.split("\n")).toEqual(["hello, mesh", "greeter 1.0.0", "2 peers connected", "0 plugins after it left", ""]);
      // The hub closed on its way out: no socket or discovery file is left.
      expect(readdirSync(join(dir, "run", "capmesh"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shows examples/direct.ts verbatim, and it runs: the calls go to the plugin directly, not through the hub", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/direct.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const dir = mkdtempSync(join(tmpdir(), "capmesh-readme-"));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY", "CAPMESH_DIRECT_PATHS"]) delete env[key];
      const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/direct.ts"], { timeout: 30_000, env });
      expect(stdout.split("\n")).toEqual(["direct, to the plugin: true", "total 101, forwarded by the hub: 1", ""]);
      // Every peer removed its direct-path socket, and the hub its own files.
      expect(readdirSync(join(dir, "run", "capmesh"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shows examples/sequential.ts verbatim, and it runs: a sequential plugin loses no update", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/sequential.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const dir = mkdtempSync(join(tmpdir(), "capmesh-readme-"));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
      const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/sequential.ts"], { timeout: 30_000, env });
      expect(stdout.split("\n")).toEqual(["total 100", ""]);
      expect(readdirSync(join(dir, "run", "capmesh"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shows examples/values.ts verbatim, and it runs: a value with a byte stream and a value stream in it", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/values.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const dir = mkdtempSync(join(tmpdir(), "capmesh-readme-"));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
      const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/values.ts"], { timeout: 30_000, env });
      expect(stdout.split("\n")).toEqual(["package.json: bigint, 2 bytes in the value", "all of it streamed; squares 1, 4, 9, 16, 25", ""]);
      expect(readdirSync(join(dir, "run", "capmesh"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shows examples/channels.ts verbatim, and it runs: a channel opened by name, echoed, and one refused", async () => {
    const readme = readFileSync("README.md", "utf8");
    const example = readFileSync("examples/channels.ts", "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const dir = mkdtempSync(join(tmpdir(), "capmesh-readme-"));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, CAPMESH_HOME: join(dir, "home"), XDG_RUNTIME_DIR: join(dir, "run") };
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
      const { stdout } = await run(process.execPath, ["--import", "tsx", "examples/channels.ts"], { timeout: 30_000, env });
      expect(stdout.split("\n")).toEqual([
        "channel from the client",
        "echoed: hello",
        'openChannel("echo", protocol "x"): plugin "echo" refused the channel: speaks echo/1, not "x"',
        "",
      ]);
      expect(readdirSync(join(dir, "run", "capmesh"))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shows the two set-up commands", () => {
    const readme = readFileSync("README.md", "utf8");
    expect(readme).toContain("npm install && npm start");
    expect(readme).toContain("npm install && npm test");
  });
});

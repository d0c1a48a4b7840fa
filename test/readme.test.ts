// The README's promises: its example is the file it names, and it runs.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
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

  it("npm start's demo runs a server and a client process to completion", async () => {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "src/cli/main.ts", "demo"], { timeout: 60_000 });
    const serverId = /\[server\] listening on \S+ as (@\S+\.ed25519)/.exec(stdout)?.[1];
    expect(serverId).toBeDefined();
    expect(stdout).toContain(`[client] connected to ${serverId}`);
    expect(stdout).toMatch(/\[server\] @\S+\.ed25519 connected \(identity proven by the handshake\)/);
    expect(stdout).toContain("[client] greet -> \"hello, demo\"");
    expect(stdout).toContain("[client] callback: heard <demo-client> hi from a pipelined room");
    expect(stdout).toContain("[client] demo ok");
  });

  it("shows the two set-up commands", () => {
    const readme = readFileSync("README.md", "utf8");
    expect(readme).toContain("npm install && npm start");
    expect(readme).toContain("npm install && npm test");
  });
});

// A program that is done but never closed its client session still exits:
// an idle dialled session (no call in flight, nothing exported) does not hold
// the process, as Node's HTTP agent does not with its free sockets. With
// holdProcess it does, until the connection ends.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, type Listener } from "../../src/rpc/index.js";
import { Counter, CounterImpl } from "./fixtures.js";
import { within } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-idle-"));
let listener: Listener;

beforeAll(async () => {
  listener = await listen(`unix:${join(dir, "idle.sock")}`, { bootstrap: Counter.server(new CounterImpl()) });
});

afterAll(async () => {
  await listener?.close();
  rmSync(dir, { recursive: true, force: true });
});

function runChild(...args: string[]) {
  const child = spawn(process.execPath, ["--import", "tsx", "test/rpc/idle-child.ts", listener.address, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const printed = (text: string) =>
    new Promise<void>((resolve) => {
      const check = () => (out.includes(text) ? resolve() : child.stdout.once("data", check));
      check();
    });
  return { child, exited, printed, output: () => out };
}

describe("idle client sessions", () => {
  it("do not keep a finished program alive", async () => {
    const run = runChild();
    const code = await within(run.exited, 20_000, "the child to exit on its own");
    expect(code, run.output()).toBe(0);
    expect(run.output()).toContain("called 1");
  });

  it("hold the process with holdProcess: true, until the connection ends", async () => {
    const run = runChild("hold");
    try {
      await within(run.printed("called"), 20_000, "the child's call");
      expect(run.child.exitCode).toBeNull();
      // The child stays up until its connection goes: closing the sessions ends it.
      for (const session of [...listener.sessions]) await session.close();
      expect(await within(run.exited, 20_000, "the child to exit once disconnected")).toBe(0);
      expect(run.output()).toContain("closed");
    } finally {
      run.child.kill();
    }
  });
});

// `npm start` (`capmesh demo`) as a user runs it, in a private runtime dir and
// home: a hub, plugins and a client, each its own process; `capmesh ls` and
// the `capmesh call`s it suggests work from outside; SIGINT or SIGTERM (also in the middle of
// starting) stops every process and leaves no socket or discovery file.
// The README's transcript of it is checked against the real output.
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { within } from "../rpc/helpers/raw-peer.js";
import { builtCppMeshPeer } from "../../src/cli/demo.js";
import { CLI, killLeft, startCapmesh, type Started } from "./helpers/processes.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-demo-"));
const started: ChildProcess[] = [];
const seen = new Set<number>();

afterAll(() => {
  // Only if a test failed half-way: nothing of ours may outlive the file.
  killLeft(started);
  for (const pid of new Set([...seen, ...withEnv(`XDG_RUNTIME_DIR=${dir}`)])) if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function envIn(name: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: join(dir, name, "run"), CAPMESH_HOME: join(dir, name, "home"), DEBUG: "" };
  delete env.CAPMESH_HUB;
  delete env.CAPMESH_HUB_ID;
  delete env.CAPMESH_NETWORK_KEY;
  return env;
}

function startDemo(env: NodeJS.ProcessEnv): Started {
  // The deadline is a guard, not a wait: the demo takes seconds, but five Node processes start slowly on a loaded machine.
  return startCapmesh(["demo"], { env, children: started, deadlineMs: 150_000 });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Every process descended from `root` now (Linux /proc; empty elsewhere). */
function descendants(root: number): number[] {
  if (!existsSync("/proc/self/stat")) return [];
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // exited while we looked
    }
  }
  const found: number[] = [];
  const visit = (pid: number) => {
    for (const [child, ppid] of parent) if (ppid === pid) found.push(child), visit(child);
  };
  visit(root);
  return found;
}

/** Processes whose environment holds `marker` (Linux /proc): every process a demo run started, even orphaned ones. */
function withEnv(marker: string): number[] {
  if (!existsSync("/proc/self/environ")) return [];
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`).includes(marker)) found.push(Number(entry));
    } catch {
      // exited, or not ours to read
    }
  }
  return found;
}

/** Polls (with a deadline) until none of `pids` is alive. */
async function allGone(pids: number[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(pids.filter(alive), "processes still alive").toEqual([]);
}

/**
 * Ids, pids, paths and column widths vary from run to run, and the C++ mesh
 * peer joins only where it has been built (the README leaves it out).
 */
function normalize(line: string): string {
  return line
    .replace(/@[A-Za-z0-9+/]{43}=\.ed25519/g, "@ID")
    .replace(/pid \d+/g, "pid N")
    .replace(/unix:\S+/g, "unix:PATH")
    .replace(/, greeter-cpp/g, "")
    .replace(/ +/g, " ");
}

describe("npm start (capmesh demo)", () => {
  it("runs a hub, plugins and a client that show the mesh, answers capmesh ls, and SIGINT stops every process", async () => {
    const env = envIn("sigint");
    const runtime = join(dir, "sigint", "run", "capmesh");
    // Built before the demo starts, it must join (builds only get newer); built meanwhile, it may.
    const cppBuilt = builtCppMeshPeer(process.cwd()) !== null;
    const demo = startDemo(env);
    await demo.waitFor(/^Ctrl-C stops everything\.$/m, "the demo to be ready");
    const cppRan = /^\[greeter-cpp\] registered greeter-cpp as @/m.test(demo.output());
    if (cppBuilt) expect(cppRan, "the C++ mesh peer was built: it joins").toBe(true);
    const out = demo.output();

    // What it shows: register, watch, list, connect by name, a callback, a plugin leaving.
    expect(out).toContain(`listening on unix:${join(runtime, "hub.sock")} (pid ${demo.child.pid})`);
    for (const name of ["greeter", "counter", "visitor"]) expect(out).toMatch(new RegExp(`^\\[${name}\\] registered "${name}" as @\\S+\\.ed25519$`, "m"));
    expect(out).toMatch(cppRan ? /^\[client\] watch: present: counter, greeter, greeter-cpp$/m : /^\[client\] watch: present: counter, greeter$/m);
    if (cppRan) expect(out).toContain("[client] greeter-cpp.greet: hello client from greeter-cpp (C++)\n");
    expect(out).toContain("[client] list: greeter 1.0.0: says hello; keeps chat rooms\n");
    expect(out).toContain("[client] greeter.greet: hello, client\n");
    expect(out).toContain("[client] callback from the greeter: <client> hello, lobby\n");
    expect(out).toContain("[client] callback from the greeter: <visitor> hi all, just passing through\n");
    expect(out).toContain("[client] counter.add: total 1\n");
    expect(out).toContain("[client] watch: visitor joined\n");
    expect(out).toMatch(/^\[client\] watch: visitor left \(.+\)$/m);
    expect(out).toContain(`npx capmesh call counter add '{"by": 2}'\n`);

    // What is running, as printed, is what runs: the hub (this child) and one process per peer.
    const running = new Map([...out.matchAll(/^ {2}(\S+) +pid (\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
    expect([...running.keys()]).toEqual(["hub", "greeter", "counter", ...(cppRan ? ["greeter-cpp"] : []), "client"]);
    expect(running.get("hub")).toBe(demo.child.pid);
    const peerPids = [...running].filter(([name]) => name !== "hub").map(([, pid]) => pid);
    for (const pid of peerPids) expect(alive(pid), `pid ${pid}`).toBe(true);
    const tree = descendants(demo.child.pid!);
    tree.forEach((pid) => seen.add(pid));
    peerPids.forEach((pid) => seen.add(pid));
    if (existsSync("/proc/self/stat")) expect(tree).toEqual(expect.arrayContaining(peerPids));

    // The CLI, from outside, finds the hub on the same defaults and lists the plugins.
    const ls = spawnSync(process.execPath, [...CLI, "ls", "--json"], { env, encoding: "utf8", timeout: 30_000 });
    expect(ls.status, ls.stderr).toBe(0);
    const listed = JSON.parse(ls.stdout) as { name: string; interfaces: { name: string }[] }[];
    expect(listed.map((p) => [p.name, p.interfaces.map((i) => i.name)])).toEqual([
      ["counter", ["Counter"]],
      ["greeter", ["Greeter"]],
      ...(cppRan ? [["greeter-cpp", ["Greeter"]]] : []),
    ]);

    // The calls it suggests work as printed (`capmesh call`, src/cli/call.ts), on the one shared count.
    const cli = (...args: string[]) => spawnSync(process.execPath, [...CLI, ...args], { env, encoding: "utf8", timeout: 30_000 });
    const greet = cli("call", "greeter", "greet", '{"name": "you"}');
    expect(greet.status, greet.stderr).toBe(0);
    expect(JSON.parse(greet.stdout)).toEqual({ greeting: "hello, you" });
    const add = cli("call", "counter", "add", '{"by": 2}');
    expect(add.status, add.stderr).toBe(0);
    expect(JSON.parse(add.stdout)).toEqual({ total: 3 }); // the client added 1

    // The README shows the real output: each of its lines, ids and pids aside, is one the demo printed.
    const readme = readFileSync("README.md", "utf8");
    const blocks = [...readme.matchAll(/```text\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const shown = blocks.find((b) => b.startsWith("capmesh demo:"));
    expect(shown, "the README's transcript of npm start").toBeDefined();

    demo.child.kill("SIGINT");
    expect(await within(demo.exited, 30_000, () => `the demo to stop:\n${demo.output()}\n${demo.errors()}`)).toEqual({ code: 0, signal: null });
    const printed = new Set(demo.output().split("\n").map(normalize));
    const stopping = blocks.find((b) => b.startsWith("stopping:"));
    for (const line of [...shown!.split("\n"), ...stopping!.split("\n")]) {
      if (cppRan && line.includes("C++ mesh peer")) continue; // printed only when it did not run
      expect(printed, line).toContain(normalize(line));
    }
    // The plugins leave before the client does: its watch sees them go.
    expect(demo.output()).toMatch(/^\[client\] watch: greeter left .*\n(?:.*\n)*stopped\n$/m);
    expect(demo.output()).toMatch(/^\[client\] watch: counter left .*\n(?:.*\n)*stopped\n$/m);

    // No process left, not even in the peers' process groups; no socket, no discovery file.
    await allGone([...tree, ...peerPids]);
    expect(withEnv(`XDG_RUNTIME_DIR=${env.XDG_RUNTIME_DIR}\0`)).toEqual([]);
    for (const pid of peerPids) expect(() => process.kill(-pid, 0), `process group ${pid}`).toThrow();
    expect(existsSync(join(runtime, "hub.sock"))).toBe(false);
    expect(existsSync(join(runtime, "hub.json"))).toBe(false);
    expect(demo.errors()).toBe("");
  }, 240_000);

  it("SIGTERM while the peers are starting stops them all too", async () => {
    const env = envIn("sigterm");
    const runtime = join(dir, "sigterm", "run", "capmesh");
    const demo = startDemo(env);
    await demo.waitFor(/^\[(greeter|counter)\] registered/m, "a first plugin to register");
    const tree = descendants(demo.child.pid!);
    tree.forEach((pid) => seen.add(pid));
    demo.child.kill("SIGTERM");
    expect(await within(demo.exited, 30_000, () => `the demo to stop:\n${demo.output()}\n${demo.errors()}`)).toEqual({ code: 0, signal: null });
    expect(demo.output()).toMatch(/stopping: the peers leave, then the hub closes\n[^]*stopped\n$/);
    await allGone(tree);
    // A peer starting as we looked is no descendant in `tree`, but it carries the demo's environment.
    expect(withEnv(`XDG_RUNTIME_DIR=${env.XDG_RUNTIME_DIR}\0`)).toEqual([]);
    expect(existsSync(join(runtime, "hub.sock"))).toBe(false);
    expect(existsSync(join(runtime, "hub.json"))).toBe(false);
  }, 240_000);
});

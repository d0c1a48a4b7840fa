// A mesh peer in C++ (peers/cpp/mesh-peer.c++, on Debian's libcapnp and
// libsodium) on a capmesh hub: it passes the secret handshake over the hub's
// unix socket, registers a name that TypeScript peers call (callbacks
// included), calls TypeScript plugins by name, finds the hub and the network
// key as joinMesh does, and leaves the way a TypeScript plugin does.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { generateIdentity, saveIdentity } from "../../src/auth/identity.js";
import { call } from "../../src/cli/call.js";
import { ls } from "../../src/cli/mesh.js";
import { serializeSchema } from "../../src/codegen/dynamic.js";
import { nodesById, openRequest } from "../../src/codegen/nodes.js";
import { Greeter, Listener } from "../../src/gen/demo.js";
import type { Event } from "../../src/gen/mesh.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { buildCppPeers, requireCppOrSkip } from "../helpers/cpp.js";
import { within } from "../rpc/helpers/raw-peer.js";

const gate = requireCppOrSkip();
const BUILD_TIMEOUT = 300_000;

let meshPeer: string;
let home: string;
let hub: MeshHub;
const children: ChildProcess[] = [];
const peers: MeshPeer[] = [];

beforeAll(async () => {
  if (gate.skip) return;
  home = mkdtempSync(join(tmpdir(), "capmesh-cpp-mesh-"));
  meshPeer = (await buildCppPeers()).meshPeer;
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
}, BUILD_TIMEOUT);

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

afterAll(async () => {
  await hub?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

/** The C++ peer's environment: this hub, and nothing of the user's own mesh. */
function cppEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith("CAPMESH_")) delete env[key];
  return { ...env, CAPMESH_HOME: join(home, "cpp-home"), XDG_RUNTIME_DIR: join(home, "cpp-run"), ...hub.env, ...extra };
}

interface Registered {
  child: ChildProcess;
  id: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** `mesh-peer register <name>`; resolves once it printed its ready line. */
async function cppPlugin(name: string, args: string[] = [], env = cppEnv()): Promise<Registered> {
  const child = spawn(meshPeer, ["register", name, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  child.stdin!.on("error", () => {});
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const id = await within(
    new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = new RegExp(`^registered ${name.replace(/\./g, "\\.")} as (\\S+)$`, "m").exec(out);
        if (m) resolve(m[1]!);
      });
      void exited.then(({ code, signal }) => reject(new Error(`mesh-peer register ${name} exited (${code ?? signal}): ${out}${err}`)));
    }),
    20_000,
    () => `mesh-peer register ${name} to register: ${out}${err}`,
  );
  return { child, id, exited, stderr: () => err };
}

/** Runs a `mesh-peer` command to completion. */
function cpp(args: string[], env = cppEnv()): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(meshPeer, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return within(
    new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr }))),
    20_000,
    () => `mesh-peer ${args.join(" ")}: ${stdout}${stderr}`,
  );
}

/** test/mesh/plugin-child.ts: a TypeScript plugin serving Greeter as `name`. */
async function tsPlugin(name: string): Promise<{ child: ChildProcess; id: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/mesh/plugin-child.ts", name], {
    env: { ...process.env, ...hub.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const id = await within(
    new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /registered \S+ as (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once("exit", (code) => reject(new Error(`plugin ${name} exited (${code}): ${out}`)));
    }),
    20_000,
    `plugin ${name} to register`,
  );
  return { child, id };
}

async function client(): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
  peers.push(peer);
  return peer;
}

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A `capmesh` command run in this process against this hub: its exit code and what it printed. */
async function cliHere(command: (args: string[]) => Promise<number>, ...args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const saved: Record<string, string | undefined> = {};
  for (const key of Object.keys(hub.env)) saved[key] = process.env[key];
  Object.assign(process.env, hub.env);
  const log = vi.spyOn(console, "log").mockImplementation((...x: unknown[]) => void out.push(x.join(" ")));
  const error = vi.spyOn(console, "error").mockImplementation((...x: unknown[]) => void err.push(x.join(" ")));
  try {
    const status = await command(args);
    return { status, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    log.mockRestore();
    error.mockRestore();
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** `capmesh <args>` as a process, on this hub. */
function capmesh(args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env: cppEnv(), stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return within(
    new Promise((resolve) => child.once("close", (status) => resolve({ status, stdout, stderr }))),
    60_000,
    () => `capmesh ${args.join(" ")}: ${stdout}${stderr}`,
  );
}

/** The node ids of a serialized CodeGeneratorRequest, and whether any node keeps annotations. */
function schemaNodes(bytes: Uint8Array): { ids: bigint[]; annotated: string[] } {
  const nodes = nodesById(openRequest(bytes));
  return { ids: [...nodes.keys()].sort(), annotated: [...nodes.values()].filter((n) => n.annotations.length > 0).map((n) => n.displayName) };
}

/** Polls `condition` until it holds, failing after `ms` (the other side is another process). */
async function eventually(condition: () => boolean, what: () => string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** JSON for failure messages (the stats hold bigints). */
function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

function describeEvent(e: Event): string {
  if (e.which === "snapshot") return `snapshot[${e.snapshot.map((s) => s.name).join(",")}]`;
  if (e.which === "joined") return `joined ${e.joined.name}`;
  return `left ${e.left.name} (${e.left.reason})`;
}

describe.skipIf(gate.skip)(gate.skip ? `C++ mesh peer (skipped: ${gate.reason})` : "a C++ mesh peer", () => {
  it("registers a name that a TypeScript peer calls: a call, a pipelined call, a callback through the hub", async () => {
    const plugin = await cppPlugin("cpp-greeter");
    const me = await client();
    const greeter = me.connect("cpp-greeter", Greeter);
    expect((await greeter.greet({ name: "typescript" })).greeting).toBe("hello typescript from cpp-greeter (C++)");

    // The room is pipelined on the call that makes it; the C++ room calls our
    // listener back, through the hub, before `say` returns.
    const heard: string[] = [];
    const room = greeter.room({ name: "lobby" }).room;
    const ear = Listener.server({ heard: ({ who, text }) => void heard.push(`${who}: ${text}`) });
    expect((await room.join({ who: "ts", listener: ear })).members).toBe(1);
    await room.say({ who: "ts", text: "hello, C++" });
    expect(heard).toEqual(["ts: hello, C++"]);
    // The same room again, by name.
    await greeter.room({ name: "lobby" }).room.say({ who: "again", text: "still there" });
    expect(heard).toEqual(["ts: hello, C++", "again: still there"]);
    expect(plugin.child.exitCode).toBe(null);
  });

  it("is listed by the hub with its identity and info, and lists the TypeScript plugins", async () => {
    const alpha = await tsPlugin("alpha");
    const plugin = await cppPlugin("cpp-listed");
    const me = await client();
    const entry = (await me.list()).find((e) => e.name === "cpp-listed");
    expect(entry).toMatchObject({
      name: "cpp-listed",
      id: plugin.id,
      info: { version: "0.1.0", protocolVersion: 1, interfaces: [{ id: Greeter.id, name: "Greeter" }] },
    });
    expect(entry!.info.description).toMatch(/^C\+\+ mesh peer \(libcapnp \d+\.\d+\.\d+, libsodium [\d.]+\)$/);
    expect(hub.stats().peers.some((p) => p.id === plugin.id && p.registrations === 1)).toBe(true);

    const listed = await cpp(["list"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.split("\n")).toEqual(
      expect.arrayContaining([`alpha ${alpha.id} test plugin alpha`, `cpp-listed ${plugin.id} ${entry!.info.description}`]),
    );
  });

  it("publishes its schema as joinMesh does: capmesh call lists and calls its methods with no generated code, capmesh ls shows its interface", async () => {
    const plugin = await cppPlugin("greeter-cpp");
    const me = await client();
    const { info } = (await me.hub.lookup({ name: "greeter-cpp" })).entry;
    // The nodes a TypeScript plugin serving Greeter publishes: Greeter, Room,
    // Listener and their 5 methods' params and results; no file nodes, no annotations.
    const fromTs = schemaNodes(serializeSchema([Greeter])!);
    expect(fromTs.ids).toHaveLength(13);
    expect(schemaNodes(info.schema)).toEqual(fromTs);

    const listed = await cliHere(call, "greeter-cpp");
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout.split("\n")).toEqual([
      "greeter-cpp (Greeter):",
      "  Greeter.greet(name :Text) -> (greeting :Text)",
      "  Greeter.room(name :Text) -> (room :Room)",
    ]);
    const room = await cliHere(call, "greeter-cpp", "room", '{"name": "lobby"}');
    expect(room.status, room.stderr).toBe(0);
    expect(JSON.parse(room.stdout)).toEqual({ room: "<capability Room>" });
    const wrong = await cliHere(call, "greeter-cpp", "greet", '{"nom": "x"}');
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/params\.nom: no such field in Greeter\.greet\$Params \(its fields: name\)/);

    const lsHere = await cliHere(ls, "--json");
    expect(lsHere.status, lsHere.stderr).toBe(0);
    expect((JSON.parse(lsHere.stdout) as { name: string }[]).find((e) => e.name === "greeter-cpp")).toMatchObject({
      id: plugin.id,
      interfaces: [{ id: `0x${Greeter.id.toString(16)}`, name: "Greeter" }],
    });

    // As users run it: the greeting from C++ as JSON on stdout, exit 0.
    const greeted = await capmesh(["call", "greeter-cpp", "greet", '{"name":"ts"}']);
    expect(greeted.status, greeted.stderr).toBe(0);
    expect(JSON.parse(greeted.stdout)).toEqual({ greeting: "hello ts from greeter-cpp (C++)" });
  });

  it("calls a TypeScript plugin by name, waits for a name to appear, and reports an unknown name", async () => {
    await tsPlugin("beta");
    const called = await cpp(["call", "beta", "c++"]);
    expect(called, called.stderr).toMatchObject({ code: 0, stdout: "hello c++ from beta\n" });

    const waiting = cpp(["call", "gamma", "early", "--wait", "15000"]);
    // The C++ peer's connect is waiting at the hub before gamma exists.
    await eventually(
      () => hub.stats().peers.some((p) => p.registrations === 0 && p.answers >= 1),
      () => `a waiting connect in ${show(hub.stats())}`,
    );
    // This one in-process: a TypeScript plugin all the same.
    const provide = Greeter.server({ greet: ({ name }) => ({ greeting: `hello ${name} from gamma` }), room: () => ({}) });
    peers.push(await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, name: "gamma", provide }));
    provide.release();
    expect(await waiting).toMatchObject({ code: 0, stdout: "hello early from gamma\n" });

    const unknown = await cpp(["call", "nobody", "x"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^mesh-peer call: .*no plugin named "nobody" is registered/);
  });

  it("leaves like a TypeScript plugin: watchers see `left` on kill -9, SIGTERM and stdin closing, and the hub's tables drain", async () => {
    // Earlier tests' plugins are gone (killed after each test, the hub hears it).
    await eventually(() => hub.stats().registrations === 0, () => show(hub.stats()));
    const me = await client();
    const events: string[] = [];
    using _watch = await me.watch((e) => events.push(describeEvent(e)));
    const killed = await cppPlugin("k-kill");
    const termed = await cppPlugin("k-term");
    const closed = await cppPlugin("k-stdin");
    await eventually(() => events.includes("joined k-stdin"), () => events.join("; "));
    expect(hub.stats().registrations).toBe(3);

    // A call in flight when it dies fails with disconnected.
    const greeter = me.connect("k-kill", Greeter);
    expect((await greeter.greet({ name: "x" })).greeting).toBe("hello x from k-kill (C++)");
    killed.child.kill("SIGKILL");
    await killed.exited;
    await eventually(() => events.some((e) => e.startsWith("left k-kill")), () => events.join("; "));
    await expect(greeter.greet({ name: "y" })).rejects.toMatchObject({ type: "disconnected" });

    termed.child.kill("SIGTERM");
    expect(await termed.exited).toEqual({ code: 0, signal: null });
    closed.child.stdin!.end();
    expect(await closed.exited).toEqual({ code: 0, signal: null });
    await eventually(() => events.some((e) => e.startsWith("left k-stdin")), () => events.join("; "));

    expect(events.filter((e) => e.startsWith("left"))).toEqual([
      expect.stringMatching(/^left k-kill \((released|disconnected)\)$/),
      "left k-term (released)",
      "left k-stdin (released)",
    ]);
    await eventually(() => hub.stats().registrations === 0, () => show(hub.stats()));
    await eventually(() => !hub.stats().peers.some((p) => [killed.id, termed.id, closed.id].includes(p.id)), () => "C++ peers still connected");
  });

  it("exits 1 naming the reason when the hub ends its registration (the name taken over)", async () => {
    const plugin = await cppPlugin("omega");
    const provide = Greeter.server({ greet: () => ({ greeting: "the new omega" }), room: () => ({}) });
    const taker = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, name: "omega", provide, replace: true });
    peers.push(taker);
    expect((await plugin.exited).code).toBe(1);
    expect(plugin.stderr()).toContain(`the hub ended the registration of "omega": replaced by ${taker.id}`);
    provide.release();
  });

  it("says what is wrong when the handshake or the setup fails", async () => {
    const otherKey = Buffer.alloc(32, 7).toString("base64");
    const wrongKey = await cpp(["list"], cppEnv({ CAPMESH_NETWORK_KEY: otherKey }));
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/different network key .*CAPMESH_NETWORK_KEY/);

    const impostor = generateIdentity().id;
    const wrongHub = await cpp(["list"], cppEnv({ CAPMESH_HUB_ID: impostor }));
    expect(wrongHub.code).toBe(1);
    expect(wrongHub.stderr).toContain(`it is not ${impostor} (check CAPMESH_HUB_ID)`);

    const gone = await cpp(["list"], cppEnv({ CAPMESH_HUB: `unix:${join(home, "no-hub.sock")}` }));
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/cannot reach the hub at unix:.*no-hub\.sock: .*capmesh serve/);

    const tcp = await cpp(["list"], cppEnv({ CAPMESH_HUB: "tcp://127.0.0.1:1" }));
    expect(tcp.code).toBe(1);
    expect(tcp.stderr).toMatch(/box-stream, which this peer does not implement/);

    const badKey = await cpp(["list"], cppEnv({ CAPMESH_NETWORK_KEY: "not a key" }));
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/CAPMESH_NETWORK_KEY: a network key is 32 bytes in base64/);

    const usage = await cpp(["register"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/register takes one name\nusage: mesh-peer register/);
  });

  it("finds a hub on the machine's defaults like joinMesh (discovery file, $CAPMESH_HOME/netkey) and runs as a key file's identity", async () => {
    const home2 = join(home, "defaults-home");
    const run2 = join(home, "defaults-run");
    // startHub reads the runtime dir from the environment, as `capmesh serve` does.
    const saved = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = run2;
    let hub2: MeshHub;
    try {
      hub2 = await startHub({ home: home2 });
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = saved;
    }
    try {
      const keyFile = join(home, "plugin.key");
      const identity = generateIdentity();
      await saveIdentity(keyFile, identity);
      const env = cppEnv({ CAPMESH_HOME: home2, XDG_RUNTIME_DIR: run2 });
      for (const key of ["CAPMESH_HUB", "CAPMESH_HUB_ID", "CAPMESH_NETWORK_KEY"]) delete env[key];
      const plugin = await cppPlugin("on-defaults", ["--identity", keyFile], env);
      expect(plugin.id).toBe(identity.id);

      const me = await joinMesh({ hub: hub2.address, hubId: hub2.id, networkKey: hub2.networkKey, handleSignals: false });
      peers.push(me);
      expect((await me.list()).map((e) => [e.name, e.id])).toEqual([["on-defaults", identity.id]]);
      expect((await me.connect("on-defaults", Greeter).greet({ name: "d" })).greeting).toBe("hello d from on-defaults (C++)");

      chmodSync(keyFile, 0o644);
      const insecure = await cpp(["list", "--identity", keyFile], env);
      expect(insecure.code).toBe(1);
      expect(insecure.stderr).toContain(`fix it with: chmod 600 ${keyFile}`);
    } finally {
      await hub2.close();
    }
  });
});

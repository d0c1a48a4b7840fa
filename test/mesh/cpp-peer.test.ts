// A mesh peer in C++ (peers/cpp/mesh-peer.c++, on Debian's libcapnp and
// libsodium) on a capmesh hub: it passes the secret handshake over the hub's
// unix socket, registers a name that TypeScript peers call (callbacks
// included), calls TypeScript plugins by name, finds the hub and the network
// key as joinMesh does, and leaves the way a TypeScript plugin does.
import type { ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, saveIdentity } from "../../src/auth/identity.js";
import { call } from "../../src/cli/call.js";
import { ls } from "../../src/cli/mesh.js";
import { serializeSchema } from "../../src/codegen/dynamic.js";
import { nodesById, openRequest } from "../../src/codegen/nodes.js";
import { Greeter, Listener } from "../../src/gen/demo.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { describeEvent, show } from "./helpers/events.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { buildCppPeers, requireCppOrSkip } from "../helpers/cpp.js";
import { killLeft, run, runCapmesh, runHere, startRegistered, startTsPlugin, type Registered, type Result } from "./helpers/processes.js";

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
  killLeft(children);
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

/** `mesh-peer register <name>`; resolves once it printed its ready line. */
function cppPlugin(name: string, args: string[] = [], env = cppEnv()): Promise<Registered> {
  const what = `mesh-peer register ${name} to register`;
  return startRegistered(name, meshPeer, ["register", name, ...args], { env, stdin: "pipe", children, what });
}

/** Runs a `mesh-peer` command to completion. */
function cpp(args: string[], env = cppEnv()): Promise<Result> {
  return run(meshPeer, args, { env, children, what: `mesh-peer ${args.join(" ")}` });
}

/** test/mesh/plugin-child.ts: a TypeScript plugin serving Greeter as `name`. */
function tsPlugin(name: string): Promise<Registered> {
  return startTsPlugin(name, { env: { ...process.env, ...hub.env }, children });
}

async function client(): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
  peers.push(peer);
  return peer;
}

/** A `capmesh` command run in this process against this hub: its exit code and what it printed. */
function cliHere(command: (args: string[]) => Promise<number>, ...args: string[]): Promise<Result> {
  return runHere(command, args, hub.env);
}

/** `capmesh <args>` as a process, on this hub. */
function capmesh(args: string[]): Promise<Result> {
  return runCapmesh(args, { env: cppEnv(), children });
}

/** The node ids of a serialized CodeGeneratorRequest, and whether any node keeps annotations. */
function schemaNodes(bytes: Uint8Array): { ids: bigint[]; annotated: string[] } {
  const nodes = nodesById(openRequest(bytes));
  return { ids: [...nodes.keys()].sort(), annotated: [...nodes.values()].filter((n) => n.annotations.length > 0).map((n) => n.displayName) };
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
    expect(listed.status, listed.stderr).toBe(0);
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
    expect(called, called.stderr).toMatchObject({ status: 0, stdout: "hello c++ from beta\n" });

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
    expect(await waiting).toMatchObject({ status: 0, stdout: "hello early from gamma\n" });

    const unknown = await cpp(["call", "nobody", "x"]);
    expect(unknown.status).toBe(1);
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
    expect(plugin.errors()).toContain(`the hub ended the registration of "omega": replaced by ${taker.id}`);
    provide.release();
  });

  it("says what is wrong when the handshake or the setup fails", async () => {
    const otherKey = Buffer.alloc(32, 7).toString("base64");
    const wrongKey = await cpp(["list"], cppEnv({ CAPMESH_NETWORK_KEY: otherKey }));
    expect(wrongKey.status).toBe(1);
    expect(wrongKey.stderr).toMatch(/different network key .*CAPMESH_NETWORK_KEY/);

    const impostor = generateIdentity().id;
    const wrongHub = await cpp(["list"], cppEnv({ CAPMESH_HUB_ID: impostor }));
    expect(wrongHub.status).toBe(1);
    expect(wrongHub.stderr).toContain(`it is not ${impostor} (check CAPMESH_HUB_ID)`);

    const gone = await cpp(["list"], cppEnv({ CAPMESH_HUB: `unix:${join(home, "no-hub.sock")}` }));
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/cannot reach the hub at unix:.*no-hub\.sock: .*capmesh serve/);

    const tcp = await cpp(["list"], cppEnv({ CAPMESH_HUB: "tcp://127.0.0.1:1" }));
    expect(tcp.status).toBe(1);
    expect(tcp.stderr).toMatch(/box-stream, which this peer does not implement/);

    const badKey = await cpp(["list"], cppEnv({ CAPMESH_NETWORK_KEY: "not a key" }));
    expect(badKey.status).toBe(1);
    expect(badKey.stderr).toMatch(/CAPMESH_NETWORK_KEY: a network key is 32 bytes in base64/);

    const usage = await cpp(["register"]);
    expect(usage.status).toBe(2);
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
      expect(insecure.status).toBe(1);
      expect(insecure.stderr).toContain(`fix it with: chmod 600 ${keyFile}`);
    } finally {
      await hub2.close();
    }
  });
});

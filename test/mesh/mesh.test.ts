// The mesh over real sockets and real processes: a hub (in this process,
// started with startHub as an embedding service would), plugins in child
// processes, and clients. Register, list, watch, connect by name (with
// wait), per-caller grants, names taken and invalid, kill -9 of a plugin,
// and a hub restart with the plugins registering again on their own.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { Greeter } from "../../src/gen/demo.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { until } from "../rpc/helpers/raw-peer.js";
import { describeEvent, show } from "./helpers/events.js";
import { killLeft, startTsPlugin, type Registered } from "./helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-mesh-"));
const hubIdentity = generateIdentity();
let hub: MeshHub;
const children: ChildProcess[] = [];
const peers: MeshPeer[] = [];

function startTheHub(): Promise<MeshHub> {
  return startHub({ home, socket: join(home, "hub.sock"), identity: hubIdentity });
}

beforeAll(async () => {
  hub = await startTheHub();
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  killLeft(children);
});

afterAll(async () => {
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

/** A plugin process (test/mesh/plugin-child.ts); resolves once it printed that it registered. */
function plugin(name: string, ...args: string[]): Promise<Registered> {
  return startTsPlugin(name, { args, env: { ...process.env, ...hub.env }, children });
}

async function client(options: { directPaths?: false } = {}): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, ...options });
  peers.push(peer);
  return peer;
}

describe("the mesh", () => {
  it("registers plugins, lists and watches them in order, and connects by name", async () => {
    const watcher = await client();
    const events: string[] = [];
    using _watch = await watcher.watch((e) => events.push(describeEvent(e)));
    const a = await plugin("alpha");
    const b = await plugin("beta");
    const me = await client();
    const listed = await me.list();
    expect(listed.map((e) => [e.name, e.id, e.info.version, e.info.description])).toEqual([
      ["alpha", a.id, "1.2.3", "test plugin alpha"],
      ["beta", b.id, "1.2.3", "test plugin beta"],
    ]);
    expect(Number(listed[0]!.since)).toBeLessThanOrEqual(Date.now());
    expect(listed[0]!.info.interfaces).toEqual([{ id: Greeter.id, name: "Greeter" }]);
    const greeter = me.connect("beta", Greeter);
    expect((await greeter.greet({ name: "you" })).greeting).toBe("hello you from beta");
    b.child.kill("SIGTERM");
    await b.exited;
    await until(() => events.includes("left beta (released)") || events.some((e) => e.startsWith("left beta")), () => events.join("; "));
    expect(events.slice(0, 3)).toEqual(["snapshot[]", "joined alpha", "joined beta"]);
    expect(events[3]).toMatch(/^left beta \((released|disconnected)\)$/);
  });

  it("connect with wait resolves when the name appears, and fails after the timeout", async () => {
    const me = await client();
    const later = me.connect("gamma", Greeter, { wait: 15_000 });
    const reply = later.greet({ name: "early caller" });
    await plugin("gamma");
    expect((await reply).greeting).toBe("hello early caller from gamma");
    await expect(me.connect("nobody", Greeter).greet({})).rejects.toThrow(/no plugin named "nobody" is registered/);
    await expect(me.connect("still-nobody", Greeter, { wait: 100 }).greet({})).rejects.toThrow(/within 100 ms/);
  });

  it("grants per caller: each caller gets its own capability, named by the identity the hub proved", async () => {
    await plugin("grants", "grants");
    const one = await client();
    const two = await client();
    expect((await one.connect("grants", Greeter).greet({})).greeting).toBe(`hello ${one.id}`);
    expect((await two.connect("grants", Greeter).greet({})).greeting).toBe(`hello ${two.id}`);
  });

  it("refuses a taken name, and an invalid one, with a clear error; exactly one of two racers wins", async () => {
    await plugin("delta");
    const provide = Greeter.server({ greet: () => ({ greeting: "x" }), room: () => ({}) });
    const opts = { hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, provide };
    await expect(joinMesh({ ...opts, name: "delta" })).rejects.toThrow(/the name "delta" is taken/);
    await expect(joinMesh({ ...opts, name: "Bad Name" })).rejects.toThrow(/invalid plugin name/);
    await expect(joinMesh({ ...opts, name: "x".repeat(129) })).rejects.toThrow(/at most 128 characters/);
    const racers = await Promise.allSettled([joinMesh({ ...opts, name: "epsilon" }), joinMesh({ ...opts, name: "epsilon" })]);
    expect(racers.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = racers.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(String(lost.reason)).toMatch(/the name "epsilon" is taken/);
    for (const r of racers) if (r.status === "fulfilled") await r.value.close();
    provide.release();
  });

  it("kill -9 of a plugin: watchers hear it left, calls in flight fail with disconnected, the hub's tables drain", async () => {
    // Through the hub, so that the call in flight is in the hub's tables (test/mesh/direct.test.ts kills a host on a direct path).
    const me = await client({ directPaths: false });
    // Earlier tests' peers are gone: the hub holds our connection alone.
    await until(() => hub.stats().connections === 1, () => show(hub.stats()), 50_000);
    const baseline = hub.stats();
    const events: string[] = [];
    const watch = await me.watch((e) => events.push(describeEvent(e)));
    const z = await plugin("zeta");
    const greeter = me.connect("zeta", Greeter);
    expect((await greeter.greet({ name: "first" })).greeting).toBe("hello first from zeta");
    const inFlight = greeter.greet({ name: "wait" });
    // The hub has passed the call on to the plugin: a question on that connection.
    await until(() => hub.stats().peers.some((p) => p.id === z.id && p.questions >= 1), () => show(hub.stats()), 50_000);
    z.child.kill("SIGKILL");
    await expect(inFlight).rejects.toMatchObject({ type: "disconnected" });
    await until(() => events.includes("left zeta (released)"), () => events.join("; "));
    greeter.release();
    watch[Symbol.dispose]();
    await until(
      () => {
        const now = hub.stats();
        return now.connections === baseline.connections && now.registrations === baseline.registrations && now.watchers === baseline.watchers;
      },
      () => show(hub.stats()),
    );
    const mine = hub.stats().peers.find((p) => p.id === me.id)!;
    const before = baseline.peers.find((p) => p.id === me.id)!;
    await until(() => {
      const now = hub.stats().peers.find((p) => p.id === me.id)!;
      return now.imports === before.imports && now.exports === before.exports && now.questions === 0 && now.answers === 0;
    }, () => show({ mine, before }));
  });

  it("a plugin registers again on its own after the hub restarts; capabilities from before fail with disconnected", async () => {
    const eta = await plugin("eta");
    const me = await client();
    const old = me.connect("eta", Greeter);
    expect((await old.greet({ name: "a" })).greeting).toBe("hello a from eta");
    await hub.close();
    await expect(old.greet({ name: "b" })).rejects.toMatchObject({ type: "disconnected" });
    hub = await startTheHub();
    // The plugin's SDK reconnects with backoff and registers again.
    const fresh = await client();
    const again = fresh.connect("eta", Greeter, { wait: 15_000 });
    expect((await again.greet({ name: "c" })).greeting).toBe("hello c from eta");
    expect((await fresh.list()).map((e) => [e.name, e.id])).toEqual([["eta", eta.id]]);
  });
});

// Many calls at once, or one at a time, in the mesh: a hub in this process,
// the plugin a child process (test/mesh/probe-child.ts), clients here. By
// default a plugin runs calls in parallel (10,000 at once complete, over a
// direct path and through the hub); joinMesh({ sequential: true }) runs
// them one at a time in arrival order; a call back into a sequential plugin
// from inside its own call fails when the chain stays in the plugin's
// process, and waits in the queue when it passes through another process.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type JoinOptions, type MeshPeer } from "../../src/mesh/join.js";
import { CallQueue } from "../../src/rpc/sequential.js";
import { innermost } from "../../src/rpc/hook.js";
import { LocalServerHook } from "../../src/rpc/local.js";
import { hookOf } from "../../src/rpc/typed.js";
import { eventually, within } from "../rpc/helpers/raw-peer.js";
import { Gates, ProbeImpl, statsOf } from "../rpc/helpers/probe.js";
import { Callback, Probe, type ProbeServer } from "../rpc/schema/actors.js";
import { killLeftAndWait, startTsPlugin } from "./helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-seq-"));
let hub: MeshHub;
const children: ChildProcess[] = [];
const peers: MeshPeer[] = [];

beforeAll(async () => {
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await killLeftAndWait(children);
});

afterAll(async () => {
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

async function client(options: Partial<JoinOptions> = {}): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, ...options });
  peers.push(peer);
  return peer;
}

const N = 8;
const CALLS = 10_000;

/** One plugin child for a describe block (its tests measure from where the previous left off). */
function shared(name: string, ...args: string[]): void {
  const mine: ChildProcess[] = [];
  beforeAll(async () => {
    await startTsPlugin(name, { script: "test/mesh/probe-child.ts", args, env: { ...process.env, ...hub.env }, children: mine });
  });
  afterAll(() => killLeftAndWait(mine));
}

describe("parallel by default", () => {
  shared("probe");

  it.each([
    // Direct paths on (the default): the calls after the first go to the
    // plugin directly, or, if the handoff falls back, through the hub.
    ["with direct paths on", {}, ["direct", "hub"]],
    ["through the hub", { directPaths: false }, ["hub"]],
  ] as const)("10,000 concurrent calls to one plugin complete, %s", async (_how, options, paths) => {
    const c = await client(options);
    const probe = c.connect("probe", Probe);
    const before = await statsOf(probe);
    const results = await within(
      Promise.all(Array.from({ length: CALLS }, (_, id) => probe.poke({ id }))),
      60_000,
      `${CALLS} calls to return`,
    );
    // Each call entered once: `seen` (the count as each entered) takes every value once.
    expect(new Set(results.map((r) => r.seen)).size).toBe(CALLS);
    const stats = await statsOf(probe);
    expect(stats.entered - before.entered).toBe(CALLS);
    // Calls arrive in the order they were made, also across the switch to the direct path.
    expect(stats.order.slice(before.order.length)).toEqual([...Array(CALLS).keys()]);
    expect(paths).toContain(c.pathOf(probe).path);
  });

  it("a plugin runs calls at once", async () => {
    const c = await client();
    const probe = c.connect("probe", Probe);
    const gates = new Gates();
    const calls = Array.from({ length: N }, (_, id) => probe.work({ id, gate: gates.cap }));
    await within(gates.until(() => gates.waiting.size === N), 20_000, "every call waiting on its gate");
    for (const id of [...gates.waiting.keys()]) gates.open(id);
    const results = await Promise.all(calls);
    expect(results.map((r) => r.id)).toEqual([...Array(N).keys()]);
    // The last call in found all N inside.
    expect(Math.max(...results.map((r) => r.active))).toBe(N);
  });

  it("engine → plugin → a closure in another process → plugin completes: a parallel plugin takes the call back at once", async () => {
    const c = await client();
    const probe = c.connect("probe", Probe);
    const closure = Callback.server({ run: async () => ({ text: `seen ${(await probe.poke({ id: 1 })).seen}` }) });
    expect((await within(probe.via({ callback: closure }), 20_000, "via to return")).text).toMatch(/^seen \d+$/);
    // Through a closure of the plugin's own process, too.
    expect((await within(probe.via({}), 20_000, "via to return")).text).toMatch(/^seen \d+$/);
  });
});

describe("joinMesh({ sequential: true })", () => {
  shared("actor", "--sequential");

  it("runs calls (streaming ones too) one at a time, in arrival order, from several clients", async () => {
    const [a, b] = [await client(), await client({ directPaths: false })];
    const probes = [a.connect("actor", Probe), b.connect("actor", Probe)];
    const monitor = a.connect("actor-monitor", Probe);
    const before = await statsOf(monitor);
    const gates = new Gates();
    // Client a's calls first, each answered only once the test opens its gate.
    const first = probes[0]!.work({ id: 0, gate: gates.cap });
    await within(gates.until(() => gates.waiting.has(0)), 20_000, "the first call waiting on its gate");
    const calls: Promise<unknown>[] = [first];
    for (let id = 1; id < N; id++) {
      const probe = probes[id < N / 2 ? 0 : 1]!;
      calls.push(id % 2 === 0 ? probe.work({ id, gate: gates.cap }) : probe.push({ id, gate: gates.cap }));
      // Each call waits in the plugin's queue before the next is made: arrival order is the id order.
      const queued = async () => (await statsOf(monitor)).queued;
      const deadline = Date.now() + 20_000;
      while ((await queued()) < id) if (Date.now() > deadline) throw new Error(`call ${id} never queued`);
    }
    expect([...gates.waiting.keys()]).toEqual([0]);
    for (let id = 0; id < N; id++) {
      await within(gates.until(() => gates.waiting.has(id)), 20_000, `call ${id} waiting on its gate`);
      expect([...gates.waiting.keys()]).toEqual([id]);
      gates.open(id);
    }
    await Promise.all(calls);
    const stats = await statsOf(monitor);
    expect(stats.maxActive).toBe(1);
    expect(stats.order.slice(before.order.length)).toEqual([...Array(N).keys()]);
  });

  it("engine → plugin → a closure of the plugin's process → plugin: fails with a clear error instead of deadlocking", async () => {
    const c = await client();
    const probe = c.connect("actor", Probe);
    const { text } = await within(probe.via({}), 20_000, "via to return");
    expect(text).toBe(
      "error: Probe.poke re-entered a sequential capability while its call Probe.via is still running: it would wait for itself forever; " +
        "make the capability parallel, or do not call back into it from its own call",
    );
    const { seen } = await probe.poke({ id: 1 });
    expect((await probe.poke({ id: 2 })).seen).toBe(seen + 1);
  });

  it("engine → plugin → a closure in another process → plugin: waits in the queue until its caller gives up, then the plugin carries on", async () => {
    const c = await client();
    const probe = c.connect("actor", Probe);
    const monitor = c.connect("actor-monitor", Probe);
    await probe.poke({ id: 0 });
    const before = await statsOf(monitor);
    // The closure lives in this process: the call it makes arrives at the
    // plugin as any caller's would (no causal context on the wire), and
    // queues behind the call that waits for it, until its timeout cancels it.
    const closure = Callback.server({ run: async () => ({ text: `seen ${(await probe.poke({ id: 42 }, { timeout: 300 })).seen}` }) });
    const { text } = await within(probe.via({ callback: closure }), 20_000, "via to return");
    expect(text).toMatch(/^error: Probe\.poke timed out after 300 ms/);
    // The canceled call still runs once its turn comes (a peer's call is
    // always delivered; its ctx.signal fires), then the next one.
    await probe.poke({ id: 2 });
    const after = await statsOf(monitor);
    expect(after.order.slice(before.order.length)).toEqual([42, 2]);
    expect(after.maxActive).toBe(1);
  });

  it("also with a per-caller provide: every caller's capability shares the plugin's one queue", async () => {
    // A plugin in this process whose provide makes a server object per caller.
    const shared = new ProbeImpl();
    const made: Probe[] = [];
    await client({
      name: "percaller",
      provide: () => {
        const cap = Probe.server({ work: (p: Parameters<ProbeImpl["work"]>[0]) => shared.work(p), stats: () => shared.stats() } as unknown as ProbeServer);
        made.push(cap.dup());
        return cap;
      },
      sequential: true,
    });
    const [a, b] = [await client(), await client()];
    const gates = new Gates();
    const first = a.connect("percaller", Probe).work({ id: 0, gate: gates.cap });
    await within(gates.until(() => gates.waiting.has(0)), 20_000, "the first call waiting on its gate");
    const second = b.connect("percaller", Probe).work({ id: 1, gate: gates.cap });
    await eventually(() => made.length === 2, "the second caller's capability made");
    const queues = made.map((cap) => (innermost(hookOf(cap)) as LocalServerHook).sequential);
    expect(queues[0]).toBeInstanceOf(CallQueue);
    expect(queues[1]).toBe(queues[0]);
    await eventually(() => queues[0]!.waiting === 1, "the second caller's call queued");
    gates.open(0);
    await within(gates.until(() => gates.waiting.has(1)), 20_000, "the second call waiting on its gate");
    gates.open(1);
    await Promise.all([first, second]);
    expect(shared.maxActive).toBe(1);
    expect(shared.order).toEqual([0, 1]);
    made.forEach((cap) => cap.release());
  });

  it("refuses what it cannot make sequential", async () => {
    await expect(client({ sequential: true })).rejects.toThrow(/`sequential` applies to what `provide` serves, and this peer provides nothing/);
  });
});

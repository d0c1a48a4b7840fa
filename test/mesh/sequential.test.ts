// Many calls at once, or one at a time, in the mesh: a hub in this process,
// the plugin a child process (test/mesh/probe-child.ts), clients here. By
// default a plugin runs calls in parallel (10,000 at once complete, over a
// direct path and through the hub); joinMesh({ sequential: true }) runs
// them one at a time in arrival order; a call back into a sequential plugin
// from inside its own call fails at once, whether the chain stays in the
// plugin's process or passes through other processes (the calls carry their
// causes), while an unrelated caller's call waits its turn.
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
import { RpcError } from "../../src/rpc/errors.js";
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

  const REENTERED_ACROSS =
    /Probe\.poke re-entered sequential capability Probe from inside its own running call Probe\.via, through another vat: it would wait behind that call, which waits for it, forever \(a deadlock\); make the capability parallel, or do not call back into it from what that call calls \(a closure in another vat\): give callbacks a parallel capability$/;

  it.each([
    ["with direct paths on", {}, "direct"],
    ["through the hub", { directPaths: false }, "hub"],
  ] as const)(
    "engine → plugin → a closure in another process → plugin: fails at once with a clear error, the plugin's call completes, the plugin carries on (%s)",
    async (_how, options, path) => {
      const c = await client(options);
      const probe = c.connect("actor", Probe);
      const monitor = c.connect("actor-monitor", Probe);
      await probe.poke({ id: 0 });
      // The plugin's capability is reached the way this case is about.
      if (path === "direct") await eventually(() => c.pathOf(probe).path === "direct", () => JSON.stringify(c.pathOf(probe)));
      expect(c.pathOf(probe).path).toBe(path);
      const before = await statsOf(monitor);
      // The closure lives in this process: the plugin's call to it carries the
      // plugin's turn token, and so does the closure's call back.
      let error: unknown = null;
      const closure = Callback.server({
        run: async () => {
          try {
            await probe.poke({ id: 42 });
            return { text: "called back" };
          } catch (err) {
            error = err;
            // The plugin's call takes the closure's answer and completes.
            return { text: "caught" };
          }
        },
      });
      const { text } = await within(probe.via({ callback: closure }), 20_000, "via to return instead of deadlocking");
      expect(text).toBe("caught");
      expect(error).toBeInstanceOf(RpcError);
      expect((error as RpcError).type).toBe("failed");
      expect((error as RpcError).message).toMatch(REENTERED_ACROSS);
      // The plugin carries on; the failed call never entered it.
      await probe.poke({ id: 2 });
      const after = await statsOf(monitor);
      expect(after.order.slice(before.order.length)).toEqual([2]);
      expect(after.maxActive).toBe(1);
      expect(c.pathOf(probe).path).toBe(path);
    },
  );

  it("an unrelated caller's call, made while the plugin's call waits for its closure, queues and runs after it", async () => {
    const [a, b] = [await client(), await client({ directPaths: false })];
    const probe = a.connect("actor", Probe);
    const other = b.connect("actor", Probe);
    const monitor = a.connect("actor-monitor", Probe);
    await Promise.all([probe.poke({ id: 0 }), other.poke({ id: 0 })]);
    const before = await statsOf(monitor);
    let entered!: () => void;
    const inClosure = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // Calls that carry the plugin's token but reach a parallel capability run
    // at once: the monitor is in the plugin's process, beside the actor.
    let monitorSaw = -1;
    const closure = Callback.server({
      run: async () => {
        monitorSaw = (await monitor.stats()).queued;
        entered();
        await released;
        return { text: "released" };
      },
    });
    const via = probe.via({ callback: closure });
    await within(inClosure, 20_000, "the closure to run");
    expect(monitorSaw).toBe(0);
    const unrelated = other.poke({ id: 7 });
    const deadline = Date.now() + 20_000;
    while ((await statsOf(monitor)).queued !== 1) if (Date.now() > deadline) throw new Error("the unrelated call never queued");
    release();
    expect((await within(via, 20_000, "via to return")).text).toBe("released");
    await within(unrelated, 20_000, "the unrelated call to run");
    const after = await statsOf(monitor);
    expect(after.order.slice(before.order.length)).toEqual([7]);
    expect(after.maxActive).toBe(1);
  });

  it("a cycle through two sequential plugins (P's call calls Q's, which calls P) fails at once; both carry on", async () => {
    const mine: ChildProcess[] = [];
    try {
      await startTsPlugin("q-seq", {
        script: "test/mesh/callback-child.ts",
        args: ["actor", "--sequential"],
        env: { ...process.env, ...hub.env },
        children: mine,
      });
      const c = await client();
      const probe = c.connect("actor", Probe);
      const q = c.connect("q-seq", Callback, { wait: 10_000 });
      const { text } = await within(probe.via({ callback: q }), 20_000, "via to return instead of deadlocking");
      expect(text).toMatch(new RegExp(`^error: ${REENTERED_ACROSS.source.slice(0, -1)}`));
      // Neither is stuck: Q calls P again (P is idle now), and P answers.
      expect((await within(q.run(), 20_000, "Q's run to return")).text).toMatch(/^seen \d+$/);
      expect((await probe.poke({ id: 3 })).seen).toBeGreaterThan(0);
    } finally {
      await killLeftAndWait(mine);
    }
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

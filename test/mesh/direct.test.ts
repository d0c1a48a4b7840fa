// Direct peer paths in the mesh (rpc.capnp Level 3 three-party handoff), over
// real sockets between real processes: the hub in this process (startHub),
// plugins as children (test/mesh/direct-child.ts, a Counter that prints
// every call and the connection it came over), clients in this process.
// A capability of plugin B that reaches client A through the hub is picked
// up from B directly: B sees A's calls come from A, not from the hub, the
// hub's forwarded-call counter stays flat while the bytes on A's direct
// connection grow, and the hub's tables return to their baseline.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type JoinOptions, type MeshPeer } from "../../src/mesh/join.js";
import { FrameGate } from "../helpers/frame-gate.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { Counter } from "../rpc/fixtures.js";
import { show } from "./helpers/events.js";
import { calls, DIRECT_CHILD, printed } from "./helpers/direct-child.js";
import { killLeftAndWait, startTsPlugin, type Registered } from "./helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-direct-"));
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
  // Every peer's direct socket went with it: only the hub's own files are left.
  const left = readdirSync(home).filter((f) => f.startsWith("peer-"));
  rmSync(home, { recursive: true, force: true });
  expect(left).toEqual([]);
});

const CHILD = DIRECT_CHILD;

function plugin(name: string, ...args: string[]): Promise<Registered> {
  return startTsPlugin(name, { script: CHILD, args, env: { ...process.env, ...hub.env }, children });
}

async function client(options: Partial<JoinOptions> = {}, on: MeshHub = hub): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: on.address, hubId: on.id, networkKey: on.networkKey, handleSignals: false, ...options });
  peers.push(peer);
  return peer;
}



function deltas(p: Registered, from = 0): number[] {
  return calls(p)
    .slice(from)
    .map((c) => c.delta);
}

const forwarded = () => Number(hub.stats().forwardedCalls);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Waits until the hub's tables for `id` are back to what they were, and it holds no Level 3 state for it. */
async function hubDrained(baseline: ReturnType<MeshHub["stats"]>): Promise<void> {
  const tables = (s: ReturnType<MeshHub["stats"]>) =>
    s.peers.map((p) => ({ id: p.id, q: p.questions, a: p.answers, i: p.imports, e: p.exports, pr: p.provisions, v: p.vines }));
  const want = tables(baseline);
  await eventually(
    () => {
      const now = tables(hub.stats());
      return want.every((w) => now.some((n) => JSON.stringify(n) === JSON.stringify(w)));
    },
    () => `hub tables back to ${show(want)}; now ${show(tables(hub.stats()))}`,
  );
}

describe("direct paths between mesh peers", () => {
  it("in results: connect() by name picks the capability up from its host, and the hub forwards none of the calls", async () => {
    const b = await plugin("direct-b");
    const a = await client();
    // Once A's hello and bootstrap are finished.
    await eventually(() => hub.stats().peers.every((p) => p.answers === 0 && p.questions === 0), () => show(hub.stats()));
    const baseline = hub.stats();
    expect(baseline.directPaths).toBe(true);
    expect(baseline.peers.find((p) => p.id === a.id)?.directPaths).toBe(true);

    const cap = a.connect("direct-b", Counter);
    expect((await cap.add({ delta: 1n })).value).toBe(1n);
    await eventually(() => a.pathOf(cap).path === "direct", () => show(a.pathOf(cap)));
    expect(a.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
    expect(hub.stats().introductions).toBeGreaterThan(baseline.introductions);

    const direct = () => a.stats().connections.find((c) => c.kind === "direct" && c.peer === b.id);
    await eventually(() => direct() !== undefined, () => show(a.stats()));
    const before = { forwarded: forwarded(), bytes: direct()!.bytesOut };
    for (const n of range(2, 41)) await cap.add({ delta: BigInt(n) });
    // Every call went over A's own connection to B: B saw A as the caller, the bytes grew, the hub passed on nothing.
    expect(forwarded()).toBe(before.forwarded);
    expect(direct()!.bytesOut).toBeGreaterThan(before.bytes + 40 * 16);
    await eventually(() => calls(b).length === 41, () => b.output());
    expect(deltas(b)).toEqual(range(1, 41));
    expect(calls(b).slice(1).every((c) => c.via === a.id)).toBe(true);
    expect(a.stats().handoffs).toMatchObject({ accepted: 1, fellBack: 0, pending: 0 });

    cap.release();
    await hubDrained(baseline);
  });

  it("on the wire: the Provide to the host, thirdPartyHosted to the recipient, the vine's Release and the Provide's Finish", async () => {
    const gateB = await FrameGate.start({ target: hub.address, dir: home, name: "wire-b.sock" });
    const gateA = await FrameGate.start({ target: hub.address, dir: home, name: "wire-a.sock" });
    try {
      const b = await startTsPlugin("direct-wire", { script: CHILD, env: { ...process.env, ...hub.env, CAPMESH_HUB: gateB.address }, children });
      const a = await client({ hub: gateA.address });
      const cap = a.connect("direct-wire", Counter);
      await cap.add({ delta: 1n });
      const provide = await gateB.waitFor((e) => e.dir === "fromTarget" && e.kind === "provide", { what: "the Provide to B" });
      const handedOn = await gateA.waitFor((e) => e.dir === "fromTarget" && e.thirdPartyHosted, { what: "thirdPartyHosted to A" });
      expect(handedOn.kind).toBe("return");
      // A picked it up: it released the vine, and the hub finished the Provide.
      await gateA.waitFor((e) => e.dir === "toTarget" && e.kind === "release", { what: "A's Release of the vine", after: handedOn.seq });
      await gateB.waitFor((e) => e.dir === "fromTarget" && e.kind === "finish" && e.questionId === provide.questionId, {
        what: "the hub's Finish of the Provide",
        after: provide.seq,
      });
      // Later calls pass neither gate.
      const framesBefore = [gateA.log.length, gateB.log.length];
      for (const n of range(2, 11)) await cap.add({ delta: BigInt(n) });
      await printed(b, 11);
      expect(deltas(b)).toEqual(range(1, 11));
      expect(gateA.log.slice(framesBefore[0]).filter((e) => e.kind === "call")).toEqual([]);
      expect(gateB.log.slice(framesBefore[1]).filter((e) => e.kind === "call")).toEqual([]);
      expect(b.output()).toContain(`got 11 via ${a.id}`);
      cap.release();
    } finally {
      for (const p of peers.splice(0)) await p.close();
      await killLeftAndWait(children);
      await gateA.close();
      await gateB.close();
    }
  });

  it("calls pipelined before the plugin registers arrive in order, then go direct", async () => {
    const a = await client();
    const cap = a.connect("direct-late", Counter, { wait: 15_000 });
    const early = range(1, 20).map((n) => cap.add({ delta: BigInt(n) }));
    const b = await plugin("direct-late");
    await Promise.all(early);
    const late = range(21, 40).map((n) => cap.add({ delta: BigInt(n) }));
    await Promise.all(late);
    await printed(b, 40);
    expect(deltas(b)).toEqual(range(1, 40));
    expect(a.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
    // The last calls came from A itself.
    expect(calls(b).at(-1)!.via).toBe(a.id);
    cap.release();
  });

  it("by Resolve: a capability a Provider makes per caller is picked up directly too", async () => {
    const b = await plugin("direct-grants", "--grants");
    const a = await client();
    const cap = a.connect("direct-grants", Counter);
    const first = range(1, 10).map((n) => cap.add({ delta: BigInt(n) }));
    await Promise.all(first);
    await eventually(() => a.pathOf(cap).path === "direct", () => show(a.pathOf(cap)));
    await cap.add({ delta: 11n });
    await printed(b, 11);
    expect(deltas(b)).toEqual(range(1, 11));
    expect(calls(b).at(-1)!.via).toBe(a.id);
    cap.release();
  });

  it("in params: a plugin handed another plugin's capability calls it directly", async () => {
    const q = await plugin("direct-q");
    const r = await plugin("direct-r");
    // The client itself stays on the hub's path: what it hands on is the hub's import of Q.
    const p = await client({ directPaths: false });
    const qCap = p.connect("direct-q", Counter);
    const rCap = p.connect("direct-r", Counter);
    expect((await rCap.forward({ cap: qCap, delta: 7n })).value).toBe(7n);
    // Q saw the call come from R, not from the hub.
    expect(await printed(q, 1)).toEqual([{ delta: 7, via: r.id }]);
    expect(p.pathOf(qCap)).toMatchObject({ path: "hub", peer: hub.id });
    qCap.release();
    rCap.release();
  });

  it("any introducer: a client hands a capability it holds directly to another plugin, which picks it up from its host", async () => {
    const q = await plugin("direct-q2");
    const r = await plugin("direct-r2");
    const a = await client();
    const qCap = a.connect("direct-q2", Counter);
    const rCap = a.connect("direct-r2", Counter);
    await Promise.all([qCap.add({ delta: 0n }), rCap.add({ delta: 0n })]);
    await eventually(() => a.pathOf(qCap).path === "direct" && a.pathOf(rCap).path === "direct", () => show([a.pathOf(qCap), a.pathOf(rCap)]));
    const forwardedBefore = forwarded();
    // A sends Q's capability to R over its direct connection to R: A, not the hub, introduces R to Q.
    expect((await rCap.forward({ cap: qCap, delta: 5n })).value).toBe(5n);
    expect((await printed(q, 2)).at(-1)).toEqual({ delta: 5, via: r.id });
    expect(a.stats().handoffs.introductions).toBe(1);
    expect(forwarded()).toBe(forwardedBefore);
    qCap.release();
    rCap.release();
  });

  it("a peer that opts out gets everything through the hub, and the hub counts the calls it forwards", async () => {
    const b = await plugin("direct-optout");
    const a = await client({ directPaths: false });
    expect(a.stats().directPaths).toMatchObject({ enabled: false, listening: [] });
    expect(hub.stats().peers.find((p) => p.id === a.id)?.directPaths).toBe(false);
    const cap = a.connect("direct-optout", Counter);
    const before = { forwarded: forwarded(), introductions: hub.stats().introductions };
    for (const n of range(1, 10)) await cap.add({ delta: BigInt(n) });
    expect(a.pathOf(cap)).toEqual({ path: "hub", peer: hub.id });
    expect(forwarded()).toBe(before.forwarded + 10);
    expect(hub.stats().introductions).toBe(before.introductions);
    expect((await printed(b, 10)).every((c) => c.via === hub.id)).toBe(true);
    expect(a.stats().connections.map((c) => c.kind)).toEqual(["hub"]);
    cap.release();
  });

  it("a host that opts out is reached through the hub", async () => {
    const b = await plugin("direct-host-optout", "--no-direct");
    const a = await client();
    const cap = a.connect("direct-host-optout", Counter);
    for (const n of range(1, 5)) await cap.add({ delta: BigInt(n) });
    expect(a.pathOf(cap)).toEqual({ path: "hub", peer: hub.id });
    expect((await printed(b, 5)).map((c) => c.via)).toEqual(Array(5).fill(hub.id));
    cap.release();
  });

  it("a hub with direct paths off proxies everything, whatever its peers say", async () => {
    const off = await startHub({ home, socket: join(home, "hub-off.sock"), identity: generateIdentity(), directPaths: false });
    try {
      const offPlugin = await startTsPlugin("direct-off", { script: CHILD, env: { ...process.env, ...off.env }, children });
      const a = await client({}, off);
      const cap = a.connect("direct-off", Counter);
      for (const n of range(1, 5)) await cap.add({ delta: BigInt(n) });
      expect(off.stats()).toMatchObject({ directPaths: false, introductions: 0n, forwardedCalls: 5n });
      expect(a.pathOf(cap)).toEqual({ path: "hub", peer: off.id });
      expect((await printed(offPlugin, 5)).map((c) => c.via)).toEqual(Array(5).fill(off.id));
      cap.release();
    } finally {
      for (const p of peers.splice(0)) await p.close();
      await killLeftAndWait(children);
      await off.close();
    }
  });

  it("policy.direct refusing a peer keeps its calls on the hub's path", async () => {
    const a = generateIdentity();
    const strict = await startHub({
      home,
      socket: join(home, "hub-strict.sock"),
      identity: generateIdentity(),
      policy: { direct: [{ peer: a.id, allow: false }] },
    });
    try {
      const b = await startTsPlugin("direct-strict", { script: CHILD, env: { ...process.env, ...strict.env }, children });
      const refused = await client({ identity: a }, strict);
      const allowed = await client({}, strict);
      const viaHub = refused.connect("direct-strict", Counter);
      const direct = allowed.connect("direct-strict", Counter);
      await viaHub.whenResolved();
      await direct.whenResolved();
      await viaHub.add({ delta: 1n });
      await direct.add({ delta: 2n });
      expect(allowed.pathOf(direct)).toEqual({ path: "direct", peer: b.id });
      expect(refused.pathOf(viaHub)).toEqual({ path: "hub", peer: strict.id });
      expect(await printed(b, 2)).toEqual([
        { delta: 1, via: strict.id },
        { delta: 2, via: allowed.id },
      ]);
      viaHub.release();
      direct.release();
    } finally {
      for (const p of peers.splice(0)) await p.close();
      await killLeftAndWait(children);
      await strict.close();
    }
  });
});

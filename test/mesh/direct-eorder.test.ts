// E-order across the switch to a direct path (rpc.capnp Level 3, the 3PH
// embargo), with the race made real: plugin B and client A reach the hub
// through frame gates (test/helpers/frame-gate.ts) that hold the hub's
// frames to each of them, so that a call A pipelined before the handoff is
// still on its way to B through the hub when A's next call could go
// directly. With the embargo B gets them in A's order; without it (a
// test-only switch) B gets the later call first — proof that the race is
// there. And when the hub (the introducer) dies mid-embargo, A's calls fail
// with `disconnected` instead of hanging, and every table drains.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub } from "../../src/mesh/hub.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { FrameGate, type FrameEntry } from "../helpers/frame-gate.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { Counter } from "../rpc/fixtures.js";
import { show } from "./helpers/events.js";
import { childStats, DIRECT_CHILD, type ChildStats } from "./helpers/direct-child.js";
import { killLeftAndWait, start, startTsPlugin, TSX, type Registered } from "./helpers/processes.js";

const CHILD = DIRECT_CHILD;
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await killLeftAndWait(children);
});

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), "capmesh-eorder-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface HubEnv {
  CAPMESH_HUB: string;
  CAPMESH_HUB_ID: string;
  CAPMESH_NETWORK_KEY: string;
}

/** The order in which B printed the calls it got. */
function deltas(b: Registered): number[] {
  return [...b.output().matchAll(/^got (-?\d+) via /gm)].map((m) => Number(m[1]));
}

interface Race {
  a: MeshPeer;
  b: Registered;
  gateA: FrameGate;
  gateB: FrameGate;
  cap: Counter;
  p1: Promise<unknown>;
  p2: Promise<unknown>;
  settled: Set<string>;
}

/**
 * Up to the moment the handoff races: B's hub link holds everything after
 * the Provide (so add(1), pipelined by A before the handoff and forwarded
 * by the hub, waits there, and so does A's Disembargo behind it); A has its
 * thirdPartyHosted Return and has made add(2), which may now go directly.
 */
async function raceToTheSwitch(dir: string, env: HubEnv, options: { unsafeNoEmbargo?: boolean } = {}): Promise<Race> {
  const hubPath = env.CAPMESH_HUB;
  const gateB = await FrameGate.start({ target: hubPath, dir, name: "b" });
  const gateA = await FrameGate.start({ target: hubPath, dir, name: "a" });
  cleanups.push(() => gateA.close(), () => gateB.close());
  const b = await startTsPlugin("eorder-b", {
    script: CHILD,
    args: ["--stats"],
    stdin: "pipe",
    env: { ...process.env, ...env, CAPMESH_HUB: gateB.address, DEBUG: "capmesh:handoff" },
    children,
  });
  const a = await joinMesh({
    hub: gateA.address,
    hubId: env.CAPMESH_HUB_ID,
    networkKey: env.CAPMESH_NETWORK_KEY,
    handleSignals: false,
    ...(options.unsafeNoEmbargo ? { directPaths: { _unsafeNoEmbargo: true } } : {}),
  });
  cleanups.push(() => a.close());

  const isProvide = (e: FrameEntry) => e.dir === "fromTarget" && e.kind === "provide";
  gateB.holdAfter("fromTarget", isProvide);
  gateA.hold("fromTarget");
  const cap = a.connect("eorder-b", Counter);
  cleanups.push(() => cap.release());
  const provide = await gateB.waitFor(isProvide, { what: "the hub's Provide to B" });

  const settled = new Set<string>();
  const p1 = cap.add({ delta: 1n });
  p1.then(
    () => settled.add("p1"),
    () => settled.add("p1"),
  );
  await gateB.waitFor((e) => e.dir === "fromTarget" && e.kind === "call" && e.state === "held", {
    what: "add(1), forwarded by the hub, held on B's link",
    after: provide.seq,
  });
  gateA.release("fromTarget");
  await eventually(() => a.stats().handoffs.pending === 1, () => `A to get the thirdPartyHosted Return: ${show(a.stats().handoffs)}`);
  const p2 = cap.add({ delta: 2n });
  p2.then(
    () => settled.add("p2"),
    () => settled.add("p2"),
  );
  return { a, b, gateA, gateB, cap, p1, p2, settled };
}


describe("the host takes the handoff's messages in whichever order they come", () => {
  it("an Accept that arrives before its Provide waits for it, and the calls then arrive in order", async () => {
    const dir = scratch();
    const hub = await startHub({ home: dir, socket: join(dir, "hub.sock"), identity: generateIdentity() });
    cleanups.push(() => hub.close());
    const gateB = await FrameGate.start({ target: hub.address, dir, name: "b" });
    cleanups.push(() => gateB.close());
    const b = await startTsPlugin("early-accept-b", {
      script: CHILD,
      args: ["--stats"],
      stdin: "pipe",
      env: { ...process.env, ...hub.env, CAPMESH_HUB: gateB.address },
      children,
    });
    const a = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
    cleanups.push(() => a.close());
    // Everything the hub sends B from now on waits: the Provide too.
    gateB.hold("fromTarget");
    const cap = a.connect("early-accept-b", Counter);
    cleanups.push(() => cap.release());
    await gateB.waitFor((e) => e.dir === "fromTarget" && e.kind === "provide", { what: "the Provide, held" });
    await eventually(() => a.stats().handoffs.pending === 1, () => show(a.stats().handoffs));
    const calls = [1, 2, 3].map((n) => cap.add({ delta: BigInt(n) }));
    // A's Accept reached B over the direct connection before the Provide did.
    const deadline = Date.now() + 10_000;
    while ((await childStats(b)).directPaths.acceptsWaiting !== 1) {
      if (Date.now() > deadline) throw new Error(`B never held A's Accept: ${show(await childStats(b))}`);
    }
    expect(deltas(b)).toEqual([]);
    gateB.release("fromTarget");
    await Promise.all(calls);
    await eventually(() => deltas(b).length === 3, () => b.output());
    expect(deltas(b)).toEqual([1, 2, 3]);
    expect(a.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
  });

  it("a Disembargo that arrives before its Accept lets the Accept through at once", async () => {
    const dir = scratch();
    const hub = await startHub({ home: dir, socket: join(dir, "hub.sock"), identity: generateIdentity() });
    cleanups.push(() => hub.close());
    const gateB = await FrameGate.start({ target: hub.address, dir, name: "b" });
    // B's direct address, gated: A's Accept waits here.
    const gateD = await FrameGate.start({ target: `unix:${join(dir, "b-direct.sock")}`, dir, name: "d" });
    cleanups.push(() => gateB.close(), () => gateD.close());
    const b = await startTsPlugin("late-accept-b", {
      script: CHILD,
      args: ["--limits", JSON.stringify({ listen: [`unix:${join(dir, "b-direct.sock")}`], advertise: [gateD.address] })],
      env: { ...process.env, ...hub.env, CAPMESH_HUB: gateB.address, DEBUG: "capmesh:handoff" },
      children,
    });
    const a = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
    cleanups.push(() => a.close());
    gateD.hold("toTarget");
    const cap = a.connect("late-accept-b", Counter);
    cleanups.push(() => cap.release());
    // Pipelined before the handoff: the recipient must embargo, so it sends a Disembargo through the hub.
    const p1 = cap.add({ delta: 1n });
    const disembargo = await gateB.waitFor((e) => e.dir === "fromTarget" && e.kind === "disembargo" && e.context === "accept", {
      what: "the 3PH Disembargo, forwarded by the hub to B",
    });
    const accept = await gateD.waitFor((e) => e.kind === "accept", { what: "A's Accept, held on B's direct address" });
    expect(accept.state).toBe("held");
    expect(accept.embargo).toBe(disembargo.embargoId);
    await p1;
    const p2 = cap.add({ delta: 2n });
    gateD.release("toTarget");
    await p2;
    await eventually(() => deltas(b).length === 2, () => b.output());
    expect(deltas(b)).toEqual([1, 2]);
    // B never had to hold the Accept: the embargo was lifted before it came.
    expect(b.errors()).not.toContain('"embargo waiting"');
    expect(b.errors()).toContain('"accepted"');
    expect(a.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
  });
});

describe("E-order across the switch to a direct path", () => {
  it("with the embargo, a call made after the handoff waits for the one pipelined before it", async () => {
    const dir = scratch();
    const hub = await startHub({ home: dir, socket: join(dir, "hub.sock"), identity: generateIdentity() });
    cleanups.push(() => hub.close());
    const race = await raceToTheSwitch(dir, hub.env as unknown as HubEnv);

    // B's engine holds A's Accept until the Disembargo (behind add(1) on B's hub link) arrives.
    await eventually(() => race.b.errors().includes('"embargo waiting"'), () => `B to hold A's Accept for the embargo: ${race.b.errors()}`);
    expect(deltas(race.b)).toEqual([]);
    expect(race.settled.size).toBe(0);

    race.gateB.release("fromTarget");
    await Promise.all([race.p1, race.p2]);
    await eventually(() => deltas(race.b).length === 2, () => race.b.output());
    expect(deltas(race.b)).toEqual([1, 2]);
    expect(race.a.pathOf(race.cap)).toEqual({ path: "direct", peer: race.b.id });
    // add(2) came over A's own connection.
    expect(race.b.output()).toContain(`got 2 via ${race.a.id}`);
  });

  it("without the embargo (test-only switch) the later call overtakes: the race is real", async () => {
    const dir = scratch();
    const hub = await startHub({ home: dir, socket: join(dir, "hub.sock"), identity: generateIdentity() });
    cleanups.push(() => hub.close());
    const race = await raceToTheSwitch(dir, hub.env as unknown as HubEnv, { unsafeNoEmbargo: true });

    await eventually(() => deltas(race.b).includes(2), () => `B to get add(2) directly: ${race.b.output()}`);
    expect(race.gateB.held("fromTarget").some((e) => e.kind === "call")).toBe(true);
    race.gateB.release("fromTarget");
    await Promise.all([race.p1, race.p2]);
    await eventually(() => deltas(race.b).length === 2, () => race.b.output());
    expect(deltas(race.b)).toEqual([2, 1]);
  });

  it("the introducer dying mid-embargo fails the calls with disconnected, and every table drains", async () => {
    const dir = scratch();
    const hubChild = start(process.execPath, [...TSX, "test/mesh/hub-child.ts", dir, join(dir, "hub.sock")], { children });
    const [, envText] = await hubChild.waitFor(/^hub (.*)$/m, "the hub child to start");
    const race = await raceToTheSwitch(dir, JSON.parse(envText!) as HubEnv);
    await eventually(() => race.b.errors().includes('"embargo waiting"'), () => `B to hold A's Accept for the embargo: ${race.b.errors()}`);

    hubChild.child.kill("SIGKILL");
    await hubChild.exited;
    // What the hub had sent B and the gate still held is lost with it.
    race.gateB.drop("fromTarget");
    await expect(race.p1).rejects.toMatchObject({ type: "disconnected" });
    await expect(race.p2).rejects.toMatchObject({ type: "disconnected" });
    expect(deltas(race.b)).toEqual([]);

    // A: nothing pending, nothing left on any connection.
    await eventually(
      () => {
        const s = race.a.stats();
        return s.handoffs.pending === 0 && s.directPaths.dials === 0 && s.connections.every((c) => c.questions + c.answers + c.imports + c.exports === 0);
      },
      () => show(race.a.stats()),
    );
    // B: no provision, no waiting Accept, nothing on its direct connection to A.
    const drained = (s: ChildStats) =>
      s.directPaths.provisions === 0 &&
      s.directPaths.acceptsWaiting === 0 &&
      s.connections.filter((c) => c.kind === "direct").every((c) => c.questions + c.answers + c.imports + c.exports + c.provisions === 0);
    const deadline = Date.now() + 10_000;
    let last = await childStats(race.b);
    while (!drained(last)) {
      if (Date.now() > deadline) throw new Error(`B's tables did not drain: ${show(last)}`);
      last = await childStats(race.b);
    }
  });
});

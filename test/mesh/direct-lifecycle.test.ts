// Direct paths over time, in processes: ten thousand handoffs between one
// client and one plugin reuse one direct connection and leave every table
// on every vat (the client, the plugin, the hub) as it was; two plugins
// that pick up each other's capability at the same moment dial each other
// at once (frame gates hold both dials until both have arrived) and end
// with one connection between them (the other, superseded, is closed by
// its dialler once what lived on it has been released).
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh } from "../../src/mesh/join.js";
import { FrameGate } from "../helpers/frame-gate.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { Counter } from "../rpc/fixtures.js";
import { show } from "./helpers/events.js";
import { childStats, DIRECT_CHILD, type ChildStats } from "./helpers/direct-child.js";
import { killLeftAndWait, startTsPlugin, type Registered } from "./helpers/processes.js";

const CHILD = DIRECT_CHILD;
const home = mkdtempSync(join(tmpdir(), "capmesh-lifecycle-"));
let hub: MeshHub;
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await killLeftAndWait(children);
});

afterAll(async () => {
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

function plugin(name: string, ...args: string[]): Promise<Registered> {
  return startTsPlugin(name, { script: CHILD, args: ["--stats", ...args], stdin: "pipe", env: { ...process.env, ...hub.env }, children });
}

type PeerStats = ChildStats;

/** Polls a plugin's stats until `ok` holds. */
async function statsUntil(p: Registered, ok: (s: PeerStats) => boolean, what: string, ms = 15_000): Promise<PeerStats> {
  const deadline = Date.now() + ms;
  let last = await childStats(p);
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${show(last)}`);
    last = await childStats(p);
  }
  return last;
}

/** Every table of a peer's connections, summed, and its Level 3 state: zero when nothing lives on them. */
function load(s: PeerStats, kind: "hub" | "direct"): number {
  let n = s.handoffs.pending + s.directPaths.provisions + s.directPaths.acceptsWaiting + s.directPaths.dials;
  for (const c of s.connections) if (c.kind === kind) n += c.questions + c.answers + c.imports + c.exports + c.provisions + c.vines;
  return n;
}

describe("direct paths over time", () => {
  it("10,000 handoffs reuse one connection, and every table on every vat drains back to its baseline", async () => {
    const b = await plugin("lifecycle-b");
    const a = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
    cleanups.push(() => a.close());
    // The first handoff opens A's connection to B; the baseline is taken once it has drained.
    const warm = a.connect("lifecycle-b", Counter);
    await warm.add({ delta: 0n });
    warm.release();
    const hubTables = () => hub.stats().peers.map((p) => [p.id, p.questions, p.answers, p.imports, p.exports, p.provisions, p.vines].join(" "));
    await eventually(() => load(a.stats(), "direct") === 0 && hub.stats().peers.every((p) => p.vines === 0 && p.provisions === 0 && p.answers === 0), () => show(hub.stats()));
    const baseline = { hub: hubTables(), a: a.stats(), b: await statsUntil(b, (s) => load(s, "direct") === 0, "B to drain the first handoff") };

    const total = 10_000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        const cap = a.connect("lifecycle-b", Counter);
        // The first call is pipelined (through the hub); the second is made once the first returned.
        await cap.add({ delta: 1n });
        await cap.add({ delta: 2n });
        cap.release();
      }
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    await eventually(() => (b.output().match(/^got 2 via /gm)?.length ?? 0) === total, "B to print every call");
    expect(b.output().match(/^got 1 via /gm)?.length).toBe(total);
    // Every second call went over A's own connection to B.
    expect(b.output().match(new RegExp(`^got 2 via ${a.id.replace(/[+/.]/g, "\\$&")}$`, "gm"))?.length).toBe(total);

    await eventually(() => load(a.stats(), "direct") === 0 && load(a.stats(), "hub") === load(baseline.a, "hub"), () => show(a.stats()), 30_000);
    await eventually(() => JSON.stringify(hubTables()) === JSON.stringify(baseline.hub), () => `hub ${show(hubTables())} vs ${show(baseline.hub)}`, 30_000);
    const bAfter = await statsUntil(b, (s) => load(s, "direct") === 0, "B's tables to drain");
    const stats = a.stats();
    // One direct connection, reused for every handoff; each one picked up directly, none fell back.
    expect(stats.connections.filter((c) => c.kind === "direct")).toHaveLength(1);
    expect(bAfter.connections.filter((c) => c.kind === "direct")).toHaveLength(1);
    expect(stats.handoffs.accepted - baseline.a.handoffs.accepted).toBe(total);
    expect(stats.handoffs.fellBack).toBe(0);
    expect(load(bAfter, "hub")).toBe(load(baseline.b, "hub"));
  }, 120_000);

  it("two plugins that dial each other at once end with one connection, and both calls succeed", async () => {
    const barrier = FrameGate.barrier(2);
    const gateP = await FrameGate.start({ target: `unix:${join(home, "p.sock")}`, dir: home, name: "gate-p.sock" });
    const gateQ = await FrameGate.start({ target: `unix:${join(home, "q.sock")}`, dir: home, name: "gate-q.sock" });
    cleanups.push(() => gateP.close(), () => gateQ.close());
    gateP.holdConnections(barrier);
    gateQ.holdConnections(barrier);
    const limits = (own: string, gate: FrameGate) =>
      JSON.stringify({ listen: [`unix:${join(home, own)}`], advertise: [gate.address], retireAfterIdleMs: 200 });
    const p = await plugin("lifecycle-p", "--limits", limits("p.sock", gateP));
    const q = await plugin("lifecycle-q", "--limits", limits("q.sock", gateQ));

    p.child.stdin!.write("call lifecycle-q 1\n");
    q.child.stdin!.write("call lifecycle-p 2\n");
    await p.waitFor(/^called lifecycle-q 1 direct$/m, "P's call to Q");
    await q.waitFor(/^called lifecycle-p 2 direct$/m, "Q's call to P");
    // Both dials were held until both had arrived: the two connections really existed at once.
    expect(gateP.connections).toBe(1);
    expect(gateQ.connections).toBe(1);
    const directTo = (s: PeerStats, id: string) => s.connections.filter((c) => c.kind === "direct" && c.peer === id);
    const pStats = await statsUntil(p, (s) => directTo(s, q.id).length === 1, "P to keep one connection to Q");
    const qStats = await statsUntil(q, (s) => directTo(s, p.id).length === 1, "Q to keep one connection to P");
    // The same one at both ends: dialled by one of them.
    expect(directTo(pStats, q.id)[0]!.dialled, show({ p: pStats.connections, q: qStats.connections })).toBe(!directTo(qStats, p.id)[0]!.dialled);
    // Both calls made over the surviving connection still work.
    p.child.stdin!.write("call lifecycle-q 3\n");
    await p.waitFor(/^called lifecycle-q 4 direct$/m, "P's second call to Q, directly");
  });
});

// rpc.capnp Level 3 (three-party handoff) end to end, the recipient's side
// (docs/design/level3.md increment 5): three (or four) vats in this process,
// each an RpcSystem with a SocketThirdParty, over real unix sockets. Host B
// serves a Counter; introducer C holds it and hands it to recipient A, in
// results, in params and by Resolve. A dials B, sends Accept, switches to
// B's export on the Return and releases the vine, after which C Finishes
// the Provide. Calls then reach B over A's own connection while C forwards
// nothing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { RpcConnection } from "../../src/rpc/connection.js";
import { capabilityState, getLocalServer } from "../../src/rpc/introspect.js";
import { innermost } from "../../src/rpc/hook.js";
import { QueuedHook } from "../../src/rpc/local.js";
import { hookOf, wrapHook } from "../../src/rpc/typed.js";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { readIncoming } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { eventually } from "./helpers/raw-peer.js";
import { Counter } from "./fixtures.js";
import { link as linkVats, vat as makeVat, type Vat } from "./helpers/level3-vats.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3handoff-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const vat = (name: string, unsafeNoEmbargo = false): Promise<Vat> => makeVat(name, dir, cleanup, { unsafeNoEmbargo });
const link = (from: Vat, to: Vat): Promise<Counter> => linkVats(from, to, cleanup);

interface Seen {
  readonly kind: string;
  readonly id?: number;
}

/** Records the kind of each message arriving on `net` (before the engine sees it). */
function tap(net: NetworkConnection): Seen[] {
  const seen: Seen[] = [];
  const deliver = net.stream.onMessage;
  net.stream.onMessage = (message) => {
    const m = readIncoming(message, undefined, true);
    if (m.kind === "finish" || m.kind === "provide" || m.kind === "accept") seen.push({ kind: m.kind, id: m.questionId });
    else if (m.kind === "release") seen.push({ kind: m.kind, id: m.id });
    else seen.push({ kind: m.kind === "other" ? `message ${m.which}` : m.kind });
    deliver(message);
  };
  return seen;
}

const conn = (v: Vat, other: Vat): RpcConnection => v.system.preferred(other.identity.id)!.connection;

interface World {
  readonly a: Vat;
  readonly b: Vat;
  readonly c: Vat;
  /** C's hold on B's Counter. */
  readonly held: Counter;
  /** A's hold on C's bootstrap. */
  readonly intro: Counter;
  /** What B receives from C, and what C receives from A. */
  readonly hostLink: Seen[];
  readonly recipientLink: Seen[];
}

/** Host B, introducer C holding B's Counter, recipient A connected to C; C's next() hands out B's Counter. */
async function world(): Promise<World> {
  const b = await vat("b");
  const c = await vat("c");
  const a = await vat("a");
  const held = await link(c, b);
  c.node.offer = () => held.dup();
  const intro = await link(a, c);
  const hostLink = tap(b.system.liveConnection(c.identity.id)!);
  const recipientLink = tap(c.system.liveConnection(a.identity.id)!);
  return { a, b, c, held, intro, hostLink, recipientLink };
}

function remotePath(cap: Counter): string {
  const state = capabilityState(cap);
  return state.kind === "remote" ? `${state.path} via ${state.peer.id}${state.reason ? ` (${state.reason})` : ""}` : state.kind;
}

/** Waits for the handoff of `cap` to settle; expects it direct, from `host`. */
async function settledDirect(cap: Counter, host: Vat): Promise<void> {
  await cap.whenResolved();
  expect(remotePath(cap)).toBe(`direct via ${host.identity.id}`);
}

/** The vine's Release reaches C, which Finishes the Provide at B. */
async function vineReleased(w: World): Promise<void> {
  const provide = w.hostLink.find((s) => s.kind === "provide");
  expect(provide, "B saw a Provide").toBeDefined();
  await eventually(
    () => w.hostLink.some((s) => s.kind === "finish" && s.id === provide!.id),
    () => `B to see the Provide's Finish: ${w.hostLink.map((s) => s.kind).join(", ")}`,
  );
  expect(w.recipientLink.some((s) => s.kind === "release")).toBe(true);
  expect(conn(w.c, w.a).stats()).toMatchObject({ vines: 0 });
  expect(conn(w.c, w.b).stats()).toMatchObject({ provides: 0 });
}

/** Calls on `cap` reach B from `caller` directly; C's counts of calls passed on stay flat. */
async function callsGoDirect(w: World, cap: Counter, caller: Vat): Promise<void> {
  const forwarded = [conn(w.c, w.b).forwardedCalls, conn(w.c, w.a).forwardedCalls];
  const direct = conn(caller, w.b);
  w.b.node.callers.length = 0;
  w.b.node.log.length = 0;
  const results = await Promise.all([1n, 2n, 3n].map((delta) => cap.add({ delta })));
  expect(results.map((r) => r.value)).toEqual([w.b.node.value - 5n, w.b.node.value - 3n, w.b.node.value]);
  expect(w.b.node.log).toEqual([1n, 2n, 3n]);
  expect(w.b.node.callers).toEqual([caller.identity.id, caller.identity.id, caller.identity.id]);
  expect([conn(w.c, w.b).forwardedCalls, conn(w.c, w.a).forwardedCalls]).toEqual(forwarded);
  expect(direct.error).toBeNull();
  // B exports the Counter over its own connection to the caller.
  expect(w.b.system.preferred(caller.identity.id)!.connection.stats().exports).toBeGreaterThan(0);
}

/** Tables of every connection between the vats given, as numbers. */
function tables(vats: Vat[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of vats) {
    for (const o of vats) {
      if (o === v) continue;
      const s = v.system.preferred(o.identity.id)?.connection.stats();
      if (!s) continue;
      for (const [k, n] of Object.entries(s)) out[`${v.name}->${o.name}.${k}`] = n ?? 0;
    }
    out[`${v.name}.provisions`] = v.tp.stats().provisions;
    out[`${v.name}.pending`] = v.system.handoffs.pending;
  }
  return out;
}

describe("Level 3 handoff between three vats over unix sockets", () => {
  it("in results: A picks B's Counter up from B, the vine's Release and the Provide's Finish are seen, calls go straight to B, tables drain", async () => {
    const w = await world();
    const baseline = await atRest([w.a, w.b, w.c]);
    const { counter } = await w.intro.next();
    // Calls made while the handoff is under way wait in A and arrive in order.
    const early = [counter.add({ delta: 10n }), counter.add({ delta: 20n })];
    await settledDirect(counter, w.b);
    expect((await Promise.all(early)).map((r) => r.value)).toEqual([10n, 30n]);
    expect(w.b.node.callers).toEqual([w.a.identity.id, w.a.identity.id]);
    expect(w.hostLink.filter((s) => s.kind === "provide")).toHaveLength(1);
    await vineReleased(w);
    await callsGoDirect(w, counter, w.a);
    expect(w.a.system.handoffs).toMatchObject({ accepted: 1, fellBack: 0, pending: 0 });
    expect(w.c.system.handoffs.introductions).toBe(1);

    counter.release();
    await eventually(
      () => sorted(tables([w.a, w.b, w.c])) === sorted({ ...baseline, ...directBaseline(w) }),
      () => `tables back to baseline: ${JSON.stringify(tables([w.a, w.b, w.c]))} vs ${JSON.stringify(baseline)}`,
    );
  });

  it("in params: C passes B's Counter to A in a call; A's server uses it directly", async () => {
    const w = await world();
    const toA = await link(w.c, w.a);
    await toA.echo({ cap: w.held });
    expect(w.a.node.kept).toHaveLength(1);
    const kept = w.a.node.kept[0]!;
    await settledDirect(kept, w.b);
    await vineReleased(w);
    await callsGoDirect(w, kept, w.a);
  });

  it("by Resolve: a promise A holds resolves to B's Counter; with no calls made on the promise, A goes direct", async () => {
    const w = await world();
    let promise: QueuedHook | null = null;
    w.c.node.offer = () => wrapHook((promise = new QueuedHook()).addRef(), Counter) as unknown as Counter;
    const { counter } = await w.intro.next();
    expect(capabilityState(counter).kind).toBe("promise");
    promise!.resolve(hookOf(w.held).addRef());
    promise!.release();
    await settledDirect(counter, w.b);
    await vineReleased(w);
    await callsGoDirect(w, counter, w.a);
  });

  it("by Resolve of a promise that carried calls: A goes direct behind the 3PH embargo, in order", async () => {
    const w = await world();
    let promise: QueuedHook | null = null;
    w.c.node.offer = () => wrapHook((promise = new QueuedHook()).addRef(), Counter) as unknown as Counter;
    const { counter } = await w.intro.next();
    const before = counter.add({ delta: 1n });
    await eventually(() => conn(w.c, w.a).stats().answers > 0 || w.c.node.log.length > 0, () => "C to get the call");
    promise!.resolve(hookOf(w.held).addRef());
    promise!.release();
    const after = counter.add({ delta: 2n });
    expect((await before).value).toBe(1n);
    expect((await after).value).toBe(3n);
    expect(w.b.node.log).toEqual([1n, 2n]);
    expect(w.recipientLink.some((s) => s.kind === "disembargo-accept")).toBe(true);
    await settledDirect(counter, w.b);
    expect(w.a.system.handoffs).toMatchObject({ accepted: 1, fellBack: 0 });
    await vineReleased(w);
  });

  it("passed back to its host: B's getLocalServer finds its own object", async () => {
    const w = await world();
    const { counter } = await w.intro.next();
    await settledDirect(counter, w.b);
    await counter.echo({ cap: counter });
    expect(w.b.node.kept).toHaveLength(1);
    expect(await getLocalServer(w.b.node.kept[0]!, Counter)).toBe(w.b.node);
  });

  it("passed back to the introducer while still pending: the vine comes back and C uses its own import of B", async () => {
    const w = await world();
    const { counter } = await w.intro.next();
    // Before the handoff settles (A is still dialling B).
    await w.intro.echo({ cap: counter });
    expect(w.c.node.kept).toHaveLength(1);
    const back = w.c.node.kept[0]!;
    expect(remotePath(back)).toBe(`direct via ${w.b.identity.id}`);
    expect(innermost(hookOf(back))).toBe(innermost(hookOf(w.held)));
    await settledDirect(counter, w.b);
  });

  it("an A -> D chain: A hands the Counter it got from C on to D (still pending), and D too talks to B directly", async () => {
    const w = await world();
    const d = await vat("d");
    const toD = await link(w.a, d);
    const { counter } = await w.intro.next();
    await toD.echo({ cap: counter }); // exported to D as a promise, resolved when A's handoff settles
    expect(d.node.kept).toHaveLength(1);
    const atD = d.node.kept[0]!;
    await settledDirect(counter, w.b);
    await eventually(() => capabilityState(atD).kind === "remote", () => `D's capability to settle: ${remotePath(atD)}`);
    await settledDirect(atD, w.b);
    const forwardedAtA = conn(w.a, w.b).forwardedCalls;
    await callsGoDirect(w, atD, d);
    expect(conn(w.a, w.b).forwardedCalls).toBe(forwardedAtA);
    expect(w.a.system.handoffs.introductions).toBe(1);
    expect(d.system.handoffs).toMatchObject({ accepted: 1, fellBack: 0 });
  });
});

const sorted = (t: Record<string, number>) => JSON.stringify(Object.entries(t).sort(([x], [y]) => (x < y ? -1 : 1)));

/** The tables once no question or answer is in flight (Finishes of the set-up calls still travelling). */
async function atRest(vats: Vat[]): Promise<Record<string, number>> {
  const busy = () => Object.entries(tables(vats)).some(([k, n]) => (k.endsWith(".questions") || k.endsWith(".answers")) && n > 0);
  await eventually(() => !busy(), () => `the set-up calls to finish: ${JSON.stringify(tables(vats))}`);
  return tables(vats);
}

/** The A<->B connection made by the handoff outlives the capability: its tables must be empty. */
function directBaseline(w: World): Record<string, number> {
  const now = tables([w.a, w.b, w.c]);
  const out: Record<string, number> = {};
  for (const k of Object.keys(now)) if (k.startsWith("a->b.") || k.startsWith("b->a.")) out[k] = 0;
  return out;
}

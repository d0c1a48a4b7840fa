// rpc.capnp Level 3, the 3PH embargo (docs/design/level3.md 2.3, increment
// 6): three vats in this process over real unix sockets. Introducer C holds
// host B's Counter and hands it to recipient A, who had already made calls
// on the promise that resolves to it. Those calls travel A -> C -> B; once A
// picks the Counter up, its later calls go A -> B directly. A gate on B's
// side of the C -> B link holds C's frames (Provides pass: they only register
// the provision) until the direct path is up, so the direct calls really can
// overtake. With the embargo, B holds A's Accept until the Disembargo that
// follows the earlier calls through C arrives, and calls arrive in the order
// A made them. With the test-only `_unsafeNoEmbargo` they do not.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message } from "capnp-es";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { RpcConnection } from "../../src/rpc/connection.js";
import { capabilityState } from "../../src/rpc/introspect.js";
import { QueuedHook } from "../../src/rpc/local.js";
import { hookOf, wrapHook } from "../../src/rpc/typed.js";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { readIncoming } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { eventually } from "./helpers/raw-peer.js";
import { Counter } from "./fixtures.js";
import { link as linkVats, vat as makeVat, Node, type Vat } from "./helpers/level3-vats.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3embargo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const vat = (name: string, unsafeNoEmbargo = false): Promise<Vat> => makeVat(name, dir, cleanup, { unsafeNoEmbargo });
const link = (from: Vat, to: Vat): Promise<Counter> => linkVats(from, to, cleanup);

/**
 * Holds the messages arriving on `net` (before its engine sees them), in
 * order, while holding; Provides pass (they only open the provision, and
 * the Accept must find it for the race to be about the calls). release()
 * delivers what was held, in order, and lets everything through after.
 */
class Gate {
  private holding = false;
  private readonly held: Message[] = [];
  readonly heldKinds: string[] = [];
  private readonly deliver: (message: Message) => void;

  constructor(net: NetworkConnection) {
    this.deliver = net.stream.onMessage;
    net.stream.onMessage = (message) => {
      const kind = readIncoming(message, undefined, true).kind;
      if (this.holding && kind !== "provide") {
        this.held.push(message);
        this.heldKinds.push(kind);
      } else {
        this.deliver(message);
      }
    };
  }

  hold(): void {
    this.holding = true;
  }

  count(kind: string): number {
    return this.heldKinds.filter((k) => k === kind).length;
  }

  release(): void {
    this.holding = false;
    for (const message of this.held.splice(0)) this.deliver(message);
    this.heldKinds.length = 0;
  }
}

interface World {
  readonly a: Vat;
  readonly b: Vat;
  readonly c: Vat;
  /** C's hold on B's Counter. */
  readonly held: Counter;
  /** A's hold on C's bootstrap. */
  readonly intro: Counter;
  /** On B's side of the C -> B link. */
  readonly gate: Gate;
}

async function world(unsafeNoEmbargo: boolean): Promise<World> {
  const b = await vat("b");
  const c = await vat("c");
  const a = await vat("a", unsafeNoEmbargo);
  const held = await link(c, b);
  c.node.offer = () => held.dup();
  const intro = await link(a, c);
  const gate = new Gate(b.system.liveConnection(c.identity.id)!);
  return { a, b, c, held, intro, gate };
}

const conn = (v: Vat, other: Vat): RpcConnection => v.system.preferred(other.identity.id)!.connection;

/** Tracks whether a promise settled, without awaiting it. */
function track<T>(p: Promise<T>): { readonly promise: Promise<T>; settled: boolean } {
  const t = { promise: p, settled: false };
  p.then(
    () => (t.settled = true),
    () => (t.settled = true),
  );
  return t;
}

/** A has the descriptor and is picking the capability up (dial and Accept under way, or done). */
const handedOver = (w: World) => () => w.a.system.handoffs.pending + w.a.system.handoffs.accepted > 0;

/** B has A's Accept and holds it for the Disembargo still in the gate. */
async function acceptEmbargoed(w: World): Promise<void> {
  await eventually(
    () => (w.b.system.preferred(w.a.identity.id)?.connection.stats().acceptsWaiting ?? 0) === 1 && w.gate.count("disembargo-accept") === 1,
    () => `B to hold A's Accept for the Disembargo: gate holds ${w.gate.heldKinds.join(", ")}`,
  );
}

function remotePath(cap: Counter): string {
  const state = capabilityState(cap);
  return state.kind === "remote" ? `${state.path} via ${state.peer.id}` : state.kind;
}

async function settledDirect(cap: Counter, host: Vat): Promise<void> {
  await cap.whenResolved();
  expect(remotePath(cap)).toBe(`direct via ${host.identity.id}`);
}

const values = (n: number[]) => n.map(BigInt);

describe("Level 3 embargo: E-order across the switch to the direct path", () => {
  it("calls made on a pipelined promise before, during and after it resolves to B's Counter arrive at B in order", async () => {
    const w = await world(false);
    w.gate.hold();
    const cap = w.intro.next().counter;
    // Before: pipelined on A's question to C; C passes them to B (held).
    const before = [track(cap.add({ delta: 1n })), track(cap.add({ delta: 2n }))];
    await eventually(() => w.gate.count("call") === 2, () => `the gate to hold C's two calls: ${w.gate.heldKinds.join(", ")}`);
    // During: A has the descriptor and is accepting; this call waits in A.
    await eventually(handedOver(w), () => "A to receive the descriptor");
    const during = track(cap.add({ delta: 3n }));
    await acceptEmbargoed(w);
    expect(w.b.node.log).toEqual([]);
    expect([...before, during].some((t) => t.settled)).toBe(false);
    expect(w.a.system.handoffs).toMatchObject({ pending: 1, accepted: 0 });

    w.gate.release();
    await settledDirect(cap, w.b);
    // After: straight to B.
    const after = cap.add({ delta: 4n });
    expect((await Promise.all([...before, during].map((t) => t.promise).concat(after))).map((r) => r.value)).toEqual(values([1, 3, 6, 10]));
    expect(w.b.node.log).toEqual(values([1, 2, 3, 4]));
    expect(w.b.node.callers).toEqual([w.c.identity.id, w.c.identity.id, w.a.identity.id, w.a.identity.id]);
    expect(w.a.system.handoffs).toMatchObject({ pending: 0, accepted: 1, fellBack: 0 });
    cap.release();
  });

  it("without the embargo (_unsafeNoEmbargo) the same scenario reorders: A's direct calls overtake the ones C still holds", async () => {
    const w = await world(true);
    w.gate.hold();
    const cap = w.intro.next().counter;
    const before = [track(cap.add({ delta: 1n })), track(cap.add({ delta: 2n }))];
    await eventually(() => w.gate.count("call") === 2, () => `the gate to hold C's two calls: ${w.gate.heldKinds.join(", ")}`);
    await eventually(handedOver(w), () => "A to receive the descriptor");
    const during = cap.add({ delta: 3n });
    // Nothing holds the Accept: the direct path is up while C's calls are still in the gate.
    await settledDirect(cap, w.b);
    await during;
    await cap.add({ delta: 4n });
    expect(w.gate.count("disembargo-accept")).toBe(0);
    expect(before.some((t) => t.settled)).toBe(false);
    w.gate.release();
    await Promise.all(before.map((t) => t.promise));
    expect(w.b.node.log).toEqual(values([3, 4, 1, 2]));
    cap.release();
  });

  for (const unsafe of [false, true]) {
    it(`calls on a promise that resolves by Resolve to B's Counter${unsafe ? " (without the embargo: reordered)" : ""}`, async () => {
      const w = await world(unsafe);
      let promise: QueuedHook | null = null;
      w.c.node.offer = () => wrapHook((promise = new QueuedHook()).addRef(), Counter) as unknown as Counter;
      const { counter } = await w.intro.next();
      expect(capabilityState(counter).kind).toBe("promise");
      w.gate.hold();
      // Pipelined on the promise C exported: they wait in C's promise.
      const before = [track(counter.add({ delta: 1n })), track(counter.add({ delta: 2n }))];
      await eventually(() => conn(w.c, w.a).stats().answers === 2, () => "C to hold A's two calls on its promise");
      promise!.resolve(hookOf(w.held).addRef());
      promise!.release();
      await eventually(() => w.gate.count("call") === 2, () => `the gate to hold C's two calls: ${w.gate.heldKinds.join(", ")}`);
      await eventually(handedOver(w), () => "A to receive the Resolve");
      const during = track(counter.add({ delta: 3n }));
      if (!unsafe) {
        await acceptEmbargoed(w);
        expect(w.b.node.log).toEqual([]);
        expect(during.settled).toBe(false);
        w.gate.release();
        await settledDirect(counter, w.b);
        await Promise.all([...before, during].map((t) => t.promise));
        expect(w.b.node.log).toEqual(values([1, 2, 3]));
      } else {
        await during.promise;
        expect(before.some((t) => t.settled)).toBe(false);
        w.gate.release();
        await Promise.all(before.map((t) => t.promise));
        expect(w.b.node.log).toEqual(values([3, 1, 2]));
      }
      expect(w.b.node.callers.at(-1 - (unsafe ? 2 : 0))).toBe(w.a.identity.id);
      counter.release();
    });
  }

  for (const unsafe of [false, true]) {
    it(`chained pipelines next().counter.add() across the switch reach B's object in order${unsafe ? " (without the embargo: reordered)" : ""}`, async () => {
      const w = await world(unsafe);
      // B's next() hands out one object of B's, so every chain ends there.
      const inner = new Node();
      const innerCap = Counter.server(inner);
      cleanup.add(() => innerCap.release());
      w.b.node.offer = () => innerCap.dup();
      w.gate.hold();
      const cap = w.intro.next().counter;
      // Before: A -> C (next on C) -> B (next on B) -> add on what B returns, all pipelined.
      const before = track(cap.next().counter.add({ delta: 1n }));
      await eventually(() => w.gate.count("call") === 2, () => `the gate to hold C's chained calls: ${w.gate.heldKinds.join(", ")}`);
      await eventually(handedOver(w), () => "A to receive the descriptor");
      // During: the same chain, from A's handoff hook.
      const during = track(cap.next().counter.add({ delta: 2n }));
      if (!unsafe) {
        await acceptEmbargoed(w);
        expect(inner.log).toEqual([]);
        w.gate.release();
        await settledDirect(cap, w.b);
        const after = cap.next().counter.add({ delta: 3n });
        await Promise.all([before.promise, during.promise, after]);
        expect(inner.log).toEqual(values([1, 2, 3]));
        expect(inner.callers).toEqual([w.c.identity.id, w.a.identity.id, w.a.identity.id]);
      } else {
        await during.promise;
        expect(before.settled).toBe(false);
        w.gate.release();
        await before.promise;
        expect(inner.log).toEqual(values([2, 1]));
      }
      cap.release();
    });
  }
});

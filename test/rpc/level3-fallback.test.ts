// rpc.capnp Level 3, fallback (docs/design/level3.md 2.7 and increment 7),
// one cause at a time: three vats in this process over real sockets.
// Introducer C holds host B's Counter and hands it to recipient A, who calls
// it in a burst: some calls pipelined before the capability arrives, some
// while A tries to pick it up, some after. Whatever stops the direct path,
// every call reaches B once, in order, through C (the vine or a plain
// proxy); the capability says which path it uses and why; every table on
// every vat drains back to where it was.
import { closedPort, silentListener as listenSilently, type SilentListener } from "../helpers/ports.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { RpcConnection } from "../../src/rpc/connection.js";
import type { RpcError } from "../../src/rpc/errors.js";
import { capabilityState } from "../../src/rpc/introspect.js";
import { readIncoming } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { eventually } from "./helpers/raw-peer.js";
import { Counter } from "./fixtures.js";
import { link as linkVats, vat as makeVat, type Vat, type VatOptions } from "./helpers/level3-vats.js";

/** A silent listener (test/helpers/ports.ts) in this file's directory, closed after the test. */
async function silentListener(name: string): Promise<SilentListener> {
  const listener = await listenSilently(join(dir, `${name}.sock`));
  cleanup.add(() => listener.close());
  return listener;
}

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3fallback-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface World {
  readonly a: Vat;
  readonly b: Vat;
  readonly c: Vat;
  /** A's hold on C's bootstrap. */
  readonly intro: Counter;
  /** Kinds of the messages B receives from C. */
  readonly hostLink: string[];
  /** From now on B's engine gets nothing more from C but Provides (the rest is dropped). */
  hold(): void;
}

interface WorldOptions {
  a?: VatOptions;
  b?: VatOptions;
  c?: VatOptions;
  /** What C's directory says about B (default: Level 3, B's real address). */
  host?: { level3: boolean; addresses: string[] };
}

/** Host B, introducer C holding B's Counter (its next() hands it out), recipient A connected to C. */
async function world(options: WorldOptions = {}): Promise<World> {
  const b = await makeVat("b", dir, cleanup, options.b);
  const c = await makeVat("c", dir, cleanup, options.c);
  const a = await makeVat("a", dir, cleanup, options.a);
  const held = await linkVats(c, b, cleanup);
  c.node.offer = () => held.dup();
  if (options.host) c.tp.advertise(c.system.liveConnection(b.identity.id)!, options.host);
  const intro = await linkVats(a, c, cleanup);
  const hostLink: string[] = [];
  let holding = false;
  const onB = b.system.liveConnection(c.identity.id)!;
  const deliver = onB.stream.onMessage;
  onB.stream.onMessage = (message) => {
    const m = readIncoming(message, undefined, true);
    hostLink.push(m.kind === "other" ? `message ${m.which}` : m.kind);
    if (!holding || m.kind === "provide") deliver(message);
  };
  return { a, b, c, intro, hostLink, hold: () => (holding = true) };
}

const conn = (v: Vat, other: Vat): RpcConnection | null => v.system.preferred(other.identity.id)?.connection ?? null;

/** Every table of every connection among `vats`, and each vat's Level 3 tables, as numbers. */
function tables(vats: Vat[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of vats) {
    for (const o of vats) {
      if (o === v) continue;
      const s = conn(v, o)?.stats();
      if (!s) continue;
      for (const [k, n] of Object.entries(s)) out[`${v.name}->${o.name}.${k}`] = n ?? 0;
    }
    const tp = v.tp.stats();
    out[`${v.name}.provisions`] = tp.provisions;
    out[`${v.name}.acceptsWaiting`] = tp.acceptsWaiting;
    out[`${v.name}.dials`] = tp.dials;
    out[`${v.name}.pending`] = v.system.handoffs.pending;
  }
  return out;
}

/** Entries of `now` that differ from `base`; a table absent from `base` (a connection made since) must be 0. */
function drift(base: Record<string, number>, now: Record<string, number>): string[] {
  const keys = new Set([...Object.keys(base), ...Object.keys(now)]);
  return [...keys].filter((k) => (now[k] ?? 0) !== (base[k] ?? 0)).map((k) => `${k}: ${base[k] ?? 0} -> ${now[k] ?? 0}`);
}

/** The tables once the set-up calls are done (their Finishes may still be travelling). */
async function atRest(vats: Vat[]): Promise<Record<string, number>> {
  const busy = () => Object.entries(tables(vats)).some(([k, n]) => (k.endsWith(".questions") || k.endsWith(".answers")) && n > 0);
  await eventually(() => !busy(), () => `the set-up calls to finish: ${JSON.stringify(tables(vats))}`);
  return tables(vats);
}

async function drained(vats: Vat[], base: Record<string, number>): Promise<void> {
  await eventually(() => drift(base, tables(vats)).length === 0, () => `tables back to baseline: ${drift(base, tables(vats)).join(", ")}`);
}

/** A call's promise, with its rejection handled until a test awaits it; `settled` tells whether it has. */
function track<T>(p: Promise<T>): { readonly promise: Promise<T>; settled: boolean } {
  const t = { promise: p, settled: false };
  p.then(
    () => (t.settled = true),
    () => (t.settled = true),
  );
  return t;
}

const values = (n: number[]) => n.map(BigInt);
/** B's running totals after adding 1..n. */
const totals = (n: number) => values(Array.from({ length: n }, (_, i) => ((i + 1) * (i + 2)) / 2));

interface Burst {
  /** The capability as A pipelined on it (released by the caller). */
  readonly cap: Counter;
  /** The calls, in the order made. */
  readonly calls: ReturnType<typeof track<{ value: bigint }>>[];
  /** A's handoffs still being picked up when add(4, 5) were made. */
  readonly pendingAt4: number;
}

/**
 * A asks C for B's Counter and calls it: add(1..3) pipelined before it
 * arrives, then `during()` once it has (A may still be picking it up), then
 * add(4, 5), and add(6, 7) once it has settled.
 */
async function burst(w: World, during?: () => Promise<void>): Promise<Burst> {
  const answer = w.intro.next();
  const cap = answer.counter;
  const calls = [1n, 2n, 3n].map((delta) => track(cap.add({ delta })));
  const { counter: arrived } = await answer;
  arrived.release();
  await during?.();
  const pendingAt4 = w.a.system.handoffs.pending;
  calls.push(track(cap.add({ delta: 4n })), track(cap.add({ delta: 5n })));
  await cap.whenResolved();
  calls.push(track(cap.add({ delta: 6n })), track(cap.add({ delta: 7n })));
  return { cap, calls, pendingAt4 };
}

/** Every call reached B once, in order, from C; each got its running total. */
async function arrivedInOrderViaC(w: World, { calls }: Burst): Promise<void> {
  const results = await Promise.all(calls.map((t) => t.promise));
  expect(results.map((r) => r.value)).toEqual(totals(7));
  expect(w.b.node.log).toEqual(values([1, 2, 3, 4, 5, 6, 7]));
  expect(w.b.node.callers).toEqual(Array(7).fill(w.c.identity.id));
}

/**
 * The capability uses C's vine, for `reason`; A counted one fallback and no
 * direct handoff. `embargoForwarded`: C passed A's Disembargo on to B (not
 * when B echoed the Provide first: then C has nothing to forward it to).
 */
function onTheVine(w: World, cap: Counter, reason: RegExp, embargoForwarded = true): void {
  const state = capabilityState(cap);
  expect(state).toMatchObject({ kind: "remote", path: "vine" });
  if (state.kind !== "remote") return;
  expect(state.peer.id).toBe(w.c.identity.id);
  expect(state.reason).toMatch(reason);
  expect(w.a.system.handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 1 });
  expect(w.c.system.handoffs.introductions).toBe(1);
  expect(w.hostLink.filter((k) => k === "provide")).toHaveLength(1);
  // The pipelined calls made A ask for the 3PH embargo: its Disembargo went
  // through C to B all the same, and went with the provision.
  if (embargoForwarded) expect(w.hostLink).toContain("disembargo-accept");
}

/** No handoff at all: C proxies B's Counter (no Provide, no thirdPartyHosted). */
function proxiedByC(w: World, cap: Counter): void {
  const state = capabilityState(cap);
  expect(state).toMatchObject({ kind: "remote", path: "direct" });
  if (state.kind !== "remote") return;
  expect(state.peer.id).toBe(w.c.identity.id);
  expect(state.reason).toBeUndefined();
  expect(w.hostLink).not.toContain("provide");
  expect(conn(w.c, w.b)!.stats()).toMatchObject({ provides: 0 });
  expect(w.c.system.handoffs.introductions).toBe(0);
  expect(w.a.system.handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 0 });
  expect(w.b.tp.stats().provisions).toBe(0);
}

describe("Level 3 fallback: calls keep flowing through the introducer, in order, per cause", () => {
  it("no listener: B advertises a unix socket nobody listens on", async () => {
    const w = await world({ host: { level3: true, addresses: [`unix:${join(dir, "nobody.sock")}`] } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^could not reach the host: cannot reach @\S+: unix:\S*nobody\.sock: nothing is listening on unix:\S*nobody\.sock: no socket file at /);
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("dial refused: B advertises a loopback TCP port that was just closed", async () => {
    const port = await closedPort();
    const w = await world({ host: { level3: true, addresses: [`tcp://127.0.0.1:${port}`] } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, new RegExp(`^could not reach the host: cannot reach @\\S+: tcp://127\\.0\\.0\\.1:${port}: nothing is listening on tcp://127\\.0\\.0\\.1:${port}$`));
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("dial timeout: B's address accepts the connection and never answers the handshake; calls made meanwhile wait in A", async () => {
    const silent = await silentListener("silent");
    // Long enough for the checks below to run while A still waits, even on a loaded machine.
    const w = await world({ a: { thirdParty: { dialTimeoutMs: 1000 } }, host: { level3: true, addresses: [silent.address] } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w, async () => {
      await eventually(() => silent.accepted === 1, "A to dial B's silent address");
      // A is stuck in the handshake: the calls pipelined before went
      // through C, the ones made now wait in A.
      await eventually(() => w.b.node.log.length === 3, () => `B to get the pipelined calls: ${w.b.node.log.join(", ")}`);
      expect(w.a.system.handoffs).toMatchObject({ pending: 1, fellBack: 0 });
    });
    expect(b.pendingAt4).toBe(1);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^could not reach the host: cannot reach @\S+: unix:\S*silent\.sock: timed out after 1000 ms$/);
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("policy at the introducer: C's allowIntroduction refuses, so no Provide is sent and C proxies", async () => {
    const asked: string[][] = [];
    const w = await world({
      c: {
        thirdParty: {
          allowIntroduction: (recipient, host) => {
            asked.push([recipient, host]);
            return false;
          },
        },
      },
    });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    proxiedByC(w, b.cap);
    expect(asked).toContainEqual([w.a.identity.id, w.b.identity.id]);
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("policy at the host: B's listener refuses A's key after the handshake", async () => {
    const refused = { id: "" };
    const w = await world({ b: { authorize: (peer) => peer.id !== refused.id } });
    refused.id = w.a.identity.id;
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^could not reach the host: cannot reach @\S+: unix:\S*b-\S+\.sock: shs client: the server hung up on our authentication/);
    expect(conn(w.a, w.b)).toBeNull();
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("the host refuses the provision (no room for A's provisions): A falls back with the host's reason", async () => {
    const w = await world({ b: { thirdParty: { maxProvisionsPerRecipient: 0 } } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(
      w,
      b.cap,
      /^the host refused the Accept: refused provision [0-9a-f]+: recipient @\S+ already has 0 open provisions at this vat \(maxProvisionsPerRecipient 0\)$/,
    );
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("Level 1 host: B has no Level 3, C's directory says so, and C proxies without a Provide", async () => {
    const w = await world({ b: { level1: true }, host: { level3: false, addresses: [] } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    proxiedByC(w, b.cap);
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("a Level 3 host that did not advertise direct paths to C: no Provide, proxied", async () => {
    const w = await world({ host: { level3: false, addresses: [] } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    proxiedByC(w, b.cap);
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("a host that advertised direct paths but runs Level 1: it echoes the Provide and the Accept as unimplemented; A falls back", async () => {
    const w = await world({ b: { level1: true } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^the host refused the Accept: .* does not implement Level 3 \(it echoed the Accept as unimplemented\)$/, false);
    // C closed the Provide when B echoed it.
    expect(w.hostLink).toContain("provide");
    expect(conn(w.c, w.b)!.stats()).toMatchObject({ provides: 0 });
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("expired at the host: B's clock is past the contact's expiry; the Accept's exception is A's reason", async () => {
    const w = await world({ b: { thirdParty: { now: () => Date.now() + 60_000, clockSkewMs: 0 } } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^the host refused the Accept: expired Accept: provision [0-9a-f]+ expired at \d{4}-\d\d-\d\dT/);
    // A reached B: the connection stays, empty.
    expect(conn(w.a, w.b)).not.toBeNull();
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("expired before use: by A's clock the contact has expired, so A does not even dial", async () => {
    const w = await world({ a: { thirdParty: { now: () => Date.now() + 60_000 } } });
    const base = await atRest([w.a, w.b, w.c]);
    const b = await burst(w);
    await arrivedInOrderViaC(w, b);
    onTheVine(w, b.cap, /^could not reach the host: expired contact for @\S+ from @\S+: it expired at \d{4}-\d\d-\d\dT/);
    expect(conn(w.a, w.b)).toBeNull();
    b.cap.release();
    await drained([w.a, w.b, w.c], base);
  });

  it("the vine breaks too: C closes while A is dialling; the calls waiting in A fail with disconnected at once", async () => {
    const silent = await silentListener("silent-g");
    const w = await world({ host: { level3: true, addresses: [silent.address] } });
    const base = await atRest([w.a, w.b]);
    const answer = w.intro.next();
    const cap = answer.counter;
    const first = cap.add({ delta: 1n });
    const { counter: arrived } = await answer;
    arrived.release();
    expect((await first).value).toBe(1n);
    await eventually(() => silent.accepted === 1, "A to dial B's silent address");
    const waiting = [track(cap.add({ delta: 2n })), track(cap.add({ delta: 3n }))];
    expect(w.a.system.handoffs).toMatchObject({ pending: 1 });

    // The dial still hangs (the default 3 s limit): A does not wait for it.
    await w.c.system.close();
    const outcomes = await Promise.allSettled(waiting.map((t) => t.promise));
    for (const o of outcomes) {
      expect(o.status).toBe("rejected");
      if (o.status === "rejected") expect((o.reason as RpcError).type).toBe("disconnected");
    }
    await expect(cap.add({ delta: 4n })).rejects.toMatchObject({ type: "disconnected" });
    expect(w.a.system.handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 1 });
    expect(w.b.node.log).toEqual(values([1]));
    // It fell back to the vine, which is dead. (capabilityState still says
    // "remote": an import does not know its connection closed.)
    expect(capabilityState(cap)).toMatchObject({
      kind: "remote",
      path: "vine",
      reason: expect.stringMatching(/^the introducer's connection closed during the handoff: /),
    });
    cap.release();
    // Nothing of the handoff is left on A or B (C and its connections are gone) once the dial ends.
    silent.hangUp();
    await drained([w.a, w.b], base);
  });

  it("the introducer dies mid-embargo: B holds A's Accept for the Disembargo when C closes; every call fails with disconnected", async () => {
    const w = await world();
    const base = await atRest([w.a, w.b]);
    w.hold(); // what B gets from C, but the Provide
    const cap = w.intro.next().counter;
    const before = track(cap.add({ delta: 1n }));
    await eventually(
      () => (conn(w.b, w.a)?.stats().acceptsWaiting ?? 0) === 1 && w.hostLink.includes("disembargo-accept"),
      () => `B to hold A's Accept for the Disembargo: B got ${w.hostLink.join(", ")}`,
    );
    const during = track(cap.add({ delta: 2n }));
    expect(w.b.tp.stats().provisions).toBe(1);

    await w.c.system.close();
    for (const t of [before, during]) await expect(t.promise).rejects.toMatchObject({ type: "disconnected" });
    expect(capabilityState(cap)).toMatchObject({
      kind: "remote",
      path: "vine",
      reason: expect.stringMatching(/^the host refused the Accept: the introducer finished the Provide, or its connection to this vat was lost/),
    });
    expect(w.a.system.handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 1 });
    expect(w.b.node.log).toEqual([]);
    cap.release();
    await drained([w.a, w.b], base);
  });
});

// rpc.capnp Level 3 (three-party handoff), the introducer's side: vat C
// holds a capability hosted by vat B and passes it to recipient A. With
// direct paths on in C and both peers advertised, C sends B a Provide (high
// question ID, the recipient's key in its ThirdPartyToAwait), A gets a
// thirdPartyHosted descriptor with the contact and a vine; calls on the vine
// go through C to B; A's Release of the vine makes C Finish the Provide; a
// 3PH Disembargo to the vine goes on to B naming the Provide. Otherwise C
// proxies as before. Vats are in-process over real unix sockets; A is a raw
// peer (it behaves as a Level 1 recipient that uses the vine, whatever the
// recipient side of the engine does), and a tap on B's end of the C link
// shows what C sent there.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Message, ObjectSize, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { noCaps, readPointer } from "../../src/codec/runtime.js";
import { ThirdPartyToAwait$codec, ThirdPartyToContact$codec, type ThirdPartyToAwait, type ThirdPartyToContact } from "../../src/gen/network.js";
import { SocketNetwork } from "../../src/network/socket-network.js";
import { SocketThirdParty } from "../../src/network/third-party.js";
import type { RpcConnection } from "../../src/rpc/connection.js";
import { QueuedHook } from "../../src/rpc/local.js";
import { initStructIn } from "../../src/rpc/payload.js";
import { RpcSystem } from "../../src/rpc/system.js";
import { hookOf, wrapHook } from "../../src/rpc/typed.js";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { newCall, newRelease, newUnimplemented, readIncoming, type WireTarget } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { COUNTER_ID, L3RawPeer } from "../helpers/l3-raw-peer.js";
import { eventually } from "./helpers/raw-peer.js";
import { Counter, CounterImpl } from "./fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3intro-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const unixAddress = (name: string) => `unix:${join(dir, `${name}-${randomBytes(4).toString("hex")}.sock`)}`;

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const NEXT = 1;

interface Vat {
  readonly identity: Identity;
  readonly address: string;
  readonly system: RpcSystem;
  readonly tp: SocketThirdParty | null;
  readonly counter: CounterImpl;
}

/** A vat listening on a unix socket; `offer` replaces its bootstrap Counter. */
async function vat(name: string, level3: boolean, offer?: (counter: CounterImpl) => CounterImpl): Promise<Vat> {
  const identity = generateIdentity();
  const address = unixAddress(name);
  const network = new SocketNetwork({ identity }, { address });
  const tp = level3 ? new SocketThirdParty({ publicKey: identity.publicKey, network, addresses: [address] }) : null;
  const counter = new CounterImpl(0n);
  const system = new RpcSystem(network, Counter.server(offer ? offer(counter) : counter), tp ? { thirdParty: tp } : {});
  await system.accept();
  cleanup.add(() => system.close());
  return { identity, address, system, tp, counter };
}

/** The introducer's bootstrap: a local Counter whose next() hands out `held()` (B's capability, as C reaches it). */
class Introducer extends CounterImpl {
  constructor(private readonly held: () => Counter) {
    super(0n);
  }
  override next() {
    return { counter: this.held() };
  }
}

interface Seen {
  readonly kind: string;
  readonly questionId?: number;
  readonly target?: WireTarget;
  readonly recipient?: ThirdPartyToAwait | null;
  readonly releaseResultCaps?: boolean;
  readonly embargoId?: Uint8Array;
}

/** Records what arrives on `net` (decoded at once, before the engine sees it). */
function tap(net: NetworkConnection): Seen[] {
  const seen: Seen[] = [];
  const deliver = net.stream.onMessage;
  net.stream.onMessage = (message) => {
    const m = readIncoming(message, undefined, true);
    switch (m.kind) {
      case "provide":
        seen.push({
          kind: "provide",
          questionId: m.questionId,
          target: m.target,
          recipient: m.recipient ? readPointer(ThirdPartyToAwait$codec, m.recipient, noCaps) : null,
        });
        break;
      case "finish":
        seen.push({ kind: "finish", questionId: m.questionId, releaseResultCaps: m.releaseResultCaps });
        break;
      case "disembargo-accept":
        seen.push({ kind: "disembargo-accept", target: m.target, embargoId: m.embargoId });
        break;
      default:
        seen.push({ kind: m.kind === "other" ? `message ${m.which}` : m.kind });
    }
    deliver(message);
  };
  return seen;
}

interface World {
  readonly b: Vat;
  readonly c: Vat;
  /** C's connection to B, and B's end of it (tapped). */
  readonly cToB: RpcConnection;
  readonly bFromC: RpcConnection;
  readonly hostLink: Seen[];
}

/** Host B and introducer C (direct paths on in C unless `introducerLevel3` is false); C holds B's bootstrap Counter. */
async function world(options: { hostLevel3?: boolean; introducerLevel3?: boolean; advertiseHost?: boolean } = {}): Promise<World> {
  const b = await vat("b", options.hostLevel3 ?? true);
  let held: Counter | null = null;
  const c = await vat("c", options.introducerLevel3 ?? true, () => new Introducer(() => held!.dup()));
  const session = await c.system.connect(b.address, { remoteKey: b.identity.id });
  held = session.bootstrap(Counter);
  cleanup.add(() => held!.release());
  await held.add({ delta: 0n }); // B's Counter is an import at C from here on
  b.counter.log.length = 0;
  const toB = c.system.liveConnection(b.identity.id)!;
  if (c.tp && (options.advertiseHost ?? true)) c.tp.advertise(toB, { level3: true, addresses: [b.address] });
  await eventually(() => b.system.liveConnection(c.identity.id) !== null, () => "B to adopt C's connection");
  const bFromC = b.system.preferred(c.identity.id)!.connection;
  const hostLink = tap(b.system.liveConnection(c.identity.id)!);
  return { b, c, cToB: session.connection, bFromC, hostLink };
}

/** Raw recipient A dialling C; C records that A takes part in direct paths unless `advertise` is false. */
async function recipient(w: World, advertise = true): Promise<{ a: L3RawPeer; ai: Identity; cToA: RpcConnection }> {
  const ai = generateIdentity();
  const a = await L3RawPeer.dial(w.c.address, { identity: ai, remoteKey: w.c.identity.publicKey });
  cleanup.add(async () => void (await a.close()));
  await eventually(() => w.c.system.liveConnection(ai.id) !== null, () => "C to adopt A's connection");
  if (advertise) w.c.tp!.advertise(w.c.system.liveConnection(ai.id)!, { level3: true, addresses: [] });
  return { a, ai, cToA: w.c.system.preferred(ai.id)!.connection };
}

/** A calls next() on `target` as question `q`: the Return's first capability descriptor. */
async function callNext(a: L3RawPeer, q: number, target: WireTarget): Promise<rpc.CapDescriptor> {
  const call = newCall(target, COUNTER_ID, NEXT);
  initStructIn(call.content, new ObjectSize(0, 0));
  call.setQuestion(q, false);
  a.send(call.message);
  const ret = await a.returnFor(q);
  if (!ret._isResults) throw new Error(`next() failed: ${ret._isException ? ret.exception.reason : ret.which()}`);
  // The capability stays ours: Finish without releasing it.
  a.finish(q, false);
  return ret.results.capTable.get(0);
}

function contactOf(d: rpc.CapDescriptor): ThirdPartyToContact {
  return readPointer(ThirdPartyToContact$codec, d.thirdPartyHosted.id, noCaps);
}

const kinds = (seen: Seen[]) => seen.map((s) => s.kind);
/** Finishes of Provides (question IDs with bit 31 set); ordinary calls' Finishes are not counted. */
const provideFinishes = (seen: Seen[]) => seen.filter((s) => s.kind === "finish" && s.questionId! >= 0x80000000);
const provides = (seen: Seen[]) => seen.filter((s) => s.kind === "provide");

/** Numeric table counts of a connection (for baseline comparisons). */
function tables(conn: RpcConnection): Record<string, number> {
  const { questions, answers, imports, exports, embargoes, provides, vines, provisions } = conn.stats();
  return { questions, answers, imports, exports, embargoes, provides: provides ?? 0, vines: vines ?? 0, provisions: provisions ?? 0 };
}

describe("Level 3 introducer: Provide, vine and thirdPartyHosted over unix sockets", () => {
  it("a recipient whose vat has Level 3 off gets the capability proxied; the host never sees a Provide", async () => {
    const w = await world();
    // A real vat without direct paths: it advertises nothing.
    const ai = generateIdentity();
    const network = new SocketNetwork({ identity: ai });
    const aSystem = new RpcSystem(network);
    cleanup.add(() => aSystem.close());
    const session = await aSystem.connect(w.c.address, { remoteKey: w.c.identity.id });
    const introducer = session.bootstrap(Counter);
    const { counter } = await introducer.next();
    expect((await counter.add({ delta: 5n })).value).toBe(5n);
    expect(w.b.counter.log).toEqual([5n]);
    expect(w.cToB.forwardedCalls).toBeGreaterThan(0);
    const cToA = w.c.system.preferred(ai.id)!.connection;
    expect(cToA.stats()).toMatchObject({ vines: 0 });
    expect(w.cToB.stats()).toMatchObject({ provides: 0 });
    expect(w.c.system.handoffs.introductions).toBe(0);
    expect(provides(w.hostLink)).toEqual([]);
    counter.release();
    introducer.release();
    await eventually(() => cToA.stats().exports === 0, () => `C's exports to A to drain: ${JSON.stringify(cToA.stats())}`);
  });

  it("no Provide when the host did not advertise, or when the introducer has no Level 3: the vine-less export as before", async () => {
    for (const options of [{ advertiseHost: false }, { introducerLevel3: false }]) {
      const w = await world(options);
      const { a, cToA } = await recipient(w, options.introducerLevel3 !== false);
      const boot = await a.bootstrap(0);
      const d = await callNext(a, 1, { importedCap: boot });
      expect(d.which(), JSON.stringify(options)).toBe(rpc.CapDescriptor.SENDER_HOSTED);
      expect(await a.add(2, { importedCap: d.senderHosted }, 3n)).toBe(3n);
      expect(w.b.counter.log).toEqual([3n]);
      expect(provides(w.hostLink)).toEqual([]);
      expect(tables(cToA).vines).toBe(0);
    }
  });

  it("a recipient that uses the vine: thirdPartyHosted with B's contact, B sees the Provide for A, calls flow through the vine, Release finishes the Provide", async () => {
    const w = await world();
    const { a, ai, cToA } = await recipient(w);
    const boot = await a.bootstrap(0);
    const before = { cToA: tables(cToA), cToB: tables(w.cToB), bFromC: tables(w.bFromC), host: w.b.tp!.stats() };

    const d = await callNext(a, 1, { importedCap: boot });
    expect(d.which()).toBe(rpc.CapDescriptor.THIRD_PARTY_HOSTED);
    const vineId = d.thirdPartyHosted.vineId;
    const contact = contactOf(d);
    expect(Buffer.from(contact.host).equals(Buffer.from(w.b.identity.publicKey))).toBe(true);
    expect(contact.addresses).toEqual([w.b.address]);
    expect(contact.nonce.byteLength).toBe(32);
    expect(Number(contact.expiresAt)).toBeGreaterThan(Date.now());

    // The host got the Provide (high question ID, no Return due) naming A and the same nonce.
    await eventually(() => provides(w.hostLink).length === 1, () => `B to see the Provide: ${kinds(w.hostLink).join(", ")}`);
    const [provide] = provides(w.hostLink);
    expect(provide!.questionId).toBeGreaterThanOrEqual(0x80000000);
    expect(provide!.target!.importedCap).toBeDefined();
    expect(Buffer.from(provide!.recipient!.recipient).equals(Buffer.from(ai.publicKey))).toBe(true);
    expect(Buffer.from(provide!.recipient!.nonce).equals(Buffer.from(contact.nonce))).toBe(true);
    expect(provide!.recipient!.expiresAt).toBe(contact.expiresAt);
    await eventually(() => w.b.tp!.stats().provisions === 1, () => "B to record the provision");
    expect(w.bFromC.stats()).toMatchObject({ provisions: 1 });
    expect(cToA.stats()).toMatchObject({ vines: 1 });
    expect(w.cToB.stats()).toMatchObject({ provides: 1 });
    expect(w.c.system.handoffs.introductions).toBe(1);

    // A Level 1 recipient calls the vine: C forwards to B.
    expect(await a.add(2, { importedCap: vineId }, 5n)).toBe(5n);
    expect(await a.add(3, { importedCap: vineId }, 2n)).toBe(7n);
    expect(w.b.counter.log).toEqual([5n, 2n]);
    // Calls do not close the Provide (the v2 code only closes it on Release).
    expect(w.cToB.stats()).toMatchObject({ provides: 1 });
    expect(provideFinishes(w.hostLink)).toEqual([]);

    a.sendFrame(newRelease(vineId, 1).slice());
    await eventually(
      () => w.hostLink.some((s) => s.kind === "finish" && s.questionId === provide!.questionId),
      () => `B to see the Provide's Finish: ${kinds(w.hostLink).join(", ")}`,
    );
    const finish = w.hostLink.find((s) => s.kind === "finish" && s.questionId === provide!.questionId)!;
    expect(finish.releaseResultCaps).toBe(false);
    await eventually(() => w.b.tp!.stats().provisions === 0, () => "B's provision to end");
    await eventually(() => tables(w.bFromC).answers === before.bFromC.answers, () => `B's answers to drain: ${JSON.stringify(w.bFromC.stats())}`);
    await eventually(() => tables(cToA).exports === before.cToA.exports, () => `C's exports to A to drain: ${JSON.stringify(cToA.stats())}`);
    expect(tables(cToA)).toEqual(before.cToA);
    expect(tables(w.cToB)).toEqual(before.cToB);
    expect(tables(w.bFromC)).toEqual(before.bFromC);
    // The closed provision's nonce is remembered (to name a replay), by design.
    expect(w.b.tp!.stats()).toEqual({ ...before.host, recentNonces: before.host.recentNonces + 1 });
  });

  it("each handoff gets its own Provide and vine; the recipient's disconnect finishes the Provides of the vines it held", async () => {
    const w = await world();
    const { a, cToA } = await recipient(w);
    const boot = await a.bootstrap(0);
    const first = await callNext(a, 1, { importedCap: boot });
    const second = await callNext(a, 2, { importedCap: boot });
    expect(first.thirdPartyHosted.vineId).not.toBe(second.thirdPartyHosted.vineId);
    await eventually(() => provides(w.hostLink).length === 2, () => `B to see two Provides: ${kinds(w.hostLink).join(", ")}`);
    const ids = provides(w.hostLink).map((p) => p.questionId);
    expect(new Set(ids).size).toBe(2);
    expect(w.cToB.stats()).toMatchObject({ provides: 2 });
    expect(cToA.stats()).toMatchObject({ vines: 2 });
    await a.close();
    await eventually(
      () => ids.every((id) => w.hostLink.some((s) => s.kind === "finish" && s.questionId === id)),
      () => `B to see both Finishes: ${kinds(w.hostLink).join(", ")}`,
    );
    await eventually(() => w.b.tp!.stats().provisions === 0, () => "B's provisions to end");
    expect(w.cToB.stats()).toMatchObject({ provides: 0 });
  });

  it("the recipient's 3PH Disembargo to the vine goes on to the host naming the Provide", async () => {
    const w = await world();
    const { a } = await recipient(w);
    const boot = await a.bootstrap(0);
    const vineId = (await callNext(a, 1, { importedCap: boot })).thirdPartyHosted.vineId;
    await eventually(() => provides(w.hostLink).length === 1, () => "B to see the Provide");
    const provideId = provides(w.hostLink)[0]!.questionId!;
    // A call on the vine ahead of the Disembargo reaches B ahead of it.
    a.callAdd(2, { importedCap: vineId }, 4n);
    const embargoId = new Uint8Array(randomBytes(16));
    a.disembargo({ importedCap: vineId }, embargoId);
    await eventually(() => w.hostLink.some((s) => s.kind === "disembargo-accept"), () => `B to see the Disembargo: ${kinds(w.hostLink).join(", ")}`);
    const forwarded = w.hostLink.find((s) => s.kind === "disembargo-accept")!;
    expect(forwarded.target).toEqual({ promisedAnswer: { questionId: provideId, transform: [] } });
    expect(Buffer.from(forwarded.embargoId!).equals(Buffer.from(embargoId))).toBe(true);
    const callAt = w.hostLink.findIndex((s) => s.kind === "call");
    expect(callAt).toBeGreaterThanOrEqual(0);
    expect(callAt).toBeLessThan(w.hostLink.indexOf(forwarded));
    await eventually(() => w.bFromC.stats().thirdPartyEmbargoes === 1, () => `B to hold the lifted embargo: ${JSON.stringify(w.bFromC.stats())}`);
    expect(a.received.some((m) => m._isAbort)).toBe(false);
  });

  it("a 3PH Disembargo to something other than a vine, or with an oversized embargo ID, aborts the recipient's connection", async () => {
    const cases: { what: string; target: (boot: number, vine: number) => WireTarget; id: Uint8Array; reason: RegExp }[] = [
      {
        what: "a plain export (C's bootstrap)",
        target: (boot) => ({ importedCap: boot }),
        id: new Uint8Array(16),
        reason: /Disembargo accept targets export \d+, which is not a vine/,
      },
      {
        what: "an export not in the table",
        target: () => ({ importedCap: 99 }),
        id: new Uint8Array(16),
        reason: /Disembargo accept targets export 99, which is not in the export table/,
      },
      {
        what: "an embargo ID of 65 bytes",
        target: (_boot, vine) => ({ importedCap: vine }),
        id: new Uint8Array(65),
        reason: /embargo ID of 65 bytes, over the 64/,
      },
    ];
    const w = await world();
    for (const { what, target, id, reason } of cases) {
      const { a } = await recipient(w);
      const boot = await a.bootstrap(0);
      const vine = (await callNext(a, 1, { importedCap: boot })).thirdPartyHosted.vineId;
      a.disembargo(target(boot, vine), id);
      await a.closed;
      const aborts = a.received.filter((m) => m._isAbort).map((m) => m.abort.reason);
      expect(aborts, what).toHaveLength(1);
      expect(aborts[0], what).toMatch(reason);
    }
    // Nothing went to the host, and the recipients' vines were released with their connections.
    expect(kinds(w.hostLink)).not.toContain("disembargo-accept");
    await eventually(() => w.cToB.stats().provides === 0, () => `C's Provides to be finished: ${JSON.stringify(w.cToB.stats())}`);
  });

  it("with the host link gone, the recipient's Disembargo is dropped and its connection stays up; the vine fails with disconnected", async () => {
    const w = await world();
    const { a, cToA } = await recipient(w);
    const boot = await a.bootstrap(0);
    const vineId = (await callNext(a, 1, { importedCap: boot })).thirdPartyHosted.vineId;
    await w.b.system.close();
    await eventually(() => w.cToB.error !== null, () => "C to see B's connection close");
    a.disembargo({ importedCap: vineId }, new Uint8Array(randomBytes(16)));
    a.callAdd(2, { importedCap: vineId }, 1n);
    const ret = await a.returnFor(2);
    expect(ret._isException).toBe(true);
    expect(ret.exception.type).toBe(rpc.Exception_Type.DISCONNECTED);
    a.finish(2);
    expect(a.received.some((m) => m._isAbort)).toBe(false);
    expect(await a.bootstrap(3)).toBeGreaterThanOrEqual(0);
    a.sendFrame(newRelease(vineId, 1).slice());
    await eventually(() => cToA.stats().vines === 0, () => `C's vine to go: ${JSON.stringify(cToA.stats())}`);
    expect(cToA.error).toBeNull();
  });

  it("a host that echoes the Provide as Unimplemented: C closes it locally, the recipient keeps using the vine", async () => {
    // B has no Level 3 but C was told it has (a peer that advertised wrongly).
    const w = await world({ hostLevel3: false });
    const { a, cToA } = await recipient(w);
    const boot = await a.bootstrap(0);
    const vineId = (await callNext(a, 1, { importedCap: boot })).thirdPartyHosted.vineId;
    await eventually(() => w.cToB.stats().provides === 0, () => `C to close the echoed Provide: ${JSON.stringify(w.cToB.stats())}`);
    expect(cToA.stats()).toMatchObject({ vines: 1 });
    expect(await a.add(2, { importedCap: vineId }, 6n)).toBe(6n);
    a.sendFrame(newRelease(vineId, 1).slice());
    await eventually(() => cToA.stats().vines === 0, () => "C's vine to go");
    // A round trip behind the Release: no Finish went to B for the closed Provide.
    expect(await a.add(3, { importedCap: boot }, 1n)).toBe(1n);
    expect(provideFinishes(w.hostLink)).toEqual([]);
    expect(w.cToB.error).toBeNull();
  });

  it("a Resolve to a thirdPartyHosted capability echoed as Unimplemented releases the vine, and the Provide is finished", async () => {
    let promise: QueuedHook | null = null;
    const b = await vat("b", true);
    const c = await vat("c", true, () => new Introducer(() => wrapHook((promise = new QueuedHook()).addRef(), Counter) as unknown as Counter));
    const session = await c.system.connect(b.address, { remoteKey: b.identity.id });
    const held = session.bootstrap(Counter);
    cleanup.add(() => held.release());
    await held.add({ delta: 0n });
    c.tp!.advertise(c.system.liveConnection(b.identity.id)!, { level3: true, addresses: [b.address] });
    await eventually(() => b.system.liveConnection(c.identity.id) !== null, () => "B to adopt C's connection");
    const hostLink = tap(b.system.liveConnection(c.identity.id)!);
    const w = { b, c, cToB: session.connection, bFromC: b.system.preferred(c.identity.id)!.connection, hostLink };
    const { a, cToA } = await recipient(w);
    const boot = await a.bootstrap(0);
    const d = await callNext(a, 1, { importedCap: boot });
    expect(d.which()).toBe(rpc.CapDescriptor.SENDER_PROMISE);
    promise!.resolve(hookOf(held).addRef());
    promise!.release();
    const resolve = await a.next((m) => m._isResolve, "the Resolve");
    expect(resolve.resolve.cap.which()).toBe(rpc.CapDescriptor.THIRD_PARTY_HOSTED);
    await eventually(() => provides(hostLink).length === 1, () => "B to see the Provide");
    expect(cToA.stats()).toMatchObject({ vines: 1 });
    a.send(newUnimplemented(resolve.segment.message as Message));
    await eventually(() => hostLink.some((s) => s.kind === "finish" && s.questionId === provides(hostLink)[0]!.questionId), () => `B to see the Finish: ${kinds(hostLink).join(", ")}`);
    expect(cToA.stats()).toMatchObject({ vines: 0 });
    expect(a.received.some((m) => m._isAbort)).toBe(false);
  });
});

describe("Level 3 introducer against a raw host", () => {
  it("a Return for a Provide is a protocol error on the host link", async () => {
    let held: Counter | null = null;
    const c = await vat("c", true, () => new Introducer(() => held!.dup()));
    const bi = generateIdentity();
    const b = await L3RawPeer.dial(c.address, { identity: bi, remoteKey: c.identity.publicKey });
    cleanup.add(async () => void (await b.close()));
    await eventually(() => c.system.liveConnection(bi.id) !== null, () => "C to adopt B's connection");
    c.tp!.advertise(c.system.liveConnection(bi.id)!, { level3: true, addresses: [unixAddress("b")] });
    held = c.system.preferred(bi.id)!.bootstrap(Counter);
    cleanup.add(() => held!.release());
    // B answers C's Bootstrap with its export 0.
    const bootstrap = await b.next((m) => m._isBootstrap, "C's Bootstrap");
    const reply = new Message();
    const ret = reply.initRoot(rpc.Message)._initReturn();
    ret.answerId = bootstrap.bootstrap.questionId;
    const results = ret._initResults();
    utils.setInterfacePointer(0, results.content);
    results._initCapTable(1).get(0).senderHosted = 0;
    b.send(reply);
    await held.whenResolved();

    const ai = generateIdentity();
    const a = await L3RawPeer.dial(c.address, { identity: ai, remoteKey: c.identity.publicKey });
    cleanup.add(async () => void (await a.close()));
    await eventually(() => c.system.liveConnection(ai.id) !== null, () => "C to adopt A's connection");
    c.tp!.advertise(c.system.liveConnection(ai.id)!, { level3: true, addresses: [] });
    const boot = await a.bootstrap(0);
    const d = await callNext(a, 1, { importedCap: boot });
    expect(d.which()).toBe(rpc.CapDescriptor.THIRD_PARTY_HOSTED);

    // The raw host sees the Provide, addressed to its export, for A.
    const provide = await b.next((m) => m._isProvide, "C's Provide");
    const questionId = provide.provide.questionId;
    expect(questionId).toBeGreaterThanOrEqual(0x80000000);
    const wire = readIncoming(provide.segment.message as Message, undefined, true);
    if (wire.kind !== "provide") throw new Error(`expected a Provide, read ${wire.kind}`);
    expect(wire.target).toEqual({ importedCap: 0 });
    const toAwait = readPointer(ThirdPartyToAwait$codec, wire.recipient!, noCaps);
    expect(Buffer.from(toAwait.recipient).equals(Buffer.from(ai.publicKey))).toBe(true);

    const bogus = new Message();
    const r = bogus.initRoot(rpc.Message)._initReturn();
    r.answerId = questionId;
    r._initResults();
    b.send(bogus);
    await b.closed;
    const aborts = b.received.filter((m) => m._isAbort).map((m) => m.abort.reason);
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toMatch(/Return for Provide \d+: a Provide never gets a Return/);
  });
});

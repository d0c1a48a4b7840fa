// The socket network's Level 3 (three-party handoff) operations between
// several vats in this process over real unix sockets: an introducer C
// writes a contact for recipient A and the await for host B; A dials B
// expecting B's key; B matches A's completion against the Provide's
// provision. Every refusal is checked by its message, and the vat keeps one
// connection per peer even when two vats dial each other at once. The rpc
// messages that would carry the contact, await and completion are stood in
// for by messages copied from one vat to the other.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Message, Pointer } from "capnp-es";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { newMessage } from "../../src/codec/message.js";
import { noCaps, readPointer, writePointer } from "../../src/codec/runtime.js";
import { ThirdPartyCompletion$codec, ThirdPartyToContact$codec, type ThirdPartyCompletion } from "../../src/gen/network.js";
import { connect, listen } from "../../src/network/endpoints.js";
import { SocketNetwork } from "../../src/network/socket-network.js";
import { SocketThirdParty, type SocketThirdPartyOptions } from "../../src/network/third-party.js";
import { RpcError } from "../../src/rpc/errors.js";
import { RpcSystem } from "../../src/rpc/system.js";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { Cleanup } from "../auth/helpers.js";
import { Counter, CounterImpl } from "../rpc/fixtures.js";
import { eventually } from "../rpc/helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-3p-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const unixAddress = (name: string) => `unix:${join(dir, `${name}-${randomBytes(4).toString("hex")}.sock`)}`;

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A clock the tests move by hand (provision expiry); real timers still run. */
const clock = { now: Date.now() };

interface Vat {
  readonly name: string;
  readonly identity: Identity;
  readonly id: string;
  readonly address: string;
  readonly tp: SocketThirdParty;
  readonly system: RpcSystem;
  readonly counter: CounterImpl;
}

type VatOptions = Omit<SocketThirdPartyOptions, "publicKey" | "network">;

async function vat(name: string, limits: VatOptions = {}, listenAt = unixAddress(name)): Promise<Vat> {
  const identity = generateIdentity();
  const network = new SocketNetwork({ identity }, { address: listenAt });
  const tp = new SocketThirdParty({
    publicKey: identity.publicKey,
    network,
    addresses: [listenAt],
    now: () => clock.now,
    acceptWaitMs: 200,
    ...limits,
  });
  const counter = new CounterImpl(0n);
  const system = new RpcSystem(network, Counter.server(counter), { thirdParty: tp, retireAfterIdleMs: 50 });
  await system.accept();
  cleanup.add(() => system.close());
  return { name, identity, id: identity.id, address: listenAt, tp, system, counter };
}

/** `from`'s live connection to `to`, waiting for the accepting side to have adopted it. */
async function connectionTo(from: Vat, to: Vat): Promise<NetworkConnection> {
  await eventually(() => from.system.liveConnection(to.id) !== null, `${from.name} to have a connection to ${to.name}`);
  return from.system.liveConnection(to.id)!;
}

/** `dialler` connects to `acceptor`; both record that the other takes part in Level 3 (what the mesh's Hello does). */
async function link(dialler: Vat, acceptor: Vat): Promise<void> {
  await dialler.system.connect(acceptor.address, { remoteKey: acceptor.id });
  dialler.tp.advertise(await connectionTo(dialler, acceptor), { level3: true, addresses: [acceptor.address] });
  acceptor.tp.advertise(await connectionTo(acceptor, dialler), { level3: true, addresses: [dialler.address] });
}

/** An empty AnyPointer to write into (a field of an rpc message under construction). */
function slot(): { message: Message; ptr: Pointer } {
  const message = newMessage(64);
  return { message, ptr: new Pointer(message.getSegment(0), 0) };
}

/** The same pointer as the receiving vat reads it (the message's bytes copied across). */
function transit(s: { message: Message }): Pointer {
  const copy = new Message(s.message.toArrayBuffer(), false);
  return new Pointer(copy.getSegment(0), 0);
}

function written<T>(codec: Parameters<typeof writePointer<T>>[0], value: T): Pointer {
  const s = slot();
  writePointer(codec, value, s.ptr, noCaps);
  return transit(s);
}

/** C introduces A to B: the contact A gets and the await B gets. */
async function introduce(c: Vat, a: Vat, b: Vat): Promise<{ contact: Pointer; toAwait: Pointer }> {
  const ca = await connectionTo(c, a);
  const cb = await connectionTo(c, b);
  expect(c.tp.whyNotIntroduce(ca, cb)).toBeNull();
  const contact = slot();
  const toAwait = slot();
  c.tp.introduce(ca, cb, contact.ptr, toAwait.ptr);
  return { contact: transit(contact), toAwait: transit(toAwait) };
}

/** B receives the Provide C sent. */
async function provide<T>(b: Vat, c: Vat, toAwait: Pointer, value: T): Promise<{ release(): void }> {
  return b.tp.awaitThirdParty(await connectionTo(b, c), toAwait, value);
}

/** A picks the contact up: the connection to the host and the completion for its Accept. */
async function pickUp(a: Vat, c: Vat, contact: Pointer): Promise<{ connection: NetworkConnection; completion: Pointer }> {
  const result = await a.tp.connectToIntroduced(await connectionTo(a, c), contact);
  if (result === "self") throw new Error("the contact named the recipient itself");
  const s = slot();
  result.writeCompletion(s.ptr);
  return { connection: result.connection, completion: transit(s) };
}

/** B gets A's Accept over B's connection to A. */
async function accept(b: Vat, a: Vat, completion: Pointer): Promise<unknown> {
  return b.tp.completeThirdParty(await connectionTo(b, a), completion);
}

function completionOf(p: Pointer): ThirdPartyCompletion {
  return readPointer(ThirdPartyCompletion$codec, p, noCaps);
}

async function refusal(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a refusal, got a value");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}

/** Three vats: A and B joined C (as plugins join a hub). */
async function triangle(limits: { a?: VatOptions; b?: VatOptions; c?: VatOptions } = {}) {
  const c = await vat("c", limits.c);
  const a = await vat("a", limits.a);
  const b = await vat("b", limits.b);
  await link(a, c);
  await link(b, c);
  return { a, b, c };
}

describe("SocketThirdParty handoff", () => {
  it("Provide then Accept: A dials B expecting B's key and gets the provided value", async () => {
    const { a, b, c } = await triangle();
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "cap-from-b");
    expect(b.tp.stats().provisions).toBe(1);
    const { connection, completion } = await pickUp(a, c, contact);
    expect(connection.dialled).toBe(true);
    expect(connection.peer.id).toBe(b.id);
    expect(completionOf(completion)).toMatchObject({ host: b.identity.publicKey, introducer: c.identity.publicKey, addresses: [a.address] });
    expect(await accept(b, a, completion)).toBe("cap-from-b");
    // Each end now knows the other takes part in Level 3, at the addresses it gave.
    expect(b.tp.lookup(await connectionTo(b, a))).toEqual({ level3: true, addresses: [a.address] });
    expect(a.tp.lookup(connection)).toEqual({ level3: true, addresses: [b.address] });
    // A can call B over the new connection.
    const counter = a.system.preferred(b.id)!.bootstrap(Counter);
    const before = connection.traffic!();
    expect((await counter.add({ delta: 5n })).value).toBe(5n);
    const after = connection.traffic!();
    expect(after.bytesOut).toBeGreaterThan(before.bytesOut);
    expect(after.bytesIn).toBeGreaterThan(before.bytesIn);
    counter.release();
    provision.release();
    expect(b.tp.stats()).toMatchObject({ provisions: 0, acceptsWaiting: 0 });
    expect(a.tp.stats().dials).toBe(0);
  });

  it("whyNotIntroduce names what stands in the way", async () => {
    let allow = false;
    const c = await vat("c", { allowIntroduction: () => allow, maxProvisionsPerIntroducer: 1, provisionTtlMs: 1000 });
    const a = await vat("a");
    const b = await vat("b");
    await a.system.connect(c.address, { remoteKey: c.id });
    await b.system.connect(c.address, { remoteKey: c.id });
    const ca = await connectionTo(c, a);
    const cb = await connectionTo(c, b);
    expect(c.tp.whyNotIntroduce(ca, cb)).toBe(`the recipient ${a.id} did not advertise direct paths`);
    c.tp.advertise(ca, { level3: true, addresses: [] });
    expect(c.tp.whyNotIntroduce(ca, cb)).toBe(`the host ${b.id} did not advertise direct paths`);
    c.tp.advertise(cb, { level3: true, addresses: [] });
    expect(c.tp.whyNotIntroduce(ca, cb)).toBe(`the host ${b.id} advertised no address`);
    c.tp.advertise(cb, { level3: true, addresses: [b.address] });
    expect(c.tp.whyNotIntroduce(ca, ca)).toBe("the recipient and the host are the same vat");
    expect(c.tp.whyNotIntroduce(ca, cb)).toBe(`policy forbids direct paths from ${a.id} to ${b.id}`);
    allow = true;
    expect(c.tp.whyNotIntroduce(ca, cb)).toBeNull();
    // The bound counts the Provides the engine still has open on the host's
    // connection (test/mesh/direct-lifecycle.test.ts drives it for real):
    // here the vat is made to report one.
    const openProvides = c.system.openProvides.bind(c.system);
    c.system.openProvides = (net) => (net === cb ? 1 : openProvides(net));
    expect(c.tp.whyNotIntroduce(ca, cb)).toBe(`1 introductions to ${b.id} are still open (maxProvisionsPerIntroducer)`);
    c.system.openProvides = openProvides;
    expect(c.tp.whyNotIntroduce(ca, cb)).toBeNull();
  });

  it("Accept then Provide: the Accept waits for its Provide", async () => {
    const { a, b, c } = await triangle();
    const { contact, toAwait } = await introduce(c, a, b);
    const { completion } = await pickUp(a, c, contact);
    const accepted = accept(b, a, completion);
    await eventually(() => b.tp.stats().acceptsWaiting === 1, "the Accept to wait");
    const provision = await provide(b, c, toAwait, 42);
    expect(await accepted).toBe(42);
    expect(b.tp.stats().acceptsWaiting).toBe(0);
    provision.release();
  });

  it("reuses a live connection to the host, whichever side dialled it", async () => {
    const { a, b, c } = await triangle();
    await link(b, a); // B dialled A before any handoff
    const before = a.system.sessionsTo(b.id);
    expect(before).toHaveLength(1);
    for (let i = 0; i < 3; i++) {
      const { contact, toAwait } = await introduce(c, a, b);
      const provision = await provide(b, c, toAwait, i);
      const { connection, completion } = await pickUp(a, c, contact);
      expect(connection.dialled).toBe(false);
      expect(await accept(b, a, completion)).toBe(i);
      provision.release();
    }
    expect(a.system.sessionsTo(b.id)).toEqual(before);
  });

  it("a contact naming the recipient itself is 'self'", async () => {
    const { a, b, c } = await triangle();
    const contact = written(ThirdPartyToContact$codec, {
      host: a.identity.publicKey,
      addresses: [a.address],
      nonce: randomBytes(32),
      expiresAt: BigInt(clock.now + 10_000),
    });
    expect(await a.tp.connectToIntroduced(await connectionTo(a, c), contact)).toBe("self");
    expect(b.tp.stats().provisions).toBe(0);
  });

  it("a dial that reaches a vat with another key than the contact's fails the handshake", async () => {
    const { a, b, c } = await triangle();
    const impostor = await vat("impostor");
    const contact = written(ThirdPartyToContact$codec, {
      host: b.identity.publicKey,
      addresses: [impostor.address],
      nonce: randomBytes(32),
      expiresAt: BigInt(clock.now + 10_000),
    });
    const error = await refusal(a.tp.connectToIntroduced(await connectionTo(a, c), contact));
    expect(error.message).toContain(`cannot reach ${b.id}: ${impostor.address}: shs client:`);
    expect(error.message).toContain(`it is not ${b.id}`);
    expect(a.system.sessionsTo(b.id)).toHaveLength(0);
    expect(impostor.system.sessions).toHaveLength(0);
    expect(a.tp.stats().dials).toBe(0);
  });

  it("contacts that are expired or malformed are refused before dialling", async () => {
    const { a, b, c } = await triangle();
    const via = await connectionTo(a, c);
    const expired = written(ThirdPartyToContact$codec, {
      host: b.identity.publicKey,
      addresses: [b.address],
      nonce: randomBytes(32),
      expiresAt: BigInt(clock.now - 1),
    });
    expect((await refusal(a.tp.connectToIntroduced(via, expired))).message).toMatch(/^expired contact for @.*expired at /);
    const shortKey = written(ThirdPartyToContact$codec, { host: randomBytes(5), addresses: [], nonce: randomBytes(32), expiresAt: BigInt(clock.now + 1000) });
    expect((await refusal(a.tp.connectToIntroduced(via, shortKey))).message).toContain("malformed ThirdPartyToContact");
    expect(a.system.sessionsTo(b.id)).toHaveLength(0);
  });
});

describe("SocketThirdParty refusals at the host", () => {
  it("misdirected by key: an Accept from another vat than the recipient; the rightful one still succeeds", async () => {
    const { a, b, c } = await triangle();
    const e = await vat("e");
    await link(e, b);
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "v");
    const { completion } = await pickUp(a, c, contact);
    const stolen = completionOf(completion);
    const error = await refusal(accept(b, e, written(ThirdPartyCompletion$codec, stolen)));
    expect(error.message).toMatch(new RegExp(`^misdirected Accept: provision [0-9a-f]{16} is for ${escape(a.id)}, the Accept came from ${escape(e.id)}$`));
    expect(await accept(b, a, completion)).toBe("v");
    provision.release();
  });

  it("misdirected by host: an Accept naming another host", async () => {
    const { a, b, c } = await triangle();
    const d = await vat("d");
    await link(a, d);
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "v");
    const { completion } = await pickUp(a, c, contact);
    const error = await refusal(accept(d, a, completion));
    expect(error.message).toBe(`misdirected Accept: it names host ${b.id}, this vat is ${d.id}`);
    provision.release();
  });

  it("forged: the right nonce with another introducer, and a made-up nonce", async () => {
    const { a, b, c } = await triangle();
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "v");
    const { completion } = await pickUp(a, c, contact);
    const real = completionOf(completion);
    const forged = written(ThirdPartyCompletion$codec, { ...real, introducer: a.identity.publicKey });
    const error = await refusal(accept(b, a, forged));
    expect(error.message).toMatch(new RegExp(`^forged Accept: provision [0-9a-f]{16} was introduced by ${escape(c.id)}, not ${escape(a.id)}$`));
    // A nonce no Provide names waits for one, then gives up.
    const madeUp = written(ThirdPartyCompletion$codec, { ...real, nonce: randomBytes(32) });
    const timedOut = await refusal(accept(b, a, madeUp));
    expect(timedOut.message).toBe("no Provide matched this Accept within 200 ms (forged nonce, or the introducer's Provide was lost)");
    expect(b.tp.stats().acceptsWaiting).toBe(0);
    // Neither touched the provision.
    expect(await accept(b, a, completion)).toBe("v");
    provision.release();
  });

  it("replayed: a second Accept, and one after the provision was released", async () => {
    const { a, b, c } = await triangle();
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "v");
    const { completion } = await pickUp(a, c, contact);
    const again = written(ThirdPartyCompletion$codec, completionOf(completion));
    const late = written(ThirdPartyCompletion$codec, completionOf(completion));
    expect(await accept(b, a, completion)).toBe("v");
    expect((await refusal(accept(b, a, again))).message).toMatch(/^replayed Accept: provision [0-9a-f]{16} was already accepted$/);
    provision.release();
    expect((await refusal(accept(b, a, late))).message).toMatch(/^replayed Accept: provision [0-9a-f]{16} was already accepted or closed$/);
    expect(b.tp.stats()).toMatchObject({ provisions: 0, acceptsWaiting: 0 });
  });

  it("expired: an Accept after the provision's deadline (expiry plus clock skew)", async () => {
    const { a, b, c } = await triangle({ c: { provisionTtlMs: 1000 }, b: { clockSkewMs: 500 } });
    const { contact, toAwait } = await introduce(c, a, b);
    const provision = await provide(b, c, toAwait, "v");
    const { completion } = await pickUp(a, c, contact);
    const deadline = clock.now + 1500;
    clock.now += 1501;
    try {
      const error = await refusal(accept(b, a, completion));
      expect(error.message).toMatch(new RegExp(`^expired Accept: provision [0-9a-f]{16} expired at ${escape(new Date(deadline).toISOString())}$`));
    } finally {
      clock.now -= 1501;
    }
    provision.release();
  });

  it("unknown introducer: no Provide can arrive from a vat not connected to the host", async () => {
    const { a, b, c } = await triangle();
    const { contact } = await introduce(c, a, b);
    const { completion } = await pickUp(a, c, contact);
    const stranger = generateIdentity();
    const error = await refusal(accept(b, a, written(ThirdPartyCompletion$codec, { ...completionOf(completion), introducer: stranger.publicKey })));
    expect(error.message).toBe(`no Provide can arrive: introducer ${stranger.id} is not connected to this vat`);
  });

  it("bounds: open provisions per introducer and per recipient", async () => {
    const { a, b, c } = await triangle({ b: { maxProvisionsPerIntroducer: 2, maxProvisionsPerRecipient: 1000 } });
    const held = [];
    for (let i = 0; i < 2; i++) held.push(await provide(b, c, (await introduce(c, a, b)).toAwait, i));
    const third = await introduce(c, a, b);
    held.push(await provide(b, c, third.toAwait, 2));
    const { completion } = await pickUp(a, c, third.contact);
    const error = await refusal(accept(b, a, completion));
    expect(error.message).toMatch(
      new RegExp(`^refused provision [0-9a-f]{16}: introducer ${escape(c.id)} already has 2 open provisions at this vat \\(maxProvisionsPerIntroducer 2\\)$`),
    );
    for (const p of held) p.release();
    expect(b.tp.stats().provisions).toBe(0);

    // Per recipient: a second introducer for the same recipient meets the recipient's bound.
    const b2 = await vat("b2", { maxProvisionsPerRecipient: 1 });
    await link(b2, c);
    const d = await vat("d");
    await link(a, d);
    await link(b2, d);
    const first = await provide(b2, c, (await introduce(c, a, b2)).toAwait, "first");
    const second = await introduce(d, a, b2);
    const refused = await provide(b2, d, second.toAwait, "second");
    const picked = await pickUp(a, d, second.contact);
    expect((await refusal(accept(b2, a, picked.completion))).message).toMatch(
      new RegExp(`^refused provision [0-9a-f]{16}: recipient ${escape(a.id)} already has 1 open provisions at this vat \\(maxProvisionsPerRecipient 1\\)$`),
    );
    first.release();
    refused.release();
    expect(b2.tp.stats().provisions).toBe(0);
  });

  it("bound: Accepts waiting for their Provide per connection", async () => {
    const { a, b, c } = await triangle({ b: { maxWaitingAccepts: 1 } });
    const one = await introduce(c, a, b);
    const two = await introduce(c, a, b);
    const first = await pickUp(a, c, one.contact);
    const second = await pickUp(a, c, two.contact);
    const waiting = accept(b, a, first.completion);
    await eventually(() => b.tp.stats().acceptsWaiting === 1, "the first Accept to wait");
    const error = await refusal(accept(b, a, second.completion));
    expect(error.message).toBe("too many Accepts waiting for their Provide on this connection (maxWaitingAccepts 1); refused this one");
    // The waiting one is unaffected: its Provide arrives and it completes.
    const provision = await provide(b, c, one.toAwait, "one");
    expect(await waiting).toBe("one");
    provision.release();
  });

  it("an Accept waiting for its Provide fails when its connection closes", async () => {
    const { a, b, c } = await triangle();
    const { contact } = await introduce(c, a, b);
    const { completion } = await pickUp(a, c, contact);
    const waiting = accept(b, a, completion);
    await eventually(() => b.tp.stats().acceptsWaiting === 1, "the Accept to wait");
    const failed = refusal(waiting);
    await a.system.preferred(b.id)!.close();
    const error = await failed;
    expect(error.type).toBe("disconnected");
    expect(b.tp.stats().acceptsWaiting).toBe(0);
  });

  it("a provision ends when the connection its Provide came over closes", async () => {
    const { a, b, c } = await triangle();
    const { toAwait } = await introduce(c, a, b);
    await provide(b, c, toAwait, "v");
    expect(b.tp.stats().provisions).toBe(1);
    await b.system.preferred(c.id)!.close();
    await eventually(() => b.tp.stats().provisions === 0, "the provision to end with its connection");
  });
});

describe("one connection per vat pair", () => {
  it("two vats dialling each other at once end with one connection, the one dialled by the smaller key", async () => {
    const x = await vat("x");
    const y = await vat("y");
    // Gates in front of both listeners hold each connection, handshake
    // included, until both dials have arrived.
    const gate = await gates();
    const toX = await gate.add(x.address);
    const toY = await gate.add(y.address);
    const xy = x.system.connect(toY, { remoteKey: y.id });
    const yx = y.system.connect(toX, { remoteKey: x.id });
    await eventually(() => gate.arrived === 2, "both dials to reach the gates");
    expect(x.system.sessionsTo(y.id)).toHaveLength(0);
    gate.open();
    const [sx, sy] = await Promise.all([xy, yx]);
    // Calls made during the race succeed on whatever connection they took.
    const cx = sx.bootstrap(Counter);
    const cy = sy.bootstrap(Counter);
    expect((await cx.add({ delta: 1n })).value).toBe(1n);
    expect((await cy.add({ delta: 2n })).value).toBe(2n);
    await eventually(() => x.system.sessionsTo(y.id).length === 2 && y.system.sessionsTo(x.id).length === 2, "both connections to be up at both ends");
    // Both ends prefer the same connection.
    const xSmaller = Buffer.compare(Buffer.from(x.identity.publicKey), Buffer.from(y.identity.publicKey)) < 0;
    const preferredAtX = x.system.liveConnection(y.id)!;
    const preferredAtY = y.system.liveConnection(x.id)!;
    expect(preferredAtX.dialled).toBe(xSmaller);
    expect(preferredAtY.dialled).toBe(!xSmaller);
    // The loser stays while it carries something; its dialler closes it once idle.
    expect((await cx.add({ delta: 10n })).value).toBe(11n);
    expect((await cy.add({ delta: 20n })).value).toBe(22n);
    cx.release();
    cy.release();
    await eventually(
      () => x.system.sessionsTo(y.id).length === 1 && y.system.sessionsTo(x.id).length === 1,
      () => `one connection left at each end (x has ${x.system.sessionsTo(y.id).length}, y has ${y.system.sessionsTo(x.id).length})`,
    );
    expect(x.system.liveConnection(y.id)).toBe(preferredAtX);
    expect(y.system.liveConnection(x.id)).toBe(preferredAtY);
    // New work goes over the survivor.
    const again = await x.system.connect(toY, { remoteKey: y.id });
    expect(again).toBe(x.system.preferred(y.id));
    const c2 = again.bootstrap(Counter);
    expect((await c2.add({ delta: 1n })).value).toBeGreaterThan(0n);
    c2.release();
  });

  it("concurrent connects to one key share a dial", async () => {
    const x = await vat("x");
    const y = await vat("y");
    const [s1, s2] = await Promise.all([x.system.connect(y.address, { remoteKey: y.id }), x.system.connect(y.address, { remoteKey: y.id })]);
    expect(s1).toBe(s2);
    await eventually(() => y.system.sessionsTo(x.id).length === 1, "y to adopt the connection");
    expect(x.system.sessionsTo(y.id)).toHaveLength(1);
  });
});

describe("listen and connect with a system", () => {
  it("one network listens on several addresses, all or nothing", async () => {
    const identity = generateIdentity();
    const addresses = [unixAddress("first"), unixAddress("second")];
    const network = new SocketNetwork({ identity }, { address: addresses });
    const system = new RpcSystem(network, Counter.server(new CounterImpl(0n)), { publicKey: identity.publicKey });
    cleanup.add(() => system.close());
    await system.accept();
    expect(network.addresses).toEqual(addresses);
    for (const address of addresses) {
      const session = await connect(address, { identity: generateIdentity(), remoteKey: identity.id });
      const counter = session.bootstrap(Counter);
      expect((await counter.add({ delta: 1n })).value).toBeGreaterThan(0n);
      counter.release();
      await session.close();
    }
    // One address taken: nothing stays bound.
    const clash = new SocketNetwork({ identity }, { address: [unixAddress("free"), addresses[0]!] });
    await expect(clash.accept(() => {})).rejects.toThrow();
    expect(clash.addresses).toEqual([]);
  });

  it("sessions join the vat: one per peer key, reused by connect, the vat's offer as bootstrap", async () => {
    const hostIdentity = generateIdentity();
    const host = new RpcSystem(new SocketNetwork({ identity: hostIdentity }), Counter.server(new CounterImpl(100n)), { publicKey: hostIdentity.publicKey });
    cleanup.add(() => host.close());
    const address = unixAddress("endpoint");
    const listener = await listen(address, { identity: hostIdentity, system: host });
    cleanup.add(() => listener.close());
    const clientIdentity = generateIdentity();
    const client = new RpcSystem(new SocketNetwork({ identity: clientIdentity }), null, { publicKey: clientIdentity.publicKey });
    cleanup.add(() => client.close());
    const s1 = await connect(address, { identity: clientIdentity, remoteKey: hostIdentity.id, system: client });
    const s2 = await connect(address, { identity: clientIdentity, remoteKey: hostIdentity.id, system: client });
    expect(s2).toBe(s1);
    expect(client.sessionsTo(hostIdentity.id)).toEqual([s1]);
    const counter = s1.bootstrap(Counter);
    expect((await counter.add({ delta: 1n })).value).toBe(101n);
    counter.release();
    expect(host.preferred(clientIdentity.id)).not.toBeNull();
    expect([...listener.sessions]).toEqual([host.preferred(clientIdentity.id)]);
  });
});

/**
 * Unix-socket relays in front of listeners that hold every connection (its
 * bytes unread, the upstream not dialled) until open(): the test opens them
 * once the connections it races have all arrived.
 */
async function gates() {
  const held: Array<{ socket: net.Socket; upstream: string }> = [];
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];
  let opened = false;
  let arrived = 0;
  const pass = (socket: net.Socket, upstream: string) => {
    const target = net.connect(upstream.slice("unix:".length));
    sockets.add(target);
    socket.pipe(target);
    target.pipe(socket);
    const end = () => {
      socket.destroy();
      target.destroy();
    };
    socket.on("error", end).on("close", end);
    target.on("error", end).on("close", end);
  };
  cleanup.add(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  });
  return {
    get arrived() {
      return arrived;
    },
    /** A gate in front of `upstream`; returns the address to dial instead. */
    async add(upstream: string): Promise<string> {
      const address = unixAddress("gate");
      const server = net.createServer((socket) => {
        sockets.add(socket);
        arrived++;
        if (opened) pass(socket, upstream);
        else held.push({ socket, upstream });
      });
      await new Promise<void>((resolve) => server.listen(address.slice("unix:".length), resolve));
      servers.push(server);
      return address;
    },
    open(): void {
      opened = true;
      for (const { socket, upstream } of held.splice(0)) pass(socket, upstream);
    },
  };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

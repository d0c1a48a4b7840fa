// rpc.capnp Level 3 (three-party handoff), the host's side: a vat with
// direct paths on (RpcSystem + SocketThirdParty) listening on a real unix
// socket, driven by a raw introducer C and a raw recipient A that write
// Provide, Accept and the 3PH Disembargo by hand (test/helpers/l3-raw-peer.ts).
// Covered: both arrival orders (Accept before Provide, Disembargo before
// Accept), the embargo holding the Accept's Return and the calls pipelined
// on it until the introducer's Disembargo, the end of a Provide (Finish,
// or its connection closing) failing a waiting Accept with `disconnected`,
// every refusal as a Return exception on a connection that stays up, the
// protocol errors, and the vat without Level 3 answering Unimplemented.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as rpc from "capnp-es/capnp/rpc";
import { utils } from "capnp-es";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import type { ThirdPartyCompletion, ThirdPartyToAwait } from "../../src/gen/network.js";
import { SocketNetwork } from "../../src/network/socket-network.js";
import { SocketThirdParty } from "../../src/network/third-party.js";
import type { RpcConnection } from "../../src/rpc/connection.js";
import { readStructIn } from "../../src/rpc/payload.js";
import { RpcSystem } from "../../src/rpc/system.js";
import type { WireTarget } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { L3RawPeer, outcomeOf, senderHostedAt } from "../helpers/l3-raw-peer.js";
import { eventually } from "./helpers/raw-peer.js";
import { Counter, CounterImpl } from "./fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3host-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A Provide's question ID: v2 introducers draw them with bit 31 set. */
const PROVIDE_Q = 0x80000001;
const provideTarget = (transform: number[] = []): WireTarget => ({ promisedAnswer: { questionId: PROVIDE_Q, transform } });

interface Host {
  readonly identity: Identity;
  readonly address: string;
  readonly system: RpcSystem;
  readonly tp: SocketThirdParty | null;
  readonly counter: CounterImpl;
}

/** The host vat B: its bootstrap is one Counter shared by every peer (its log shows delivery order). */
async function host(level3 = true): Promise<Host> {
  const identity = generateIdentity();
  const address = `unix:${join(dir, `host-${randomBytes(4).toString("hex")}.sock`)}`;
  // plain: a raw introducer may also come in without the handshake.
  const network = new SocketNetwork({ identity }, { address, plain: true });
  const tp = level3 ? new SocketThirdParty({ publicKey: identity.publicKey, network, addresses: [address], acceptWaitMs: 300 }) : null;
  const counter = new CounterImpl(0n);
  const system = new RpcSystem(network, Counter.server(counter), tp ? { thirdParty: tp } : {});
  await system.accept();
  cleanup.add(() => system.close());
  return { identity, address, system, tp, counter };
}

/** A raw peer of `b`, authenticated as `as` (or plain without it). */
async function dial(b: Host, as?: Identity): Promise<L3RawPeer> {
  const peer = await L3RawPeer.dial(b.address, as ? { identity: as, remoteKey: b.identity.publicKey } : {});
  cleanup.add(async () => void (await peer.close()));
  return peer;
}

/** B's RpcConnection to the vat `who` (waiting for B to have adopted it). */
async function connectionOf(b: Host, who: Identity): Promise<RpcConnection> {
  await eventually(() => b.system.preferred(who.id) !== null, () => `the host to have a session with ${who.id}`);
  return b.system.preferred(who.id)!.connection;
}

function toAwait(recipient: Identity, nonce: Uint8Array, expiresAt = Date.now() + 30_000): ThirdPartyToAwait {
  return { recipient: recipient.publicKey, nonce, expiresAt: BigInt(expiresAt) };
}

function completion(introducer: Identity, b: Host, nonce: Uint8Array, hostKey = b.identity.publicKey): ThirdPartyCompletion {
  return { introducer: introducer.publicKey, host: hostKey, nonce, addresses: [] };
}

const newNonce = () => new Uint8Array(randomBytes(32));
const newEmbargoId = () => new Uint8Array(randomBytes(16));

/** The results of a Return as Counter.add's value. */
function addValue(ret: rpc.Return): bigint {
  const outcome = outcomeOf(ret);
  if (outcome.kind !== "results") throw new Error(`expected results, got ${JSON.stringify(outcome.kind === "exception" ? outcome.error.message : outcome)}`);
  return utils.getInt64(0, readStructIn(ret.results.content));
}

/** The exception a Return carries (fails the test if it has results). */
function exceptionOf(ret: rpc.Return): { type: string; message: string } {
  const outcome = outcomeOf(ret);
  if (outcome.kind !== "exception") throw new Error(`expected an exception, got ${outcome.kind}`);
  return { type: outcome.error.type, message: outcome.error.message };
}

/** Introducer C and recipient A connected to host B; C holds B's bootstrap Counter as export `counter`. */
async function trio(b: Host): Promise<{ c: L3RawPeer; a: L3RawPeer; ci: Identity; ai: Identity; counter: number }> {
  const ci = generateIdentity();
  const ai = generateIdentity();
  const c = await dial(b, ci);
  const a = await dial(b, ai);
  const counter = await c.bootstrap(0);
  return { c, a, ci, ai, counter };
}

describe("Level 3 host: Provide, Accept and the 3PH Disembargo from raw peers over unix sockets", () => {
  it("Provide then Accept: the Return carries the capability; the Provide gets no Return and its Finish ends the provision", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    a.accept(1, completion(ci, b, nonce), null);
    const ret = await a.returnFor(1);
    const cap = senderHostedAt(ret, 0);
    expect(await a.add(2, { importedCap: cap }, 5n)).toBe(5n);
    a.finish(1);

    const fromC = await connectionOf(b, ci);
    expect(fromC.stats()).toMatchObject({ provisions: 1, thirdPartyEmbargoes: 0 });
    expect(b.tp!.stats().provisions).toBe(1);
    c.finish(PROVIDE_Q, false);
    // A call behind the Finish: once it returns, the Finish was handled.
    expect(await c.add(3, { importedCap: counter }, 1n)).toBe(6n);
    expect(fromC.stats().provisions).toBe(0);
    expect(b.tp!.stats().provisions).toBe(0);
    expect(c.sawReturnFor(PROVIDE_Q)).toBe(false);
    const fromA = await connectionOf(b, ai);
    await eventually(() => fromA.stats().answers === 0 && fromA.stats().exports === 0, () => `A's tables to drain: ${JSON.stringify(fromA.stats())}`);
  });

  it("Accept before Provide: the Accept waits for its Provide, then returns", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    a.accept(1, completion(ci, b, nonce), null);
    const fromA = await connectionOf(b, ai);
    await eventually(() => fromA.stats().acceptsWaiting === 1 && b.tp!.stats().acceptsWaiting === 1, () => `the Accept to wait: ${JSON.stringify(fromA.stats())}`);
    expect(a.sawReturnFor(1)).toBe(false);
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    const cap = senderHostedAt(await a.returnFor(1), 0);
    expect(await a.add(2, { importedCap: cap }, 7n)).toBe(7n);
    expect(fromA.stats().acceptsWaiting).toBe(0);
    expect(b.tp!.stats().acceptsWaiting).toBe(0);
  });

  it("Disembargo before Accept: the Accept carrying that embargo ID returns at once", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    const embargo = newEmbargoId();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    c.disembargo(provideTarget(), embargo);
    const fromC = await connectionOf(b, ci);
    await eventually(() => fromC.stats().thirdPartyEmbargoes === 1, () => `the Disembargo to reach the host: ${JSON.stringify(fromC.stats())}`);
    a.accept(1, completion(ci, b, nonce), embargo);
    const cap = senderHostedAt(await a.returnFor(1), 0);
    expect(await a.add(2, { importedCap: cap }, 3n)).toBe(3n);
  });

  it("an embargoed Accept and the calls pipelined on it wait for the Disembargo; the introducer's earlier calls arrive first", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    const embargo = newEmbargoId();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    a.accept(1, completion(ci, b, nonce), embargo);
    a.callAdd(2, { promisedAnswer: { questionId: 1, transform: [] } }, 10n);
    const fromA = await connectionOf(b, ai);
    const fromC = await connectionOf(b, ci);
    await eventually(
      () => fromA.stats().acceptsWaiting === 1 && fromC.stats().thirdPartyEmbargoes === 1,
      () => `the Accept to wait on its embargo: A ${JSON.stringify(fromA.stats())}, C ${JSON.stringify(fromC.stats())}`,
    );
    // A round trip behind the Accept and the pipelined call: both were handled, neither answered.
    await a.bootstrap(3);
    expect(a.sawReturnFor(1)).toBe(false);
    expect(a.sawReturnFor(2)).toBe(false);
    expect(b.counter.log).toEqual([]);

    // What the introducer forwards ahead of the Disembargo is delivered ahead of the recipient's calls.
    c.callAdd(4, { importedCap: counter }, 1n);
    c.disembargo(provideTarget(), embargo);
    expect(addValue(await c.returnFor(4))).toBe(1n);
    const accepted = await a.returnFor(1);
    senderHostedAt(accepted, 0);
    expect(addValue(await a.returnFor(2))).toBe(11n);
    expect(b.counter.log).toEqual([1n, 10n]);
    expect(fromA.stats().acceptsWaiting).toBe(0);
  });

  it("Finish of the Provide while an Accept waits on its embargo: the Accept and its pipelined calls fail with disconnected", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    a.accept(1, completion(ci, b, nonce), newEmbargoId());
    a.callAdd(2, { promisedAnswer: { questionId: 1, transform: [] } }, 1n);
    const fromA = await connectionOf(b, ai);
    await eventually(() => fromA.stats().acceptsWaiting === 1, () => `the Accept to wait: ${JSON.stringify(fromA.stats())}`);
    c.finish(PROVIDE_Q, false);
    const accepted = exceptionOf(await a.returnFor(1));
    expect(accepted.type).toBe("disconnected");
    expect(accepted.message).toMatch(/finished the Provide.*before the handoff completed/);
    expect(exceptionOf(await a.returnFor(2)).type).toBe("disconnected");
    expect(b.counter.log).toEqual([]);
    // Both connections carry on, and nothing of the handoff is left.
    a.finish(1);
    a.finish(2);
    expect(await c.add(3, { importedCap: counter }, 1n)).toBe(1n);
    const fromC = await connectionOf(b, ci);
    expect(fromC.stats()).toMatchObject({ provisions: 0, thirdPartyEmbargoes: 0 });
    await a.bootstrap(4);
    expect(fromA.stats()).toMatchObject({ acceptsWaiting: 0 });
    expect(b.tp!.stats()).toMatchObject({ provisions: 0, acceptsWaiting: 0 });
  });

  it("the introducer's connection closing ends its provisions: the waiting Accept fails with disconnected", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    a.accept(1, completion(ci, b, nonce), newEmbargoId());
    const fromA = await connectionOf(b, ai);
    await eventually(() => fromA.stats().acceptsWaiting === 1, () => `the Accept to wait: ${JSON.stringify(fromA.stats())}`);
    await c.close();
    expect(exceptionOf(await a.returnFor(1)).type).toBe("disconnected");
    await eventually(() => b.tp!.stats().provisions === 0, () => `the provision to end: ${JSON.stringify(b.tp!.stats())}`);
    expect(b.system.preferred(ci.id)).toBeNull();
  });

  it("the recipient's connection closing drops its waiting Accept", async () => {
    const b = await host();
    const { a, ci, ai } = await trio(b);
    a.accept(1, completion(ci, b, newNonce()), null);
    const fromA = await connectionOf(b, ai);
    await eventually(() => fromA.stats().acceptsWaiting === 1, () => `the Accept to wait: ${JSON.stringify(fromA.stats())}`);
    await a.close();
    await eventually(() => b.tp!.stats().acceptsWaiting === 0 && fromA.error !== null, () => `the waiting Accept to go: ${JSON.stringify(b.tp!.stats())}`);
    expect(fromA.stats().acceptsWaiting).toBe(0);
  });

  it("each refusal is a Return exception naming the reason, and the connection stays up", async () => {
    const b = await host();
    const { c, a, ci, ai, counter } = await trio(b);
    const stranger = generateIdentity();
    let q = 10;
    const refusal = async (comp: ThirdPartyCompletion | null, embargo: Uint8Array | null = null, from = a): Promise<string> => {
      const id = ++q;
      from.accept(id, comp, embargo);
      const ret = await from.returnFor(id);
      from.finish(id);
      const e = exceptionOf(ret);
      expect(e.type).toBe("failed");
      return e.message;
    };

    const nonce = newNonce();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    expect(await refusal(completion(ci, b, nonce), new Uint8Array(65))).toMatch(/embargo ID is 65 bytes, over the 64/);
    expect(await refusal(null)).toMatch(/^malformed ThirdPartyCompletion/);
    expect(await refusal(completion(ci, b, nonce, stranger.publicKey))).toMatch(/^misdirected Accept: it names host/);
    expect(await refusal(completion(stranger, b, newNonce()))).toMatch(/^no Provide can arrive: introducer .* is not connected/);
    expect(await refusal(completion(ci, b, newNonce()))).toMatch(/^no Provide matched this Accept within 300 ms/);
    expect(await refusal(completion(stranger, b, nonce))).toMatch(/^forged Accept: provision .* was introduced by/);
    const other = await dial(b, stranger);
    expect(await refusal(completion(ci, b, nonce), null, other)).toMatch(/^misdirected Accept: provision .* is for .*, the Accept came from/);

    // None of that touched the provision: its recipient still gets it, once.
    a.accept(1, completion(ci, b, nonce), null);
    const cap = senderHostedAt(await a.returnFor(1), 0);
    expect(await a.add(2, { importedCap: cap }, 2n)).toBe(2n);
    expect(await refusal(completion(ci, b, nonce))).toMatch(/^replayed Accept/);
    const expired = newNonce();
    c.provide(PROVIDE_Q + 1, { importedCap: counter }, toAwait(ai, expired, Date.now() - 60_000));
    expect(await refusal(completion(ci, b, expired))).toMatch(/^expired Accept: provision .* expired at/);

    expect(a.received.some((m) => m._isAbort)).toBe(false);
    expect(await a.add(3, { importedCap: cap }, 1n)).toBe(3n);
    const fromA = await connectionOf(b, ai);
    expect(fromA.error).toBeNull();
    expect(fromA.stats().acceptsWaiting).toBe(0);
  });

  it("a Provide over a plain (unauthenticated) connection is refused: the Accept names why", async () => {
    const b = await host();
    const ai = generateIdentity();
    const plain = await dial(b);
    const a = await dial(b, ai);
    const counter = await plain.bootstrap(0);
    const nonce = newNonce();
    plain.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    await eventually(() => b.tp!.stats().provisions === 1, () => "the plain peer's Provide to be recorded");
    a.accept(1, completion(generateIdentity(), b, nonce), null);
    const e = exceptionOf(await a.returnFor(1));
    expect(e.message).toMatch(/^refused provision .*: its Provide came over an unauthenticated connection/);
    // The plain peer's connection is still served.
    expect(await plain.add(1, { importedCap: counter }, 4n)).toBe(4n);
    plain.finish(PROVIDE_Q, false);
    await eventually(() => b.tp!.stats().provisions === 0, () => "the refused provision to end with its Finish");
  });

  it("pipelining on a Provide fails that call; the connection stays up", async () => {
    const b = await host();
    const { c, ai, counter } = await trio(b);
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, newNonce()));
    c.callAdd(1, provideTarget(), 1n);
    const e = exceptionOf(await c.returnFor(1));
    expect(e.message).toMatch(/pipelined call on a Provide/);
    c.finish(1);
    expect(b.counter.log).toEqual([]);
    expect(await c.add(2, { importedCap: counter }, 1n)).toBe(1n);
    expect(c.received.some((m) => m._isAbort)).toBe(false);
  });

  it("a 3PH Disembargo with an oversized embargo ID is dropped, not blamed on the introducer", async () => {
    const b = await host();
    const { c, ci, ai, counter } = await trio(b);
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, newNonce()));
    c.disembargo(provideTarget(), new Uint8Array(65));
    expect(await c.add(1, { importedCap: counter }, 1n)).toBe(1n);
    expect((await connectionOf(b, ci)).stats()).toMatchObject({ provisions: 1, thirdPartyEmbargoes: 0 });
  });

  it("a 3PH Disembargo naming no Provide, or a field of one, aborts the introducer's connection", async () => {
    const b = await host();
    const cases: { what: string; send: (c: L3RawPeer, counter: number) => void; reason: RegExp }[] = [
      {
        what: "an answer that is not a Provide (the Bootstrap's)",
        send: (c) => c.disembargo({ promisedAnswer: { questionId: 0, transform: [] } }, newEmbargoId()),
        reason: /Disembargo accept targets answer 0, which is not a Provide/,
      },
      {
        what: "a field of the Provide",
        send: (c, counter) => {
          c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(generateIdentity(), newNonce()));
          c.disembargo(provideTarget([0]), newEmbargoId());
        },
        reason: /must name the Provide itself \(no transform\)/,
      },
      {
        what: "an answer not in the table",
        send: (c) => c.disembargo({ promisedAnswer: { questionId: 77, transform: [] } }, newEmbargoId()),
        reason: /Disembargo accept targets answer 77, which is not in the answer table/,
      },
    ];
    for (const { what, send, reason } of cases) {
      const c = await dial(b, generateIdentity());
      const counter = await c.bootstrap(0);
      send(c, counter);
      await c.closed;
      const aborts = c.received.filter((m) => m._isAbort).map((m) => m.abort.reason);
      expect(aborts, what).toHaveLength(1);
      expect(aborts[0], what).toMatch(reason);
    }
    expect(b.tp!.stats().provisions).toBe(0);
  });

  it("a vat without Level 3 echoes Provide, Accept and the 3PH Disembargo as Unimplemented", async () => {
    const b = await host(false);
    const { c, a, ci, ai, counter } = await trio(b);
    const nonce = newNonce();
    c.provide(PROVIDE_Q, { importedCap: counter }, toAwait(ai, nonce));
    c.disembargo(provideTarget(), newEmbargoId());
    a.accept(1, completion(ci, b, nonce), newEmbargoId());
    const echoed = (p: L3RawPeer, which: number) => p.next((m) => m._isUnimplemented && m.unimplemented.which() === which, `Unimplemented(${which})`);
    await echoed(c, rpc.Message.PROVIDE);
    await echoed(c, rpc.Message.DISEMBARGO);
    await echoed(a, rpc.Message.ACCEPT);
    expect(await c.add(1, { importedCap: counter }, 1n)).toBe(1n);
    expect(a.sawReturnFor(1)).toBe(false);
  });
});

// Promises on the wire, checked message by message with a hand-driven peer:
// what an exported promise's Resolve says (rpc.capnp Resolve), what happens
// to calls queued behind an embargo when the connection dies, and a tail
// call's results taken after its Finish.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ObjectSize, utils } from "capnp-es";
import type * as rpc from "capnp-es/capnp/rpc";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { listen, type Listener, type Session } from "../../src/rpc/index.js";
import { initStructIn } from "../../src/rpc/payload.js";
import { Counter, CounterImpl, type CounterServer } from "./fixtures.js";
import { ADD, COUNTER_ID, ECHO, RawPeer, fillAddCall, fillEmptyCall, until } from "./helpers/raw-peer.js";

const NEXT = 1;
const dir = mkdtempSync(join(tmpdir(), "capmesh-promises-"));
let socketNo = 0;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** next() answers with a promise the test settles. */
class PromiseCounter extends CounterImpl {
  settleNext!: { resolve: (c: Counter) => void; reject: (e: Error) => void };
  override next() {
    return { counter: Counter.fromPromise(new Promise<Counter>((resolve, reject) => (this.settleNext = { resolve, reject }))) };
  }
}

async function serve(impl: CounterServer): Promise<{ peer: RawPeer; session: Session; boot: number }> {
  const path = join(dir, `p${++socketNo}.sock`);
  const sessions: Session[] = [];
  const listener: Listener = await listen(`unix:${path}`, { bootstrap: Counter.server(impl), onSession: (s) => sessions.push(s) });
  cleanups.push(() => listener.close());
  const peer = await RawPeer.connect(path);
  cleanups.push(() => peer.destroy());
  await until(() => sessions.length === 1, "the server to accept the raw connection");
  const boot = await peer.bootstrap(0);
  peer.finish(0, false); // keep the bootstrap capability
  return { peer, session: sessions[0]!, boot };
}

/** Calls next() as question 1: the export ID of the promise it returns. */
async function promiseFromNext(peer: RawPeer, boot: number): Promise<number> {
  peer.send((root) => fillEmptyCall(root, 1, boot, NEXT));
  const d = (await peer.returnFor(1)).results.capTable.get(0);
  expect(d._isSenderPromise).toBe(true);
  return d.senderPromise;
}

function release(peer: RawPeer, id: number, count = 1): void {
  peer.send((root) => {
    const r = root._initRelease();
    r.id = id;
    r.referenceCount = count;
  });
}

async function addOn(peer: RawPeer, questionId: number, target: number, delta: bigint): Promise<rpc.Return> {
  peer.send((root) => fillAddCall(root, questionId, target, delta));
  const ret = await peer.returnFor(questionId);
  peer.finish(questionId);
  return ret;
}

describe("an exported promise's Resolve", () => {
  it("names a local object it resolved to under an export ID of its own", async () => {
    const impl = new PromiseCounter();
    const { peer, session, boot } = await serve(impl);
    const promiseId = await promiseFromNext(peer, boot);
    peer.finish(1, false);
    impl.settleNext.resolve(Counter.server(new CounterImpl(5n)));
    const { resolve } = await peer.next((m) => m._isResolve, "Resolve");
    expect(resolve.promiseId).toBe(promiseId);
    expect(resolve._isCap && resolve.cap._isSenderHosted).toBe(true);
    const objectId = resolve.cap.senderHosted;
    expect(objectId).not.toBe(promiseId);
    // Both IDs reach the object: the promise's for calls already on their way.
    expect((await addOn(peer, 2, objectId, 1n))._isResults).toBe(true);
    expect((await addOn(peer, 3, promiseId, 1n))._isResults).toBe(true);
    release(peer, promiseId);
    release(peer, objectId);
    await until(() => session.connection.stats().exports === 1, () => `exports: ${JSON.stringify(session.connection.stats())}`);
    expect(session.connection.stats()).toMatchObject({ answers: 0, exports: 1 });
    expect(peer.received.some((m) => m._isAbort)).toBe(false);
  });

  it("keeps the promise's ID, sending nothing, while it resolves to another local promise", async () => {
    const impl = new PromiseCounter();
    const { peer, boot } = await serve(impl);
    const promiseId = await promiseFromNext(peer, boot);
    let settleInner!: (c: Counter) => void;
    impl.settleNext.resolve(Counter.fromPromise(new Promise<Counter>((r) => (settleInner = r))));
    expect(await peer.add(2, boot, 0n)).toBe(0n); // a round trip: a Resolve would be here by now
    expect(peer.received.some((m) => m._isResolve)).toBe(false);
    settleInner(Counter.server(new CounterImpl(5n)));
    const { resolve } = await peer.next((m) => m._isResolve, "Resolve");
    expect(resolve.promiseId).toBe(promiseId);
    expect(resolve._isCap && resolve.cap._isSenderHosted && resolve.cap.senderHosted !== promiseId).toBe(true);
  });

  it("carries the exception of a promise that was broken (Resolve.exception)", async () => {
    const impl = new PromiseCounter();
    const { peer, boot } = await serve(impl);
    const promiseId = await promiseFromNext(peer, boot);
    impl.settleNext.reject(new Error("no counter for you"));
    const { resolve } = await peer.next((m) => m._isResolve, "Resolve");
    expect(resolve.promiseId).toBe(promiseId);
    expect(resolve._isException).toBe(true);
    expect(resolve.exception.reason).toMatch(/no counter for you/);
    // Calls already addressed to the promise fail the same way.
    const ret = await addOn(peer, 2, promiseId, 1n);
    expect(ret._isException && ret.exception.reason).toMatch(/no counter for you/);
  });
});

describe("an embargo", () => {
  it("fails the calls queued behind it when the connection dies, instead of delivering them", async () => {
    const impl = new CounterImpl();
    const { peer, session, boot } = await serve(impl);
    // echo(our promise 5), answer kept: the server holds promise 5 and has
    // passed it on (so it must embargo if 5 turns out to be its own object).
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, ECHO);
      const s = initStructIn(call.params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(0, utils.getPointer(0, s));
      call.params._initCapTable(1).get(0).senderPromise = 5;
    });
    await peer.returnFor(1);
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = 5;
      r._initCap().receiverHosted = boot;
    });
    await peer.next((m) => m._isDisembargo && m.disembargo.context._isSenderLoopback, "the server's Disembargo");
    // add(7) through the echoed cap: queued behind the embargo, whose echo we never send.
    peer.send((root) => {
      const call = root._initCall();
      call.questionId = 2;
      const pa = call.target._initPromisedAnswer();
      pa.questionId = 1;
      pa._initTransform(1).get(0).getPointerField = 0;
      call.interfaceId = COUNTER_ID;
      call.methodId = ADD;
      utils.setInt64(0, 7n, initStructIn(call._initParams().content, new ObjectSize(8, 0)));
    });
    await until(() => session.connection.inboundInProgress.calls === 1, "the server to queue add(7)");
    peer.destroy();
    await session.closed;
    await until(() => session.connection.inboundInProgress.calls === 0, "the queued call to settle");
    expect(impl.log).not.toContain(7n);
  });
});

describe("a tail call the peer sends back to us (sendResultsTo.yourself)", () => {
  it("still hands its results to takeFromOtherQuestion when its Finish comes before they do", async () => {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    // A counter whose next() answers only once the test opens the gate.
    const inner = new CounterImpl(1n);
    const gated = Object.assign(Object.create(inner) as CounterImpl, { next: () => opened.then(() => inner.next()) });
    const { peer, session, boot } = await serve(gated);
    // We are the server's bootstrap peer too: our export 10.
    const remote = session.bootstrap(Counter);
    const bootstrapQ = (await peer.next((m) => m._isBootstrap, "the server's Bootstrap")).bootstrap.questionId;
    peer.send((root) => {
      const ret = root._initReturn();
      ret.answerId = bootstrapQ;
      const results = ret._initResults();
      utils.setInterfacePointer(0, results.content);
      results._initCapTable(1).get(0).senderHosted = 10;
    });
    const p = remote.next();
    const q = (await peer.next((m) => m._isCall, "the server's call to next()")).call.questionId;
    // We answer it with a tail call back to the server's own next()...
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, NEXT);
      call.sendResultsTo.yourself = true;
    });
    peer.send((root) => {
      const ret = root._initReturn();
      ret.answerId = q;
      ret.releaseParamCaps = false;
      ret.takeFromOtherQuestion = 1;
    });
    // ...and finish the tail call before it has returned.
    peer.finish(1);
    const early = await peer.returnFor(1);
    expect(early._isResultsSentElsewhere).toBe(true);
    open();
    const { counter } = await p;
    expect((await counter.add({ delta: 1n })).value).toBe(3n);
    counter.release();
    remote.release();
    const drained = { questions: 0, answers: 0, imports: 0, exports: 1, embargoes: 0 };
    await until(() => JSON.stringify(session.connection.stats()) === JSON.stringify(drained), () => JSON.stringify(session.connection.stats()));
    expect(peer.received.some((m) => m._isAbort)).toBe(false);
  });
});

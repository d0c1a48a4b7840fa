// Hostile and broken peers: every protocol or framing fault must cost the
// offender its own connection (with an Abort naming the fault when an rpc
// exchange is possible) and nothing else. The server keeps serving its
// well-behaved sessions and frees everything the bad connection held.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ObjectSize, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect, listen, type Listener, type Session } from "../../src/rpc/index.js";
import { initStructIn, readStructIn } from "../../src/rpc/payload.js";
import type { TransportLimits } from "../../src/transport/limits.js";
import { Counter, CounterImpl } from "./fixtures.js";
import type { CallContext } from "../../src/rpc/index.js";
import {
  COUNTER_ID,
  ECHO,
  HANG,
  RawPeer,
  fillAddCall,
  fillEmptyCall,
  frameHeader,
  rpcBytes,
  seededBytes,
  until,
} from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-bad-"));
let socketNo = 0;

/** The fixture counter, counting hang() calls that started and that settled. */
class TrackingCounter extends CounterImpl {
  hangsStarted = 0;
  hangsSettled = 0;
  override hang(p: {}, ctx: CallContext): Promise<{}> {
    this.hangsStarted++;
    return super.hang(p, ctx).finally(() => this.hangsSettled++);
  }
}

const EMPTY_TABLES = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

interface Server {
  listener: Listener;
  path: string;
  impl: TrackingCounter;
  /** Every server-side session, in accept order ([0] is the steady one's). */
  serverSessions: Session[];
  /** A well-behaved client session, opened before any bad input. */
  steady: Session;
  steadyCounter: Counter;
}

const peers: RawPeer[] = [];
const extraServers: Server[] = [];

async function startServer(limits?: Partial<TransportLimits>): Promise<Server> {
  const path = join(dir, `s${++socketNo}.sock`);
  const impl = new TrackingCounter();
  const serverSessions: Session[] = [];
  const listener = await listen(`unix:${path}`, {
    bootstrap: Counter.server(impl),
    ...(limits ? { limits } : {}),
    onSession: (s) => serverSessions.push(s),
  });
  const steady = await connect(listener.address);
  const steadyCounter = steady.bootstrap(Counter);
  expect((await steadyCounter.add({ delta: 0n })).value).toBe(0n);
  return { listener, path, impl, serverSessions, steady, steadyCounter };
}

async function stopServer(srv: Server): Promise<void> {
  srv.steadyCounter.release();
  await srv.steady.close();
  await srv.listener.close();
}

/** Opens a raw connection and finds the server's session for it. */
async function rawPeer(srv: Server): Promise<{ peer: RawPeer; session: Session }> {
  const index = srv.serverSessions.length;
  const peer = await RawPeer.connect(srv.path);
  peers.push(peer);
  await until(() => srv.serverSessions.length > index, "the server to accept the raw connection");
  expect(srv.serverSessions.length).toBe(index + 1);
  return { peer, session: srv.serverSessions[index]! };
}

/** The steady session still works, and so does a brand-new one. */
async function expectHealthy(srv: Server): Promise<void> {
  const before = srv.impl.value;
  expect((await srv.steadyCounter.add({ delta: 1n })).value).toBe(before + 1n);
  const fresh = await connect(srv.listener.address);
  try {
    const counter = fresh.bootstrap(Counter);
    expect((await counter.add({ delta: 1n })).value).toBe(before + 2n);
    counter.release();
  } finally {
    await fresh.close();
  }
  expect(srv.steady.connection.error).toBeNull();
}

/** The server's side of a bad connection is gone and holds nothing. */
async function expectServerSideGone(srv: Server, session: Session): Promise<string> {
  const reason = await session.closed;
  expect(session.connection.error).not.toBeNull();
  expect(session.connection.stats()).toEqual(EMPTY_TABLES);
  await until(() => !srv.listener.sessions.has(session), "the listener to forget the closed session");
  return reason.message;
}

/**
 * A protocol violation: the server sends exactly one Abort naming the fault
 * as its last message, closes the connection, and frees the session.
 */
async function expectAbort(srv: Server, peer: RawPeer, session: Session, fault: RegExp): Promise<string> {
  const aborts = await peer.serverCloses();
  expect(peer.decodeError).toBeNull();
  expect(aborts, `messages received: ${peer.summary()}`).toHaveLength(1);
  expect(aborts[0]).toMatch(fault);
  expect(peer.received.at(-1)!._isAbort).toBe(true);
  expect(peer.received.at(-1)!.abort.type).toBe(rpc.Exception_Type.FAILED);
  expect(peer.sawEnd).toBe(true);
  const serverReason = await expectServerSideGone(srv, session);
  expect(serverReason).toMatch(fault);
  return aborts[0]!;
}

/**
 * A framing fault: the server's last word is an Abort naming the fault (as
 * C++ does), then it ends the connection; its session's close reason names
 * the fault too.
 */
async function expectFrameRejected(srv: Server, peer: RawPeer, session: Session, fault: RegExp): Promise<void> {
  const aborts = await peer.serverCloses();
  expect(peer.decodeError).toBeNull();
  expect(aborts, `messages received: ${peer.summary()}`).toHaveLength(1);
  expect(aborts[0]).toMatch(/^bad frame: /);
  expect(aborts[0]).toMatch(fault);
  const serverReason = await expectServerSideGone(srv, session);
  expect(serverReason).toMatch(fault);
}

// ---------------------------------------------------------------------------

let srv: Server;

beforeAll(async () => {
  srv = await startServer();
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  for (const s of extraServers.splice(0)) await stopServer(s);
});

afterAll(async () => {
  if (srv) await stopServer(srv);
  rmSync(dir, { recursive: true, force: true });
});

describe("frame-level faults", () => {
  it.each([1, 2, 3, 42, 1337, 0xc0ffee])("random bytes (seed %i) are rejected by the framing", async (seed) => {
    const { peer, session } = await rawPeer(srv);
    peer.write(seededBytes(seed, 256 + (seed % 1024)));
    await expectFrameRejected(
      srv,
      peer,
      session,
      /incoming Cap'n Proto (frame declares \d+ segments|message is \d+ bytes)|invalid Cap'n Proto frame/,
    );
    await expectHealthy(srv);
  });

  it.each([7, 99, 2024])(
    "a well-framed message with a random body (seed %i) is aborted as malformed",
    async (seed) => {
      const { peer, session } = await rawPeer(srv);
      peer.write(frameHeader([64]));
      peer.write(seededBytes(seed, 64 * 8));
      // For these seeds the root pointer leads out of the message; capnp-es
      // throws while reading it and the engine reports a malformed message.
      await expectAbort(srv, peer, session, /malformed message: (CAPNP-TS\d+ |[a-z])/);
      await expectHealthy(srv);
    },
  );

  it("a frame truncated in its body, then end of stream (half-close)", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.write(frameHeader([4]));
    peer.write(new Uint8Array(12));
    peer.socket.end();
    await expectFrameRejected(
      srv,
      peer,
      session,
      /stream ended in the middle of a Cap'n Proto frame \(after 12 of the 32 body bytes/,
    );
    await expectHealthy(srv);
  });

  it("a frame truncated in its header, then end of stream (half-close)", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.write(frameHeader([4]).subarray(0, 6));
    peer.socket.end();
    await expectFrameRejected(srv, peer, session, /stream ended in the middle of a Cap'n Proto frame \(after 6 of its 8 header bytes/);
    await expectHealthy(srv);
  });

  it("a segment count of 2^31 is rejected from the first word, without waiting for (or allocating) the table", async () => {
    const { peer, session } = await rawPeer(srv);
    const rssBefore = process.memoryUsage().arrayBuffers;
    // count - 1 = 0x7fffffff, then one size word; nothing more is ever sent.
    peer.write(frameHeader([1], 0x7fffffff).subarray(0, 8));
    await expectFrameRejected(srv, peer, session, /declares 2147483648 segments, over this receiver's limit of 512/);
    // Nowhere near the 8 GiB a naive segment table (or the 16 GiB of bodies) would need.
    expect(process.memoryUsage().arrayBuffers - rssBefore).toBeLessThan(64 << 20);
    await expectHealthy(srv);
  });

  it("a segment count field of 0xFFFFFFFF (wrapping to zero segments) is rejected", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.write(frameHeader([1], 0xffffffff).subarray(0, 8));
    await expectFrameRejected(srv, peer, session, /segment count field is 0xFFFFFFFF/);
    await expectHealthy(srv);
  });

  it("a message over the server's maxMessageBytes is rejected from its header", async () => {
    const small = await startServer({ maxMessageBytes: 1 << 20 });
    extraServers.push(small);
    const { peer, session } = await rawPeer(small);
    // One segment of 4 MiB announced; the body is never sent.
    peer.write(frameHeader([(4 << 20) / 8]));
    await expectFrameRejected(
      small,
      peer,
      session,
      /incoming Cap'n Proto message is 4194304 bytes \(1 segment\), over this receiver's limit of 1048576 bytes/,
    );
    await expectHealthy(small);
  });
});

describe("malformed and illegal rpc messages", () => {
  it("a root pointer pointing outside its segment", async () => {
    const { peer, session } = await rawPeer(srv);
    const frame = new Uint8Array(8 + 16);
    frame.set(frameHeader([2]));
    const dv = new DataView(frame.buffer);
    dv.setUint32(8, (1000 << 2) | 0, true); // struct pointer, offset 1000 words
    dv.setUint32(12, 1, true); // 1 data word, 0 pointers
    peer.write(frame);
    await expectAbort(srv, peer, session, /malformed message: (CAPNP-TS019 Pointer offset .* is out of bounds|.*pointer out of bounds)/);
    await expectHealthy(srv);
  });

  it("a Call whose params point at a capability index beyond an empty cap table", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    // echo(cap) with the interface pointer saying index 7 and no cap table.
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, ECHO);
      const s = initStructIn(call.params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(7, utils.getPointer(0, s));
    });
    await expectAbort(srv, peer, session, /capability index 7 is outside the message's cap table \(0\)/);
    await expectHealthy(srv);
  });

  it("a Call whose params point at a capability index beyond a one-entry cap table", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    // The table holds a cap we "host" as export 3; the pointer says index 1.
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, ECHO);
      const params = call.params;
      const s = initStructIn(params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(1, utils.getPointer(0, s));
      params._initCapTable(1).get(0).senderHosted = 3;
    });
    await expectAbort(srv, peer, session, /capability index 1 is outside the message's cap table \(1\)/);
    await expectHealthy(srv);
  });

  it("a cap table entry naming an export the server does not have is a broken capability; the call goes through", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    peer.finish(0, false); // keep the bootstrap capability

    // A cap table entry naming an export of the server that does not exist:
    // the capability is broken (as in C++), the call itself goes through. A
    // broken capability goes back as a promise broken at once (C++ sends it
    // as senderHosted), so the peer can learn why without calling it.
    peer.send((root) => {
      const call = fillEmptyCall(root, 3, boot, ECHO);
      const params = call.params;
      const s = initStructIn(params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(0, utils.getPointer(0, s));
      params._initCapTable(1).get(0).receiverHosted = 99;
    });
    const ret3 = await peer.returnFor(3);
    expect(ret3._isResults).toBe(true);
    const echoed = ret3.results.capTable.get(0);
    expect(echoed._isSenderPromise).toBe(true);
    const brokenId = echoed.senderPromise;
    const resolve = await peer.next((m) => m._isResolve && m.resolve.promiseId === brokenId, "the Resolve of the broken promise");
    expect(resolve.resolve.exception.reason).toMatch(/receiverHosted names unknown export 99/);
    peer.send((root) => fillAddCall(root, 4, brokenId, 1n));
    const ret4 = await peer.returnFor(4);
    expect(ret4._isException).toBe(true);
    expect(ret4.exception.reason).toMatch(/receiverHosted names unknown export 99/);
    peer.finish(4);
    peer.finish(3); // releases the echoed (broken) cap

    // The connection is still up and serves calls.
    const before = srv.impl.value;
    expect(await peer.add(5, boot, 10n)).toBe(before + 10n);
    await until(() => session.connection.stats().answers === 0, "the server to drop finished answers");
    expect(session.connection.stats()).toEqual({ ...EMPTY_TABLES, exports: 1 });
    expect(peer.received.some((m) => m._isAbort)).toBe(false);
    expect(peer.isClosed).toBe(false);

    peer.socket.end();
    await peer.serverCloses();
    await expectServerSideGone(srv, session);
    await expectHealthy(srv);
  });

  it("a Return for an unknown question", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.send((root) => {
      const ret = root._initReturn();
      ret.answerId = 77;
      ret._initResults();
    });
    await expectAbort(srv, peer, session, /Return for question 77, which is not in the question table/);
    await expectHealthy(srv);
  });

  it("a Finish for an unknown answer", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.send((root) => (root._initFinish().questionId = 77));
    await expectAbort(srv, peer, session, /Finish for question 77, which is not in the answer table/);
    await expectHealthy(srv);
  });

  it("a Call targeting an import that was never exported", async () => {
    const { peer, session } = await rawPeer(srv);
    await peer.bootstrap(0);
    peer.send((root) => fillAddCall(root, 1, 42, 1n));
    await expectAbort(srv, peer, session, /Call targets export 42, which is not in the export table/);
    await expectHealthy(srv);
  });

  it("a Call targeting a promisedAnswer that does not exist", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.send((root) => {
      const call = root._initCall();
      call.questionId = 1;
      call.target._initPromisedAnswer().questionId = 42;
      call.interfaceId = COUNTER_ID;
      call.methodId = 0;
      initStructIn(call._initParams().content, new ObjectSize(8, 0));
    });
    await expectAbort(srv, peer, session, /Call targets answer 42, which is not in the answer table/);
    await expectHealthy(srv);
  });

  it("a second Resolve for the same promise", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    // echo(cap) where cap is our promise, export 5.
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, ECHO);
      const params = call.params;
      const s = initStructIn(params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(0, utils.getPointer(0, s));
      params._initCapTable(1).get(0).senderPromise = 5;
    });
    const ret = await peer.returnFor(1);
    expect(ret._isResults).toBe(true);
    // First Resolve: promise 5 became our object 6. Legal.
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = 5;
      r._initCap().senderHosted = 6;
    });
    // Second Resolve for 5: a protocol violation.
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = 5;
      r._initCap().senderHosted = 7;
    });
    await expectAbort(srv, peer, session, /second Resolve for promise 5/);
    await expectHealthy(srv);
  });

  it("a second Resolve for a promise the server already dropped", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    peer.send((root) => {
      const call = fillEmptyCall(root, 1, boot, ECHO);
      const params = call.params;
      const s = initStructIn(params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(0, utils.getPointer(0, s));
      params._initCapTable(1).get(0).senderPromise = 5;
    });
    await peer.returnFor(1);
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = 5;
      r._initCap().senderHosted = 6;
    });
    // Finish drops the echoed reference: the server releases what it imported.
    peer.finish(1);
    await peer.next((m) => m._isRelease && m.release.id === 5, "Release of promise 5");
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = 5;
      r._initCap().senderHosted = 7;
    });
    await expectAbort(srv, peer, session, /second Resolve for promise 5/);
    await expectHealthy(srv);
  });

  /** echo(cap = our export `id`) as question `questionId`, answer kept (no Finish). */
  async function echoOurPromise(peer: RawPeer, questionId: number, boot: number, id: number, kind = "senderPromise" as "senderPromise" | "senderHosted"): Promise<void> {
    peer.send((root) => {
      const call = fillEmptyCall(root, questionId, boot, ECHO);
      const s = initStructIn(call.params.content, new ObjectSize(0, 1));
      utils.setInterfacePointer(0, utils.getPointer(0, s));
      call.params._initCapTable(1).get(0)[kind] = id;
    });
    expect((await peer.returnFor(questionId))._isResults).toBe(true);
  }

  function resolveToPromise(peer: RawPeer, promiseId: number, to: number): void {
    peer.send((root) => {
      const r = root._initResolve();
      r.promiseId = promiseId;
      r._initCap().senderPromise = to;
    });
  }

  /** A Disembargo aimed at the echoed cap: it makes the server follow the promise. */
  function disembargoOnEcho(peer: RawPeer, questionId: number): void {
    peer.send((root) => {
      const d = root._initDisembargo();
      const pa = d._initTarget()._initPromisedAnswer();
      pa.questionId = questionId;
      pa._initTransform(1).get(0).getPointerField = 0;
      d.context.senderLoopback = 0;
    });
  }

  it("a Resolve of a promise to itself", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    await echoOurPromise(peer, 1, boot, 5);
    resolveToPromise(peer, 5, 5);
    disembargoOnEcho(peer, 1);
    await expectAbort(srv, peer, session, /Resolve for promise 5 resolves to itself/);
    await expectHealthy(srv);
  });

  it("a Resolve that closes a cycle of promises (5 -> 6 -> 5)", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    await echoOurPromise(peer, 1, boot, 5);
    await echoOurPromise(peer, 2, boot, 6);
    // Keeps import 5 itself alive once promise 5 has moved on to 6; else a
    // later "senderPromise 5" names a new import, and there is no cycle.
    await echoOurPromise(peer, 3, boot, 5, "senderHosted");
    resolveToPromise(peer, 5, 6); // legal
    resolveToPromise(peer, 6, 5);
    disembargoOnEcho(peer, 1);
    await expectAbort(srv, peer, session, /Resolve for promise 6 resolves to itself/);
    await expectHealthy(srv);
  });

  it("a Release for an export that was never exported", async () => {
    const { peer, session } = await rawPeer(srv);
    peer.send((root) => {
      const r = root._initRelease();
      r.id = 99;
      r.referenceCount = 1;
    });
    await expectAbort(srv, peer, session, /Release names export 99, which is not in the export table/);
    await expectHealthy(srv);
  });

  it("a Release whose count exceeds the reference count", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    peer.finish(0, false);
    peer.send((root) => {
      const r = root._initRelease();
      r.id = boot;
      r.referenceCount = 5;
    });
    await expectAbort(
      srv,
      peer,
      session,
      new RegExp(`Release of export ${boot} by 5 would drop its reference count \\(1\\) below zero`),
    );
    await expectHealthy(srv);
  });

  it("a Disembargo receiverLoopback naming an embargo never started", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    peer.send((root) => {
      const d = root._initDisembargo();
      d._initTarget().importedCap = boot;
      d.context.receiverLoopback = 7;
    });
    await expectAbort(srv, peer, session, /Disembargo receiverLoopback names embargo 7, which we never started/);
    await expectHealthy(srv);
  });

  it("a duplicate question ID while the first call is outstanding", async () => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    const canceledBefore = srv.impl.canceled;
    peer.send((root) => fillEmptyCall(root, 1, boot, HANG));
    await until(() => session.connection.stats().answers === 2, "the hang call to be in the answer table");
    peer.send((root) => fillAddCall(root, 1, boot, 1n));
    await expectAbort(srv, peer, session, /Call uses question ID 1, which is still in use/);
    // The outstanding call's server saw its signal fire.
    await until(() => srv.impl.canceled === canceledBefore + 1, "the hanging call to be canceled");
    await expectHealthy(srv);
  });

  it("a duplicate question ID in the same write as the call it duplicates leaves no server call running", async () => {
    const { peer, session } = await rawPeer(srv);
    const started = srv.impl.hangsStarted;
    const settled = srv.impl.hangsSettled;
    const boot = await peer.bootstrap(0);
    // Both Calls arrive in one chunk: the connection is aborted before the
    // first call has been delivered to the server object. That call must
    // then either never run or see its cancellation; it must not be left
    // running (holding its params and the server capability) forever.
    const first = rpcBytes((root) => fillEmptyCall(root, 1, boot, HANG));
    const dup = rpcBytes((root) => fillAddCall(root, 1, boot, 1n));
    const both = new Uint8Array(first.byteLength + dup.byteLength);
    both.set(first);
    both.set(dup, first.byteLength);
    peer.write(both);
    await expectAbort(srv, peer, session, /Call uses question ID 1, which is still in use/);
    await until(
      () => srv.impl.hangsSettled - settled === srv.impl.hangsStarted - started,
      () => `every started hang() call to settle (started ${srv.impl.hangsStarted - started}, settled ${srv.impl.hangsSettled - settled})`,
    );
    await expectHealthy(srv);
  });

  it("a duplicate Bootstrap question ID", async () => {
    const { peer, session } = await rawPeer(srv);
    await peer.bootstrap(0);
    peer.send((root) => (root._initBootstrap().questionId = 0));
    await expectAbort(srv, peer, session, /Bootstrap uses question ID 0, which is still in use/);
    await expectHealthy(srv);
  });
});

describe("messages the server does not implement", () => {
  it("an unknown message type (union discriminant 50) gets Unimplemented and the connection stays usable", async () => {
    const { peer, session } = await rawPeer(srv);
    const bytes = rpcBytes((root) => (root._initFinish().questionId = 99));
    // Header (8 bytes), root pointer (8), then the union discriminant at data offset 0.
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(dv.getUint16(16, true)).toBe(rpc.Message.FINISH);
    dv.setUint16(16, 50, true);
    peer.write(bytes);

    const reply = await peer.next((m) => m._isUnimplemented, "Unimplemented");
    const echoed = reply.unimplemented;
    expect(echoed.which()).toBe(50);
    // The body came back intact: pointer 0 still leads to questionId 99.
    expect(utils.getUint32(0, readStructIn(utils.getPointer(0, echoed)))).toBe(99);

    const boot = await peer.bootstrap(0);
    const before = srv.impl.value;
    expect(await peer.add(1, boot, 3n)).toBe(before + 3n);
    expect(peer.received.some((m) => m._isAbort)).toBe(false);
    expect(peer.isClosed).toBe(false);
    expect(session.connection.error).toBeNull();

    peer.socket.end();
    await peer.serverCloses();
    await expectServerSideGone(srv, session);
    await expectHealthy(srv);
  });

  it.each([
    ["Provide", rpc.Message.PROVIDE, (root: rpc.Message) => {
      const p = root._initProvide();
      p.questionId = 5;
      p._initTarget().importedCap = 0;
    }],
    ["Join", rpc.Message.JOIN, (root: rpc.Message) => {
      const j = root._initJoin();
      j.questionId = 5;
      j._initTarget().importedCap = 0;
    }],
  ] as const)("a Level 3/4 %s message gets Unimplemented and the connection stays usable", async (_name, which, build) => {
    const { peer, session } = await rawPeer(srv);
    const boot = await peer.bootstrap(0);
    peer.send(build);
    const reply = await peer.next((m) => m._isUnimplemented, "Unimplemented");
    expect(reply.unimplemented.which()).toBe(which);
    const before = srv.impl.value;
    expect(await peer.add(1, boot, 2n)).toBe(before + 2n);
    expect(peer.received.some((m) => m._isAbort)).toBe(false);
    expect(session.connection.error).toBeNull();
    peer.socket.end();
    await peer.serverCloses();
    await expectServerSideGone(srv, session);
    await expectHealthy(srv);
  });
});

describe("many abusive connections", () => {
  it("200 abusive connections in a row leave the server healthy and holding nothing", async () => {
    const firstIndex = srv.serverSessions.length;
    let hangs = 0;
    const started = srv.impl.hangsStarted;
    const settled = srv.impl.hangsSettled;
    const kinds: ((peer: RawPeer, i: number) => Promise<void>)[] = [
      // frame fault
      async (peer, i) => peer.write(seededBytes(1000 + i, 128)),
      // Return for an unknown question
      async (peer) =>
        peer.send((root) => {
          const r = root._initReturn();
          r.answerId = 3;
          r._initResults();
        }),
      // duplicate question while a call hangs (leaves an answer with a live server call)
      async (peer) => {
        const boot = await peer.bootstrap(0);
        peer.send((root) => fillEmptyCall(root, 1, boot, HANG));
        peer.send((root) => fillAddCall(root, 1, boot, 1n));
        hangs++;
      },
      // Release over the refcount, after taking the bootstrap cap
      async (peer) => {
        const boot = await peer.bootstrap(0);
        peer.send((root) => {
          const r = root._initRelease();
          r.id = boot;
          r.referenceCount = 2;
        });
      },
      // second Resolve, with an import and an answer in the server's tables
      async (peer) => {
        const boot = await peer.bootstrap(0);
        peer.send((root) => {
          const call = fillEmptyCall(root, 1, boot, ECHO);
          const s = initStructIn(call.params.content, new ObjectSize(0, 1));
          utils.setInterfacePointer(0, utils.getPointer(0, s));
          call.params._initCapTable(1).get(0).senderPromise = 2;
        });
        for (let i = 0; i < 2; i++) {
          peer.send((root) => {
            const r = root._initResolve();
            r.promiseId = 2;
            r._initCap().senderHosted = 3 + i;
          });
        }
      },
      // truncated frame and half-close
      async (peer) => {
        peer.write(frameHeader([8]));
        peer.write(new Uint8Array(20));
        peer.socket.end();
      },
    ];

    for (let i = 0; i < 200; i++) {
      const { peer, session } = await rawPeer(srv);
      await kinds[i % kinds.length]!(peer, i);
      await peer.serverCloses();
      expect(peer.decodeError).toBeNull();
      await session.closed;
      peer.destroy();
    }
    peers.splice(0);

    await until(() => srv.listener.sessions.size === 1, "only the steady session to remain");
    expect([...srv.listener.sessions]).toEqual([srv.serverSessions[0]]);
    const abusive = srv.serverSessions.slice(firstIndex);
    expect(abusive).toHaveLength(200);
    for (const s of abusive) {
      expect(s.connection.error).not.toBeNull();
      expect(s.connection.stats()).toEqual(EMPTY_TABLES);
    }
    // No server call outlives its connection (each hang() was canceled, or never started).
    await until(
      () => srv.impl.hangsSettled - settled === srv.impl.hangsStarted - started,
      () =>
        `every started hang() call to settle (started ${srv.impl.hangsStarted - started}, ` +
        `settled ${srv.impl.hangsSettled - settled}, connections that sent hang() ${hangs})`,
    );

    await expectHealthy(srv);
    // The steady connection's own tables are as small as ever: the bootstrap export only.
    const steadyServerSide = srv.serverSessions[0]!;
    await until(() => steadyServerSide.connection.stats().answers === 0, "the steady session's answers to drain");
    expect(steadyServerSide.connection.stats()).toEqual({ ...EMPTY_TABLES, exports: 1 });
    await until(() => srv.listener.sessions.size === 1, "the health-check session to go");
  });
});

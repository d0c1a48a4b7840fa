import { Message, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { afterEach, describe, expect, it } from "vitest";
import { memoryStreamPair } from "../../src/transport/message-stream.js";
import { RpcConnection } from "../../src/rpc/connection.js";
import { RpcError, Session, hookOf, type PeerInfo } from "../../src/rpc/index.js";
import { innermost } from "../../src/rpc/hook.js";
import { QueuedHook } from "../../src/rpc/local.js";
import { Counter, CounterImpl } from "./fixtures.js";

const sessions: Session[] = [];

function pair(serverObject: CounterImpl) {
  const [a, b] = memoryStreamPair();
  const peer = (id: string): PeerInfo => ({ id, authenticated: false, address: `memory:${id}` });
  const server = new Session(new RpcConnection(a, { name: "server" }), peer("client"), Counter.server(serverObject));
  const client = new Session(new RpcConnection(b, { name: "client" }), peer("server"), null);
  sessions.push(server, client);
  return { server, client, counter: client.bootstrap(Counter) };
}

async function settle(times = 20) {
  for (let i = 0; i < times; i++) await new Promise((r) => setImmediate(r));
}

afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close();
});

describe("RPC engine over an in-memory pair", () => {
  it("makes a bootstrap call and returns results", async () => {
    const impl = new CounterImpl(10n);
    const { counter } = pair(impl);
    expect((await counter.add({ delta: 5n })).value).toBe(15n);
    expect((await counter.add({ delta: 1n })).value).toBe(16n);
  });

  it("a vat that offers no bootstrap, or whose bootstrap function throws, answers with an exception", async () => {
    const peer = (id: string): PeerInfo => ({ id, authenticated: false, address: `memory:${id}` });
    const offers = [
      { offer: null, reason: /offers no bootstrap capability/ },
      {
        offer: () => {
          throw new Error("no capability for you");
        },
        reason: /no capability for you/,
      },
    ];
    for (const { offer, reason } of offers) {
      const [a, b] = memoryStreamPair();
      const server = new Session(new RpcConnection(a, { name: "server" }), peer("client"), offer);
      const client = new Session(new RpcConnection(b, { name: "client" }), peer("server"), null);
      sessions.push(server, client);
      const error = await client.bootstrap(Counter).add({ delta: 1n }).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(RpcError);
      expect((error as RpcError).message).toMatch(reason);
      // The connection stays up: the question was answered, not aborted.
      expect(client.connection.error).toBeNull();
    }
  });

  it("pipelines calls on a capability before it arrives", async () => {
    const { counter, client } = pair(new CounterImpl(1n));
    const a = counter.next();
    const b = a.counter.next();
    const c = b.counter.add({ delta: 0n });
    expect((await c).value).toBe(3n);
    await settle();
    // The tables drain once the results are consumed.
    (await a).counter.release();
    (await b).counter.release();
    await settle();
    expect(client.connection.stats().questions).toBe(0);
  });

  it("pipelines on results that have arrived but were never awaited, and decodes them once awaited", async () => {
    const { counter } = pair(new CounterImpl(7n));
    const p = counter.next();
    // A round trip later, p's results are here, still undecoded.
    await counter.add({ delta: 0n });
    const viaArrived = p.counter;
    expect((await viaArrived.add({ delta: 0n })).value).toBe(8n);
    const { counter: decoded } = await p;
    expect((await decoded.add({ delta: 1n })).value).toBe(9n);
    viaArrived.release();
    decoded.release();
  });

  it("releases the results of a promise only pipelined on when it is disposed, not at GC", async () => {
    const { counter, server } = pair(new CounterImpl(1n));
    await counter.add({ delta: 0n });
    await settle();
    const before = server.connection.stats().exports;
    {
      using step = counter.next(); // never awaited: only pipelined on
      using c = step.counter;
      expect((await c.add({ delta: 0n })).value).toBe(2n);
    }
    await settle();
    expect(server.connection.stats().exports).toBe(before);
  });

  it("disposing a promise before its results arrive cancels the call and releases the clients read from it", async () => {
    const { counter, server } = pair(new CounterImpl(1n));
    await counter.add({ delta: 0n });
    await settle();
    const before = server.connection.stats();
    const step = counter.next();
    const c = step.counter;
    step[Symbol.dispose]();
    await expect(step).rejects.toThrow(/Counter.next was canceled: its RpcPromise was disposed before the results arrived/);
    await expect(c.add({ delta: 0n })).rejects.toThrow(/released/);
    await expect(step.counter.add({ delta: 0n })).rejects.toThrow(/disposed|canceled/);
    await settle();
    expect(server.connection.stats()).toEqual(before);
  });

  it("disposing a promise after awaiting it leaves the results with the caller", async () => {
    const { counter } = pair(new CounterImpl(1n));
    let child: Counter;
    {
      using p = counter.next();
      child = (await p).counter;
    }
    expect((await child.add({ delta: 1n })).value).toBe(3n);
    child.release();
  });

  it("delivers calls in order (E-order)", async () => {
    const impl = new CounterImpl();
    const { counter } = pair(impl);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => counter.add({ delta: BigInt(i) })));
    expect(impl.log).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i)));
    expect(results.at(-1)!.value).toBe(BigInt((49 * 50) / 2));
  });

  it("passes exceptions back as typed errors", async () => {
    const { counter } = pair(new CounterImpl());
    const err = await counter.fail({ reason: "no way" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).type).toBe("failed");
    expect((err as RpcError).message).toContain("no way");
    expect((err as RpcError).remote).toBe(true);
  });

  it("recognises its own capability when it comes back, and keeps call order (embargo)", async () => {
    const serverImpl = new CounterImpl();
    const { counter, client } = pair(serverImpl);
    const local = new CounterImpl(100n);
    const mine = Counter.server(local);
    const echoed = counter.echo({ cap: mine }).cap;
    // Calls made through the (pipelined) echo before and after it resolves.
    const order: Promise<{ value: bigint }>[] = [];
    for (let i = 1n; i <= 5n; i++) order.push(echoed.add({ delta: i }));
    const returned = (await counter.echo({ cap: mine })).cap!;
    for (let i = 6n; i <= 10n; i++) order.push(echoed.add({ delta: i }));
    await Promise.all(order);
    expect(local.log).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
    // The returned capability is the local object itself, not a proxy.
    expect(hookOf(returned).brand).toBe(null);
    expect(serverImpl.log).toEqual([]);
    returned.release();
    echoed.release();
    mine.release();
    await settle();
    expect(client.connection.stats()).toMatchObject({ questions: 0, embargoes: 0 });
  });

  it("cancels with an AbortSignal: the server sees its signal fire", async () => {
    const impl = new CounterImpl();
    const { counter } = pair(impl);
    const ac = new AbortController();
    const p = counter.hang({}, { signal: ac.signal });
    await settle();
    ac.abort();
    await expect(p).rejects.toThrow(/cancel/);
    await settle();
    expect(impl.canceled).toBe(1);
  });

  it("release is seen by the server", async () => {
    const impl = new CounterImpl();
    const { counter, server } = pair(impl);
    const child = (await counter.next()).counter;
    expect((await child.add({ delta: 1n })).value).toBe(2n);
    await settle();
    expect(server.connection.stats().exports).toBe(2);
    child.release();
    await settle();
    expect(server.connection.stats().exports).toBe(1);
  });

  it("releasing the bootstrap capability sends Release, and the bootstrap question is finished", async () => {
    const { counter, server, client } = pair(new CounterImpl());
    expect((await counter.add({ delta: 1n })).value).toBe(1n);
    await settle();
    expect(server.connection.stats()).toMatchObject({ answers: 0, exports: 1 });
    counter.release();
    await settle();
    expect(client.connection.stats()).toMatchObject({ questions: 0, imports: 0 });
    expect(server.connection.stats()).toMatchObject({ answers: 0, exports: 0 });
  });

  it("releasing a bootstrap capability never called drains both sides", async () => {
    const { counter, server, client } = pair(new CounterImpl());
    await settle();
    counter.release();
    await settle();
    expect(client.connection.stats()).toMatchObject({ questions: 0, imports: 0 });
    expect(server.connection.stats()).toMatchObject({ answers: 0, exports: 0 });
  });

  it("tail-calls back into the caller with sendResultsTo.yourself", async () => {
    const { counter, client, server } = pair(new CounterImpl());
    const local = new CounterImpl(40n);
    const mine = Counter.server(local);
    expect((await counter.forward({ cap: mine, delta: 2n })).value).toBe(42n);
    expect(local.log).toEqual([2n]);
    // A tail call to a third object (not the caller) is forwarded normally.
    const other = (await counter.next()).counter;
    expect((await counter.forward({ cap: other, delta: 5n })).value).toBe(6n);
    other.release();
    mine.release();
    await settle();
    expect(client.connection.stats()).toMatchObject({ questions: 0, answers: 0, exports: 0 });
    expect(server.connection.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0 });
  });

  it("refuses to follow a cycle of settled promises instead of spinning (innermost is bounded)", () => {
    const a = new QueuedHook();
    const b = new QueuedHook();
    a.resolve(b.addRef());
    b.resolve(a.addRef());
    expect(() => innermost(a)).toThrow(/cycle of promises/);
    a.release();
    b.release();
  });

  it("aborts the connection when a Return's results point past their cap table", async () => {
    const [raw, b] = memoryStreamPair();
    const client = new Session(new RpcConnection(b, { name: "client" }), { id: "server", authenticated: false, address: "memory:server" }, null);
    sessions.push(client);
    const received: rpc.Message[] = [];
    raw.onMessage = (m) => received.push(m.getRoot(rpc.Message));
    const counter = client.bootstrap(Counter);
    await settle();
    const question = received.find((m) => m._isBootstrap)!.bootstrap.questionId;
    // The bootstrap capability's pointer says index 3; the table has one entry.
    const reply = new Message();
    const ret = reply.initRoot(rpc.Message)._initReturn();
    ret.answerId = question;
    const results = ret._initResults();
    utils.setInterfacePointer(3, results.content);
    results._initCapTable(1).get(0).senderHosted = 0;
    raw.send(reply);
    await settle();
    expect(client.connection.error?.message).toMatch(/capability index 3 is outside the message's cap table \(1\)/);
    expect(received.at(-1)?._isAbort && received.at(-1)!.abort.reason).toMatch(/capability index 3/);
    await expect(counter.add({ delta: 1n })).rejects.toThrow(/capability index 3/);
    counter.release();
  });

  it("breaks every import with disconnected when the connection dies", async () => {
    const { counter, server } = pair(new CounterImpl());
    const child = (await counter.next()).counter;
    const pending = counter.hang({});
    await server.close();
    await expect(pending).rejects.toMatchObject({ type: "disconnected" });
    await expect(child.add({ delta: 1n })).rejects.toMatchObject({ type: "disconnected" });
  });
});

// What a call's caller and server can count on (issue 9, "Engine
// semantics"): whenResolved() reports a broken promise, every server method
// gets its CallContext, calls are canceled by disposing their promise or by
// a timeout (and say so), and a pipelined field is one client owned by its
// promise. Over real unix sockets, and between objects of one vat.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  capabilityState,
  connect,
  dynamicCall,
  getLocalServer,
  isPromise,
  listen,
  type CallContext,
  type Listener,
  type Session,
} from "../../src/rpc/index.js";
import { Counter, CounterImpl, type CounterServer } from "./fixtures.js";
import { until } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-calls-"));
let listener: Listener;
let impl: CounterImpl;
const sessions: Session[] = [];

/** A counter whose hang() records its context and waits for cancellation. */
class HangingCounter extends CounterImpl {
  entered = 0;
  reasons: unknown[] = [];
  override hang(_p: {}, ctx: CallContext): Promise<{}> {
    this.entered++;
    return new Promise((_resolve, reject) => {
      ctx.signal.addEventListener("abort", () => {
        this.canceled++;
        this.reasons.push(ctx.signal.reason);
        reject(new Error("canceled"));
      });
    });
  }
}

beforeAll(async () => {
  impl = new HangingCounter();
  listener = await listen(`unix:${join(dir, "calls.sock")}`, { bootstrap: Counter.server(impl) });
});

afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close();
});

afterAll(async () => {
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

async function remoteCounter(options: { callTimeoutMs?: number } = {}): Promise<{ counter: Counter; session: Session }> {
  const session = await connect(listener.address, options);
  sessions.push(session);
  return { counter: session.bootstrap(Counter), session };
}

describe("whenResolved()", () => {
  it("rejects with the exception of a promise capability that broke, remote and local", async () => {
    const breakers: ((e: Error) => void)[] = [];
    const broken: CounterServer = Object.assign(new CounterImpl(), {
      // A promise that breaks later, after the results have gone out.
      next: () => ({ counter: Counter.fromPromise(new Promise<Counter>((_resolve, reject) => breakers.push(reject))) }),
    });
    const local = Counter.server(broken);
    const remote = await listen(`unix:${join(dir, "broken.sock")}`, { bootstrap: local.dup() });
    try {
      const session = await connect(remote.address);
      sessions.push(session);
      const { counter } = await session.bootstrap(Counter).next();
      const { counter: here } = await local.next();
      for (const reject of breakers) reject(new Error("no counter today"));
      await expect(counter.whenResolved()).rejects.toThrow(/no counter today/);
      await expect(here.whenResolved()).rejects.toThrow(/no counter today/);
      // Broken before it was sent: the peer still learns why without a call.
      const early: CounterServer = Object.assign(new CounterImpl(), {
        next: () => ({ counter: Counter.fromPromise(Promise.reject(new Error("broken from the start"))) }),
      });
      const earlyListener = await listen(`unix:${join(dir, "early.sock")}`, { bootstrap: Counter.server(early) });
      const earlySession = await connect(earlyListener.address);
      sessions.push(earlySession);
      const { counter: gone } = await earlySession.bootstrap(Counter).next();
      await expect(gone.whenResolved()).rejects.toThrow(/broken from the start/);
      await earlySession.close();
      await earlyListener.close();
      await expect(Counter.fromPromise(Promise.reject(new Error("later"))).whenResolved()).rejects.toThrow(/later/);
      // A promise that resolves to a working capability still resolves.
      await expect(Counter.fromPromise(Promise.resolve(local.dup())).whenResolved()).resolves.toBeUndefined();
    } finally {
      local.release();
      await remote.close();
    }
  });
});

describe("CallContext", () => {
  it("reaches every server method, whatever its declared arity", async () => {
    const seen: string[] = [];
    const server: CounterServer = Object.assign(new CounterImpl(), {
      // Declared lengths 0 and 1: `(...args)` and a default first parameter.
      add: (...args: unknown[]) => {
        seen.push(typeof (args[1] as CallContext | undefined)?.signal);
        return { value: 1n };
      },
      fail: (_p: { reason: string } = { reason: "" }, ctx?: CallContext) => {
        seen.push(typeof ctx?.signal);
        return {};
      },
    });
    const remote = await listen(`unix:${join(dir, "arity.sock")}`, { bootstrap: Counter.server(server) });
    try {
      const session = await connect(remote.address);
      sessions.push(session);
      const counter = session.bootstrap(Counter);
      await counter.add({ delta: 1n });
      await counter.fail({ reason: "x" });
      expect(seen).toEqual(["object", "object"]);
    } finally {
      await remote.close();
    }
  });
});

describe("cancellation", () => {
  const hanging = () => impl as HangingCounter;

  it("disposing an unreturned RpcPromise sends Finish: the server's signal fires and the promise rejects saying why", async () => {
    const { counter } = await remoteCounter();
    const before = hanging().canceled;
    const entered = hanging().entered;
    const call = counter.hang();
    await until(() => hanging().entered > entered, "the server to start the call");
    call[Symbol.dispose]();
    await until(() => hanging().canceled > before, "the server's signal to fire");
    await expect(call).rejects.toThrow(/Counter.hang was canceled: its RpcPromise was disposed/);
  });

  it("a call's timeout cancels it and rejects saying it timed out", async () => {
    const { counter } = await remoteCounter();
    const before = hanging().canceled;
    await expect(counter.hang({}, { timeout: 50 })).rejects.toThrow(/Counter.hang timed out after 50 ms/);
    await until(() => hanging().canceled > before, "the server's signal to fire");
    // Calls that answer in time are untouched.
    expect((await counter.add({ delta: 0n })).value).toBeTypeOf("bigint");
  });

  it("the connection's callTimeoutMs applies to every call without its own timeout", async () => {
    const { counter } = await remoteCounter({ callTimeoutMs: 50 });
    await expect(counter.hang()).rejects.toThrow(/Counter.hang timed out after 50 ms/);
    await expect(counter.hang({}, { timeout: 80 })).rejects.toThrow(/timed out after 80 ms/);
    await expect(connect(listener.address, { callTimeoutMs: -1 })).rejects.toThrow(/callTimeoutMs must be a positive/);
  });

  it("AbortSignal.timeout() keeps its reason: the call says it timed out", async () => {
    const { counter } = await remoteCounter();
    const err = (await counter.hang({}, { signal: AbortSignal.timeout(30) }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/timed out/);
    expect(err.message).not.toMatch(/canceled by the caller/);
    expect((err.cause as Error).name).toBe("TimeoutError");
  });

  it("works the same on a capability served in this vat", async () => {
    const here = new HangingCounter();
    const counter = Counter.server(here);
    try {
      const call = counter.hang();
      await until(() => here.entered === 1, "the local server to start the call");
      call[Symbol.dispose]();
      await expect(call).rejects.toThrow(/disposed before the results arrived/);
      expect(here.canceled).toBe(1);
      await expect(counter.hang({}, { timeout: 20 })).rejects.toThrow(/Counter.hang timed out after 20 ms/);
      await until(() => here.canceled === 2, "the local server's signal to fire");
      const controller = new AbortController();
      const aborted = counter.hang({}, { signal: controller.signal });
      controller.abort(new Error("user gave up"));
      await expect(aborted).rejects.toThrow(/canceled by the caller: user gave up/);
    } finally {
      counter.release();
    }
  });
});

describe("pipelined fields", () => {
  it("are one client per field, owned by the promise and released with it", async () => {
    const { counter, session } = await remoteCounter();
    await counter.add({ delta: 0n });
    const baseline = session.connection.stats();
    const step = counter.next();
    // Reading the field twice gives the same client, not a second reference.
    expect(step.counter).toBe(step.counter);
    expect(typeof (await step.counter.add({ delta: 1n })).value).toBe("bigint");
    // A dup() outlives the promise.
    const kept = step.counter.dup();
    step[Symbol.dispose]();
    expect(typeof (await kept.add({ delta: 1n })).value).toBe("bigint");
    kept.release();
    await until(
      () => JSON.stringify(session.connection.stats()) === JSON.stringify(baseline),
      () => `tables back to ${JSON.stringify(baseline)}: ${JSON.stringify(session.connection.stats())}`,
    );
  });
});

describe("asking what a capability is", () => {
  it("tells a promise, one of this vat's servers, a peer's capability, a broken one and a released one apart", async () => {
    const here = new CounterImpl(5n);
    const local = Counter.server(here);
    expect(capabilityState(local)).toMatchObject({ kind: "local", server: here, interface: Counter });
    expect(await getLocalServer(local, Counter)).toBe(here);

    let resolve!: (c: Counter) => void;
    const later = Counter.fromPromise(new Promise<Counter>((r) => (resolve = r)));
    expect(isPromise(later)).toBe(true);
    expect(capabilityState(later).kind).toBe("promise");
    const found = getLocalServer(later, Counter);
    resolve(local.dup());
    expect(await found).toBe(here);
    expect(isPromise(later)).toBe(false);

    const { counter, session } = await remoteCounter();
    await counter.whenResolved();
    const state = capabilityState(counter);
    expect(state.kind).toBe("remote");
    expect(state.kind === "remote" && state.peer.address).toBe(session.peer.address);
    expect(await getLocalServer(counter)).toBeNull();
    // Our own capability, sent to the peer and back, is ours again.
    const { cap: back } = await counter.echo({ cap: local });
    expect(await getLocalServer(back!, Counter)).toBe(here);
    back!.release();

    const broken = Counter.fromPromise(Promise.reject(new Error("gone")));
    await expect(broken.whenResolved()).rejects.toThrow(/gone/);
    expect(capabilityState(broken)).toMatchObject({ kind: "broken", error: { message: "gone" } });
    expect(await getLocalServer(broken)).toBeNull();

    local.release();
    expect(capabilityState(local).kind).toBe("released");
    later.release();
  });
});

describe("dynamicCall by method name", () => {
  it("calls with params as a plain object and resolves to the results, given the interface's schema", async () => {
    const { counter } = await remoteCounter();
    const before = (await counter.add({ delta: 0n })).value;
    expect(await dynamicCall(counter, Counter, "add", { delta: 2n })).toEqual({ value: before + 2n });
    const { counter: child } = (await dynamicCall(counter, Counter, "next")) as { counter: Counter };
    expect((await child.add({ delta: 0n })).value).toBe(before + 3n);
    child.release();
    await expect(dynamicCall(counter, Counter, "fail", { reason: "as asked" })).rejects.toThrow(/as asked/);
    await expect(dynamicCall(counter, Counter, "nope")).rejects.toThrow(/Counter has no method "nope" \(its methods: add, next/);
  });
});

// Sequential capabilities (one call at a time, in arrival order) against the
// parallel default, over real unix sockets; re-entrancy into a sequential
// capability from inside its own call, detected in this process.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CallQueue, connect, listen, type Listener, type Session } from "../../src/index.js";
import { Callback, Probe } from "./schema/actors.js";
import { Gates, ProbeImpl, statsOf } from "./helpers/probe.js";
import { until, within } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-seq-"));
const open: (Listener | Session)[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const address = () => `unix:${join(dir, `s${n++}.sock`)}`;

/** A Probe served over a unix socket, and a client's reference to it. */
async function served(bootstrap: Probe, options: { sequential?: boolean } = {}) {
  const listener = await listen(address(), { bootstrap, ...options });
  open.push(listener);
  const session = await connect(listener.address);
  open.push(session);
  return session.bootstrap(Probe);
}

const N = 8;

describe("parallel by default", () => {
  it("a server receives many calls at once", async () => {
    const impl = new ProbeImpl();
    const probe = await served(Probe.server(impl));
    const gates = new Gates();
    const calls = Array.from({ length: N }, (_, id) => probe.work({ id, gate: gates.cap }));
    // Every call is inside the server, waiting on its gate, before any is let go.
    await within(gates.until(() => gates.waiting.size === N), 10_000, "every call waiting on its gate");
    expect(impl.active).toBe(N);
    for (let id = N - 1; id >= 0; id--) gates.open(id);
    const results = await Promise.all(calls);
    expect(results.map((r) => r.id)).toEqual([...Array(N).keys()]);
    expect((await statsOf(probe)).maxActive).toBe(N);
  });
});

describe("sequential: one call at a time, in arrival order", () => {
  /** Sends work and push calls alternately, then lets them through one by one, checking that only one is ever in. */
  async function oneAtATime(probe: Probe, impl: ProbeImpl, queue: () => number) {
    const gates = new Gates();
    const calls = Array.from({ length: N }, (_, id) => (id % 2 === 0 ? probe.work({ id, gate: gates.cap }) : probe.push({ id, gate: gates.cap })));
    // All N calls have reached the server: one runs, the rest wait in its queue.
    await within(gates.until(() => gates.waiting.has(0)), 10_000, "the first call waiting on its gate");
    await within(until(() => queue() === N - 1, () => `queue ${queue()}`), 10_000, "the other calls queued");
    for (let id = 0; id < N; id++) {
      await within(gates.until(() => gates.waiting.has(id)), 10_000, `call ${id} waiting on its gate`);
      expect([...gates.waiting.keys()]).toEqual([id]);
      expect(impl.active).toBe(1);
      gates.open(id);
    }
    await Promise.all(calls);
    const stats = await statsOf(probe);
    expect(stats.maxActive).toBe(1);
    expect(stats.order).toEqual([...Array(N).keys()]);
  }

  it("Foo.server(impl, { sequential: true }): calls and streaming calls run one at a time, in order", async () => {
    const impl = new ProbeImpl();
    const queue = new CallQueue();
    impl.queue = queue;
    const probe = await served(Probe.server(impl, { sequential: queue }));
    await oneAtATime(probe, impl, () => queue.waiting);
  });

  it("listen({ sequential: true }) makes the bootstrap capability sequential", async () => {
    const impl = new ProbeImpl();
    const cap = Probe.server(impl);
    const probe = await served(cap, { sequential: true });
    // listen made its own queue: read it through the server hook it set it on.
    const { hookOf } = await import("../../src/rpc/typed.js");
    const { LocalServerHook } = await import("../../src/rpc/local.js");
    const hook = hookOf(cap);
    expect(hook).toBeInstanceOf(LocalServerHook);
    const queue = (hook as InstanceType<typeof LocalServerHook>).sequential!;
    expect(queue).toBeInstanceOf(CallQueue);
    await oneAtATime(probe, impl, () => queue.waiting);
  });

  it("the next call starts only once an async method's promise settled, also when it rejected", async () => {
    const impl = new ProbeImpl();
    const queue = new CallQueue();
    const probe = await served(Probe.server(impl, { sequential: queue }));
    const gates = new Gates();
    const first = probe.work({ id: 0, gate: gates.cap });
    const second = probe.poke({ id: 1 });
    await within(gates.until(() => gates.waiting.has(0)), 10_000, "the first call waiting");
    await within(until(() => queue.waiting === 1, "one call queued"), 10_000, "the second call queued");
    expect(impl.entered).toBe(1);
    gates.fail(0, new Error("gate broke"));
    await expect(first).rejects.toThrow(/gate broke/);
    expect((await second).seen).toBe(2);
    expect(impl.order).toEqual([0, 1]);
  });

  it("a call canceled while it waits is not started", async () => {
    const impl = new ProbeImpl();
    const queue = new CallQueue();
    const probe = Probe.server(impl, { sequential: queue });
    const gates = new Gates();
    const first = probe.work({ id: 0, gate: gates.cap });
    const abort = new AbortController();
    const second = probe.poke({ id: 1 }, { signal: abort.signal });
    await within(gates.until(() => gates.waiting.has(0)), 10_000, "the first call waiting");
    abort.abort();
    await expect(second).rejects.toThrow();
    gates.open(0);
    await first;
    expect((await probe.poke({ id: 2 })).seen).toBe(2);
    expect(impl.order).toEqual([0, 2]);
  });

  it("a server object stays sequential, and an object cannot move to another queue", () => {
    const impl = new ProbeImpl();
    const a = Probe.server(impl, { sequential: true });
    const b = Probe.server(impl);
    expect(() => Probe.server(impl, { sequential: new CallQueue() })).toThrow(/another CallQueue already/);
    a.release();
    b.release();
  });
});

describe("re-entrancy into a sequential capability", () => {
  const REENTERED =
    "Probe.poke re-entered a sequential capability while its call Probe.via is still running: it would wait for itself forever; " +
    "make the capability parallel, or do not call back into it from its own call";

  it("a call back into it from inside its own call, through a closure of this process, fails with a clear error", async () => {
    const impl = new ProbeImpl();
    const local = Probe.server(impl, { sequential: true });
    // The closure lives in the server's process and calls the probe back: client → probe.via → closure → probe.poke.
    impl.localCallback = Callback.server({ run: async () => ({ text: `seen ${(await local.poke({ id: 7 })).seen}` }) });
    const probe = await served(local.dup());
    const { text } = await within(probe.via({}), 10_000, "via to return instead of deadlocking");
    expect(text).toBe(`error: ${REENTERED}`);
    // The capability is not stuck: the next call runs.
    expect((await probe.poke({ id: 8 })).seen).toBe(2);
    local.release();
  });

  it("a direct call to itself from inside a method fails too; a parallel capability allows it", async () => {
    for (const sequential of [true, false]) {
      const impl = new ProbeImpl();
      const self = Probe.server(impl, { sequential });
      impl.localCallback = Callback.server({ run: async () => ({ text: `seen ${(await self.poke({ id: 1 })).seen}` }) });
      const { text } = await within(self.via({}), 10_000, "via to return");
      expect(text).toBe(sequential ? `error: ${REENTERED}` : "seen 2");
      self.release();
    }
  });

  it("calls into another, idle sequential capability from inside a call are fine", async () => {
    const a = new ProbeImpl();
    const b = new ProbeImpl();
    const capA = Probe.server(a, { sequential: true });
    const capB = Probe.server(b, { sequential: true });
    a.localCallback = Callback.server({ run: async () => ({ text: `b saw ${(await capB.poke({ id: 1 })).seen}` }) });
    expect((await capA.via({})).text).toBe("b saw 1");
    capA.release();
    capB.release();
  });

  it("a cycle of sequential capabilities waiting for each other fails instead of deadlocking", async () => {
    // B runs via (its closure waits on a gate); A runs via, whose closure calls
    // B.poke: that waits behind B's call. Then B's closure calls A.poke, which
    // would wait behind A's call: A waits for B, B for A.
    const a = new ProbeImpl();
    const b = new ProbeImpl();
    const queueB = new CallQueue();
    const capA = Probe.server(a, { sequential: true });
    const capB = Probe.server(b, { sequential: queueB });
    const gates = new Gates();
    b.localCallback = Callback.server({
      run: async () => {
        await gates.cap.wait({ id: 0 });
        return { text: `a saw ${(await capA.poke({ id: 2 })).seen}` };
      },
    });
    a.localCallback = Callback.server({ run: async () => ({ text: `b saw ${(await capB.poke({ id: 1 })).seen}` }) });
    const inB = capB.via({});
    await within(gates.until(() => gates.waiting.has(0)), 10_000, "B's closure waiting");
    const inA = capA.via({});
    await within(until(() => queueB.waiting === 1, "one call queued in B"), 10_000, "A's call to B queued behind B's call");
    gates.open(0);
    const fromB = await within(inB, 10_000, "B's call to return");
    expect(fromB.text).toMatch(
      /^error: Probe\.poke would wait behind Probe\.via of a sequential capability, which waits for this call's own chain \(Probe\.poke waits behind Probe\.via, inside which Probe\.poke was called\): they would wait for each other forever; make one of these capabilities parallel/,
    );
    // With B's call over, A's call to B runs, and A's call returns.
    expect((await within(inA, 10_000, "A's call to return")).text).toBe("b saw 2");
    capA.release();
    capB.release();
  });

  it("a task a call started fails to call back while the call runs, and is an ordinary caller once it returned", async () => {
    const impl = new ProbeImpl();
    const self = Probe.server(impl, { sequential: true });
    const gates = new Gates();
    let during: Promise<unknown> | null = null;
    let after: Promise<{ seen: number }> | null = null;
    // Neither call is awaited by the closure; the first is made while via
    // runs (the engine cannot tell it is not awaited: it fails), the second
    // once via has returned (its context names a call that is over).
    impl.localCallback = Callback.server({
      run: () => {
        during = Promise.resolve().then(() => self.poke({ id: 3 }));
        after = gates.cap.wait({ id: 0 }).then(() => self.poke({ id: 4 }));
        return { text: "started" };
      },
    });
    expect((await self.via({})).text).toBe("started");
    await expect(during).rejects.toThrow(/Probe\.poke re-entered a sequential capability while its call Probe\.via is still running/);
    await within(gates.until(() => gates.waiting.has(0)), 10_000, "the task waiting on its gate");
    gates.open(0);
    expect((await after!).seen).toBe(2);
    expect(impl.order).toEqual([4]);
    self.release();
  });
});

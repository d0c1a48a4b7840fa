// capmesh against the C++ reference implementation (Debian's libcapnp), in
// both directions: our client against the C++ server, and the C++ client's
// scenarios against our server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Callback, Counter, TestService } from "./schema/interop.js";
import { connect, hookOf, listen, RpcError, type Listener, type Session } from "../../src/rpc/index.js";
import { innermost } from "../../src/rpc/hook.js";
import { generateIdentity } from "../../src/auth/identity.js";
import {
  buildCppPeers,
  INTEROP_SCENARIOS,
  requireCppOrSkip,
  runCppClient,
  startCppServer,
  type CppPeers,
  type CppServer,
} from "../helpers/cpp.js";
import { CounterImpl, fnv1a, TestServiceImpl } from "./test-service.js";

const gate = requireCppOrSkip();
const BUILD_TIMEOUT = 300_000;

let peers: CppPeers;
let dir: string;

beforeAll(async () => {
  if (gate.skip) return;
  dir = mkdtempSync(path.join(tmpdir(), "capmesh-interop-"));
  peers = await buildCppPeers();
}, BUILD_TIMEOUT);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let sockets = 0;
const sock = () => `unix:${path.join(dir, `s${++sockets}.sock`)}`;

/** Polls a condition across event-loop turns (the peer is another process). */
async function eventually(probe: () => Promise<boolean>, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.skipIf(gate.skip)(
  gate.skip ? `C++ interop (skipped: ${gate.skip ? gate.reason : ""})` : "capmesh client → C++ server",
  () => {
    let server: CppServer;
    let session: Session;
    let svc: TestService;

    beforeAll(async () => {
      server = await startCppServer(peers.interopPeer, sock());
      session = await connect(server.address);
      svc = session.bootstrap(TestService);
    }, BUILD_TIMEOUT);

    afterAll(async () => {
      await session?.close();
      await server?.stop();
    });

    it("echoes text, data and Int64 exactly", async () => {
      const data = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 13 + 1) & 0xff);
      const r = await svc.echo({ text: "héllo ☃", data, n: -(1n << 62n) });
      expect(r.text).toBe("héllo ☃");
      expect(r.data).toEqual(data);
      expect(r.n).toBe(-(1n << 62n));
    });

    it("pipelines a chain of calls on capabilities not yet returned", async () => {
      const first = svc.newCounter({ start: 10n }).counter;
      const fifth = first.next().counter.next().counter.next().counter.next().counter;
      const [a, b] = await Promise.all([first.add({ delta: 1n }), fifth.add({ delta: 0n })]);
      expect(a.value).toBe(11n);
      expect(b.value).toBe(14n);
      first.release();
      fifth.release();
    });

    it("passes a callback the server calls back into", async () => {
      let calls = 0;
      const cb = Callback.server({
        call: ({ value }) => {
          calls++;
          return { reply: `ts:${value}` };
        },
      });
      expect((await svc.callBack({ cb, value: "ping" })).reply).toBe("ts:ping");
      expect(calls).toBe(1);
      cb.release();
    });

    it("gets its own object back from the C++ side and keeps E-order (embargo)", async () => {
      const local = new CounterImpl(0n);
      const mine = Counter.server(local);
      const echoed = svc.echoCap({ cap: mine }).cap;
      const seen: bigint[] = [];
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 10; i++) calls.push(echoed.add({ delta: 1n }).then((r) => seen.push(r.value)));
      await echoed.whenResolved();
      for (let i = 0; i < 10; i++) calls.push(echoed.add({ delta: 1n }).then((r) => seen.push(r.value)));
      await Promise.all(calls);
      expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
      // Resolved to the local object: no proxy through the C++ vat.
      expect(innermost(hookOf(echoed)).brand).toBe(null);
      echoed.release();
      mine.release();
    });

    it("calls through a promise capability that resolves later", async () => {
      const counter = svc.later({ start: 100n }).counter;
      const pending = counter.add({ delta: 5n });
      let settled = false;
      void pending.then(() => (settled = true));
      await svc.echo({ text: "", n: 0n }); // a round trip: the add must still be waiting
      expect(settled).toBe(false);
      await svc.resolveLater({});
      expect((await pending).value).toBe(105n);
      counter.release();
    });

    it.each(["failed", "overloaded", "disconnected", "unimplemented"] as const)(
      "reports a C++ %s exception as a typed error",
      async (kind) => {
        const err = await svc.fail({ kind, reason: `because ${kind}` }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(RpcError);
        expect((err as RpcError).type).toBe(kind);
        expect((err as RpcError).message).toContain(`because ${kind}`);
        expect((err as RpcError).remote).toBe(true);
      },
    );

    it("cancels a call: the C++ server sees it", async () => {
      const before = (await svc.canceledCount({})).count;
      const ac = new AbortController();
      const hung = svc.hang({}, { signal: ac.signal });
      await svc.echo({}); // the hang call has reached the server
      ac.abort();
      await expect(hung).rejects.toThrow(/cancel/);
      await eventually(async () => (await svc.canceledCount({})).count === before + 1, "the server to count the cancellation");
    });

    it("releases capabilities: the C++ server sees it", async () => {
      const base = (await svc.liveTracked({})).count;
      const made = await Promise.all([svc.tracked({}), svc.tracked({}), svc.tracked({})]);
      expect((await svc.liveTracked({})).count).toBe(base + 3);
      made[0]!.counter!.release();
      made[1]!.counter!.release();
      await eventually(async () => (await svc.liveTracked({})).count === base + 1, "two tracked counters to be released");
      made[2]!.counter!.release();
    });

    it("streams 64 MiB through a `-> stream` method with flow control", async () => {
      const sink = (await svc.sink({})).sink!;
      const chunk = new Uint8Array(64 * 1024);
      let hash = 0xcbf29ce484222325n;
      for (let i = 0; i < 1024; i++) {
        chunk.fill(i & 0xff);
        chunk[0] = (i >> 8) & 0xff;
        hash = fnv1a(chunk, hash);
        await sink.write({ chunk });
      }
      const done = await sink.done({});
      expect(done.bytes).toBe(64n * 1024n * 1024n);
      expect(done.checksum).toBe(hash);
      sink.release();
    }, 60_000);

    it("moves an 8 MiB payload both ways", async () => {
      const size = 8 * 1024 * 1024;
      const { data } = await svc.payload({ size });
      expect(data.length).toBe(size);
      expect(data[12345]).toBe((12345 * 7 + 3) & 0xff);
      expect((await svc.checksum({ data })).sum).toBe(fnv1a(data));
    });

    it("passes capabilities in lists, null included", async () => {
      const { list } = await svc.counters({ n: 3 });
      expect(list).toHaveLength(3);
      const mine = Counter.server(new CounterImpl(1000n));
      const { total } = await svc.sumCounters({ list: [...list, null, mine] });
      expect(total).toBe(1n + 2n + 3n + 1000n);
      for (const c of list) c?.release();
      mine.release();
    });

    it("pipelines through nested struct fields", async () => {
      const result = svc.nested({ start: 7n });
      const viaPipeline = result.outer.inner.counter.add({ delta: 1n });
      expect((await viaPipeline).value).toBe(8n);
      const { outer } = await result;
      expect(outer.inner.label).toBe("inner");
      expect((await outer.list[1]!.counter!.add({ delta: 0n })).value).toBe(9n);
    });

    it("lets the C++ server call a TypeScript capability many times", async () => {
      const local = new CounterImpl(0n);
      const mine = Counter.server(local);
      expect((await svc.callMany({ cap: mine, times: 50 })).value).toBe(50n);
      expect(local.value).toBe(50n);
      mine.release();
    });
  },
);

const SCENARIOS = INTEROP_SCENARIOS;

describe.skipIf(gate.skip)(gate.skip ? "C++ client → capmesh server (skipped)" : "C++ client → capmesh server", () => {
  let listener: Listener;
  const services: TestServiceImpl[] = [];

  beforeAll(async () => {
    listener = await listen(sock(), {
      // A fresh service per connection: each scenario is its own C++ process.
      bootstrap: () => {
        const impl = new TestServiceImpl();
        services.push(impl);
        return TestService.server(impl);
      },
    });
  });

  afterAll(async () => {
    await listener?.close();
  });

  it.each(SCENARIOS)("passes the C++ client's %s scenario", async (scenario) => {
    const result = await runCppClient(peers.interopPeer, listener.address, scenario, 60_000);
    expect(result.stderr + result.stdout).toContain(`ok ${scenario}`);
    expect(result.code).toBe(0);
  }, 90_000);

  it("also works over TCP", async () => {
    const tcp = await listen("tcp://127.0.0.1:0", { bootstrap: () => TestService.server(new TestServiceImpl()), plain: true });
    try {
      const result = await runCppClient(peers.interopPeer, tcp.address, "pipeline", 60_000);
      expect(result.stdout).toContain("ok pipeline");
      expect(result.code).toBe(0);
    } finally {
      await tcp.close();
    }
  });

  it("reaches a listener that has an identity only where it lets plain peers in, and is told why otherwise", async () => {
    const identity = generateIdentity();
    const open = await listen(sock(), { identity, plain: true, bootstrap: () => TestService.server(new TestServiceImpl()) });
    const closed = await listen(sock(), { identity, bootstrap: () => TestService.server(new TestServiceImpl()) });
    try {
      const admitted = await runCppClient(peers.interopPeer, open.address, "pipeline", 60_000);
      expect(admitted.stdout).toContain("ok pipeline");
      expect(admitted.code).toBe(0);
      const refused = await runCppClient(peers.interopPeer, closed.address, "pipeline", 60_000);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr + refused.stdout).toContain("requires the capmesh secret handshake");
    } finally {
      await open.close();
      await closed.close();
    }
  });

  it("leaves no connection behind", async () => {
    await eventually(async () => listener.sessions.size === 0, "the server to drop finished sessions");
  });
});

// Records the fuzzer's seed corpus from real conversations with the C++
// reference peer (peers/cpp/interop-peer.c++), in both directions, through a
// recording proxy on unix sockets:
//   - every C++ client scenario against a capmesh server (TestService);
//   - capmesh client scenarios against the C++ server.
// Run: npx tsx test/fuzz/record.ts     (needs capnp, g++ and libcapnp-dev)
// It rewrites test/fuzz/corpus/, which is committed: the fuzzer itself never
// needs the C++ toolchain.
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Callback, Counter, TestService } from "../interop/schema/interop.js";
import { connect, listen } from "../../src/rpc/index.js";
import { buildCppPeers, INTEROP_SCENARIOS, runCppClient, startCppServer } from "../helpers/cpp.js";
import { CounterImpl, TestServiceImpl } from "../interop/test-service.js";
import { CORPUS_DIR, trimForCorpus } from "./corpus.js";
import { startRecordingProxy, type Recording } from "./recording-proxy.js";

/** capmesh client scenarios against the C++ server (small versions of cpp-interop.test.ts). */
const TS_SCENARIOS: Record<string, (svc: TestService) => Promise<void>> = {
  async echo(svc) {
    await svc.echo({ text: "héllo ☃", data: new Uint8Array(300).fill(7), n: -42n });
    await svc.echo({ text: "", n: 1n << 62n });
  },
  async pipeline(svc) {
    const first = svc.newCounter({ start: 10n }).counter;
    const third = first.next().counter.next().counter;
    await Promise.all([first.add({ delta: 1n }), third.add({ delta: 0n })]);
    first.release();
    third.release();
  },
  async callback(svc) {
    const cb = Callback.server({ call: ({ value }) => ({ reply: `ts:${value}` }) });
    await svc.callBack({ cb, value: "ping" });
    cb.release();
  },
  async "echo-cap"(svc) {
    const mine = Counter.server(new CounterImpl(0n));
    const echoed = svc.echoCap({ cap: mine }).cap;
    const calls = [echoed.add({ delta: 1n }), echoed.add({ delta: 1n })];
    await echoed.whenResolved();
    calls.push(echoed.add({ delta: 1n }));
    await Promise.all(calls);
    echoed.release();
    mine.release();
  },
  async later(svc) {
    const counter = svc.later({ start: 100n }).counter;
    const pending = counter.add({ delta: 5n });
    await svc.resolveLater({});
    await pending;
    counter.release();
  },
  async exceptions(svc) {
    for (const kind of ["failed", "overloaded", "disconnected", "unimplemented"] as const) {
      await svc.fail({ kind, reason: `because ${kind}` }).catch(() => {});
    }
  },
  async cancel(svc) {
    const ac = new AbortController();
    const hung = svc.hang({}, { signal: ac.signal });
    await svc.echo({});
    ac.abort();
    await hung.catch(() => {});
    await svc.canceledCount({});
  },
  async release(svc) {
    const made = await Promise.all([svc.tracked({}), svc.tracked({})]);
    for (const m of made) m.counter!.release();
    await svc.liveTracked({});
  },
  async stream(svc) {
    const sink = (await svc.sink({})).sink!;
    for (let i = 0; i < 4; i++) await sink.write({ chunk: new Uint8Array(1000).fill(i) });
    await sink.done({});
    sink.release();
  },
  async payload(svc) {
    const { data } = await svc.payload({ size: 2000 });
    await svc.checksum({ data });
  },
  async "caps-in-lists"(svc) {
    const { list } = await svc.counters({ n: 3 });
    const mine = Counter.server(new CounterImpl(1000n));
    await svc.sumCounters({ list: [...list, null, mine] });
    for (const c of list) c?.release();
    mine.release();
  },
  async nested(svc) {
    const result = svc.nested({ start: 7n });
    await result.outer.inner.counter.add({ delta: 1n });
    const { outer } = await result;
    await outer.list[1]!.counter!.add({ delta: 0n });
  },
  async "call-many"(svc) {
    const mine = Counter.server(new CounterImpl(0n));
    await svc.callMany({ cap: mine, times: 10 });
    mine.release();
  },
};

function save(name: string, rec: Recording, files: Map<string, Uint8Array>): void {
  files.set(`${name}.c2s.bin`, trimForCorpus(rec.c2s));
  files.set(`${name}.s2c.bin`, trimForCorpus(rec.s2c));
}

async function main(): Promise<void> {
  const peers = await buildCppPeers();
  const dir = mkdtempSync(path.join(tmpdir(), "capmesh-record-"));
  const files = new Map<string, Uint8Array>();
  let proxies = 0;
  const proxyPath = () => path.join(dir, `proxy${++proxies}.sock`);
  try {
    // C++ client → capmesh server.
    const server = await listen(`unix:${path.join(dir, "capmesh.sock")}`, {
      bootstrap: () => TestService.server(new TestServiceImpl()),
    });
    try {
      for (const scenario of INTEROP_SCENARIOS) {
        const proxy = await startRecordingProxy(proxyPath(), path.join(dir, "capmesh.sock"));
        const result = await runCppClient(peers.interopPeer, proxy.address, scenario, 60_000);
        if (result.code !== 0) throw new Error(`C++ scenario ${scenario} failed:\n${result.stderr}`);
        const [rec] = await proxy.finished(1);
        await proxy.close();
        save(`cpp-client-${scenario}`, rec!, files);
      }
    } finally {
      await server.close();
    }

    // capmesh client → C++ server.
    const cpp = await startCppServer(peers.interopPeer, `unix:${path.join(dir, "cpp.sock")}`);
    try {
      for (const [scenario, run] of Object.entries(TS_SCENARIOS)) {
        const proxy = await startRecordingProxy(proxyPath(), path.join(dir, "cpp.sock"));
        const session = await connect(proxy.address);
        const svc = session.bootstrap(TestService);
        await run(svc);
        svc.release();
        await session.close();
        const [rec] = await proxy.finished(1);
        await proxy.close();
        save(`ts-client-${scenario}`, rec!, files);
      }
    } finally {
      await cpp.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  mkdirSync(CORPUS_DIR, { recursive: true });
  for (const old of readdirSync(CORPUS_DIR)) if (old.endsWith(".bin")) rmSync(path.join(CORPUS_DIR, old));
  let total = 0;
  for (const [name, bytes] of files) {
    if (bytes.length === 0) continue;
    writeFileSync(path.join(CORPUS_DIR, name), bytes);
    total += bytes.length;
  }
  console.log(`recorded ${files.size} files, ${total} bytes, into ${CORPUS_DIR}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

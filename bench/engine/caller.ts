// Plugin A of the engine bench: joins the mesh (CAPMESH_HUB, _HUB_ID,
// _NETWORK_KEY; direct paths as CAPMESH_DIRECT_PATHS says) under a name of
// its own, takes plugin B's closure from connect(BENCH_ENGINE_NAME), and runs
// one figure:
//
//   seq, inflight  bench/lib/client.ts's (a) and (b), where a "ping" is
//                  A's engine evaluating B's closure: engine.eval({ closure: B,
//                  args: [n] }) -> n (plugin -> engine -> closure in another plugin)
//   stream         bench/lib/client.ts's (c), as a byte stream: A calls B with
//                  byteStreamValue(64 KiB chunks), B reads it to its end and
//                  answers with the byte count
//   values         small records as the input stream of a call of B's closure,
//                  which counts them: {"ips"} items per second
//
//   bench/engine/caller.ts <hub address> seq|inflight|stream|values <seconds>
//
// With BENCH_ENGINE_EXPECT_PATH=direct|hub, A fails unless MeshPeer.pathOf
// says that path for B's closure once it has resolved. The JSON line also has
// `path`'s answer as a note.
import { performance } from "node:perf_hooks";
import { byteStreamValue, callable, closure, fromValue, joinMesh, toValue, type MeshPeer } from "../../src/index.js";
import { Closure } from "../../src/gen/engine.js";
import { runClient, warmupSeconds } from "../lib/client.js";
import { clientMain } from "../lib/program.js";
import { round } from "../lib/stats.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`caller.ts: set ${name}`);
  return value;
}

/** A in the mesh, and B's closure, checked to be on the path asked for. */
async function join(hub: string): Promise<{ peer: MeshPeer; b: Closure; path: string }> {
  // A plugin of its own (a name, and a closure nobody calls), so that its engine is a plugin's.
  const peer = await joinMesh({ hub, name: `bench.a.${process.pid}`, provide: closure(() => null), handleSignals: false, reconnect: false });
  const b = peer.connect(env("BENCH_ENGINE_NAME"), Closure, { wait: 10_000 });
  await b.whenResolved();
  const found = peer.pathOf(b);
  const expected = process.env.BENCH_ENGINE_EXPECT_PATH;
  if (expected && found.path !== expected) {
    throw new Error(`caller.ts: B's closure is on the path "${found.path}", not "${expected}"${found.reason ? ` (${found.reason})` : ""}`);
  }
  return { peer, b, path: found.path };
}

const [hubAddress, figure, secondsText] = process.argv.slice(2);

if (figure === "values") {
  await clientMain(async (watchdog) => {
    const seconds = Number(secondsText);
    if (hubAddress === undefined || !(seconds > 0)) throw new Error("usage: caller.ts <hub address> values <seconds>");
    watchdog(seconds * 3 + 30);
    const { peer, b, path } = await join(hubAddress);
    const f = callable(b);
    // Small records, of the shape a generic interface passes (record <-> object).
    const run = async (ms: number): Promise<{ items: number; seconds: number }> => {
      let sent = 0;
      const t0 = performance.now();
      const end = t0 + ms;
      const input = (function* () {
        while (performance.now() < end) {
          // A few at a time between clock reads: reading it costs about as much as an item.
          for (let k = 0; k < 16; k++, sent++) yield { id: sent, name: "item", score: sent * 0.5, ok: true };
        }
      })();
      const { result } = await f.invoke({ args: ["values"], input });
      const t1 = performance.now();
      if (result !== sent) throw new Error(`values: A sent ${sent} items, B counted ${String(result)}`);
      return { items: sent, seconds: (t1 - t0) / 1000 };
    };
    await run(warmupSeconds(seconds) * 1000);
    const { items, seconds: took } = await run(seconds * 1000);
    f.release();
    await Promise.race([peer.close(), new Promise((r) => setTimeout(r, 1000))]);
    return { ips: round(items / took), introductions: peer.stats().handoffs.introductions, note: `path ${path}` };
  });
} else {
  await runClient(async (_address, { addressText }) => {
    const { peer, b, path } = await join(addressText);
    const f = callable(b);
    return {
      async ping(n) {
        const { result } = await peer.engine.eval({ closure: b, args: [toValue("echo"), toValue(n)] });
        return fromValue(result) as number;
      },
      async stream(chunk, more) {
        // The same chunk each time: the producer may reuse its memory once it yields the next.
        const bytes = await f(
          "bytes",
          byteStreamValue(
            (function* () {
              while (more()) yield chunk;
            })(),
          ),
        );
        return Number(bytes);
      },
      chainAwaited: () => Promise.reject(new Error("caller.ts: the engine bench has no chain figure")),
      notes: { all: `path ${path}` },
      // Handoffs A made as an introducer during the run (passing B's capability on to the hub).
      extra: () => ({ introductions: peer.stats().handoffs.introductions }),
      async close() {
        f.release();
        await peer.close();
      },
    };
  });
}

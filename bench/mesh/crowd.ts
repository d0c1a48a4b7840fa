// Idle peers of the mesh bench: `count` peers in this process, each with its
// own identity and its own connection to the hub (the hub from CAPMESH_HUB,
// _HUB_ID, _NETWORK_KEY), each registered as `idle.<i>`.
//
//   bench/mesh/crowd.ts <first> <count> <concurrency> schema|noschema
//
// With `schema` each peer publishes its interface's schema in its PluginInfo
// (joinMesh's default for a capability made with `Foo.server`); with
// `noschema` it passes `interfaces: []` and publishes none.
//
// Commands:
//   join {count?}  the next `count` peers (default: all the rest) join and register,
//                  `concurrency` at a time; reports the ms it took
//   watch          every peer starts a watch and waits for its snapshot
//   burst {calls, bytes}
//                  every peer calls its own Bench through the hub (connect(own
//                  name)): `calls` pings, 100 in flight, then `bytes` to a sink
//                  in 64 KiB `-> stream` writes, `concurrency` peers at a time
//                  (bench/memory: what a once-busy peer costs the hub)
// While watching, once every peer here has seen `joined` (or `left`) for a
// name starting with "fanout.", it reports
//   {"seen"|"gone": name, "first": µs, "last": µs}
// with the CLOCK_MONOTONIC times at which the first and the last of them saw it.
import { generateIdentity } from "../../src/auth/identity.js";
import { Bench } from "../schema/bench.js";
import type { Event } from "../../src/gen/mesh.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { BenchImpl } from "../systems/capmesh/bench-impl.js";
import { childMain, emit, nowUs, pool, serveCommands } from "./child.js";

interface Sighting {
  count: number;
  first: number;
  last: number;
}

await childMain(async () => {
  const args = process.argv.slice(2);
  const [first, count, concurrency] = args.slice(0, 3).map(Number);
  const schema = args[3];
  if (!(first! >= 0 && count! > 0 && concurrency! > 0) || (schema !== "schema" && schema !== "noschema")) {
    throw new Error("usage: crowd.ts <first> <count> <concurrency> schema|noschema");
  }
  // Identities are made before the clock starts: registering is what is timed.
  const identities = Array.from({ length: count! }, () => generateIdentity());
  const peers: MeshPeer[] = [];
  let joined = 0;
  const watches: Disposable[] = [];
  const sightings = { joined: new Map<string, Sighting>(), left: new Map<string, Sighting>() };

  const sight = (kind: "joined" | "left", name: string, at: number): void => {
    const table = sightings[kind];
    let s = table.get(name);
    if (s === undefined) table.set(name, (s = { count: 0, first: at, last: at }));
    s.count++;
    s.last = at;
    if (s.count === watches.length) {
      table.delete(name);
      emit({ [kind === "joined" ? "seen" : "gone"]: name, first: s.first, last: s.last });
    }
  };

  serveCommands(
    {
      async join(args) {
        // The next `count` of this process's peers (all that are left by default).
        const from = joined;
        const upTo = Math.min(count!, from + (typeof args.count === "number" ? args.count : count!));
        joined = upTo;
        const t0 = performance.now();
        await pool(upTo - from, concurrency!, async (k) => {
          const i = from + k;
          const peer = await joinMesh({
            name: `idle.${first! + i}`,
            provide: Bench.server(new BenchImpl(0)),
            identity: identities[i]!,
            ...(schema === "noschema" ? { interfaces: [] } : {}),
            handleSignals: false,
            reconnect: false,
          });
          peers.push(peer);
        });
        return { joined: peers.length, ms: performance.now() - t0 };
      },
      async burst(args) {
        const calls = typeof args.calls === "number" ? args.calls : 1000;
        const bytes = typeof args.bytes === "number" ? args.bytes : 1 << 20;
        const chunk = new Uint8Array(64 * 1024).fill(7);
        const t0 = performance.now();
        await pool(peers.length, concurrency!, async (i) => {
          const bench = peers[i]!.connect(`idle.${first! + i}`, Bench);
          try {
            await pool(calls, 100, async (k) => {
              if ((await bench.ping({ n: k })).n !== k) throw new Error(`burst: ping(${k}) came back wrong`);
            });
            using sink = (await bench.sink()).sink!;
            for (let sent = 0; sent < bytes; sent += chunk.byteLength) await sink.write({ chunk });
            const got = Number((await sink.done()).bytes);
            if (got < bytes) throw new Error(`burst: the sink saw ${got} of ${bytes} bytes`);
          } finally {
            bench.release();
          }
        });
        return { peers: peers.length, ms: performance.now() - t0 };
      },
      async watch() {
        const t0 = performance.now();
        await pool(peers.length, concurrency!, async (i) => {
          let snapshot!: () => void;
          const got = new Promise<void>((resolve) => (snapshot = resolve));
          const onEvent = (event: Event): void => {
            if (event.which === "snapshot") snapshot();
            else if (event.which === "joined" && event.joined.name.startsWith("fanout.")) sight("joined", event.joined.name, nowUs());
            else if (event.which === "left" && event.left.name.startsWith("fanout.")) sight("left", event.left.name, nowUs());
          };
          watches.push(await peers[i]!.watch(onEvent));
          await got;
        });
        return { watching: watches.length, ms: performance.now() - t0 };
      },
    },
    async () => {
      for (const w of watches) w[Symbol.dispose]();
      await Promise.all(peers.map((p) => p.close()));
    },
  );
  // One peer joins and leaves first, so that the timed joins run on code
  // this process has loaded and compiled already (as a long-running hub's
  // callers would); the hub has seen a few joins before the baseline too.
  const warm = await joinMesh({
    name: `warmup.${first!}`,
    provide: Bench.server(new BenchImpl(0)),
    handleSignals: false,
    reconnect: false,
    ...(schema === "noschema" ? { interfaces: [] } : {}),
  });
  await warm.close();
  emit({ ready: true });
});

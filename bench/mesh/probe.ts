// A mesh client that times the hub's own requests, one at a time, on one
// connection (the hub from CAPMESH_HUB, _HUB_ID, _NETWORK_KEY):
//
//   connect {name, seconds}  connect(name) then a first ping, and the Hub.connect
//                            call alone (awaited), repeatedly: median and p99 µs
//   list {count}             list() `count` times: median and p99 µs, entries seen
//   register {name, like?}   registers `name` (with the info `like` registered, if given);
//                            reports when it started (CLOCK_MONOTONIC µs)
//   unregister {name}        releases that registration
import { Bench } from "../schema/bench.js";
import { protocolVersion, type Registration } from "../../src/gen/mesh.js";
import { joinMesh } from "../../src/mesh/join.js";
import { quantile, round } from "../lib/stats.js";
import { BenchImpl } from "../systems/capmesh/bench-impl.js";
import { childMain, emit, nowUs, serveCommands } from "./child.js";

const summary = (us: number[]) => ({ p50us: round(quantile(us, 0.5)), p99us: round(quantile(us, 0.99)), samples: us.length });

await childMain(async () => {
  const peer = await joinMesh({ handleSignals: false, reconnect: false });
  const registrations = new Map<string, Registration>();
  const served = Bench.server(new BenchImpl(0));

  serveCommands(
    {
      async connect(args) {
        const name = String(args.name);
        const seconds = Number(args.seconds);
        // connect(name) as a plugin uses it: the capability is pipelined, so
        // the time is the one round trip to the hub plus the forwarded ping.
        const viaPing = async (): Promise<number> => {
          const t0 = nowUs();
          const bench = peer.connect(name, Bench);
          try {
            if ((await bench.ping({ n: 7 })).n !== 7) throw new Error("ping(7) through the hub returned something else");
            return nowUs() - t0;
          } finally {
            bench.release();
          }
        };
        // The Hub.connect call alone: until the capability has arrived.
        const alone = async (): Promise<number> => {
          const t0 = nowUs();
          const { cap } = await peer.hub.connect({ name, waitMs: 0 });
          const took = nowUs() - t0;
          if (cap === null) throw new Error(`Hub.connect("${name}") returned no capability`);
          cap.release();
          return took;
        };
        const measure = async (step: () => Promise<number>, ms: number): Promise<number[]> => {
          const warmEnd = nowUs() + Math.min(500, ms / 4) * 1000;
          while (nowUs() < warmEnd) await step();
          const us: number[] = [];
          const end = nowUs() + ms * 1000;
          while (nowUs() < end || us.length < 5) us.push(await step());
          return us;
        };
        const half = (seconds * 1000) / 2;
        return { withPing: summary(await measure(viaPing, half)), alone: summary(await measure(alone, half)) };
      },
      async list(args) {
        const count = Number(args.count);
        let entries = 0;
        const once = async (): Promise<number> => {
          const t0 = nowUs();
          entries = (await peer.list()).length;
          return nowUs() - t0;
        };
        for (let i = 0; i < Math.min(20, count); i++) await once();
        const us: number[] = [];
        for (let i = 0; i < count; i++) us.push(await once());
        return { ...summary(us), entries };
      },
      async register(args) {
        const name = String(args.name);
        // The same info as a registered plugin's (its schema too), so that events are as large as theirs.
        const info = typeof args.like === "string" ? (await peer.hub.lookup({ name: args.like })).entry.info : { protocolVersion };
        const t0 = nowUs();
        const { registration } = await peer.hub.register({ name, cap: served, info });
        if (registration === null) throw new Error(`register("${name}") returned no Registration`);
        registrations.set(name, registration);
        return { t0, returnedUs: nowUs() - t0 };
      },
      unregister(args) {
        const name = String(args.name);
        registrations.get(name)?.release();
        registrations.delete(name);
        return {};
      },
    },
    () => peer.close(),
  );
  emit({ ready: true, id: peer.id });
});

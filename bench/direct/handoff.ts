// Handoff latency for the direct-path bench: a process of its own that, for
// each sample, joins the mesh afresh (a new identity, so a new direct
// connection to B and a new handoff each time), times the first steps on
// B's capability, and leaves again. The hub and B from CAPMESH_HUB, _HUB_ID,
// _NETWORK_KEY (bench/lib/mesh.ts).
//
//   handoff {name, samples, direct}  `samples` fresh peers, each with
//                                    directPaths as `direct`; per sample (µs):
//       first     connect(name) and ping at once (pipelined) until the answer
//       resolved  (another fresh peer) connect(name) until the capability has
//                 resolved: picked up from B (direct) or the hub's answer (hub)
//       then      … and a first ping after that until its answer
//
//   again {name, samples, direct}    the same on one peer that has connected before,
//                                    so that a direct handoff finds its connection to B
//                                    open: no dial, no handshake
//
// Every sample checks that the capability ends up on the path asked for.
import { Bench } from "../schema/bench.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { childMain, emit, nowUs, serveCommands } from "../mesh/child.js";

type Sample = { first: number; resolved: number; then: number };

async function checkedPath(peer: MeshPeer, bench: Bench, want: "direct" | "hub"): Promise<void> {
  await bench.whenResolved();
  const found = peer.pathOf(bench);
  if (found.path !== want) throw new Error(`handoff.ts: the capability's path is "${found.path}", not "${want}"${found.reason ? ` (${found.reason})` : ""}`);
}

/** One sample; `join` gives the peer to use for each half, and `leave` is called after it. */
async function sample(name: string, direct: boolean, n: number, join: () => Promise<MeshPeer>, leave: (peer: MeshPeer) => Promise<void>): Promise<Sample> {
  const want = direct ? "direct" : "hub";
  let first: number;
  {
    const peer = await join();
    try {
      const t0 = nowUs();
      const bench = peer.connect(name, Bench);
      if ((await bench.ping({ n })).n !== n) throw new Error(`ping(${n}) returned something else`);
      first = nowUs() - t0;
      await checkedPath(peer, bench, want);
      bench.release();
    } finally {
      await leave(peer);
    }
  }
  const peer = await join();
  try {
    const t0 = nowUs();
    const bench = peer.connect(name, Bench);
    await bench.whenResolved();
    const t1 = nowUs();
    if ((await bench.ping({ n })).n !== n) throw new Error(`ping(${n}) returned something else`);
    const t2 = nowUs();
    await checkedPath(peer, bench, want);
    bench.release();
    return { first, resolved: t1 - t0, then: t2 - t0 };
  } finally {
    await leave(peer);
  }
}

const fresh = (direct: boolean) => () => joinMesh({ directPaths: direct, handleSignals: false, reconnect: false });

await childMain(async () => {
  let n = 1;
  serveCommands(
    {
      async handoff(args) {
        const samples: Sample[] = [];
        const direct = args.direct === true;
        for (let i = 0; i < Number(args.samples); i++) samples.push(await sample(String(args.name), direct, n++, fresh(direct), (p) => p.close()));
        return { samples };
      },
      async again(args) {
        const direct = args.direct === true;
        const peer = await fresh(direct)();
        try {
          const same = () => Promise.resolve(peer);
          const stay = () => Promise.resolve();
          // The first one opens the connection to B (direct); the rest find it open.
          await sample(String(args.name), direct, n++, same, stay);
          const samples: Sample[] = [];
          for (let i = 0; i < Number(args.samples); i++) samples.push(await sample(String(args.name), direct, n++, same, stay));
          const open = peer.stats().connections.filter((c) => c.kind === "direct").length;
          if (direct && open !== 1) throw new Error(`handoff.ts: ${open} direct connections after the samples, not 1`);
          return { samples };
        } finally {
          await peer.close();
        }
      },
    },
    async () => undefined,
  );
  emit({ ready: true });
});

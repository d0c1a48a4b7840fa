// Peer A of the mesh bench: the main bench's `seq` and `inflight` figures
// (bench/lib/client.ts) on peer B's Bench, reached one of two ways:
//
//   BENCH_MESH_PATH=mesh   <address> is the hub's: joinMesh, then connect(name)
//                          (BENCH_MESH_NAME), so every call is forwarded by the hub
//   BENCH_MESH_PATH=plain  <address> is B's own listener: connect with B's key
//                          (BENCH_MESH_REMOTE_ID), a two-party connection
//
//   bench/mesh/caller.ts <address> seq|inflight <seconds>
//
// Both ways pass the secret handshake with a fresh identity of A's own.
import { generateIdentity } from "../../src/auth/identity.js";
import { Bench } from "../schema/bench.js";
import { joinMesh } from "../../src/mesh/join.js";
import { connect } from "../../src/network/endpoints.js";
import { runClient } from "../lib/client.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`caller.ts: set ${name}`);
  return value;
}

await runClient(async (_address, { addressText }) => {
  const path = env("BENCH_MESH_PATH");
  if (path === "mesh") {
    const peer = await joinMesh({ hub: addressText, handleSignals: false, reconnect: false });
    const bench = peer.connect(env("BENCH_MESH_NAME"), Bench);
    return {
      ping: async (n) => (await bench.ping({ n })).n,
      chainAwaited: () => Promise.reject(new Error("not measured here")),
      async close() {
        bench.release();
        await peer.close();
      },
    };
  }
  if (path !== "plain") throw new Error(`caller.ts: BENCH_MESH_PATH is mesh or plain, not "${path}"`);
  const session = await connect(addressText, { identity: generateIdentity(), remoteKey: env("BENCH_MESH_REMOTE_ID") });
  const bench = session.bootstrap(Bench);
  return {
    ping: async (n) => (await bench.ping({ n })).n,
    chainAwaited: () => Promise.reject(new Error("not measured here")),
    async close() {
      bench.release();
      await session.close();
    },
  };
});

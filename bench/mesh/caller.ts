// Peer A of the mesh bench: the main bench's figures (bench/lib/client.ts)
// on peer B's Bench, reached one of two ways:
//
//   BENCH_MESH_PATH=mesh   <address> is the hub's: joinMesh, then connect(name)
//                          (BENCH_MESH_NAME), so every call is forwarded by the hub
//                          (or, with direct paths on, picked up from B directly)
//   BENCH_MESH_PATH=plain  <address> is B's own listener: connect with B's key
//                          (BENCH_MESH_REMOTE_ID), a two-party connection
//
//   bench/mesh/caller.ts <address> seq|inflight|stream|chain <seconds>
//
// With BENCH_MESH_EXPECT_PATH=direct|hub (mesh only), A waits until the
// capability has resolved and fails unless MeshPeer.pathOf says that path
// (bench/direct). Both ways pass the secret handshake with a fresh identity of A's own.
// The JSON line also has `cpuUs`: A's CPU time from when it is connected to the end of the figure.
import { generateIdentity } from "../../src/auth/identity.js";
import { Bench } from "../schema/bench.js";
import { joinMesh } from "../../src/mesh/join.js";
import { connect } from "../../src/network/endpoints.js";
import { runClient } from "../lib/client.js";
import { benchConnection } from "../systems/capmesh/connection.js";
import { cpuUs } from "./child.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`caller.ts: set ${name}`);
  return value;
}

await runClient(async (_address, { addressText }) => {
  // A's CPU time from the moment it is connected (after the handoff) to the end of the figure, warm-up included.
  let cpu0 = 0;
  const extra = () => ({ cpuUs: cpuUs() - cpu0 });
  const path = env("BENCH_MESH_PATH");
  if (path === "mesh") {
    const peer = await joinMesh({ hub: addressText, handleSignals: false, reconnect: false });
    const bench = peer.connect(env("BENCH_MESH_NAME"), Bench);
    const expected = process.env.BENCH_MESH_EXPECT_PATH;
    if (expected) {
      // Follows a handoff to its end: then calls go where pathOf says.
      await bench.whenResolved();
      const found = peer.pathOf(bench);
      if (found.path !== expected) {
        throw new Error(`caller.ts: the capability's path is "${found.path}", not "${expected}"${found.reason ? ` (${found.reason})` : ""}`);
      }
    }
    cpu0 = cpuUs();
    return { ...benchConnection(bench, () => peer.close()), extra };
  }
  if (path !== "plain") throw new Error(`caller.ts: BENCH_MESH_PATH is mesh or plain, not "${path}"`);
  const session = await connect(addressText, { identity: generateIdentity(), remoteKey: env("BENCH_MESH_REMOTE_ID") });
  cpu0 = cpuUs();
  return { ...benchConnection(session.bootstrap(Bench), () => session.close()), extra };
});

// Peer B of the mesh bench: bench/schema/bench.capnp's Bench, served either as a
// plugin registered with the hub, or on a listener of its own (the plain
// two-party baseline). Both pass the secret handshake with every caller.
//
//   bench/mesh/plugin.ts mesh <name>      joinMesh (the hub from CAPMESH_HUB, _HUB_ID, _NETWORK_KEY)
//   bench/mesh/plugin.ts plain <address>  listen with an identity of its own
//   bench/mesh/plugin.ts both <name> <address>
//                                         both at once, as one identity (bench/direct)
//
// `cpu` reports B's CPU time so far and the calls it has answered (pings and stream writes).
import { generateIdentity } from "../../src/auth/identity.js";
import { Bench } from "../schema/bench.js";
import { joinMesh } from "../../src/mesh/join.js";
import { listen } from "../../src/network/endpoints.js";
import { BenchImpl } from "../systems/capmesh/bench-impl.js";
import { childMain, cpuUs, emit, serveCommands } from "./child.js";

/** The bench's Bench, counting the pings and the stream writes it answers. */
class CountingBench extends BenchImpl {
  pings = 0;
  override ping(params: { n: number }) {
    this.pings++;
    return super.ping(params);
  }
  override sink() {
    const { sink } = super.sink();
    const write = sink.write.bind(sink);
    sink.write = (params) => {
      this.pings++;
      write(params);
    };
    return { sink };
  }
}

await childMain(async () => {
  const [mode, where, address] = process.argv.slice(2);
  const impl = new CountingBench(0);
  const bench = Bench.server(impl);
  // What B spent on the calls, and how many it answered.
  const commands = { cpu: () => ({ cpuUs: cpuUs(), calls: impl.pings }) };
  if (mode === "mesh" && where !== undefined) {
    const peer = await joinMesh({ name: where, provide: bench, handleSignals: false, reconnect: false });
    serveCommands(commands, () => peer.close());
    emit({ ready: true, id: peer.id });
  } else if (mode === "plain" && where !== undefined) {
    const identity = generateIdentity();
    const listener = await listen(where, { identity, bootstrap: bench });
    serveCommands(commands, () => listener.close());
    emit({ ready: true, id: identity.id, address: listener.address });
  } else if (mode === "both" && where !== undefined && address !== undefined) {
    const identity = generateIdentity();
    const peer = await joinMesh({ name: where, provide: bench, identity, handleSignals: false, reconnect: false });
    const listener = await listen(address, { identity, bootstrap: bench });
    serveCommands(commands, async () => {
      await listener.close();
      await peer.close();
    });
    emit({ ready: true, id: identity.id, address: listener.address });
  } else {
    throw new Error("usage: plugin.ts mesh <name> | plain <address> | both <name> <address>");
  }
});

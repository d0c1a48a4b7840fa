// A plugin process for the direct-path tests: joins the hub named by the
// CAPMESH_* environment, registers argv[2] and serves the RPC tests' Counter.
// Every add() prints "got <delta> via <caller id>", so the test sees each
// call, its order, and which connection it came over (the hub's, or a
// direct one). forward({ cap, delta }) calls cap.add(delta) from here (a
// tail call on a capability handed to this plugin in params). Flags:
//   --grants          register a Provider (each caller's capability made on
//                     request: it reaches the caller by Resolve)
//   --no-direct       joinMesh({ directPaths: false })
//   --advertise ADDR  advertise ADDR for direct paths instead of the bound address
//   --stats           answer "stats" on stdin with one line of JSON (MeshPeer.stats()),
//                     and "call NAME DELTA" with "called NAME <value> <path>" (connect, add, add 0)
//   --refuse ID       directPaths.authorize refuses the peer ID on the direct listener
//   --limits JSON     directPaths limits (e.g. '{"acceptWaitMs":300,"clockSkewMs":0}')
import { createInterface } from "node:readline";
import type { DirectPathOptions } from "../../src/mesh/direct.js";
import { joinMesh, type JoinOptions } from "../../src/mesh/join.js";
import type { CallContext } from "../../src/rpc/types.js";
import type { PeerInfo } from "../../src/rpc/vat-network.js";
import { Counter, CounterImpl } from "../rpc/fixtures.js";

const name = process.argv[2]!;
const flags = process.argv.slice(3);
const valueOf = (flag: string) => {
  const i = flags.indexOf(flag);
  return i >= 0 ? flags[i + 1] : undefined;
};

class Recording extends CounterImpl {
  override add(p: { delta: bigint }, ctx?: CallContext) {
    const caller = (ctx?.peer as PeerInfo | undefined)?.id ?? "?";
    console.log(`got ${p.delta} via ${caller}`);
    return super.add(p);
  }
}

const advertise = valueOf("--advertise");
const refuse = valueOf("--refuse");
const limits = valueOf("--limits");
const directOptions: DirectPathOptions = {
  ...(advertise ? { advertise: [advertise] } : {}),
  ...(refuse ? { authorize: (id: string) => id !== refuse } : {}),
  ...(limits ? (JSON.parse(limits) as DirectPathOptions) : {}),
};
const directPaths: JoinOptions["directPaths"] = flags.includes("--no-direct")
  ? false
  : Object.keys(directOptions).length > 0
    ? directOptions
    : undefined;
const counter = new Recording();
const peer = await joinMesh({
  name,
  provide: flags.includes("--grants") ? () => Counter.server(counter) : Counter.server(counter),
  ...(directPaths !== undefined ? { directPaths } : {}),
});
console.log(`registered ${name} as ${peer.id}`);

if (flags.includes("--stats")) {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const [command, other, delta] = line.trim().split(/\s+/);
    if (command === "stats") console.log(`stats ${JSON.stringify(peer.stats())}`);
    if (command === "call" && other && delta) {
      const cap = peer.connect(other, Counter);
      // The path is printed after a second call, made once the first returned (by then the handoff has settled).
      cap
        .add({ delta: BigInt(delta) })
        .then(async ({ value }) => {
          await cap.add({ delta: 0n });
          console.log(`called ${other} ${value} ${peer.pathOf(cap).path}`);
        })
        .catch((error: Error) => console.log(`call ${other} failed: ${error.message}`))
        .finally(() => cap.release());
    }
  });
}

// A plugin process for the cross-process re-entrancy tests: joins the hub
// named by the CAPMESH_* environment and registers argv[2] serving a
// Callback (test/rpc/schema/actors.capnp) whose run() calls poke on the
// plugin named argv[3] (a Probe) and returns "seen <n>", or
// "error: <message>" if that call failed. Flags:
//   --sequential  joinMesh({ sequential: true }): one call at a time
import { joinMesh } from "../../src/mesh/join.js";
import { Callback, Probe } from "../rpc/schema/actors.js";

const [name, targetName] = [process.argv[2]!, process.argv[3]!];
const sequential = process.argv.includes("--sequential");
let calls = 0;
let target: Probe | null = null;
const peer = await joinMesh({
  name,
  sequential,
  handleSignals: true,
  provide: Callback.server({
    run: async () => {
      try {
        if (!target) throw new Error(`${name} has no reference to ${targetName} yet`);
        return { text: `seen ${(await target.poke({ id: 500 + calls++ })).seen}` };
      } catch (err) {
        return { text: `error: ${(err as Error).message}` };
      }
    },
  }),
});
target = peer.connect(targetName, Probe, { wait: 10_000 });
console.log(`registered ${name} as ${peer.id}`);

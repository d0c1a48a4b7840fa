// A plugin process for the sequential-delivery tests: joins the hub named by
// the CAPMESH_* environment and registers argv[2] serving a Probe
// (test/rpc/schema/actors.capnp: counts the calls running at once, waits on
// the caller's gates). Flags:
//   --sequential  joinMesh({ sequential: true }): one call at a time
// It also registers "<name>-monitor", a parallel Probe whose stats() reports
// the first one's (and how many calls wait in its queue) while that one is
// busy. via({}) calls a closure of this process that calls the plugin back
// (poke id 99): re-entrancy inside the plugin's own process.
import { joinMesh } from "../../src/mesh/join.js";
import { innermost } from "../../src/rpc/hook.js";
import { LocalServerHook } from "../../src/rpc/local.js";
import { hookOf } from "../../src/rpc/typed.js";
import { Callback, Probe, type ProbeServer } from "../rpc/schema/actors.js";
import { ProbeImpl } from "../rpc/helpers/probe.js";

const name = process.argv[2]!;
const sequential = process.argv.includes("--sequential");
const impl = new ProbeImpl();
const cap = Probe.server(impl);
const self = cap.dup();
impl.localCallback = Callback.server({ run: async () => ({ text: `seen ${(await self.poke({ id: 99 })).seen}` }) });

const peer = await joinMesh({ name, provide: cap, sequential, handleSignals: true });
impl.queue = (innermost(hookOf(self)) as LocalServerHook).sequential;
const monitor = await joinMesh({
  name: `${name}-monitor`,
  provide: Probe.server({ stats: () => impl.stats() } as unknown as ProbeServer),
});
console.log(`monitor ${monitor.id}`);
console.log(`registered ${name} as ${peer.id}`);

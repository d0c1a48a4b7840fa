// Reading what test/mesh/direct-child.ts prints: the calls it got (and the
// connection each came over), and its MeshPeer.stats() when asked.
import { eventually } from "../../rpc/helpers/raw-peer.js";
import type { MeshPeer } from "../../../src/mesh/join.js";
import type { Started } from "./processes.js";

/** The plugin child serving a Counter that prints every call (see the file for its flags). */
export const DIRECT_CHILD = "test/mesh/direct-child.ts";

export interface Call {
  delta: number;
  /** The id of the peer the call came from over its connection: the caller, or the hub that forwarded it. */
  via: string;
}

/** The "got <delta> via <id>" lines the child printed so far, in order. */
export function calls(p: Started): Call[] {
  return [...p.output().matchAll(/^got (-?\d+) via (\S+)$/gm)].map((m) => ({ delta: Number(m[1]), via: m[2]! }));
}

/** The calls, once the child has printed at least `n` (its stdout may trail the results). */
export async function printed(p: Started, n: number): Promise<Call[]> {
  await eventually(() => calls(p).length >= n, () => `${n} calls printed: ${p.output()}`);
  return calls(p);
}

export type ChildStats = ReturnType<MeshPeer["stats"]>;

/** The child's MeshPeer.stats() (it runs with --stats): asked on its stdin, the newest line it printed. */
export async function childStats(p: Started): Promise<ChildStats> {
  const count = () => p.output().match(/^stats /gm)?.length ?? 0;
  const before = count();
  p.child.stdin!.write("stats\n");
  await eventually(() => count() > before, () => `the plugin to print its stats: ${p.output()}${p.errors()}`);
  return JSON.parse([...p.output().matchAll(/^stats (.*)$/gm)].at(-1)![1]!) as ChildStats;
}

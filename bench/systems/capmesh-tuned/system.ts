// capmesh again, the same server and client, in node processes whose V8
// heap starts with a 128 MB old generation (`--initial-old-space-size=128`,
// a flag a deployment sets, like Java's -Xms). Shown beside the default-heap
// row, which is the one the targets are judged on, because it isolates what
// the default heap costs the stream figure: with a small live heap, V8 keeps
// the old generation's headroom below the young generation's capacity and so
// starts a full collection about every 50 ms of streaming, and each side
// stalls the other in turn.
import { fileURLToPath } from "node:url";
import type { Launch } from "../../lib/systems.js";
import { tsxCommand } from "../../lib/systems.js";

const FLAG = "--initial-old-space-size=128";

function withHeapFlag(file: string): string[] {
  const [node, ...rest] = tsxCommand(fileURLToPath(new URL(`../capmesh/${file}`, import.meta.url)));
  return [node!, FLAG, ...rest];
}

export async function prepare(): Promise<Launch> {
  return {
    server: withHeapFlag("server.ts"),
    client: withHeapFlag("client.ts"),
    note: `bench/systems/capmesh processes run with node ${FLAG}`,
  };
}

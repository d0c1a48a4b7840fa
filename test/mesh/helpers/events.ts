// How the mesh tests show what they saw: watch events as short lines, and
// values (the hub's stats hold bigints) as JSON in failure messages.
import type { Event } from "../../../src/gen/mesh.js";

/** JSON for failure messages (bigints as strings). */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

/** A watch event as one line: `snapshot[a,b]`, `joined a`, `left a (reason)`. */
export function describeEvent(e: Event): string {
  if (e.which === "snapshot") return `snapshot[${e.snapshot.map((s) => s.name).join(",")}]`;
  if (e.which === "joined") return `joined ${e.joined.name}`;
  return `left ${e.left.name} (${e.left.reason})`;
}

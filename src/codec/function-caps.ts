// Functions where the schema has a capability: an interface may register how
// a plain JS function serves it (Closure does, src/engine/closure.ts), and a
// function put in a field of that interface is then served as one. For any
// other interface a function is refused as before.
import type { InterfaceDef } from "./types.js";

type Adapter = (fn: (...args: never[]) => unknown) => object;

const adapters = new Map<bigint, Adapter>();

/** From now on a function given where `iface` is expected is served by `adapt(fn)`. */
export function registerFunctionServer(iface: InterfaceDef, adapt: Adapter): void {
  adapters.set(iface.id, adapt);
}

/** How a function is served as `iface`, if that interface takes functions. */
export function functionServerFor(iface: InterfaceDef | null): Adapter | undefined {
  return iface === null ? undefined : adapters.get(iface.id);
}

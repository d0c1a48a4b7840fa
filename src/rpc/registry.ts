// Names of the interfaces and methods this process knows (every interface
// defined by generated code registers itself), so that the engine can name a
// call in errors and logs by "Interface.method" while it only sees IDs.
import type { InterfaceDef } from "../codec/types.js";

const byId = new Map<bigint, InterfaceDef>();

export function registerInterface(def: InterfaceDef): void {
  if (!byId.has(def.id)) byId.set(def.id, def);
}

/** The interface with this ID, if generated code for it was loaded. */
export function interfaceById(id: bigint): InterfaceDef | undefined {
  return byId.get(id);
}

/** "Interface.method", or the IDs where the interface is not known here. */
export function methodLabel(interfaceId: bigint, methodId: number): string {
  const def = byId.get(interfaceId);
  const method = def?.methods.find((m) => m.ordinal === methodId);
  if (def && method) return `${def.name}.${method.name}`;
  return `${def?.name ?? `0x${interfaceId.toString(16)}`}.@${methodId}`;
}

// What a plugin says about its interfaces when it registers: PluginInfo's
// `interfaces` and `schema`, from the generated interfaces it provides, so
// that tools (`capmesh ls`, `capmesh call`) know what it serves and how to
// call it with no generated code of their own.
import type { InterfaceDef } from "../codec/types.js";
import { serializeSchema } from "../codegen/dynamic.js";
import { interfaceOf } from "../rpc/typed.js";
import type { Capability } from "../rpc/types.js";

export interface Described {
  interfaces?: { id: bigint; name: string }[];
  schema?: Uint8Array;
}

/**
 * `interfaces`, else the interface `provide` is typed as (a capability made
 * with `Foo.server(...)`, or any `Foo` client), with their superclasses, and
 * the compiled schema their generated code embeds. Empty when neither tells.
 */
export function describeProvided(
  provide: Capability | ((caller: string) => Capability) | undefined,
  interfaces: readonly InterfaceDef[] | undefined,
): Described {
  const given = interfaces ?? (provide !== undefined && typeof provide !== "function" ? [interfaceOf(provide)] : []);
  const roots = given.filter((d): d is InterfaceDef => d !== null);
  if (roots.length === 0) return {};
  const all = new Map<bigint, InterfaceDef>();
  const visit = (def: InterfaceDef): void => {
    if (all.has(def.id)) return;
    all.set(def.id, def);
    def.superclasses.forEach(visit);
  };
  roots.forEach(visit);
  const schema = serializeSchema(roots);
  return {
    interfaces: [...all.values()].map((d) => ({ id: d.id, name: d.name })),
    ...(schema !== null ? { schema } : {}),
  };
}

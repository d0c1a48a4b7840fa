// Identifier rules for generated code.

/**
 * Method names that would clash with members every capability client has
 * (Capability in src/rpc/types.ts, CapabilityClient.castAs), with
 * promise/thenable detection, or with the class. They get a trailing `_` in
 * TypeScript; MethodDef.name stays the schema name and the ordinal, which is
 * what goes on the wire, is unchanged. The RPC runtime applies the same rule
 * (methodPropertyName in src/rpc/typed.ts) to find methods on clients and
 * server objects: the two lists must stay equal (a test checks).
 */
export const RESERVED_METHOD_NAMES: ReadonlySet<string> = new Set([
  "release",
  "dup",
  "whenResolved",
  "then",
  "catch",
  "finally",
  "constructor",
  "castAs",
]);

export function methodName(name: string): string {
  return RESERVED_METHOD_NAMES.has(name) || name.startsWith("$") ? `${name}_` : name;
}

/**
 * Struct field names that would break plain objects or result promises (a
 * pipelined field named `then` would turn the promise into something else).
 * `which` is taken by the union discriminant in structs that have a union.
 */
const RESERVED_FIELD_NAMES = new Set(["then", "catch", "finally", "constructor", "__proto__"]);

export function fieldName(name: string, hasUnion: boolean): string {
  if (RESERVED_FIELD_NAMES.has(name) || (hasUnion && name === "which")) return `${name}_`;
  return name;
}

/** `Outer.Inner` (a schema display name after the file prefix) → `Outer_Inner`. */
export function nestedName(path: string): string {
  return path.replace(/\./g, "_");
}

/** A JSDoc block for `doc` at `indent`, or nothing. */
export function jsdoc(doc: string, indent: string): string[] {
  const text = doc.trim();
  if (text === "") return [];
  const lines = text.replace(/\*\//g, "*\\/").split("\n");
  if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
  return [`${indent}/**`, ...lines.map((l) => (l === "" ? `${indent} *` : `${indent} * ${l}`)), `${indent} */`];
}

export function stringLiteral(s: string): string {
  return JSON.stringify(s);
}

// `capmesh call <name> [<method> [json]]`: calls a plugin's method with no
// generated code. The hub's lookup gives the plugin's entry, whose
// PluginInfo.schema (published by joinMesh from the generated code the
// plugin runs) is loaded at run time; JSON params are converted by the
// params struct's field types, the call goes through the hub's connect, and
// the results print as JSON. Exit codes as for every mesh command: 0 ok,
// 1 the call failed, 2 usage, 3 the hub cannot be reached.
import { readFileSync } from "node:fs";
import { loadSchema, type LoadedInterface, type LoadedSchema, type LoadedStruct, type SchemaType } from "../codegen/dynamic.js";
import { SchemaTypeError } from "../codec/check.js";
import type { InterfaceDef, MethodDef } from "../codec/types.js";
import type { Entry } from "../gen/mesh.js";
import { nameProblem } from "../mesh/names.js";
import { RpcError } from "../rpc/errors.js";
import { CapabilityClient, dynamicCall } from "../rpc/typed.js";
import { EXIT, reachHub } from "./mesh.js";

export const CALL_HELP = `usage: capmesh call <name> [<method> [JSON | -]] [--timeout MS]

Calls <method> of the plugin registered as <name> and prints the results as
JSON. No generated code is needed: the plugin's compiled schema (which joinMesh
publishes with its registration) says how to encode the call. Without
<method>, lists the plugin's methods with their params and results.

  <method>        a method name, or Interface.method where several interfaces have one
  JSON            the params as a JSON object, e.g. '{"name": "world"}' (default {});
                  - reads them from stdin
  --timeout MS    give up on the call after MS milliseconds (exit 1)

JSON values: Int64/UInt64 as a number or a string of digits
("18446744073709551615"); Data as a base64 string or an array of bytes;
Float32/Float64 also as "NaN", "Infinity", "-Infinity"; enums by name (or
ordinal); a union member by its key (or "which"); Void as null; capabilities
cannot be given (null only). Results print the same way: 64-bit integers as
strings, Data as base64, Void as null, capabilities as "<capability Name>".

Exit codes: 0 ok, 1 the call failed (or the plugin publishes no usable schema),
2 usage (an unknown name or method, params that do not fit), 3 the hub cannot
be reached.`;

class Usage extends Error {}

interface Args {
  name: string;
  method: string | undefined;
  params: string | undefined;
  timeout: number | undefined;
}

function parseArgs(args: string[]): Args | "help" {
  const positional: string[] = [];
  let timeout: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--timeout") {
      const v = args[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) <= 0) throw new Usage("capmesh call: --timeout needs a number of milliseconds");
      timeout = Number(v);
    } else if (arg.startsWith("--")) {
      throw new Usage(`capmesh call: unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  if (positional.length === 0) throw new Usage("capmesh call: which plugin? give its name (capmesh ls lists them)");
  if (positional.length > 3) throw new Usage(`capmesh call: too many arguments (${positional.slice(3).join(" ")}); quote the JSON params as one argument`);
  const [name, method, params] = positional as [string, string | undefined, string | undefined];
  const problem = nameProblem(name);
  if (problem) throw new Usage(`capmesh call: ${problem}`);
  return { name, method, params, timeout };
}

/** The JSON params as an object, or a Usage error saying what is wrong with them. */
function parseParams(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  const source = text === "-" ? readFileSync(0, "utf8") : text;
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (error) {
    throw new Usage(`capmesh call: the params are not JSON: ${(error as Error).message}; give an object, e.g. '{"name": "world"}'`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Usage(`capmesh call: the params must be a JSON object of the method's params, e.g. '{"name": "world"}'`);
  }
  return value as Record<string, unknown>;
}

export async function call(argv: string[]): Promise<number> {
  let args: Args;
  let params: Record<string, unknown>;
  try {
    const parsed = parseArgs(argv);
    if (parsed === "help") {
      console.log(CALL_HELP);
      return EXIT.ok;
    }
    args = parsed;
    params = parseParams(args.params);
  } catch (error) {
    if (!(error instanceof Usage)) throw error;
    console.error(`${error.message}\n\n${CALL_HELP}`);
    return EXIT.usage;
  }

  const peer = await reachHub("call");
  if (typeof peer === "number") return peer;
  try {
    let entry: Entry;
    try {
      entry = (await peer.hub.lookup({ name: args.name })).entry;
    } catch (error) {
      // Unknown (usage), or refused (a failed call): the list tells which.
      const names = await peer.list().then((plugins) => plugins.map((p) => p.name), () => null);
      if (names !== null && !names.includes(args.name)) {
        const known = names.length === 0 ? "none is registered" : `registered: ${names.join(", ")}`;
        console.error(`capmesh call: no plugin named "${args.name}" (${known})`);
        return EXIT.usage;
      }
      console.error(`capmesh call: ${(error as Error).message}`);
      return EXIT.failed;
    }

    const plugin = pluginSchema(entry);
    if (typeof plugin === "string") {
      console.error(`capmesh call: ${plugin}`);
      return EXIT.failed;
    }
    if (args.method === undefined) {
      console.log(listing(entry, plugin));
      return EXIT.ok;
    }
    const chosen = chooseMethod(plugin, args.method);
    if (typeof chosen === "string") {
      console.error(`capmesh call: ${args.name} ${chosen}\n\n${listing(entry, plugin)}`);
      return EXIT.usage;
    }

    const { top, owner, method } = chosen;
    const label = `${owner.name}.${method.name}`;
    let converted: Record<string, unknown>;
    try {
      converted = fromJson(params, plugin.schema.structOf(method.params)!, "params") as Record<string, unknown>;
    } catch (error) {
      if (!(error instanceof Usage)) throw error;
      console.error(`capmesh call: ${label}: ${error.message}\n\n${signature(plugin.schema, owner, method)}`);
      return EXIT.usage;
    }
    using cap = peer.connect(args.name, top);
    let results: Record<string, unknown>;
    try {
      results = await dynamicCall(cap, owner, method.name, converted, args.timeout !== undefined ? { timeout: args.timeout } : {});
    } catch (error) {
      if (error instanceof SchemaTypeError) {
        // The codec's path starts at the params struct, as the converter's does at "params".
        console.error(`capmesh call: ${label}: params${error.path}: ${error.problem}\n\n${signature(plugin.schema, owner, method)}`);
        return EXIT.usage;
      }
      const kind = error instanceof RpcError && error.type !== "failed" ? ` (${error.type})` : "";
      console.error(`capmesh call: ${label} failed${kind}: ${(error as Error).message}`);
      return EXIT.failed;
    }
    const out = method.stream ? {} : toJson(results, { kind: "struct", struct: plugin.schema.structOf(method.results)! });
    console.log(JSON.stringify(out, null, 2));
    return EXIT.ok;
  } finally {
    await peer.close();
  }
}

// ---------------------------------------------------------------------------
// The plugin's schema and methods

interface PluginSchema {
  readonly schema: LoadedSchema;
  /** The interfaces the plugin says it implements (else every interface in its schema). */
  readonly interfaces: readonly LoadedInterface[];
}

function pluginSchema(entry: Entry): PluginSchema | string {
  if (entry.info.schema.byteLength === 0) {
    return (
      `${entry.name} publishes no schema (its PluginInfo.schema is empty), so its methods are unknown here; ` +
      "a plugin that joins with joinMesh publishes the schema of the generated interfaces it provides"
    );
  }
  let schema: LoadedSchema;
  try {
    schema = loadSchema(entry.info.schema);
  } catch (error) {
    return `cannot load the schema ${entry.name} publishes: ${(error as Error).message}`;
  }
  const listed = entry.info.interfaces
    .map((i) => schema.byId(i.id))
    .filter((d): d is LoadedInterface => d !== undefined && "methods" in d);
  const interfaces = listed.length > 0 ? listed : [...schema.interfaces.values()];
  if (interfaces.length === 0) return `the schema ${entry.name} publishes holds no interface`;
  return { schema, interfaces };
}

interface Candidate {
  /** The interface the plugin implements. */
  readonly top: LoadedInterface;
  /** The interface that declares the method (top, or one of its superclasses). */
  readonly owner: InterfaceDef;
  readonly method: MethodDef;
}

/** Every method of the plugin's interfaces, inherited ones included, each once. */
function methodsOf(plugin: PluginSchema): Candidate[] {
  const out: Candidate[] = [];
  const seen = new Set<string>();
  const visit = (top: LoadedInterface, def: InterfaceDef): void => {
    for (const method of def.methods) {
      const key = `${def.id}:${method.ordinal}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ top, owner: def, method });
    }
    for (const s of def.superclasses) visit(top, s);
  };
  for (const top of plugin.interfaces) visit(top, top);
  return out;
}

/** The method `wanted` names (`method` or `Interface.method`), or what is wrong. */
function chooseMethod(plugin: PluginSchema, wanted: string): Candidate | string {
  const all = methodsOf(plugin);
  const dot = wanted.lastIndexOf(".");
  const ifaceName = dot >= 0 ? wanted.slice(0, dot) : null;
  const methodName = dot >= 0 ? wanted.slice(dot + 1) : wanted;
  const found = all.filter(
    (c) => c.method.name === methodName && (ifaceName === null || c.owner.name === ifaceName || c.top.name === ifaceName),
  );
  if (found.length === 1) return found[0]!;
  if (found.length === 0) return `has no method "${wanted}"`;
  return `has several methods "${methodName}" (${found.map((c) => `${c.owner.name}.${c.method.name}`).join(", ")}): say which, as Interface.method`;
}

function typeName(t: SchemaType): string {
  switch (t.kind) {
    case "list":
      return `List(${typeName(t.element)})`;
    case "enum":
      return t.enum.name;
    case "struct":
      return t.struct.name;
    case "interface":
      return t.iface.name;
    case "anyPointer":
      return t.capability ? "Capability" : "AnyPointer";
    default:
      return PRIMITIVE_NAMES[t.kind];
  }
}

const PRIMITIVE_NAMES = {
  void: "Void",
  bool: "Bool",
  int8: "Int8",
  int16: "Int16",
  int32: "Int32",
  int64: "Int64",
  uint8: "UInt8",
  uint16: "UInt16",
  uint32: "UInt32",
  uint64: "UInt64",
  float32: "Float32",
  float64: "Float64",
  text: "Text",
  data: "Data",
} as const;

/** `a :Text, b :group(x :Int32), union(c :Void | d :Text)`: a struct's fields by their JSON keys. */
function fieldList(s: LoadedStruct): string {
  const show = (f: LoadedStruct["fields"][number]): string =>
    f.isGroup && f.type.kind === "struct" ? `${f.key} :group(${fieldList(f.type.struct)})` : `${f.key} :${typeName(f.type)}`;
  const common = s.fields.filter((f) => f.discriminant === null).map(show);
  const members = s.fields.filter((f) => f.discriminant !== null).map(show);
  if (members.length > 0) common.push(`union(${members.join(" | ")})`);
  return common.join(", ");
}

function signature(schema: LoadedSchema, owner: InterfaceDef, method: MethodDef): string {
  const params = fieldList(schema.structOf(method.params)!);
  const results = method.stream ? "stream" : `(${fieldList(schema.structOf(method.results)!)})`;
  return `${owner.name}.${method.name}(${params}) -> ${results}`;
}

function listing(entry: Entry, plugin: PluginSchema): string {
  const header = `${entry.name} (${plugin.interfaces.map((i) => i.name).join(", ")}):`;
  return [header, ...methodsOf(plugin).map((c) => `  ${signature(plugin.schema, c.owner, c.method)}`)].join("\n");
}

// ---------------------------------------------------------------------------
// JSON in and out

function describe(x: unknown): string {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

function bad(path: string, expected: string, got: unknown): Usage {
  return new Usage(`${path}: expected ${expected}, got ${describe(got)}`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SPECIAL_FLOATS: Record<string, number> = { NaN: Number.NaN, Infinity: Number.POSITIVE_INFINITY, "-Infinity": Number.NEGATIVE_INFINITY };

/** A JSON value as the codec takes a value of type `t` (the codec then checks ranges, enum names, ...). */
function fromJson(value: unknown, struct: LoadedStruct, path: string): unknown {
  return convertIn(value, { kind: "struct", struct }, path);
}

function convertIn(x: unknown, t: SchemaType, path: string): unknown {
  if (x === null) return null;
  switch (t.kind) {
    case "void":
      if (x !== true) throw bad(path, "null (Void)", x);
      return true;
    case "bool":
      if (typeof x !== "boolean") throw bad(path, "true or false (Bool)", x);
      return x;
    case "int8":
    case "int16":
    case "int32":
    case "uint8":
    case "uint16":
    case "uint32":
      if (typeof x !== "number") throw bad(path, `an integer (${PRIMITIVE_NAMES[t.kind]})`, x);
      return x;
    case "int64":
    case "uint64": {
      const expected = `${PRIMITIVE_NAMES[t.kind]} (a number, or a string of digits beyond 2^53)`;
      if (typeof x === "number") {
        if (!Number.isInteger(x)) throw bad(path, expected, x);
        if (!Number.isSafeInteger(x)) throw new Usage(`${path}: ${x} is beyond 2^53, where JSON numbers lose digits: give it as a string`);
        return BigInt(x);
      }
      if (typeof x === "string" && /^-?[0-9]+$/.test(x)) return BigInt(x);
      throw bad(path, expected, x);
    }
    case "float32":
    case "float64":
      if (typeof x === "number") return x;
      if (typeof x === "string" && x in SPECIAL_FLOATS) return SPECIAL_FLOATS[x];
      throw bad(path, `a number (${PRIMITIVE_NAMES[t.kind]}), or "NaN", "Infinity", "-Infinity"`, x);
    case "text":
      if (typeof x !== "string") throw bad(path, "a string (Text)", x);
      return x;
    case "data":
      if (typeof x === "string" && BASE64.test(x)) return new Uint8Array(Buffer.from(x, "base64"));
      if (Array.isArray(x) && x.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Uint8Array.from(x as number[]);
      throw bad(path, "base64 or an array of bytes (Data)", x);
    case "enum":
      if (typeof x !== "string" && typeof x !== "number") throw bad(path, t.enum.expected(), x);
      return x;
    case "list":
      if (!Array.isArray(x)) throw bad(path, `an array (${typeName(t)})`, x);
      return x.map((e, i) => convertIn(e, t.element, `${path}[${i}]`));
    case "interface":
    case "anyPointer":
      throw bad(path, `null (${typeName(t)}: capabilities and pointers cannot be given on the command line)`, x);
    case "struct": {
      const s = t.struct;
      if (typeof x !== "object" || Array.isArray(x)) throw bad(path, `a JSON object (${s.name})`, x);
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(x as Record<string, unknown>)) {
        if (key === "which" && s.hasUnion) {
          out.which = value;
          continue;
        }
        const field = s.fields.find((f) => f.key === key);
        if (field === undefined) {
          const known = s.fields.map((f) => f.key);
          if (s.hasUnion) known.push("which");
          throw new Usage(`${path}.${key}: no such field in ${s.name} (${known.length === 0 ? "it has none" : `its fields: ${known.join(", ")}`})`);
        }
        out[key] = convertIn(value, field.type, `${path}.${key}`);
      }
      return out;
    }
  }
}

/** A decoded value of type `t` as JSON; capabilities in it are released. */
function toJson(x: unknown, t: SchemaType): unknown {
  if (x === null || x === undefined) return null;
  switch (t.kind) {
    case "void":
      return null;
    case "int64":
    case "uint64":
      return String(x);
    case "float32":
    case "float64":
      return Number.isFinite(x) ? x : String(x);
    case "data":
      return Buffer.from(x as Uint8Array).toString("base64");
    case "list":
      return (x as unknown[]).map((e) => toJson(e, t.element));
    case "interface":
    case "anyPointer":
      if (x instanceof CapabilityClient) {
        x.release();
        return `<capability ${t.kind === "interface" ? t.iface.name : "Capability"}>`;
      }
      return t.kind === "anyPointer" && !t.capability ? "<AnyPointer>" : null;
    case "struct": {
      const s = t.struct;
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(x as Record<string, unknown>)) {
        const field = s.fields.find((f) => f.key === key);
        out[key] = field === undefined ? value : toJson(value, field.type);
      }
      return out;
    }
    default:
      return x;
  }
}

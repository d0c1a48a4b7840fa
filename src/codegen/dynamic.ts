// The run-time schema loader: from a compiled schema (a serialized
// CodeGeneratorRequest, e.g. a plugin's PluginInfo.schema, or what
// generated code embeds as `Foo.schema`) to the same interface descriptors
// and struct codecs the generator emits, built at run time, so that tools
// with no generated code (`capmesh call`, dynamicCall) can encode params and
// decode results.
//
// The codecs are the runtime's own (defineStruct, listOf*, readX/writeX):
// each field becomes a pair of closures calling the helper the generator
// would have named for it (graph.ts holds the tables and the naming both
// use), so values are checked, and errors worded, exactly as in generated
// code.
import * as rt from "../codec/runtime.js";
import type { CapTableReader, CapTableWriter, InterfaceDef, MethodDef, StructCodec } from "../codec/types.js";
import { defineInterface, type CapabilityClient, type InterfaceHandle } from "../rpc/typed.js";
import type { CallContext } from "../rpc/types.js";
import { byCodeOrder, LIST_CONSTANTS, PRIMITIVE_ACCESS, SchemaGraph, STREAM_RESULT_ID } from "./graph.js";
import { readRequestFrom, type FieldModel, type NodeModel, type PrimitiveKind, type TypeModel, type ValueModel } from "./model.js";
import { fieldName } from "./names.js";
import { neededNodes, nodesById, openRequest, writeNodes } from "./nodes.js";
import type { Node } from "capnp-es/capnp/schema";

/** What a server of a loaded interface implements: methods by name, taking and returning plain objects. */
export type DynamicServer = Record<string, (params: Record<string, unknown>, ctx: CallContext) => unknown>;

/**
 * A loaded interface: an InterfaceDef for dynamicCall, connect, castAs and
 * `server()`. Its clients are untyped (call them with dynamicCall).
 */
export type LoadedInterface = InterfaceHandle<CapabilityClient, DynamicServer>;

/** A field's type, with references resolved. */
export type SchemaType =
  | { readonly kind: PrimitiveKind | "text" | "data" }
  | { readonly kind: "list"; readonly element: SchemaType }
  | { readonly kind: "enum"; readonly enum: rt.EnumDef }
  | { readonly kind: "struct"; readonly struct: LoadedStruct }
  | { readonly kind: "interface"; readonly iface: LoadedInterface }
  | { readonly kind: "anyPointer"; readonly capability: boolean };

export interface LoadedField {
  /** Its key in plain objects: the schema name, with `_` appended where it would clash (`then_`, `which_`). */
  readonly key: string;
  /** Its name in the schema. */
  readonly name: string;
  /** Its union discriminant, or null when it is not a union member. */
  readonly discriminant: number | null;
  /** The field's type; for a group, `{ kind: "struct" }` with the group's fields. */
  readonly type: SchemaType;
  readonly isGroup: boolean;
}

export interface LoadedStruct {
  readonly id: bigint;
  /** Its name in the schema, e.g. `Outer.Inner`, `Greeter.greet$Params`. */
  readonly name: string;
  /** Encodes and decodes plain objects, as a generated `Foo$codec` does. */
  readonly codec: rt.Codec<Record<string, unknown>>;
  /** In declaration order. */
  readonly fields: readonly LoadedField[];
  /** Whether some fields are members of an unnamed union (plain objects then have `which`). */
  readonly hasUnion: boolean;
}

export interface LoadedSchema {
  /** Every interface, by its name in the schema (`Greeter`, `Outer.Inner`). */
  readonly interfaces: ReadonlyMap<string, LoadedInterface>;
  /** Every struct except groups, by name (method params and results too: `Greeter.greet$Params`). */
  readonly structs: ReadonlyMap<string, LoadedStruct>;
  /** Every enum, by name. */
  readonly enums: ReadonlyMap<string, rt.EnumDef>;
  /** An interface, struct or enum by its 64-bit schema ID. */
  byId(id: bigint): LoadedInterface | LoadedStruct | rt.EnumDef | undefined;
  /** The struct a codec of this schema (e.g. a method's `params`) encodes, with its fields' types. */
  structOf(codec: StructCodec<unknown>): LoadedStruct | undefined;
}

/**
 * Loads a compiled schema: a serialized CodeGeneratorRequest (standard
 * framing, as `capnp compile -o-` writes and PluginInfo.schema carries), or
 * the base64 string generated code embeds as `Foo.schema` (a packed one).
 * Every struct, enum and interface in it gets a codec or descriptor; a node
 * they need that the schema lacks throws, naming it.
 */
export function loadSchema(source: Uint8Array | string): LoadedSchema {
  const packed = typeof source === "string";
  const bytes = packed ? base64Bytes(source) : source;
  if (bytes.byteLength === 0) throw new Error("capmesh: loadSchema: the schema is empty");
  const request = openRequest(bytes, { packed });
  return new Loader(new SchemaGraph(readRequestFrom(request)), () => (packed ? source : base64Of(writeNodes(request.nodes, true)))).load();
}

/**
 * The compiled schema of `interfaces` (and their superclasses), as
 * PluginInfo.schema carries it: a serialized CodeGeneratorRequest holding
 * their nodes and the nodes those need, merged from the schemas generated
 * code embeds (`Foo.schema`). Null when none of them has one.
 */
export function serializeSchema(interfaces: readonly InterfaceDef[]): Uint8Array | null {
  const all = new Map<bigint, InterfaceDef>();
  const visit = (def: InterfaceDef): void => {
    if (all.has(def.id)) return;
    all.set(def.id, def);
    def.superclasses.forEach(visit);
  };
  interfaces.forEach(visit);
  const sources = new Set([...all.values()].map((d) => d.schema).filter((s): s is string => s !== undefined && s !== ""));
  if (sources.size === 0) return null;
  const raw = new Map<bigint, Node>();
  const models = new Map<bigint, NodeModel>();
  const order: bigint[] = [];
  for (const source of sources) {
    const request = openRequest(base64Bytes(source), { packed: true });
    for (const [id, node] of nodesById(request)) if (!raw.has(id)) raw.set(id, node);
    const model = readRequestFrom(request);
    for (const id of model.order) {
      if (models.has(id)) continue;
      models.set(id, model.nodes.get(id)!);
      order.push(id);
    }
  }
  const needed = neededNodes(new SchemaGraph({ nodes: models, order, files: [] }), all.keys());
  return writeNodes(order.filter((id) => needed.has(id)).map((id) => raw.get(id)!));
}

function base64Bytes(s: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error("capmesh: loadSchema: a string schema must be base64 (what generated code embeds as Foo.schema)");
  return new Uint8Array(Buffer.from(s, "base64"));
}

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

// ---------------------------------------------------------------------------

type Reader = (v: rt.StructView, caps: CapTableReader) => unknown;
/** Null for Void: nothing to store. */
type Writer = ((v: rt.StructView, x: unknown, caps: CapTableWriter) => void) | null;
type Loose = Record<string, unknown>;

/** The codec runtime's helpers by name, as the generator names them. */
const helpers = rt as unknown as Record<string, unknown>;
function helper<F>(name: string): F {
  const f = helpers[name];
  if (f === undefined) throw new Error(`capmesh: the codec runtime has no ${name}`);
  return f as F;
}

interface FieldOps {
  readonly key: string;
  readonly name: string;
  readonly discriminant: number | null;
  readonly read: Reader;
  readonly write: Writer;
}

interface MutableStruct {
  id: bigint;
  name: string;
  codec: rt.Codec<Loose>;
  fields: LoadedField[];
  hasUnion: boolean;
}

class Loader {
  readonly #structs = new Map<bigint, MutableStruct>();
  readonly #enums = new Map<bigint, rt.EnumDef>();
  readonly #interfaces = new Map<bigint, LoadedInterface>();
  readonly #byCodec = new Map<StructCodec<unknown>, LoadedStruct>();

  constructor(
    readonly g: SchemaGraph,
    /** The schema loaded interfaces carry as `schema` (computed on first use). */
    readonly embedded: () => string,
  ) {}

  load(): LoadedSchema {
    for (const id of this.g.request.order) {
      const node = this.g.node(id);
      if (node.kind === "struct") this.struct(id);
      else if (node.kind === "enum") this.enumDef(id);
      else if (node.kind === "interface") this.iface(id);
    }
    const interfaces = new Map<string, LoadedInterface>();
    const structs = new Map<string, LoadedStruct>();
    const enums = new Map<string, rt.EnumDef>();
    for (const [id, i] of this.#interfaces) interfaces.set(this.g.schemaName(id), i);
    for (const [id, s] of this.#structs) if (!this.g.node(id).struct!.isGroup) structs.set(s.name, s);
    for (const [id, e] of this.#enums) enums.set(this.g.schemaName(id), e);
    const byId = (id: bigint) => this.#interfaces.get(id) ?? this.#structs.get(id) ?? this.#enums.get(id);
    const byCodec = this.#byCodec;
    return { interfaces, structs, enums, byId, structOf: (codec) => byCodec.get(codec) };
  }

  /** A node that must be there, of the kind `kind`. */
  #need(id: bigint, kind: NodeModel["kind"], what: () => string): NodeModel {
    const node = this.g.nodes.get(id);
    if (node === undefined || node.kind !== kind) {
      throw new Error(
        `capmesh: the schema has no ${kind} 0x${id.toString(16)} (${what()}): it is incomplete; ` +
          "a compiled schema must hold every node its interfaces use",
      );
    }
    return node;
  }

  enumDef(id: bigint, what = () => "an enum"): rt.EnumDef {
    let def = this.#enums.get(id);
    if (def === undefined) {
      const node = this.#need(id, "enum", what);
      def = rt.defineEnum(this.g.schemaName(id), node.enumerants!.map((e) => e.name));
      this.#enums.set(id, def);
    }
    return def;
  }

  iface(id: bigint, what = () => "an interface"): LoadedInterface {
    let handle = this.#interfaces.get(id);
    if (handle !== undefined) return handle;
    const node = this.#need(id, "interface", what);
    const name = this.g.schemaName(id);
    // Filled in below: a method's params may refer back to this interface.
    const methods: MethodDef[] = [];
    const superclasses: InterfaceDef[] = [];
    const embedded = this.embedded;
    const def = { name, id, methods, superclasses } as InterfaceDef;
    Object.defineProperty(def, "schema", { get: embedded, enumerable: true });
    handle = defineInterface<CapabilityClient, DynamicServer>(def);
    this.#interfaces.set(id, handle);
    for (const m of node.iface!.methods) {
      const stream = m.results === STREAM_RESULT_ID;
      const params = this.struct(m.params, () => `the params of ${name}.${m.name}`).codec;
      const results =
        stream && !this.g.nodes.has(m.results)
          ? this.#emptyStruct(m.results, "StreamResult").codec
          : this.struct(m.results, () => `the results of ${name}.${m.name}`).codec;
      methods.push({ name: m.name, ordinal: m.ordinal, params, results, stream });
    }
    for (const s of node.iface!.superclasses) superclasses.push(this.iface(s, () => `a superclass of ${name}`));
    return handle;
  }

  /** `capnp/stream.capnp`'s StreamResult where a schema left it out: it has no fields. */
  #emptyStruct(id: bigint, name: string): LoadedStruct {
    let s = this.#structs.get(id);
    if (s === undefined) {
      s = { id, name, codec: null!, fields: [], hasUnion: false };
      s.codec = rt.defineStruct<Loose>({
        name,
        dataWords: 0,
        pointers: 0,
        fields: [],
        read: () => ({}),
        write: (x) => {
          let k = 0;
          for (const _ in x) k++;
          if (k !== 0 || typeof x !== "object" || Array.isArray(x)) rt.checkFields(x, 0, s!.codec);
        },
      });
      this.#structs.set(id, s);
      this.#byCodec.set(s.codec, s);
    }
    return s;
  }

  struct(id: bigint, what = () => "a struct"): LoadedStruct {
    const known = this.#structs.get(id);
    if (known !== undefined) return known;
    const node = this.#need(id, "struct", what);
    const s = node.struct!;
    const hasUnion = s.discriminantCount > 0;
    const ordered = byCodeOrder(s.fields).map((f) => ({ f, key: fieldName(f.name, hasUnion) }));
    const loaded: MutableStruct = { id, name: this.g.schemaName(id), codec: null!, fields: [], hasUnion };
    const codecName = this.g.name(id);
    const keys = [
      ...ordered.filter(({ f }) => f.discriminant === null).map(({ key }) => key),
      ...(hasUnion ? ["which"] : []),
      ...ordered.filter(({ f }) => f.discriminant !== null).map(({ key }) => key),
    ];
    // The codec first (fields of this type refer to it), its field operations once they are built.
    let common: FieldOps[] = [];
    let members: FieldOps[] = [];
    const byDiscriminant = new Map<number, FieldOps>();
    const byName = new Map<string, FieldOps>();
    const tagOffset = s.discriminantOffset * 2;
    let pipeline: () => Record<string, rt.PipelineField> = () => ({});
    const codec: rt.Codec<Loose> = rt.defineStruct<Loose>({
      name: codecName,
      dataWords: s.dataWords,
      pointers: s.pointers,
      fields: keys,
      read: (v, caps) => {
        const out: Loose = {};
        for (const c of common) out[c.key] = c.read(v, caps);
        if (!hasUnion) return out;
        const tag = rt.readUint16(v, tagOffset);
        const member = byDiscriminant.get(tag);
        // A member this schema does not know: `which` is its number.
        if (member === undefined) out.which = tag;
        else {
          out.which = member.name;
          out[member.key] = member.read(v, caps);
        }
        return out;
      },
      // As generated writers do: each field checked as it is stored, the path
      // of the field being stored (`at`) added to errors, the keys counted.
      write: (x, v, caps) => {
        let present = 0;
        let at = "";
        try {
          for (const c of common) {
            const value = x[c.key];
            if (value == null) continue;
            at = c.key;
            present++;
            c.write?.(v, value, caps);
          }
          if (hasUnion) {
            let which: unknown = x.which;
            if (which != null) present++;
            else {
              for (const m of members) {
                if (x[m.key] !== undefined) {
                  which = m.name;
                  break;
                }
              }
            }
            at = "which";
            const member = typeof which === "string" ? byName.get(which) : undefined;
            if (member !== undefined) {
              rt.writeUint16(v, tagOffset, member.discriminant!);
              const value = x[member.key];
              if (value != null) {
                at = member.key;
                present++;
                member.write?.(v, value, caps);
              }
            } else if (which != null) {
              if (typeof which !== "number") throw rt.badUnionMember(codecName, which);
              rt.writeUint16(v, tagOffset, which);
            }
          }
        } catch (e) {
          throw rt.fieldError(e, at);
        }
        let k = 0;
        for (const _ in x) k++;
        if (k !== present || typeof x !== "object" || Array.isArray(x)) rt.checkFields(x, present, codec);
      },
      pipeline: () => pipeline(),
    });
    loaded.codec = codec;
    this.#structs.set(id, loaded);
    this.#byCodec.set(codec, loaded);

    const ops: FieldOps[] = [];
    const pipelineFields: [string, () => rt.PipelineField][] = [];
    for (const { f, key } of ordered) {
      const where = () => `the type of ${loaded.name}.${f.name}`;
      let op: FieldOps;
      if (f.group !== undefined) {
        const group = this.struct(f.group, where);
        op = {
          key,
          name: f.name,
          discriminant: f.discriminant,
          read: (v, caps) => group.codec.read(v, caps),
          write: (v, x, caps) => group.codec.write(x as Loose, v, caps),
        };
        loaded.fields.push({ key, name: f.name, discriminant: f.discriminant, type: { kind: "struct", struct: group }, isGroup: true });
        pipelineFields.push([key, () => ({ kind: "group", codec: group.codec })]);
      } else {
        const { type, read, write } = this.#slot(id, f, where);
        op = { key, name: f.name, discriminant: f.discriminant, read, write };
        loaded.fields.push({ key, name: f.name, discriminant: f.discriminant, type, isGroup: false });
        const pointer = f.slot!.offset;
        if (type.kind === "struct") pipelineFields.push([key, () => ({ kind: "struct", pointer, codec: type.struct.codec })]);
        else if (type.kind === "interface") pipelineFields.push([key, () => ({ kind: "interface", pointer, iface: type.iface })]);
        else if (type.kind === "anyPointer" && type.capability) pipelineFields.push([key, () => ({ kind: "interface", pointer, iface: null })]);
      }
      ops.push(op);
    }
    common = ops.filter((o) => o.discriminant === null);
    members = ops.filter((o) => o.discriminant !== null);
    for (const m of members) {
      byDiscriminant.set(m.discriminant!, m);
      byName.set(m.name, m);
    }
    pipeline = () => Object.fromEntries(pipelineFields.map(([key, p]) => [key, p()]));
    return loaded;
  }

  /** The type, reader and writer of a slot field, calling the helpers generated code calls for it. */
  #slot(struct: bigint, f: FieldModel, what: () => string): { type: SchemaType; read: Reader; write: Writer } {
    const { offset, type: t, defaultValue: d } = f.slot!;
    switch (t.kind) {
      case "void":
        return { type: t, read: () => true, write: null };
      case "bool": {
        const def = d.kind === "bool" && d.value;
        return { type: t, read: (v) => rt.readBool(v, offset, def), write: (v, x) => rt.writeBool(v, offset, x as boolean, def) };
      }
      case "enum": {
        const e = this.enumDef(t.id, what);
        const def = d.kind === "number" ? d.value : 0;
        return {
          type: { kind: "enum", enum: e },
          read: (v) => rt.readEnum(v, offset * 2, e, def),
          write: (v, x) => rt.writeEnum(v, offset * 2, e, x as string | number, def),
        };
      }
      case "float32": {
        const bits = d.kind === "float32" ? d.bits : 0;
        return { type: t, read: (v) => rt.readFloat32(v, offset * 4, bits), write: (v, x) => rt.writeFloat32(v, offset * 4, x as number, bits) };
      }
      case "float64": {
        const lo = d.kind === "float64" ? d.lo : 0;
        const hi = d.kind === "float64" ? d.hi : 0;
        return {
          type: t,
          read: (v) => rt.readFloat64(v, offset * 8, lo, hi),
          write: (v, x) => rt.writeFloat64(v, offset * 8, x as number, lo, hi),
        };
      }
      case "text": {
        const def = d.kind === "text" ? d.value : "";
        return { type: t, read: (v) => rt.readText(v, offset, def), write: (v, x) => rt.writeText(v, offset, x as string) };
      }
      case "data": {
        const def = d.kind === "data" ? d.value : undefined;
        return { type: t, read: (v) => rt.readData(v, offset, def), write: (v, x) => rt.writeData(v, offset, x as Uint8Array) };
      }
      case "struct": {
        const target = this.struct(t.id, what);
        const def = pointerDefault(d);
        const read: Reader = this.g.isNullable(struct, f)
          ? (v, caps) => rt.readStructFieldOrNull(v, offset, target.codec, caps, def)
          : (v, caps) => rt.readStructField(v, offset, target.codec, caps, def);
        return {
          type: { kind: "struct", struct: target },
          read,
          write: (v, x, caps) => rt.writeStructField(v, offset, target.codec as rt.Codec<unknown>, x as Loose, caps),
        };
      }
      case "list": {
        const { type, list } = this.#list(t.element, what);
        const def = pointerDefault(d);
        return {
          type: { kind: "list", element: type },
          read: (v, caps) => rt.readList(v, offset, list, caps, def),
          write: (v, x, caps) => rt.writeList(v, offset, list, x as unknown[], caps),
        };
      }
      case "interface": {
        const iface = this.iface(t.id, what);
        return {
          type: { kind: "interface", iface },
          read: (v, caps) => rt.readCap(v, offset, iface, caps),
          write: (v, x, caps) => rt.writeCap(v, offset, iface, x, caps),
        };
      }
      case "anyPointer":
        if (t.capability) {
          return { type: t, read: (v, caps) => rt.readCap(v, offset, null, caps), write: (v, x, caps) => rt.writeCap(v, offset, null, x, caps) };
        }
        return { type: t, read: (v) => rt.readAnyPointer(v, offset), write: (v, x) => rt.writeAnyPointer(v, offset, x) };
      default: {
        const p = PRIMITIVE_ACCESS[t.kind]!;
        const read = helper<(v: rt.StructView, off: number, def?: number | bigint) => unknown>(`read${p.fn}`);
        const write = helper<(v: rt.StructView, off: number, x: unknown, def?: number | bigint) => void>(`write${p.fn}`);
        const at = offset * p.bytes;
        const def = d.kind === "number" || d.kind === "bigint" ? d.value : undefined;
        return { type: t, read: (v) => read(v, at, def), write: (v, x) => write(v, at, x, def) };
      }
    }
  }

  /** The list element type `t` as the runtime's ListType (the LIST_* constant or listOf* the generator names). */
  #list(t: TypeModel, what: () => string): { type: SchemaType; list: rt.ListType<unknown> } {
    const constant = LIST_CONSTANTS[t.kind];
    if (constant !== undefined) return { type: t as SchemaType, list: helper<rt.ListType<unknown>>(constant) };
    switch (t.kind) {
      case "anyPointer":
        return { type: t, list: t.capability ? rt.listOfCap(null) : rt.LIST_ANY_POINTER };
      case "struct": {
        const s = this.struct(t.id, what);
        return { type: { kind: "struct", struct: s }, list: rt.listOfStruct(s.codec) as rt.ListType<unknown> };
      }
      case "enum": {
        const e = this.enumDef(t.id, what);
        return { type: { kind: "enum", enum: e }, list: rt.listOfEnum(e) };
      }
      case "interface": {
        const iface = this.iface(t.id, what);
        return { type: { kind: "interface", iface }, list: rt.listOfCap(iface) };
      }
      case "list": {
        const inner = this.#list(t.element, what);
        return { type: { kind: "list", element: inner.type }, list: rt.listOfList(inner.list) };
      }
      default:
        throw new Error(`capmesh: no list type for ${t.kind}`);
    }
  }
}

/** A struct, list or AnyPointer field's schema default, as generated code declares it. */
function pointerDefault(d: ValueModel): rt.DefaultValue | undefined {
  return d.kind === "pointer" ? rt.defaultValue(d.hex) : undefined;
}

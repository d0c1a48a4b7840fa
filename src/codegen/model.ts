// Reads a CodeGeneratorRequest (capnp-es's generated schema classes) into
// plain objects, so that the emitter never touches the wire format.
import { Message, Pointer, utils } from "capnp-es";
import * as schema from "capnp-es/capnp/schema";

export type PrimitiveKind =
  | "void"
  | "bool"
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "uint8"
  | "uint16"
  | "uint32"
  | "uint64"
  | "float32"
  | "float64";

export type TypeModel =
  | { readonly kind: PrimitiveKind | "text" | "data" }
  | { readonly kind: "list"; readonly element: TypeModel }
  | { readonly kind: "enum" | "struct" | "interface"; readonly id: bigint }
  | { readonly kind: "anyPointer"; readonly capability: boolean };

/** A schema default. "none" when it is the zero value (nothing to XOR). */
export type ValueModel =
  | { readonly kind: "none" }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "bigint"; readonly value: bigint }
  | { readonly kind: "float32"; readonly value: number; readonly bits: number }
  | { readonly kind: "float64"; readonly value: number; readonly lo: number; readonly hi: number }
  | { readonly kind: "text"; readonly value: string }
  | { readonly kind: "data"; readonly value: Uint8Array }
  /** A struct/list/AnyPointer value: hex of a one-segment message whose root holds it. */
  | { readonly kind: "pointer"; readonly hex: string };

export interface FieldModel {
  readonly name: string;
  /** Position in the schema's field list. */
  readonly index: number;
  readonly codeOrder: number;
  /** Union discriminant value, or null when not a union member. */
  readonly discriminant: number | null;
  readonly doc: string;
  readonly slot?: { readonly offset: number; readonly type: TypeModel; readonly defaultValue: ValueModel };
  readonly group?: bigint;
}

export interface StructModel {
  readonly dataWords: number;
  readonly pointers: number;
  readonly isGroup: boolean;
  readonly discriminantCount: number;
  /** In 16-bit units from the start of the data section. */
  readonly discriminantOffset: number;
  readonly fields: readonly FieldModel[];
}

export interface MethodModel {
  readonly name: string;
  readonly ordinal: number;
  readonly codeOrder: number;
  readonly params: bigint;
  readonly results: bigint;
  readonly doc: string;
}

export interface NodeModel {
  readonly id: bigint;
  readonly displayName: string;
  readonly scopeId: bigint;
  readonly kind: "file" | "struct" | "enum" | "interface" | "const" | "annotation" | "unknown";
  readonly nested: readonly { readonly name: string; readonly id: bigint }[];
  readonly doc: string;
  readonly isGeneric: boolean;
  readonly struct?: StructModel;
  readonly enumerants?: readonly { readonly name: string; readonly doc: string }[];
  readonly iface?: { readonly methods: readonly MethodModel[]; readonly superclasses: readonly bigint[] };
  readonly constant?: { readonly type: TypeModel; readonly value: ValueModel };
}

export interface RequestedFileModel {
  readonly id: bigint;
  readonly filename: string;
  readonly imports: ReadonlyMap<bigint, string>;
}

export interface RequestModel {
  readonly nodes: ReadonlyMap<bigint, NodeModel>;
  /** Node ids in request order. */
  readonly order: readonly bigint[];
  readonly files: readonly RequestedFileModel[];
}

export function readRequest(bytes: Uint8Array): RequestModel {
  const message = new Message(bytes, false);
  // Large schemas legitimately exceed the default traversal budget.
  message._capnp.traversalLimit = Number.POSITIVE_INFINITY;
  return readRequestFrom(message.getRoot(schema.CodeGeneratorRequest));
}

/** The model of an already opened request (see nodes.ts's openRequest for untrusted bytes). */
export function readRequestFrom(req: schema.CodeGeneratorRequest): RequestModel {
  const docs = new Map<bigint, { doc: string; members: string[] }>();
  for (const info of req.sourceInfo) {
    docs.set(info.id, { doc: info.docComment, members: info.members.map((m) => m.docComment) });
  }

  const nodes = new Map<bigint, NodeModel>();
  const order: bigint[] = [];
  for (const node of req.nodes) {
    const model = readNode(node, docs.get(node.id));
    nodes.set(model.id, model);
    order.push(model.id);
  }

  const files = req.requestedFiles.map((f) => ({
    id: f.id,
    filename: f.filename,
    imports: new Map(f.imports.map((i) => [i.id, i.name] as const)),
  }));
  return { nodes, order, files };
}

function readNode(node: schema.Node, docs: { doc: string; members: string[] } | undefined): NodeModel {
  const base = {
    id: node.id,
    displayName: node.displayName,
    scopeId: node.scopeId,
    nested: node.nestedNodes.map((n) => ({ name: n.name, id: n.id })),
    doc: docs?.doc ?? "",
    isGeneric: node.isGeneric,
  };
  const member = (i: number): string => docs?.members[i] ?? "";
  switch (node.which()) {
    case schema.Node.FILE:
      return { ...base, kind: "file" };
    case schema.Node.STRUCT: {
      const s = node.struct;
      const fields = s.fields.map((f, index): FieldModel => {
        const common = {
          name: f.name,
          index,
          codeOrder: f.codeOrder,
          discriminant: f.discriminantValue === schema.Field.NO_DISCRIMINANT ? null : f.discriminantValue,
          doc: member(index),
        };
        if (f.which() === schema.Field.GROUP) return { ...common, group: f.group.typeId };
        const type = readType(f.slot.type);
        return {
          ...common,
          slot: { offset: f.slot.offset, type, defaultValue: readValue(type, f.slot.defaultValue) },
        };
      });
      return {
        ...base,
        kind: "struct",
        struct: {
          dataWords: s.dataWordCount,
          pointers: s.pointerCount,
          isGroup: s.isGroup,
          discriminantCount: s.discriminantCount,
          discriminantOffset: s.discriminantOffset,
          fields,
        },
      };
    }
    case schema.Node.ENUM:
      return {
        ...base,
        kind: "enum",
        enumerants: node.enum.enumerants.map((e, i) => ({ name: e.name, doc: member(i) })),
      };
    case schema.Node.INTERFACE: {
      const i = node.interface;
      return {
        ...base,
        kind: "interface",
        iface: {
          methods: i.methods.map((m, ordinal) => ({
            name: m.name,
            ordinal,
            codeOrder: m.codeOrder,
            params: m.paramStructType,
            results: m.resultStructType,
            doc: member(ordinal),
          })),
          superclasses: i.superclasses.map((s) => s.id),
        },
      };
    }
    case schema.Node.CONST: {
      const type = readType(node.const.type);
      return { ...base, kind: "const", constant: { type, value: readValue(type, node.const.value) } };
    }
    case schema.Node.ANNOTATION:
      return { ...base, kind: "annotation" };
    default:
      return { ...base, kind: "unknown" };
  }
}

const PRIMITIVES: readonly (PrimitiveKind | "text" | "data")[] = [
  "void",
  "bool",
  "int8",
  "int16",
  "int32",
  "int64",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "float32",
  "float64",
  "text",
  "data",
];

function readType(t: schema.Type): TypeModel {
  const which = t.which();
  if (which < PRIMITIVES.length) return { kind: PRIMITIVES[which]! };
  switch (which) {
    case schema.Type.LIST:
      return { kind: "list", element: readType(t.list.elementType) };
    case schema.Type.ENUM:
      return { kind: "enum", id: t.enum.typeId };
    case schema.Type.STRUCT:
      return { kind: "struct", id: t.struct.typeId };
    case schema.Type.INTERFACE:
      return { kind: "interface", id: t.interface.typeId };
    case schema.Type.ANY_POINTER: {
      const a = t.anyPointer;
      // Generic parameters are treated as AnyPointer.
      const capability =
        a.which() === schema.Type_AnyPointer.UNCONSTRAINED &&
        a.unconstrained.which() === schema.Type_AnyPointer_Unconstrained.CAPABILITY;
      return { kind: "anyPointer", capability };
    }
    default:
      throw new Error(`capmesh codegen: unknown type kind ${which}`);
  }
}

const NONE: ValueModel = { kind: "none" };
const bits = new DataView(new ArrayBuffer(8));

function readValue(type: TypeModel, v: schema.Value): ValueModel {
  switch (type.kind) {
    case "void":
    case "interface":
      return NONE;
    case "bool":
      return v.bool ? { kind: "bool", value: true } : NONE;
    case "int8":
    case "int16":
    case "int32":
    case "uint8":
    case "uint16":
    case "uint32": {
      const value = v[type.kind];
      return value === 0 ? NONE : { kind: "number", value };
    }
    case "enum":
      return v.enum === 0 ? NONE : { kind: "number", value: v.enum };
    case "int64":
    case "uint64": {
      const value = v[type.kind];
      return value === 0n ? NONE : { kind: "bigint", value };
    }
    case "float32": {
      bits.setFloat32(0, v.float32, true);
      const b = bits.getUint32(0, true);
      return b === 0 ? NONE : { kind: "float32", value: v.float32, bits: b };
    }
    case "float64": {
      bits.setFloat64(0, v.float64, true);
      const lo = bits.getUint32(0, true);
      const hi = bits.getUint32(4, true);
      return lo === 0 && hi === 0 ? NONE : { kind: "float64", value: v.float64, lo, hi };
    }
    case "text": {
      if (utils.isNull(utils.getPointer(0, v))) return NONE;
      const value = v.text;
      return value === "" ? NONE : { kind: "text", value };
    }
    case "data": {
      if (utils.isNull(utils.getPointer(0, v))) return NONE;
      const value = new Uint8Array(v.data.toArrayBuffer());
      return value.length === 0 ? NONE : { kind: "data", value };
    }
    case "struct":
    case "list":
    case "anyPointer":
      return pointerValue(utils.getPointer(0, v));
  }
}

/** Copies a default value's pointer into a message of its own, as hex. */
function pointerValue(p: Pointer): ValueModel {
  if (utils.isNull(p)) return NONE;
  const message = new Message();
  const segment = message.getSegment(0);
  utils.copyFrom(p, new Pointer(segment, 0));
  const bytes = new Uint8Array(segment.buffer, 0, segment.byteLength);
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return { kind: "pointer", hex };
}

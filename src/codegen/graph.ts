// Whole-request facts shared by the code generator (generate.ts) and the
// run-time schema loader (dynamic.ts): the names generated code gives
// nodes, which param/result structs belong to which method, which struct
// fields are nullable (recursive types), and how each primitive and list
// element type maps onto the codec runtime's helpers. Keeping them in one
// place keeps loaded codecs identical to generated ones, error messages
// included.
import type { FieldModel, NodeModel, RequestModel, TypeModel } from "./model.js";
import { nestedName } from "./names.js";

/** `capnp/stream.capnp`'s StreamResult: the result type of `-> stream` methods. */
export const STREAM_RESULT_ID = 0x995f9a3377c0b16en;

export interface MethodOwner {
  readonly iface: bigint;
  readonly method: string;
  readonly role: "Params" | "Results";
}

/** Whole-request facts: names, which file a node belongs to, a stable order. */
export class SchemaGraph {
  readonly nodes: ReadonlyMap<bigint, NodeModel>;
  /** Param/result structs that capnp generated for a method (scope 0). */
  readonly methodOwners = new Map<bigint, MethodOwner>();
  /** Depth-first declaration order over all files. */
  readonly order = new Map<bigint, number>();
  readonly #names = new Map<bigint, string>();
  readonly #files = new Map<bigint, bigint>();

  constructor(readonly request: RequestModel) {
    this.nodes = request.nodes;
    for (const id of request.order) {
      const node = this.node(id);
      for (const m of node.iface?.methods ?? []) {
        for (const [struct, role] of [
          [m.params, "Params"],
          [m.results, "Results"],
        ] as const) {
          const target = this.nodes.get(struct);
          if (target !== undefined && target.scopeId === 0n && target.kind === "struct") {
            this.methodOwners.set(struct, { iface: id, method: m.name, role });
          }
        }
      }
    }
    for (const id of request.order) if (this.node(id).kind === "file") this.#visit(id);
    for (const id of request.order) this.#visit(id);
    this.#findRecursiveFields();
  }

  /**
   * Struct fields that decode as `T | null` rather than `T`. Decoding turns a
   * null struct pointer into a default-valued struct, which decodes its own
   * struct fields (and groups, and the union's first member) the same way:
   * for recursive types that never ends. So every struct field on a cycle of
   * such edges (both ends in one strongly connected component) is nullable,
   * which breaks every cycle.
   */
  readonly nullableFields = new Set<string>();

  #findRecursiveFields(): void {
    const edges = new Map<bigint, { to: bigint; field: string | null }[]>();
    for (const [id, node] of this.nodes) {
      const s = node.struct;
      if (s === undefined) continue;
      const out: { to: bigint; field: string | null }[] = [];
      for (const f of s.fields) {
        // Union members other than the first are never decoded from an empty struct.
        if (f.discriminant !== null && f.discriminant !== 0) continue;
        if (f.group !== undefined) out.push({ to: f.group, field: null });
        else if (f.slot!.type.kind === "struct") out.push({ to: f.slot!.type.id, field: fieldKey(id, f) });
      }
      edges.set(id, out);
    }
    // Tarjan's strongly connected components.
    const index = new Map<bigint, number>();
    const low = new Map<bigint, number>();
    const component = new Map<bigint, number>();
    const stack: bigint[] = [];
    const onStack = new Set<bigint>();
    let next = 0;
    let components = 0;
    const connect = (v: bigint): void => {
      index.set(v, next);
      low.set(v, next);
      next++;
      stack.push(v);
      onStack.add(v);
      for (const { to } of edges.get(v) ?? []) {
        if (!edges.has(to)) continue;
        if (!index.has(to)) {
          connect(to);
          low.set(v, Math.min(low.get(v)!, low.get(to)!));
        } else if (onStack.has(to)) {
          low.set(v, Math.min(low.get(v)!, index.get(to)!));
        }
      }
      if (low.get(v) === index.get(v)) {
        let w: bigint;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.set(w, components);
        } while (w !== v);
        components++;
      }
    };
    for (const id of edges.keys()) if (!index.has(id)) connect(id);
    for (const [from, out] of edges) {
      for (const { to, field } of out) {
        if (field !== null && component.get(from) === component.get(to)) this.nullableFields.add(field);
      }
    }
  }

  isNullable(struct: bigint, f: FieldModel): boolean {
    return this.nullableFields.has(fieldKey(struct, f));
  }

  #visit(id: bigint): void {
    if (this.order.has(id) || !this.nodes.has(id)) return;
    this.order.set(id, this.order.size);
    const node = this.node(id);
    for (const f of byCodeOrder(node.struct?.fields ?? [])) if (f.group !== undefined) this.#visit(f.group);
    for (const m of node.iface?.methods ?? []) {
      for (const s of [m.params, m.results]) if (this.methodOwners.get(s)?.iface === id) this.#visit(s);
    }
    for (const n of node.nested) this.#visit(n.id);
  }

  node(id: bigint): NodeModel {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`capmesh codegen: node 0x${id.toString(16)} missing from the request`);
    return node;
  }

  /** The TypeScript name of a struct, enum, interface or constant. */
  name(id: bigint): string {
    let name = this.#names.get(id);
    if (name === undefined) {
      const node = this.node(id);
      const owner = this.methodOwners.get(id);
      if (owner !== undefined) {
        name = `${this.name(owner.iface)}$${owner.method}$${owner.role}`;
      } else {
        name = nestedName(node.displayName.slice(node.displayName.indexOf(":") + 1));
        // Only top-level constants can be lower case; they must not be keywords.
        if (RESERVED_WORDS.has(name)) name = `${name}_`;
      }
      this.#names.set(id, name);
    }
    return name;
  }

  /** The schema-level name (e.g. `Outer.Inner`), for messages and InterfaceDef.name. */
  schemaName(id: bigint): string {
    const node = this.node(id);
    return node.displayName.slice(node.displayName.indexOf(":") + 1);
  }

  /** The file node a node is declared in. */
  fileOf(id: bigint): bigint {
    let file = this.#files.get(id);
    if (file === undefined) {
      const node = this.node(id);
      const owner = this.methodOwners.get(id);
      if (node.kind === "file") file = id;
      else if (owner !== undefined) file = this.fileOf(owner.iface);
      else if (node.scopeId === 0n) file = id;
      else file = this.fileOf(node.scopeId);
      this.#files.set(id, file);
    }
    return file;
  }

  /** Nodes a node's generated code refers to. */
  references(node: NodeModel): bigint[] {
    const refs: bigint[] = [];
    const type = (t: TypeModel): void => {
      if (t.kind === "list") type(t.element);
      else if (t.kind === "enum" || t.kind === "struct" || t.kind === "interface") refs.push(t.id);
    };
    for (const f of node.struct?.fields ?? []) {
      if (f.group !== undefined) refs.push(f.group);
      if (f.slot !== undefined) type(f.slot.type);
    }
    for (const m of node.iface?.methods ?? []) refs.push(m.params, m.results);
    refs.push(...(node.iface?.superclasses ?? []));
    if (node.constant !== undefined) type(node.constant.type);
    return refs;
  }
}

/**
 * Words that cannot name a `const`, and the globals generated code refers
 * to (a schema type named `Promise` would shadow the one in server types).
 */
const RESERVED_WORDS = new Set(
  (
    "break case catch class const continue debugger default delete do else enum export extends false finally for " +
    "function if import in instanceof new null return super switch this throw true try typeof var void while with " +
    "yield let static implements interface package private protected public await arguments eval undefined NaN Infinity " +
    "Promise Uint8Array Number Symbol ReturnType Array"
  ).split(" "),
);

export function fieldKey(struct: bigint, f: FieldModel): string {
  return `${struct.toString(16)}:${f.index}`;
}

export function byCodeOrder<T extends { readonly codeOrder: number }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => a.codeOrder - b.codeOrder);
}

/** How a primitive field is read/written: helper suffix and byte size. */
export const PRIMITIVE_ACCESS: Record<string, { readonly fn: string; readonly bytes: number; readonly ts: string }> = {
  int8: { fn: "Int8", bytes: 1, ts: "number" },
  int16: { fn: "Int16", bytes: 2, ts: "number" },
  int32: { fn: "Int32", bytes: 4, ts: "number" },
  int64: { fn: "Int64", bytes: 8, ts: "bigint" },
  uint8: { fn: "Uint8", bytes: 1, ts: "number" },
  uint16: { fn: "Uint16", bytes: 2, ts: "number" },
  uint32: { fn: "Uint32", bytes: 4, ts: "number" },
  uint64: { fn: "Uint64", bytes: 8, ts: "bigint" },
  float32: { fn: "Float32", bytes: 4, ts: "number" },
  float64: { fn: "Float64", bytes: 8, ts: "number" },
};

export const LIST_CONSTANTS: Record<string, string> = {
  void: "LIST_VOID",
  bool: "LIST_BOOL",
  int8: "LIST_INT8",
  int16: "LIST_INT16",
  int32: "LIST_INT32",
  int64: "LIST_INT64",
  uint8: "LIST_UINT8",
  uint16: "LIST_UINT16",
  uint32: "LIST_UINT32",
  uint64: "LIST_UINT64",
  float32: "LIST_FLOAT32",
  float64: "LIST_FLOAT64",
  text: "LIST_TEXT",
  data: "LIST_DATA",
};

// The schema code generator: CodeGeneratorRequest in, one TypeScript module
// per requested schema file out (or, for plain JavaScript, a .js module and
// its .d.ts: the same emitter, once leaving out the types and once keeping
// only them).
//
// Each module holds, in this order: constants and enums; for every struct
// (including groups and method param/result structs) a plain-object type and
// a `Foo$codec`; for every interface a client type, a server type and the
// `defineInterface` value; last, the list element descriptors. Codecs refer to
// one another only inside functions (and pipeline tables are built on first
// use), so declaration order never matters for structs; interface values come
// after every codec because they hold codecs directly, superclasses first.
import { posix } from "node:path";
import { readRequestFrom, type FieldModel, type MethodModel, type NodeModel, type RequestedFileModel, type TypeModel, type ValueModel } from "./model.js";
import { fieldName, jsdoc, methodName, stringLiteral } from "./names.js";
import { byCodeOrder, LIST_CONSTANTS, PRIMITIVE_ACCESS, SchemaGraph, STREAM_RESULT_ID } from "./graph.js";
import { neededNodes, nodesById, openRequest, writeNodes } from "./nodes.js";
import type { Node } from "capnp-es/capnp/schema";

export interface GenerateOptions {
  /**
   * Module specifier for `defineInterface` and the RPC types (Capability,
   * RpcPromise, ...). A relative specifier is relative to the output
   * directory (it is adjusted for modules in subdirectories).
   */
  runtimeImport: string;
  /** Module specifier for the codec helpers (src/codec/runtime.ts). Defaults to runtimeImport. */
  codecImport?: string;
  /** Directory the schema file names are relative to; only used in the header comment. */
  srcPrefix?: string;
  /** Emit `a/b.js` and `a/b.d.ts` per schema file instead of `a/b.ts`. */
  js?: boolean;
}

/** What one emitter pass writes: TypeScript, or JavaScript, or the declarations for that JavaScript. */
type Mode = "ts" | "js" | "dts";

/**
 * Generates one module per requested file, keyed by output path (`a/b.ts`
 * for `a/b.capnp`; with `js`, `a/b.js` and `a/b.d.ts`).
 */
export function generate(requestBytes: Uint8Array, options: GenerateOptions): Map<string, string> {
  const request = openRequest(requestBytes, { trusted: true });
  const schema = new SchemaGraph(readRequestFrom(request));
  const rawNodes = nodesById(request);
  const out = new Map<string, string>();
  for (const file of schema.request.files) {
    const base = modulePath(file.filename);
    const embedded = embeddedSchema(schema, rawNodes, file, options.srcPrefix);
    if (options.js) {
      out.set(`${base}.js`, new FileEmitter(schema, file, options, "js", embedded).emit());
      out.set(`${base}.d.ts`, new FileEmitter(schema, file, options, "dts", embedded).emit());
    } else {
      out.set(`${base}.ts`, new FileEmitter(schema, file, options, "ts", embedded).emit());
    }
  }
  return out;
}

/**
 * What a module embeds for tools with no generated code (loadSchema,
 * joinMesh's PluginInfo.schema): base64 of a packed CodeGeneratorRequest
 * holding the file's nodes and the nodes they need. Null for a file
 * without interfaces. It depends on the schemas alone, not on how capnp was
 * run: nodes in declaration order, this file's first, and schema files
 * named as in the header (relative to the working directory).
 */
function embeddedSchema(g: SchemaGraph, raw: ReadonlyMap<bigint, Node>, file: RequestedFileModel, srcPrefix: string | undefined): string | null {
  const needed = neededNodes(
    g,
    [...g.nodes.keys()].filter((id) => g.fileOf(id) === file.id),
  );
  if (![...needed].some((id) => g.node(id).kind === "interface")) return null;
  const fileKey = (id: bigint): string => {
    const f = g.fileOf(id);
    return f === file.id ? "" : `/${g.nodes.get(f)?.displayName ?? f.toString(16)}`;
  };
  const ordered = [...needed].sort((a, b) => {
    const fa = fileKey(a);
    const fb = fileKey(b);
    if (fa !== fb) return fa < fb ? -1 : 1;
    return g.order.get(a)! - g.order.get(b)!;
  });
  const paths = new Map(g.request.files.map((f) => [f.filename, schemaPath(f.filename, srcPrefix)]));
  return Buffer.from(writeNodes(ordered.map((id) => raw.get(id)!), true, paths)).toString("base64");
}

/** A schema file's path as generated code names it: below `srcPrefix`, unless absolute. */
function schemaPath(filename: string, srcPrefix: string | undefined): string {
  return srcPrefix && !filename.startsWith("/") ? posix.join(srcPrefix, filename) : filename;
}

/** A long string literal as a concatenation of lines, for readable generated code. */
function longStringLiteral(s: string, indent: string): string {
  const parts: string[] = [];
  for (let i = 0; i < s.length; i += 96) parts.push(stringLiteral(s.slice(i, i + 96)));
  return parts.join(` +\n${indent}`);
}

/** `a/b` for `a/b.capnp` (and a leading `/` dropped). */
function modulePath(schemaFile: string): string {
  return schemaFile.replace(/^\/+/, "").replace(/\.capnp$/, "");
}

export function outputPath(schemaFile: string): string {
  return `${modulePath(schemaFile)}.ts`;
}

// ---------------------------------------------------------------------------

function hex(id: bigint): string {
  return `0x${id.toString(16).padStart(16, "0")}n`;
}

function numberLiteral(x: number): string {
  if (Number.isNaN(x)) return "Number.NaN";
  if (x === Number.POSITIVE_INFINITY) return "Number.POSITIVE_INFINITY";
  if (x === Number.NEGATIVE_INFINITY) return "Number.NEGATIVE_INFINITY";
  if (Object.is(x, -0)) return "-0";
  return String(x);
}

function hex32(x: number): string {
  return `0x${(x >>> 0).toString(16).padStart(8, "0")}`;
}

function bytesLiteral(bytes: Uint8Array): string {
  return `new Uint8Array([${Array.from(bytes, (b) => `0x${b.toString(16).padStart(2, "0")}`).join(", ")}])`;
}

/**
 * The parameter list of a generated function whose body is `lines`: the
 * names from `names` up to the last one the body uses (read in argument
 * position), so that strict `noUnusedParameters` builds accept it.
 */
function params(lines: readonly string[], names: readonly string[]): string {
  // String literals (schema defaults, field names) could look like uses.
  const body = lines.join("\n").replace(/"(?:[^"\\]|\\.)*"/g, '""');
  let last = -1;
  names.forEach((n, i) => {
    if (new RegExp(`(?:\\(|, )${n}[,)]`).test(body)) last = i;
  });
  return names.slice(0, last + 1).join(", ");
}

type ImportKind = "value" | "type";

/** Generates one module. */
class FileEmitter {
  readonly #g: SchemaGraph;
  readonly #file: RequestedFileModel;
  readonly #options: GenerateOptions;
  /** Nodes whose declarations go into this module (own and vendored). */
  readonly #local = new Set<bigint>();
  /** module specifier → local name → kind */
  readonly #imports = new Map<string, Map<string, ImportKind>>();
  /** Runtime import name → identifier used in this module. */
  readonly #runtimeNames = new Map<string, string>();
  /** Top-level names this module declares or imports from generated modules. */
  readonly #taken = new Set<string>();
  readonly #defaults: string[] = [];
  readonly #lists = new Map<string, string>();
  readonly #listDecls: string[] = [];
  readonly #mode: Mode;
  /** See embeddedSchema. */
  readonly #embedded: string | null;

  constructor(g: SchemaGraph, file: RequestedFileModel, options: GenerateOptions, mode: Mode, embedded: string | null) {
    this.#g = g;
    this.#file = file;
    this.#options = options;
    this.#mode = mode;
    this.#embedded = embedded;
    this.#collectLocal();
  }

  /** Type arguments (`<T>`) in an expression: TypeScript only. */
  #targs(...types: string[]): string {
    return this.#mode === "ts" ? `<${types.join(", ")}>` : "";
  }

  // ---- what belongs here -------------------------------------------------

  #collectLocal(): void {
    const g = this.#g;
    const queue: bigint[] = [];
    const add = (id: bigint): void => {
      const node = g.nodes.get(id);
      if (node === undefined || this.#local.has(id)) return;
      if (node.kind === "file" || node.kind === "annotation" || node.kind === "unknown") return;
      this.#local.add(id);
      queue.push(id);
    };
    for (const [id] of g.nodes) if (g.fileOf(id) === this.#file.id) add(id);
    // Types from files we cannot import a generated module for (the capnp
    // distribution's /capnp/*.capnp, e.g. stream.capnp's StreamResult) are
    // emitted here too.
    while (queue.length > 0) {
      const node = g.node(queue.shift()!);
      for (const ref of g.references(node)) {
        if (!this.#local.has(ref) && this.#moduleFor(g.fileOf(ref)) === null) add(ref);
      }
    }
    for (const id of this.#local) {
      this.#taken.add(g.name(id));
      // Names imported from other generated modules are taken too.
      for (const ref of g.references(g.node(id))) if (!this.#local.has(ref)) this.#taken.add(g.name(ref));
    }
  }

  /** The module specifier of another schema file's generated code, or null to vendor its types. */
  #moduleFor(fileId: bigint): string | null {
    if (fileId === this.#file.id) return null;
    const importName = this.#file.imports.get(fileId);
    let target: string;
    if (importName !== undefined) {
      if (importName.startsWith("/")) return null;
      target = posix.join(posix.dirname(this.#file.filename), importName);
    } else {
      const requested = this.#g.request.files.find((f) => f.id === fileId);
      if (requested === undefined) return null;
      target = requested.filename;
    }
    let rel = posix.relative(posix.dirname(this.#file.filename), `${modulePath(target)}.js`);
    if (!rel.startsWith(".")) rel = `./${rel}`;
    return rel;
  }

  /**
   * Local nodes of the given kinds in declaration order: this file's first,
   * then copied ones by file name (independent of what else was requested).
   */
  #sortedLocal(...kinds: NodeModel["kind"][]): NodeModel[] {
    const g = this.#g;
    const fileKey = (n: NodeModel): string => {
      const file = g.fileOf(n.id);
      return file === this.#file.id ? "" : `/${g.nodes.get(file)?.displayName ?? file.toString(16)}`;
    };
    return [...this.#local]
      .map((id) => g.node(id))
      .filter((n) => kinds.includes(n.kind))
      .sort((a, b) => {
        const fa = fileKey(a);
        const fb = fileKey(b);
        if (fa !== fb) return fa < fb ? -1 : 1;
        return g.order.get(a.id)! - g.order.get(b.id)!;
      });
  }

  // ---- identifiers ---------------------------------------------------------

  #addImport(module: string, name: string, kind: ImportKind): void {
    // Declarations refer to values only in type positions (`typeof X`).
    if (this.#mode === "dts") kind = "type";
    let names = this.#imports.get(module);
    if (names === undefined) this.#imports.set(module, (names = new Map()));
    if (names.get(name) !== "value") names.set(name, kind);
  }

  /**
   * A runtime module specifier as seen from this module: relative ones are
   * given relative to the output directory, so modules in subdirectories
   * need them re-rooted.
   */
  #runtimeModule(spec: string): string {
    if (!spec.startsWith("./") && !spec.startsWith("../")) return spec;
    const dir = posix.dirname(modulePath(this.#file.filename));
    if (dir === ".") return spec;
    return posix.normalize("../".repeat(dir.split("/").length) + spec);
  }

  /** A helper from the codec runtime. */
  #rt(name: string, kind: ImportKind = "value"): string {
    return this.#runtimeName(this.#runtimeModule(this.#options.codecImport ?? this.#options.runtimeImport), name, kind);
  }

  /** A name from the RPC runtime. */
  #rpc(name: string, kind: ImportKind = "value"): string {
    return this.#runtimeName(this.#runtimeModule(this.#options.runtimeImport), name, kind);
  }

  #runtimeName(module: string, name: string, kind: ImportKind): string {
    const key = `${module}\0${name}`;
    let local = this.#runtimeNames.get(key);
    if (local === undefined) {
      // Schema names never start with `$`, so `$name` cannot clash.
      local = this.#taken.has(name) ? `$${name}` : name;
      this.#runtimeNames.set(key, local);
    }
    this.#addImport(module, local === name ? name : `${name} as ${local}`, kind);
    return local;
  }

  /**
   * The identifier for `id`'s declaration `suffix` ("" for the type, "$codec",
   * "Server"), importing it when it lives in another generated module.
   */
  #ref(id: bigint, suffix: "" | "$codec" | "Server", kind: ImportKind): string {
    const name = this.#g.name(id) + suffix;
    if (!this.#local.has(id)) {
      const module = this.#moduleFor(this.#g.fileOf(id));
      if (module === null) throw new Error(`capmesh codegen: cannot place ${this.#g.schemaName(id)}`);
      this.#addImport(module, name, kind);
    }
    return name;
  }

  #typeRef(id: bigint): string {
    return this.#ref(id, "", "type");
  }

  #valueRef(id: bigint): string {
    return this.#ref(id, "", "value");
  }

  // ---- types ---------------------------------------------------------------

  #tsType(t: TypeModel): string {
    switch (t.kind) {
      case "void":
        return "true";
      case "bool":
        return "boolean";
      case "text":
        return "string";
      case "data":
        return "Uint8Array";
      case "list": {
        const element = this.#tsType(t.element);
        return element.includes("|") ? `(${element})[]` : `${element}[]`;
      }
      case "enum":
      case "struct":
        return this.#typeRef(t.id);
      case "interface":
        return `${this.#typeRef(t.id)} | null`;
      case "anyPointer":
        return t.capability ? `${this.#rpc("Capability", "type")} | null` : `${this.#rt("AnyPointer", "type")} | null`;
      default:
        return PRIMITIVE_ACCESS[t.kind]!.ts;
    }
  }

  /** The ListType expression for elements of type `t`. */
  #listType(t: TypeModel): string {
    const constant = LIST_CONSTANTS[t.kind];
    if (constant !== undefined) return this.#rt(constant);
    if (t.kind === "anyPointer" && !t.capability) return this.#rt("LIST_ANY_POINTER");
    let key: string;
    let init: string;
    switch (t.kind) {
      case "struct":
        key = this.#typeKey(t);
        init = `${this.#rt("listOfStruct")}(${this.#ref(t.id, "$codec", "value")})`;
        break;
      case "enum":
        key = this.#typeKey(t);
        init = `${this.#rt("listOfEnum")}(${this.#valueRef(t.id)})`;
        break;
      case "interface":
        key = this.#typeKey(t);
        init = `${this.#rt("listOfCap")}${this.#targs(this.#typeRef(t.id))}(${this.#valueRef(t.id)})`;
        break;
      case "anyPointer":
        key = this.#typeKey(t);
        init = `${this.#rt("listOfCap")}${this.#targs(this.#rpc("Capability", "type"))}(null)`;
        break;
      case "list":
        key = `list_${this.#typeKey(t.element)}`;
        init = `${this.#rt("listOfList")}(${this.#listType(t.element)})`;
        break;
      default:
        throw new Error(`capmesh codegen: no list type for ${t.kind}`);
    }
    const name = `$list_${key}`;
    if (!this.#lists.has(name)) {
      this.#lists.set(name, init);
      this.#listDecls.push(`const ${name} = ${init};`);
    }
    return name;
  }

  /** A readable, unique-per-type fragment for list descriptor names. */
  #typeKey(t: TypeModel): string {
    switch (t.kind) {
      case "list":
        return `list_${this.#typeKey(t.element)}`;
      case "struct":
      case "enum":
      case "interface":
        return this.#g.name(t.id);
      case "anyPointer":
        return t.capability ? "Capability" : "AnyPointer";
      default:
        return t.kind[0]!.toUpperCase() + t.kind.slice(1);
    }
  }

  #pointerDefault(value: ValueModel): string | null {
    if (value.kind === "pointer") {
      const name = `$default${this.#defaults.length}`;
      this.#defaults.push(`const ${name} = ${this.#rt("defaultValue")}(${stringLiteral(value.hex)});`);
      return name;
    }
    if (value.kind === "data") {
      const name = `$default${this.#defaults.length}`;
      this.#defaults.push(`const ${name} = ${bytesLiteral(value.value)};`);
      return name;
    }
    return null;
  }

  // ---- field access code -----------------------------------------------------

  /** Expression reading slot field `f` from view `v`. */
  #readExpr(struct: bigint, f: FieldModel): string {
    const { offset, type: t, defaultValue: d } = f.slot!;
    const args = (...xs: (string | null)[]): string => xs.filter((x) => x !== null).join(", ");
    switch (t.kind) {
      case "void":
        return "true";
      case "bool":
        return `${this.#rt("readBool")}(${args("v", String(offset), d.kind === "bool" ? "true" : null)})`;
      case "enum":
        return `${this.#rt("readEnum")}(${args("v", String(offset * 2), this.#valueRef(t.id), d.kind === "number" ? String(d.value) : null)})`;
      case "float32":
        return `${this.#rt("readFloat32")}(${args("v", String(offset * 4), d.kind === "float32" ? hex32(d.bits) : null)})`;
      case "float64":
        return `${this.#rt("readFloat64")}(${args("v", String(offset * 8), ...(d.kind === "float64" ? [hex32(d.lo), hex32(d.hi)] : []))})`;
      case "text":
        return `${this.#rt("readText")}(${args("v", String(offset), d.kind === "text" ? stringLiteral(d.value) : null)})`;
      case "data":
        return `${this.#rt("readData")}(${args("v", String(offset), this.#pointerDefault(d))})`;
      case "struct": {
        const fn = this.#g.isNullable(struct, f) ? "readStructFieldOrNull" : "readStructField";
        return `${this.#rt(fn)}(${args("v", String(offset), this.#ref(t.id, "$codec", "value"), "caps", this.#pointerDefault(d))})`;
      }
      case "list":
        return `${this.#rt("readList")}(${args("v", String(offset), this.#listType(t.element), "caps", this.#pointerDefault(d))})`;
      case "interface":
        return `${this.#rt("readCap")}${this.#targs(this.#typeRef(t.id))}(v, ${offset}, ${this.#valueRef(t.id)}, caps)`;
      case "anyPointer":
        if (t.capability) return `${this.#rt("readCap")}${this.#targs(this.#rpc("Capability", "type"))}(v, ${offset}, null, caps)`;
        return `${this.#rt("readAnyPointer")}(v, ${offset})`;
      default: {
        const p = PRIMITIVE_ACCESS[t.kind]!;
        const def = d.kind === "number" ? String(d.value) : d.kind === "bigint" ? `${d.value}n` : null;
        return `${this.#rt(`read${p.fn}`)}(${args("v", String(offset * p.bytes), def)})`;
      }
    }
  }

  /** Statement writing slot field `f` (value expression `x`) into view `v`, or null for Void. */
  #writeStmt(f: FieldModel, x: string): string | null {
    const { offset, type: t, defaultValue: d } = f.slot!;
    const args = (...xs: (string | null)[]): string => xs.filter((a) => a !== null).join(", ");
    switch (t.kind) {
      case "void":
        return null;
      case "bool":
        return `${this.#rt("writeBool")}(${args("v", String(offset), x, d.kind === "bool" ? "true" : null)});`;
      case "enum":
        return `${this.#rt("writeEnum")}(${args("v", String(offset * 2), this.#valueRef(t.id), x, d.kind === "number" ? String(d.value) : null)});`;
      case "float32":
        return `${this.#rt("writeFloat32")}(${args("v", String(offset * 4), x, d.kind === "float32" ? hex32(d.bits) : null)});`;
      case "float64":
        return `${this.#rt("writeFloat64")}(${args("v", String(offset * 8), x, ...(d.kind === "float64" ? [hex32(d.lo), hex32(d.hi)] : []))});`;
      case "text":
        return `${this.#rt("writeText")}(v, ${offset}, ${x});`;
      case "data":
        return `${this.#rt("writeData")}(v, ${offset}, ${x});`;
      case "struct":
        return `${this.#rt("writeStructField")}(v, ${offset}, ${this.#ref(t.id, "$codec", "value")}, ${x}, caps);`;
      case "list":
        return `${this.#rt("writeList")}(v, ${offset}, ${this.#listType(t.element)}, ${x}, caps);`;
      case "interface":
        return `${this.#rt("writeCap")}(v, ${offset}, ${this.#valueRef(t.id)}, ${x}, caps);`;
      case "anyPointer":
        if (t.capability) return `${this.#rt("writeCap")}(v, ${offset}, null, ${x}, caps);`;
        return `${this.#rt("writeAnyPointer")}(v, ${offset}, ${x});`;
      default: {
        const p = PRIMITIVE_ACCESS[t.kind]!;
        const def = d.kind === "number" ? String(d.value) : d.kind === "bigint" ? `${d.value}n` : null;
        return `${this.#rt(`write${p.fn}`)}(${args("v", String(offset * p.bytes), x, def)});`;
      }
    }
  }

  #fieldType(struct: bigint, f: FieldModel): string {
    if (f.group !== undefined) return this.#typeRef(f.group);
    const type = this.#tsType(f.slot!.type);
    return this.#g.isNullable(struct, f) ? `${type} | null` : type;
  }

  #fieldRead(struct: bigint, f: FieldModel): string {
    return f.group !== undefined ? `${this.#ref(f.group, "$codec", "value")}.read(v, caps)` : this.#readExpr(struct, f);
  }

  #fieldWrite(f: FieldModel, x: string): string | null {
    return f.group !== undefined ? `${this.#ref(f.group, "$codec", "value")}.write(${x}, v, caps);` : this.#writeStmt(f, x);
  }

  // ---- declarations ----------------------------------------------------------

  /** A node's doc comment; for types copied from another schema file, where they come from. */
  #doc(node: NodeModel): string[] {
    const file = this.#g.fileOf(node.id);
    if (file === this.#file.id) return jsdoc(node.doc, "");
    const fileName = this.#g.nodes.get(file)?.displayName ?? "another schema file";
    return jsdoc(`\`${this.#g.schemaName(node.id)}\` from ${fileName} (copied here: no module is generated for it).`, "");
  }

  #emitConst(node: NodeModel, out: string[]): void {
    const name = this.#g.name(node.id);
    const { type, value } = node.constant!;
    let literal: string | null = null;
    /** Its type in declarations: the literal's own type where one can be written. */
    let declared = "";
    switch (type.kind) {
      case "bool":
        literal = String(value.kind === "bool" && value.value);
        declared = literal;
        break;
      case "int8":
      case "int16":
      case "int32":
      case "uint8":
      case "uint16":
      case "uint32":
        literal = String(value.kind === "number" ? value.value : 0);
        declared = literal;
        break;
      case "int64":
      case "uint64":
        literal = `${value.kind === "bigint" ? value.value : 0n}n`;
        declared = literal;
        break;
      case "float32":
      case "float64": {
        const x = value.kind === "float32" || value.kind === "float64" ? value.value : 0;
        literal = numberLiteral(x);
        declared = Number.isFinite(x) && !Object.is(x, -0) ? literal : "number";
        break;
      }
      case "text":
        literal = stringLiteral(value.kind === "text" ? value.value : "");
        declared = literal;
        break;
      case "data":
        literal = value.kind === "data" ? bytesLiteral(value.value) : "new Uint8Array(0)";
        declared = "Uint8Array";
        break;
      case "enum": {
        const e = this.#g.node(type.id);
        const ordinal = value.kind === "number" ? value.value : 0;
        const enumerant = e.enumerants?.[ordinal]?.name;
        literal = enumerant !== undefined ? stringLiteral(enumerant) : String(ordinal);
        declared = this.#mode === "js" ? "" : this.#typeRef(type.id);
        break;
      }
    }
    out.push(...jsdoc(node.doc, ""));
    if (literal === null) {
      out.push(`// ${this.#g.schemaName(node.id)}: ${type.kind} constants are not generated.`, "");
      return;
    }
    if (this.#mode === "dts") out.push(`export declare const ${name}: ${declared};`, "");
    else if (this.#mode === "ts" && type.kind === "enum") out.push(`export const ${name}: ${declared} = ${literal};`, "");
    else out.push(`export const ${name} = ${literal};`, "");
  }

  #emitEnum(node: NodeModel, out: string[]): void {
    const name = this.#g.name(node.id);
    const names = node.enumerants!.map((e) => e.name);
    out.push(...this.#doc(node));
    if (this.#mode !== "js") out.push(`export type ${name} = ${[...names.map(stringLiteral), "number"].join(" | ")};`);
    if (this.#mode === "dts") {
      const union = names.length === 0 ? "never" : names.map(stringLiteral).join(" | ");
      out.push(`export declare const ${name}: ${this.#rt("EnumDef", "type")}<${union}>;`, "");
      return;
    }
    const docs = node.enumerants!.some((e) => e.doc.trim() !== "");
    if (!docs) {
      out.push(`export const ${name} = ${this.#rt("defineEnum")}(${stringLiteral(this.#g.schemaName(node.id))}, [${names.map(stringLiteral).join(", ")}]);`);
    } else {
      out.push(`export const ${name} = ${this.#rt("defineEnum")}(${stringLiteral(this.#g.schemaName(node.id))}, [`);
      for (const e of node.enumerants!) {
        out.push(...jsdoc(e.doc, "  "), `  ${stringLiteral(e.name)},`);
      }
      out.push("]);");
    }
    out.push("");
  }

  #emitStruct(node: NodeModel, out: string[]): void {
    const s = node.struct!;
    const name = this.#g.name(node.id);
    const hasUnion = s.discriminantCount > 0;
    const fields = byCodeOrder(s.fields).map((f) => ({ f, key: fieldName(f.name, hasUnion) }));
    const common = fields.filter(({ f }) => f.discriminant === null);
    const members = fields.filter(({ f }) => f.discriminant !== null);

    // The plain-object type.
    if (this.#mode !== "js") {
      const owner = this.#g.methodOwners.get(node.id);
      if (owner !== undefined) {
        out.push(`/** ${owner.role === "Params" ? "Parameters" : "Results"} of \`${this.#g.schemaName(owner.iface)}.${owner.method}\`. */`);
      } else {
        out.push(...this.#doc(node));
      }
      const commonBody = common.flatMap(({ f, key }) => [...jsdoc(f.doc, "  "), `  ${key}: ${this.#fieldType(node.id, f)};`]);
      const unionBody = members.map(({ f, key }) => {
        const doc = jsdoc(f.doc, "      ");
        const which = `which: ${stringLiteral(f.name)}`;
        if (doc.length === 0) return `  | { ${which}; ${key}: ${this.#fieldType(node.id, f)} }`;
        return [`  | {`, `      ${which};`, ...doc, `      ${key}: ${this.#fieldType(node.id, f)};`, `    }`].join("\n");
      });
      if (!hasUnion) {
        // Not Record<never, never>: a schema type may be called Record.
        out.push(common.length === 0 ? `export type ${name} = { [K in never]: never };` : `export type ${name} = {`);
        if (common.length > 0) out.push(...commonBody, "};");
      } else if (common.length === 0) {
        out.push(`export type ${name} =`, ...unionBody.slice(0, -1), `${unionBody.at(-1)};`);
      } else {
        out.push(`export type ${name} = {`, ...commonBody, "} & (", ...unionBody, ");");
      }
      out.push("");
    }

    // The codec.
    if (this.#mode === "dts") {
      out.push(`export declare const ${name}$codec: ${this.#rt("Codec", "type")}<${name}>;`, "");
      return;
    }
    const codec = `${name}$codec`;
    // The annotation keeps TypeScript from inferring through self-references.
    const annotation = this.#mode === "ts" ? `: ${this.#rt("Codec", "type")}<${name}>` : "";
    out.push(`export const ${codec}${annotation} = ${this.#rt("defineStruct")}${this.#targs(name)}({`);
    out.push(`  name: ${stringLiteral(name)},`);
    out.push(`  dataWords: ${s.dataWords},`);
    out.push(`  pointers: ${s.pointers},`);
    const keys = [...common.map(({ key }) => key), ...(hasUnion ? ["which"] : []), ...members.map(({ key }) => key)];
    out.push(`  fields: [${keys.map(stringLiteral).join(", ")}],`);

    // read
    const read: string[] = [];
    if (fields.length === 0) {
      read.push("    return {};");
    } else if (!hasUnion) {
      read.push("    return {");
      for (const { f, key } of common) read.push(`      ${key}: ${this.#fieldRead(node.id, f)},`);
      read.push("    };");
    } else {
      const tagOffset = s.discriminantOffset * 2;
      for (const { f, key } of common) read.push(`    const $${key} = ${this.#fieldRead(node.id, f)};`);
      const prefix = common.map(({ key }) => `${key}: $${key}, `).join("");
      read.push(`    const $which = ${this.#rt("readUint16")}(v, ${tagOffset});`);
      read.push("    switch ($which) {");
      for (const { f, key } of members) {
        read.push(`      case ${f.discriminant}:`);
        read.push(`        return { ${prefix}which: ${stringLiteral(f.name)}, ${key}: ${this.#fieldRead(node.id, f)} };`);
      }
      read.push("      default:");
      read.push(`        // A member this schema does not know: \`which\` is its number.`);
      const cast = this.#mode === "ts" ? ` as unknown as ${name}` : "";
      read.push(`        return { ${prefix}which: $which }${cast};`);
      read.push("    }");
    }
    out.push(`  read(${params(read, ["v", "caps"])}) {`, ...read, "  },");

    // write: each field it knows is checked as it is stored (see
    // src/codec/check.ts); `$f` names the field being stored for the error
    // path, `$n` counts the fields present, to compare with the keys of `x`.
    const body: string[] = [];
    let stores = hasUnion;
    const fieldWrite = (f: FieldModel, key: string, indent: string): string => {
      const stmt = this.#fieldWrite(f, `x.${key}`);
      if (stmt === null) return `${indent}if (x.${key} != null) $n++;`;
      stores = true;
      return `${indent}if (x.${key} != null) { $f = ${stringLiteral(key)}; $n++; ${stmt} }`;
    };
    for (const { f, key } of common) body.push(fieldWrite(f, key, ""));
    if (hasUnion) {
      const tagOffset = s.discriminantOffset * 2;
      const writeTag = this.#rt("writeUint16");
      body.push("let which = x.which;");
      body.push("if (which != null) $n++;");
      for (const { f, key } of members) body.push(`else if (x.${key} !== undefined) which = ${stringLiteral(f.name)};`);
      body.push(`$f = "which";`);
      body.push("switch (which) {");
      for (const { f, key } of members) {
        body.push(`  case ${stringLiteral(f.name)}:`);
        body.push(`    ${writeTag}(v, ${tagOffset}, ${f.discriminant});`);
        body.push(fieldWrite(f, key, "    "));
        body.push("    break;");
      }
      body.push("  case null:", "  case undefined:", "    break;");
      body.push("  default:");
      body.push(`    if (typeof which !== "number") throw ${this.#rt("badUnionMember")}(${stringLiteral(name)}, which);`);
      body.push(`    ${writeTag}(v, ${tagOffset}, which);`);
      body.push("}");
    }
    const write: string[] = fields.length === 0 ? [] : ["    let $n = 0;"];
    if (stores) {
      write.push(`    let $f = "";`, "    try {", ...body.map((l) => `      ${l}`), "    } catch (e) {");
      write.push(`      throw ${this.#rt("fieldError")}(e, $f);`, "    }");
    } else {
      write.push(...body.map((l) => `    ${l}`));
    }
    // Any other key is a field the schema does not have. Counting keys here
    // (for-in allocates nothing; a call would not be inlined) keeps the
    // happy path cheap; checkFields finds which key it is, or that all is
    // well after all (a null-valued field also has a key).
    const present = fields.length === 0 ? "0" : "$n";
    write.push("    let $k = 0;", "    for (const _ in x) $k++;");
    write.push(`    if ($k !== ${present} || typeof x !== "object" || Array.isArray(x)) ${this.#rt("checkFields")}(x, ${present}, ${codec});`);
    out.push(`  write(${params(write, ["x", "v", "caps"])}) {`, ...write, "  },");

    // pipeline
    const pipeline: string[] = [];
    for (const { f, key } of fields) {
      if (f.group !== undefined) {
        pipeline.push(`    ${key}: { kind: "group", codec: ${this.#ref(f.group, "$codec", "value")} },`);
        continue;
      }
      const t = f.slot!.type;
      if (t.kind === "struct") {
        pipeline.push(`    ${key}: { kind: "struct", pointer: ${f.slot!.offset}, codec: ${this.#ref(t.id, "$codec", "value")} },`);
      } else if (t.kind === "interface") {
        pipeline.push(`    ${key}: { kind: "interface", pointer: ${f.slot!.offset}, iface: ${this.#valueRef(t.id)} },`);
      } else if (t.kind === "anyPointer" && t.capability) {
        pipeline.push(`    ${key}: { kind: "interface", pointer: ${f.slot!.offset}, iface: null },`);
      }
    }
    if (pipeline.length > 0) out.push("  pipeline: () => ({", ...pipeline, "  }),");
    out.push("});", "");
  }

  #isStream(m: MethodModel): boolean {
    return m.results === STREAM_RESULT_ID;
  }

  #emitInterfaceTypes(node: NodeModel, out: string[]): void {
    const name = this.#g.name(node.id);
    const { methods, superclasses } = node.iface!;
    const init = this.#rt("Init", "type");
    const supers = superclasses.map((id) => this.#typeRef(id));
    const serverSupers = superclasses.map((id) => this.#ref(id, "Server", "type"));

    out.push(...this.#doc(node));
    const clientBase = supers.length > 0 ? supers.join(", ") : this.#rpc("Capability", "type");
    out.push(`export interface ${name} extends ${clientBase} {`);
    for (const m of byCodeOrder(methods)) {
      const params = this.#typeRef(m.params);
      const opts = this.#rpc("CallOptions", "type");
      out.push(...jsdoc(m.doc, "  "));
      if (this.#isStream(m)) {
        out.push(`  ${methodName(m.name)}(params?: ${init}<${params}>, opts?: ${opts}): Promise<void>;`);
      } else {
        const results = this.#typeRef(m.results);
        out.push(`  ${methodName(m.name)}(params?: ${init}<${params}>, opts?: ${opts}): ${this.#rpc("RpcPromise", "type")}<${results}>;`);
      }
    }
    out.push("}", "");

    out.push(`/** What a server of \`${this.#g.schemaName(node.id)}\` implements. */`);
    out.push(`export interface ${name}Server${serverSupers.length > 0 ? ` extends ${serverSupers.join(", ")}` : ""} {`);
    for (const m of byCodeOrder(methods)) {
      const params = this.#typeRef(m.params);
      const ctx = this.#rpc("CallContext", "type");
      const resultNode = this.#g.node(m.results);
      let ret: string;
      if (this.#isStream(m)) {
        ret = "void | Promise<void>";
      } else {
        if ((resultNode.struct?.fields.length ?? 0) === 0) {
          // Empty results: whatever the implementation returns is ignored
          // (`(p) => log.push(p)`), except a tail call, which still forwards.
          ret = "unknown";
        } else {
          // A method may answer with another call's results: `return ctx.tailCall(...)`.
          const tail = this.#rpc("TailCall", "type");
          const results = `${init}<${this.#typeRef(m.results)}>`;
          ret = `${results} | ${tail} | Promise<${results} | ${tail}>`;
        }
      }
      out.push(...jsdoc(m.doc, "  "));
      out.push(`  ${methodName(m.name)}(params: ${params}, ctx: ${ctx}): ${ret};`);
    }
    if (superclasses.length === 0) {
      out.push("  /** Called once the last reference to this server is released. */", "  [Symbol.dispose]?(): void;");
    }
    out.push("}", "");
  }

  #emitInterfaceDef(node: NodeModel, out: string[]): void {
    const name = this.#g.name(node.id);
    const { methods, superclasses } = node.iface!;
    if (this.#mode === "dts") {
      // Whatever the runtime's defineInterface makes of these two types.
      const define = this.#rpc("defineInterface", "type");
      out.push(`export declare const ${name}: ReturnType<typeof ${define}<${name}, ${name}Server>>;`, "");
      return;
    }
    out.push(
      `export const ${name} = ${this.#rpc("defineInterface")}${this.#targs(name, `${name}Server`)}({`,
      `  name: ${stringLiteral(this.#g.schemaName(node.id))},`,
      `  id: ${hex(node.id)},`,
    );
    if (methods.length === 0) {
      out.push("  methods: [],");
    } else {
      out.push("  methods: [");
      for (const m of methods) {
        const params = this.#ref(m.params, "$codec", "value");
        const results = this.#ref(m.results, "$codec", "value");
        out.push(
          `    { name: ${stringLiteral(m.name)}, ordinal: ${m.ordinal}, params: ${params}, results: ${results}, stream: ${this.#isStream(m)} },`,
        );
      }
      out.push("  ],");
    }
    out.push(`  superclasses: [${superclasses.map((id) => this.#valueRef(id)).join(", ")}],`);
    if (this.#embedded !== null) out.push("  schema: $schema,");
    out.push("});", "");
  }

  /** Interfaces ordered so that local superclasses come first. */
  #interfaceOrder(): NodeModel[] {
    const all = this.#sortedLocal("interface");
    const done = new Set<bigint>();
    const ordered: NodeModel[] = [];
    const visit = (n: NodeModel): void => {
      if (done.has(n.id)) return;
      done.add(n.id);
      for (const s of n.iface!.superclasses) if (this.#local.has(s)) visit(this.#g.node(s));
      ordered.push(n);
    };
    all.forEach(visit);
    return ordered;
  }

  // ---- the module --------------------------------------------------------------

  emit(): string {
    const body: string[] = [];
    for (const n of this.#sortedLocal("const")) this.#emitConst(n, body);
    for (const n of this.#sortedLocal("enum")) this.#emitEnum(n, body);

    const structs: string[] = [];
    for (const n of this.#sortedLocal("struct", "interface")) {
      if (n.kind === "struct") this.#emitStruct(n, structs);
      else if (this.#mode !== "js") this.#emitInterfaceTypes(n, structs);
    }

    const interfaces: string[] = [];
    const ifaceNodes = this.#interfaceOrder();
    if (this.#embedded !== null && this.#mode !== "dts" && ifaceNodes.length > 0) {
      // Schema names never start with `$`: this cannot clash.
      interfaces.push(
        "// This file's compiled schema for tools with no generated code (loadSchema, the mesh's",
        "// PluginInfo.schema): base64 of a packed CodeGeneratorRequest.",
        `const $schema =\n  ${longStringLiteral(this.#embedded, "  ")};`,
        "",
      );
    }
    for (const n of ifaceNodes) this.#emitInterfaceDef(n, interfaces);

    const lines: string[] = [`// Generated by capmesh from ${schemaPath(this.#file.filename, this.#options.srcPrefix)} — do not edit.`];
    const fileDoc = this.#g.nodes.get(this.#file.id)?.doc ?? "";
    if (fileDoc.trim() !== "") lines.push("//", ...fileDoc.trim().split("\n").map((l) => (l === "" ? "//" : `// ${l}`)));
    lines.push("");
    lines.push(...this.#importLines(), "");
    if (this.#defaults.length > 0) lines.push("// Schema defaults of pointer fields.", ...this.#defaults, "");
    lines.push(...body, ...structs, ...interfaces);
    if (this.#listDecls.length > 0) lines.push("// List element types.", ...this.#listDecls, "");
    while (lines.at(-1) === "") lines.pop();
    return lines.join("\n") + "\n";
  }

  #importLines(): string[] {
    const runtime = this.#runtimeModule(this.#options.runtimeImport);
    const codec = this.#runtimeModule(this.#options.codecImport ?? this.#options.runtimeImport);
    const rank = (m: string): number => (m === runtime ? 1 : m === codec ? 2 : 3);
    const modules = [...this.#imports.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    const lines: string[] = [];
    const sortKey = (s: string): string => s.replace(/^\$/, "").toLowerCase();
    for (const module of modules) {
      const names = this.#imports.get(module)!;
      // JavaScript has no type imports.
      for (const kind of this.#mode === "js" ? (["value"] as const) : (["value", "type"] as const)) {
        const list = [...names].filter(([, k]) => k === kind).map(([n]) => n);
        if (list.length === 0) continue;
        list.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : a < b ? -1 : 1));
        const keyword = kind === "type" ? "import type" : "import";
        const one = `${keyword} { ${list.join(", ")} } from ${stringLiteral(module)};`;
        if (one.length <= 100) lines.push(one);
        else lines.push(`${keyword} {`, ...list.map((n) => `  ${n},`), `} from ${stringLiteral(module)};`);
      }
    }
    return lines;
  }
}

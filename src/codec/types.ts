// The contract between generated schema code and the RPC runtime.
//
// Generated code (src/codegen emits it into src/gen/) describes every struct
// with a StructCodec and every interface with an InterfaceDef. The runtime
// never looks at .capnp schemas: it only calls these.
import type { ObjectSize, Struct } from "capnp-es";

/** Collects the capabilities written into a message being built. */
export interface CapTableWriter {
  /**
   * Adds a capability to the message's cap table and returns its index, to be
   * written into an interface pointer. `value` is whatever the user put in the
   * field: a client proxy, or a plain server object implementing `iface`
   * (passed by reference, like a JS function). Returns -1 for null/undefined,
   * meaning: leave the pointer null.
   */
  add(value: unknown, iface: InterfaceDef | null): number;
}

/** Gives out the capabilities of a message being read. */
export interface CapTableReader {
  /**
   * A typed client for cap-table entry `index`, holding its own reference
   * (the caller of decode owns it). null when the index is out of range is an
   * error in the message: implementations throw.
   */
  get(index: number, iface: InterfaceDef | null): unknown;
}

/** Where a pointer field of a struct leads, for promise pipelining. */
export type PipelineField =
  | { kind: "struct"; pointer: number; codec: StructCodec<any> }
  | { kind: "group"; codec: StructCodec<any> }
  | { kind: "interface"; pointer: number; iface: InterfaceDef | null };

export interface StructCodec<T> {
  readonly name: string;
  readonly size: ObjectSize;
  /** Writes `value` into `s`, which was allocated with `size`. */
  encode(value: T, s: Struct, caps: CapTableWriter): void;
  /** Reads a plain object out of `s`. */
  decode(s: Struct, caps: CapTableReader): T;
  /** Pointer fields that promise pipelining can traverse, by field name. */
  readonly pipeline: Readonly<Record<string, PipelineField>>;
}

export interface MethodDef {
  readonly name: string;
  readonly ordinal: number;
  readonly params: StructCodec<any>;
  readonly results: StructCodec<any>;
  /** Declared `-> stream`: results are empty and calls are flow-controlled. */
  readonly stream: boolean;
}

export interface InterfaceDef {
  readonly name: string;
  readonly id: bigint;
  readonly methods: readonly MethodDef[];
  /** Direct superclasses: a server of this interface also answers theirs. */
  readonly superclasses: readonly InterfaceDef[];
  /**
   * The compiled schema this interface comes from, for tools with no
   * generated code: base64 of a packed CodeGeneratorRequest holding its
   * file's nodes and the nodes they need (`loadSchema` reads it; joinMesh
   * publishes it as PluginInfo.schema). Generated code always sets it.
   */
  readonly schema?: string;
}

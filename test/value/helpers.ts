// Shared helpers for the value tests.
import type { CapTableReader, CapTableWriter } from "../../src/codec/types.js";
import { readMessage, writeMessage } from "../../src/codec/runtime.js";
import { Value$codec } from "../../src/gen/value.js";
import { fromValue, toValue, type FromValueOptions, type PlainValue } from "../../src/value/index.js";
import {
  checkFields,
  defineInterface,
  defineStruct,
  fieldError,
  readStructField,
  writeStructField,
  type CallContext,
  type Capability,
  type Codec,
  type Init,
  type RpcPromise,
  type Value,
} from "../../src/index.js";

/** A cap table that hands back exactly the objects written into it, so capabilities can round-trip without RPC. */
export class PassCaps implements CapTableWriter, CapTableReader {
  readonly table: unknown[] = [];
  add(value: unknown): number {
    if (value == null) return -1;
    this.table.push(value);
    return this.table.length - 1;
  }
  get(index: number): unknown {
    if (index >= this.table.length) throw new Error(`no capability ${index}`);
    return this.table[index];
  }
}

/** toValue → a real message (bytes) → decoded by the generated codec → fromValue. */
export function roundTrip(x: unknown, options?: FromValueOptions, caps = new PassCaps()): PlainValue {
  const bytes = new Uint8Array(writeMessage(Value$codec, toValue(x), caps).toArrayBuffer());
  return fromValue(readMessage(Value$codec, bytes, caps), options);
}

/** n nested arrays around `inner`: nest(2, 1) is [[1]]. */
export function nest(n: number, inner: unknown = null): unknown {
  let x = inner;
  for (let i = 0; i < n; i++) x = [x];
  return x;
}

/** The path of the innermost of n nested arrays' contents: value[0][0]... */
export function indexPath(n: number): string {
  return "value" + "[0]".repeat(n);
}

// The codecs and interface generated code would produce for
//   interface Transformer { transform @0 (value :Value) -> (value :Value); }
// (written out here because the generator's jobs map one schema directory to
// one output directory, and a test schema importing schema/value.capnp would
// need the generated import to point into src/gen/).
type Holder = { value: Value };
const Holder$codec: Codec<Holder> = defineStruct<Holder>({
  name: "Transformer$Holder",
  dataWords: 0,
  pointers: 1,
  fields: ["value"],
  read(v, caps) {
    return { value: readStructField(v, 0, Value$codec, caps) };
  },
  write(x, v, caps) {
    let n = 0;
    try {
      if (x.value != null) {
        n++;
        writeStructField(v, 0, Value$codec, x.value, caps);
      }
    } catch (e) {
      throw fieldError(e, "value");
    }
    let k = 0;
    for (const _ in x) k++;
    if (k !== n) checkFields(x, n, Holder$codec);
  },
});

export interface Transformer extends Capability {
  transform(params: Init<Holder>): RpcPromise<Holder>;
}
export interface TransformerServer {
  transform(params: Holder, ctx: CallContext): Promise<Init<Holder>> | Init<Holder>;
}
export const Transformer = defineInterface<Transformer, TransformerServer>({
  name: "Transformer",
  id: 0xb6f1c0d2e3a4f501n,
  methods: [{ name: "transform", ordinal: 0, params: Holder$codec, results: Holder$codec, stream: false }],
  superclasses: [],
});

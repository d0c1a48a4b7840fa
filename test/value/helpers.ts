// Shared helpers for the value tests.
import type { CapTableReader, CapTableWriter } from "../../src/codec/types.js";
import { readMessage, writeMessage } from "../../src/codec/runtime.js";
import { Value$codec } from "../../src/gen/value.js";
import { fromValue, toValue, type FromValueOptions, type PlainValue } from "../../src/value/index.js";

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

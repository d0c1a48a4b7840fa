// A stream inside a value (schema/value.capnp Value.stream): its capability
// and its kind, for when the caller chooses them itself.
//
// toValue serves an async iterable, a Web ReadableStream or a Node Readable
// found anywhere in a value as a stream of its own (src/stream/stream-value.ts
// says which kind), and fromValue gives back a reader (a StreamReader). A
// StreamValue is the explicit form: byteStreamValue/valueStreamValue make
// one from an input, or wrap a ByteSource/ValueSource already held.
import type { Capability } from "../rpc/types.js";

export type StreamValueKind = "bytes" | "values";

export class StreamValue {
  constructor(
    /** Whether the capability streams bytes or values. */
    readonly kind: StreamValueKind,
    /** The stream's capability (owned like any other client in a value). */
    readonly capability: Capability,
  ) {}

  get [Symbol.toStringTag](): string {
    return `StreamValue ${this.kind}`;
  }
}

/**
 * Stream capabilities made for a value (by toValue, or byteStreamValue and
 * valueStreamValue): nobody else holds them, so whoever sends the value in
 * params releases them once sent, as it does closures made from functions.
 */
export const madeForValue = new WeakSet<object>();

// A stream inside a value (schema/value.capnp Value.stream), for now only
// the capability and its kind.
//
// Placeholder until the streams work (issue 13, point 5) defines the
// ByteStream and ValueStream interfaces: then toValue will also accept async
// iterables, Web ReadableStreams and Node Readables (serving them as a stream
// capability) and fromValue will give a readable back. That work replaces
// this class's users, not the wire format: the schema's slot is an untyped
// capability and a kind, which the stream interfaces will fill.
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

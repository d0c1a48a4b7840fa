// Streams inside Values (schema/value.capnp Value.stream): a StreamValue
// carries a ByteSource (kind "bytes") or a ValueSource (kind "values").
import { ByteSource, ValueSource } from "../gen/stream.js";
import type { FromValueOptions } from "../value/decode.js";
import { StreamValue } from "../value/stream.js";
import { fromByteSource, toByteSource, type ByteInput, type ByteReader } from "./bytes.js";
import { fromValueSource, toValueSource, type ValueReader } from "./values.js";
import type { StreamInput } from "./input.js";
import { CapabilityClient } from "../rpc/typed.js";

/** A byte stream to put in a value (toValue carries it as Value.stream, kind bytes). */
export function byteStreamValue(input: ByteInput): StreamValue {
  return new StreamValue("bytes", toByteSource(input));
}

/** A value stream to put in a value (kind values). */
export function valueStreamValue(input: StreamInput<unknown>): StreamValue {
  return new StreamValue("values", toValueSource(input));
}

/**
 * Reads a stream that arrived in a value (fromValue gives a StreamValue):
 * bytes or values, by its kind. The StreamValue's capability stays the
 * caller's to release (reading has started by then).
 */
export function readStreamValue(stream: StreamValue & { kind: "bytes" }): ByteReader;
export function readStreamValue(stream: StreamValue & { kind: "values" }, options?: FromValueOptions): ValueReader;
export function readStreamValue(stream: StreamValue, options?: FromValueOptions): ByteReader | ValueReader;
export function readStreamValue(stream: StreamValue, options?: FromValueOptions): ByteReader | ValueReader {
  const cap = stream.capability;
  if (!(cap instanceof CapabilityClient)) throw new TypeError("capmesh: a StreamValue's capability must be a capability client");
  // A typed view for the pipeTo call, released once the call is made.
  if (stream.kind === "bytes") {
    const source = cap.castAs(ByteSource);
    try {
      return fromByteSource(source);
    } finally {
      source.release();
    }
  }
  const source = cap.castAs(ValueSource);
  try {
    return fromValueSource(source, options);
  } finally {
    source.release();
  }
}

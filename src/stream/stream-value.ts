// Streams inside Values (schema/value.capnp Value.stream): a ByteSource
// (kind "bytes") or a ValueSource (kind "values").
//
// toValue serves what streamKindOf recognizes with serveStream, and
// fromValue reads a received stream with readStream: the same producers and
// readers as a stream in a params or results field, nothing of their own.
import { Readable } from "node:stream";
import { ByteSource, ValueSource } from "../gen/stream.js";
import type { Capability } from "../rpc/types.js";
import type { FromValueOptions } from "../value/decode.js";
import type { ValueLimits } from "../value/limits.js";
import { madeForValue, StreamValue, type StreamValueKind } from "../value/stream.js";
import { fromByteSource, toByteSource, type ByteInput, type ByteReader } from "./bytes.js";
import { fromValueSource, toValueSource, type ValueReader } from "./values.js";
import type { StreamInput } from "./input.js";
import { StreamReader } from "./reader.js";
import { CapabilityClient } from "../rpc/typed.js";

/** A byte stream to put in a value (toValue carries it as Value.stream, kind bytes). */
export function byteStreamValue(input: ByteInput): StreamValue {
  const cap = toByteSource(input);
  madeForValue.add(cap);
  return new StreamValue("bytes", cap);
}

/** A value stream to put in a value (kind values). */
export function valueStreamValue(input: StreamInput<unknown>): StreamValue {
  const cap = toValueSource(input);
  madeForValue.add(cap);
  return new StreamValue("values", cap);
}

/**
 * The kind of stream toValue makes of `x`, or null when `x` is not a stream
 * input. Chosen without reading anything (nothing is read before a reader
 * asks), from what the input says of itself:
 * - a reader of a received stream (StreamReader): its own kind;
 * - a Node Readable: bytes, unless it is in object mode (values);
 * - a Web ReadableStream: bytes when it is a byte stream (`type: "bytes"`,
 *   as `fetch`'s `response.body`), else values;
 * - any other async iterable: values (its items may be Uint8Arrays, which
 *   the reader gets back as such; byteStreamValue(x) makes it a byte stream).
 * Arrays, Maps and other sync iterables are not streams.
 */
export function streamKindOf(x: object): StreamValueKind | null {
  if (x instanceof StreamReader) return x.kind;
  if (x instanceof Readable) return x.readableObjectMode ? "values" : "bytes";
  const web = x as Partial<ReadableStream>;
  if (typeof web.getReader === "function" && "locked" in x) return isByteStream(web as ReadableStream) ? "bytes" : "values";
  return typeof (x as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === "function" ? "values" : null;
}

/** Whether a Web stream is a byte stream: only those give a BYOB reader (taken and released at once: nothing is read). */
function isByteStream(stream: ReadableStream): boolean {
  if (stream.locked) return false; // Refused when read, with the stream's own error.
  try {
    stream.getReader({ mode: "byob" }).releaseLock();
    return true;
  } catch {
    return false;
  }
}

/** Serves `x` (streamKindOf gave `kind`) as that kind's source; the value owns the capability. */
export function serveStream(x: object, kind: StreamValueKind, limits?: Partial<ValueLimits>): Capability {
  const cap = kind === "bytes" ? toByteSource(x as ByteInput) : toValueSource(x as StreamInput<unknown>, limits ? { limits } : {});
  madeForValue.add(cap);
  return cap;
}

/**
 * Starts reading a stream received in a value, and releases `cap` (reading
 * holds what it needs): fromValue's form of Value.stream.
 */
export function readStream(kind: StreamValueKind, cap: Capability, options?: FromValueOptions): ByteReader | ValueReader {
  try {
    return readStreamValue(new StreamValue(kind, cap), options);
  } finally {
    cap.release();
  }
}

/**
 * Reads a StreamValue by its kind: bytes or values. (fromValue gives a
 * reader already; this reads one built by hand.) The StreamValue's
 * capability stays the caller's to release (reading has started by then).
 * Given a reader, returns it.
 */
export function readStreamValue<T>(stream: StreamReader<T>): StreamReader<T>;
export function readStreamValue(stream: StreamValue & { kind: "bytes" }): ByteReader;
export function readStreamValue(stream: StreamValue & { kind: "values" }, options?: FromValueOptions): ValueReader;
export function readStreamValue(stream: StreamValue | StreamReader<unknown>, options?: FromValueOptions): ByteReader | ValueReader;
export function readStreamValue(stream: StreamValue | StreamReader<unknown>, options?: FromValueOptions): ByteReader | ValueReader {
  if (stream instanceof StreamReader) return stream as ByteReader | ValueReader;
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

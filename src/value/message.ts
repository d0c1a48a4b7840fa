// A value as a message of its own (stream-framed bytes, a Value at the root),
// for storing values in files or sending them outside a call. Such a message
// has no cap table: capabilities and streams cannot be in it.
import { Message } from "capnp-es";
import { readMessage, writeMessage } from "../codec/runtime.js";
import { Value$codec } from "../gen/value.js";
import { DEFAULT_LIMITS, readBudgetBytes } from "../transport/limits.js";
import { fromValue, type FromValueOptions, type PlainValue } from "./decode.js";
import { toValue } from "./encode.js";
import type { ValueLimits } from "./limits.js";

/** `x` (anything toValue takes, minus capabilities) as a stream-framed Cap'n Proto message. */
export function encodeValue(x: unknown, limits?: Partial<ValueLimits>): Uint8Array {
  return new Uint8Array(writeMessage(Value$codec, toValue(x, limits)).toArrayBuffer());
}

/**
 * The value in a stream-framed message that encodeValue (or any Cap'n Proto
 * implementation) wrote with a Value at the root. The bytes may come from
 * anywhere: reading them is bounded as the transport bounds a message from a
 * peer (a read budget of 4× their size, at least 1 MiB; 64 pointer levels).
 */
export function decodeValue(bytes: Uint8Array | ArrayBuffer, options?: FromValueOptions): PlainValue {
  const message = new Message(bytes, false, false);
  message._capnp.traversalLimit = readBudgetBytes(DEFAULT_LIMITS, bytes.byteLength);
  return fromValue(readMessage(Value$codec, message), options);
}

// Received values made the receiver's own. What a call's params decode to
// lives only as long as the call: Data is a view of the message (whose large
// segments the engine reuses once a `-> stream` call returns) and
// capabilities are lent. A stream hands items to a reader that may keep
// them, so it copies the bytes and takes references of its own.
import { CapabilityClient } from "../rpc/typed.js";
import { ErrorValue } from "../value/error-value.js";
import { StreamValue } from "../value/stream.js";
import { StreamReader } from "./reader.js";

/** Makes `x` (a plain value from fromValue) independent of the message it came from; returns it. */
export function ownValue<T>(x: T): T {
  return own(x) as T;
}

function own(x: unknown): unknown {
  if (typeof x !== "object" || x === null) return x;
  if (x instanceof Uint8Array) return x.slice();
  if (x instanceof CapabilityClient) return x.dup();
  // A received stream is being read already: its reader holds what it needs.
  if (x instanceof StreamReader) return x;
  if (x instanceof StreamValue) return new StreamValue(x.kind, (x.capability as CapabilityClient).dup());
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) x[i] = own(x[i]);
    return x;
  }
  if (x instanceof Map) {
    for (const [k, v] of x) x.set(k, own(v));
    return x;
  }
  if (x instanceof ErrorValue) {
    const details = own(x.details);
    if (details !== x.details) Object.defineProperty(x, "details", { value: details });
    return x;
  }
  const record = x as Record<string, unknown>;
  for (const k of Object.keys(record)) record[k] = own(record[k]);
  return x;
}

// Closures (schema/engine.capnp Closure): JS functions as capabilities, and
// received closures called like functions.
//
// The rules:
// - `closure(fn)` serves `fn` as a Closure. Where the schema has a Closure
//   field a function can be given as it is (it is served the same way), and
//   toValue turns a function inside a value into a Closure capability.
//   While the capability lives, the same function is the same capability.
// - A call runs `fn(...args)`, each argument converted with fromValue
//   (capabilities in them are lent for the call: dup() one to keep it).
//   `this` is a ClosureCall: `input` (the call's input stream as a reader,
//   or null), `signal` (fires when the caller cancels), `peer`. So an arrow
//   function sees its arguments only; write `function` to read the input.
// - What `fn` returns (awaited) is the result, converted with toValue;
//   except an async iterable, a Web ReadableStream or a Node Readable (not a
//   capability), which becomes the output stream (the result is then null).
//   A throw fails the call with its message.
// - `callable(cap)` gives a function back: `await f(...args)` converts the
//   arguments with toValue, calls, and resolves to the result (fromValue),
//   or, when the closure answered with an output stream and no result, to a
//   reader of that stream (`for await`). `f.invoke({ args, input, signal })`
//   gives both, and sends an input stream.
import { Readable } from "node:stream";
import { Closure, type ClosureServer } from "../gen/engine.js";
import type { Value } from "../gen/value.js";
import { registerFunctionServer } from "../codec/function-caps.js";
import { RpcError } from "../rpc/errors.js";
import type { CallContext, Capability } from "../rpc/types.js";
import { CapabilityClient } from "../rpc/typed.js";
import { fromValue, type FromValueOptions, type PlainValue } from "../value/decode.js";
import { toValue } from "../value/encode.js";
import { madeForValue, StreamValue } from "../value/stream.js";
import type { StreamInput } from "../stream/input.js";
import { fromValueSource, toValueSource, type ValueReader } from "../stream/values.js";

/** What `this` is inside a function served as a closure. */
export interface ClosureCall {
  /** The call's input stream, or null when it carries none. */
  readonly input: ValueReader | null;
  /** Fires when the caller cancels the call (or its connection drops). */
  readonly signal: AbortSignal;
  /** The calling vat's identity, as the connection proved it. */
  readonly peer: unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ClosureFunction = (this: ClosureCall, ...args: any[]) => unknown;

const NULL: Value = Object.freeze({ which: "null", null: true }) as Value;

/** One server object per function, so a function is one capability while it lives. */
const servers = new WeakMap<ClosureFunction, ClosureServer>();
/** Clients this module made from functions for a value: nobody else owns them. */
const madeHere = new WeakSet<object>();

function isStreamOut(x: unknown): x is StreamInput<unknown> {
  if (typeof x !== "object" || x === null) return false;
  if (x instanceof CapabilityClient || x instanceof StreamValue || Array.isArray(x)) return false;
  if (x instanceof Readable) return true;
  const r = x as { getReader?: unknown; [Symbol.asyncIterator]?: unknown };
  return typeof r[Symbol.asyncIterator] === "function" || (typeof r.getReader === "function" && "locked" in x);
}

function serverFor(fn: ClosureFunction): ClosureServer {
  let server = servers.get(fn);
  if (server) return server;
  server = {
    async call({ args, input }, ctx: CallContext) {
      const plain = args.map((a) => fromValue(a));
      const reader = input ? fromValueSource(input) : null;
      const call: ClosureCall = { input: reader, signal: ctx.signal, peer: ctx.peer };
      let returned: unknown;
      try {
        returned = await fn.apply(call, plain);
      } catch (error) {
        reader?.cancel(error);
        if (error instanceof RpcError) throw error;
        throw RpcError.failed(error instanceof Error ? error.message : String(error));
      }
      if (isStreamOut(returned)) return { result: NULL, output: toValueSource(returned) };
      return { result: toValue(returned), output: null };
    },
  };
  servers.set(fn, server);
  return server;
}

/** Serves `fn` as a Closure capability (see the rules above). */
export function closure(fn: ClosureFunction): Closure {
  if (typeof fn !== "function") throw new TypeError(`capmesh: closure() takes a function, got ${typeof fn}`);
  return Closure.server(serverFor(fn));
}

/** toValue's form of a function: a Closure the value owns. */
export function closureForValue(fn: ClosureFunction): Capability {
  const cap = closure(fn);
  madeHere.add(cap);
  return cap;
}

registerFunctionServer(Closure, (fn) => serverFor(fn as ClosureFunction));

/** A received closure as a function (see the rules above). */
export interface CallableClosure {
  (...args: unknown[]): Promise<PlainValue | ValueReader>;
  /** Calls with an input stream too; gives the result and the output stream (a reader, or null). */
  invoke(call?: { args?: readonly unknown[]; input?: StreamInput<unknown> | null; signal?: AbortSignal; timeout?: number }): Promise<{
    result: PlainValue;
    output: ValueReader | null;
  }>;
  /** The capability (this function's own reference). */
  readonly closure: Closure;
  /** Releases the function's reference to the closure. */
  release(): void;
}

/** Releases the closures toValue made from functions inside `values`, once sent. */
function releaseMade(values: readonly Value[]): void {
  const visit = (v: Value): void => {
    if (v.which === "capability" && v.capability && madeHere.has(v.capability)) v.capability.release();
    else if (v.which === "stream" && v.stream.cap && madeForValue.has(v.stream.cap)) v.stream.cap.release();
    else if (v.which === "list") v.list.forEach(visit);
    else if (v.which === "record") v.record.values.forEach(visit);
  };
  values.forEach(visit);
}

/**
 * A function that calls `cap` (a Closure, or a capability received in a
 * value that is one). It holds a reference of its own: `f.release()` drops
 * it (as does garbage collection).
 */
export function callable(cap: Capability, options: FromValueOptions = {}): CallableClosure {
  if (!(cap instanceof CapabilityClient)) throw new TypeError("capmesh: callable() takes a capability client (a Closure)");
  const target = cap.castAs(Closure);
  const invoke: CallableClosure["invoke"] = async ({ args = [], input = null, signal, timeout } = {}) => {
    const values = args.map((a) => toValue(a));
    const source = input === null ? null : toValueSource(input);
    let pending;
    try {
      pending = target.call({ args: values, input: source }, { ...(signal ? { signal } : {}), ...(timeout ? { timeout } : {}) });
    } finally {
      // Sent (or refused): what we made for this call is the peer's now.
      source?.release();
      releaseMade(values);
    }
    const { result, output } = await pending;
    try {
      return { result: result ? fromValue(result, options) : null, output: output ? fromValueSource(output, options) : null };
    } finally {
      output?.release();
    }
  };
  const f = (async (...args: unknown[]) => {
    const { result, output } = await invoke({ args });
    if (output !== null && result === null) return output;
    output?.cancel();
    return result;
  }) as CallableClosure;
  Object.defineProperties(f, {
    invoke: { value: invoke },
    closure: { get: () => target },
    release: { value: () => target.release() },
  });
  return f;
}

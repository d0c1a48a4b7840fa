// JS values → Values (the shape the generated codec writes, src/gen/value.ts).
//
// The mapping, in the order it is tried:
//   null, undefined            → null (so a field set to undefined is sent
//                                as a null field, where JSON would drop it)
//   boolean                    → bool
//   number                     → int when it is a safe integer (|n| ≤ 2^53-1)
//                                other than -0, else float (fractions, -0, NaN,
//                                ±Infinity, and integers too large to be exact)
//   bigint                     → int (refused outside -2^63..2^63-1)
//   string                     → text
//   Uint8Array (Buffer too)    → bytes (just the view's bytes); ArrayBuffer → bytes
//   array                      → list (holes → null)
//   a capability client        → capability (the caller keeps its reference:
//                                sending adds one of its own)
//   function                   → capability: a Closure serving it
//                                (src/engine/closure.ts; the value owns it)
//   StreamValue                → stream (its kind and capability)
//   an async iterable, a Web   → stream: served as a ByteSource or ValueSource
//   ReadableStream or a Node     (src/stream/stream-value.ts streamKindOf says
//   Readable                     which; the value owns the capability). Served
//                                only once the whole value has converted, so a
//                                value refused leaves its streams unread
//   Error                      → error (see error-value.ts for what is carried)
//   Map with string keys       → record, in insertion order
//   plain object ({} or a null
//   prototype)                 → record: own enumerable string keys, in JS
//                                order (integer-like keys first); symbol keys
//                                are skipped, as structuredClone skips them
// Anything else (symbols, class instances, Dates, Sets and other sync
// iterables, typed arrays other than Uint8Array, promises) is refused with a ValueTypeError
// saying what to convert it to. So are cycles; an object reached twice
// without a cycle is converted twice (and counted twice against the limits).
//
// The limits (limits.ts) are checked on the way down, before the rest of a
// container is looked at: a list of 10^7 elements is refused from its length.
import type { ErrorInfo, Value } from "../gen/value.js";
import { ValueLimitError, ValueTypeError } from "./errors.js";
import type { Capability } from "../rpc/types.js";
import { resolveValueLimits, utf8Length, type ValueLimits } from "./limits.js";
import { formatPath, type PathStep } from "./path.js";
import { StreamValue } from "./stream.js";
import { closureForValue, type ClosureFunction } from "../engine/closure.js";
import { serveStream, streamKindOf } from "../stream/stream-value.js";

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Shared: the codec only reads it. */
const NULL: Value = Object.freeze({ which: "null", null: true }) as Value;

/** Whether `x` has the Capability methods (the codec's own test for a capability client). */
function isCapability(x: object): boolean {
  const c = x as { release?: unknown; dup?: unknown; whenResolved?: unknown };
  return typeof c.release === "function" && typeof c.dup === "function" && typeof c.whenResolved === "function";
}

function isError(x: object): x is Error {
  return x instanceof Error || Object.prototype.toString.call(x) === "[object Error]";
}

/**
 * Converts a plain JS value (see the mapping above) to a Value, ready to be
 * put in any field of type Value. Throws a ValueTypeError for what has no
 * Value form and a ValueLimitError past a limit, both naming the path.
 */
export function toValue(x: unknown, limits?: Partial<ValueLimits>): Value {
  const encoder = new Encoder(resolveValueLimits(limits));
  const value = encoder.value(x, 0);
  encoder.serveStreams(limits);
  return value;
}

class Encoder {
  private items = 0;
  private bytes = 0;
  /** Containers being converted, outermost first: open[i] is reached by steps[0..i). */
  private readonly open: object[] = [];
  private readonly steps: PathStep[] = [];
  /** Stream inputs met, and the slots their capabilities go in once the value has converted. */
  private readonly streams = new Map<object, { kind: "bytes" | "values"; cap: Capability | null }>();

  constructor(private readonly limits: ValueLimits) {}

  serveStreams(limits: Partial<ValueLimits> | undefined): void {
    for (const [input, slot] of this.streams) slot.cap = serveStream(input, slot.kind, limits);
  }

  private where(): string {
    return formatPath(this.steps);
  }

  private text(s: string): void {
    this.addBytes(utf8Length(s));
  }

  private addBytes(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) {
      throw new ValueLimitError(this.where(), "maxBytes",
        `the value holds more than maxBytes (${this.limits.maxBytes}) bytes of text and bytes; ` +
        "send bulk data as a byte stream, or raise the limit on both sides");
    }
  }

  private addItems(n: number): void {
    this.items += n;
    if (this.items > this.limits.maxItems) {
      throw new ValueLimitError(this.where(), "maxItems",
        `the value holds more than maxItems (${this.limits.maxItems}) list elements and record fields; ` +
        "send long sequences as a value stream, or raise the limit on both sides");
    }
  }

  /** Opens container `x` costing `levels` of depth; returns its depth. */
  private enter(x: object, depth: number, levels: number): number {
    const back = this.open.indexOf(x);
    if (back >= 0) {
      throw new ValueTypeError(this.where(), `refers back to ${formatPath(this.steps, back)}: a value cannot hold a cycle`);
    }
    if (depth + levels > this.limits.maxDepth) {
      throw new ValueLimitError(this.where(), "maxDepth",
        `the value nests deeper than maxDepth (${this.limits.maxDepth}) levels`);
    }
    this.open.push(x);
    return depth + levels;
  }

  private child(step: PathStep, x: unknown, depth: number): Value {
    this.steps.push(step);
    const v = this.value(x, depth);
    this.steps.pop();
    return v;
  }

  value(x: unknown, depth: number): Value {
    switch (typeof x) {
      case "undefined":
        return NULL;
      case "boolean":
        return { which: "bool", bool: x };
      case "number":
        return Number.isSafeInteger(x) && !Object.is(x, -0) ? { which: "int", int: BigInt(x) } : { which: "float", float: x };
      case "bigint":
        if (x < INT64_MIN || x > INT64_MAX) {
          throw new ValueLimitError(this.where(), "int64", `${x}n is outside the Int64 range -2^63..2^63-1`);
        }
        return { which: "int", int: x };
      case "string":
        this.text(x);
        return { which: "text", text: x };
      case "function":
        // A function is served as a Closure capability (src/engine/closure.ts).
        return { which: "capability", capability: closureForValue(x as ClosureFunction) };
      case "symbol":
        throw new ValueTypeError(this.where(), "a symbol is not a value");
      case "object":
        return x === null ? NULL : this.object(x, depth);
    }
    throw new ValueTypeError(this.where(), `a ${typeof x} is not a value`);
  }

  private object(x: object, depth: number): Value {
    if (Array.isArray(x)) return this.list(x, depth);
    if (x instanceof Uint8Array) {
      this.addBytes(x.byteLength);
      return { which: "bytes", bytes: x };
    }
    if (x instanceof ArrayBuffer) {
      this.addBytes(x.byteLength);
      return { which: "bytes", bytes: new Uint8Array(x) };
    }
    if (isCapability(x)) return { which: "capability", capability: x as Capability };
    if (x instanceof StreamValue) return { which: "stream", stream: { kind: x.kind, cap: x.capability } };
    if (isError(x)) return this.error(x, depth);
    const kind = streamKindOf(x);
    if (kind !== null) {
      if (this.streams.has(x)) {
        throw new ValueTypeError(this.where(), "the same stream is in the value twice: a stream is read once (tee it, or send it once)");
      }
      const slot = { kind, cap: null as Capability | null };
      this.streams.set(x, slot);
      return { which: "stream", stream: slot };
    }
    if (x instanceof Map) return this.map(x, depth);
    const proto: unknown = Object.getPrototypeOf(x);
    if (proto === Object.prototype || proto === null) return this.record(x as Record<string, unknown>, depth);
    throw new ValueTypeError(this.where(), unsupported(x));
  }

  private list(x: readonly unknown[], depth: number): Value {
    const inner = this.enter(x, depth, 1);
    const n = x.length;
    this.addItems(n);
    const list = new Array<Value>(n);
    for (let i = 0; i < n; i++) list[i] = this.child(i, x[i], inner);
    this.open.pop();
    return { which: "list", list };
  }

  private record(x: Record<string, unknown>, depth: number): Value {
    const inner = this.enter(x, depth, 1);
    const names = Object.keys(x);
    const n = names.length;
    this.addItems(n);
    const values = new Array<Value>(n);
    for (let i = 0; i < n; i++) {
      const name = names[i]!;
      this.steps.push(name);
      this.text(name);
      values[i] = this.value(x[name], inner);
      this.steps.pop();
    }
    this.open.pop();
    return { which: "record", record: { names, values } };
  }

  private map(x: Map<unknown, unknown>, depth: number): Value {
    const inner = this.enter(x, depth, 1);
    this.addItems(x.size);
    const names: string[] = [];
    const values: Value[] = [];
    for (const [name, v] of x) {
      if (typeof name !== "string") {
        throw new ValueTypeError(this.where(), `a Map key is not a string (${typeof name}): only string keys can be record field names`);
      }
      this.steps.push(name);
      this.text(name);
      values.push(this.value(v, inner));
      names.push(name);
      this.steps.pop();
    }
    this.open.pop();
    return { which: "record", record: { names, values } };
  }

  private error(x: Error, depth: number): Value {
    const inner = this.enter(x, depth, 2);
    const e = x as Error & { code?: unknown; details?: unknown };
    const message = typeof e.message === "string" ? e.message : String(e.message);
    const code = typeof e.code === "string" ? e.code : typeof e.code === "number" ? String(e.code) : "";
    this.text(message);
    this.text(code);
    const details = e.details == null ? NULL : this.child("details", e.details, inner);
    this.open.pop();
    const error: ErrorInfo = { message, code, details };
    return { which: "error", error };
  }
}

/** Why `x` (an object of no supported kind) is refused, and what to pass instead. */
function unsupported(x: object): string {
  if (typeof (x as { then?: unknown }).then === "function") return "a promise (or thenable) is not a value: await it first";
  if (x instanceof Date) return "a Date is not a value: pass date.toISOString() or date.getTime()";
  if (x instanceof Set) return "a Set is not a value: pass [...set]";
  if (ArrayBuffer.isView(x)) {
    return `a ${x.constructor.name} is not a value: only Uint8Array is bytes (pass new Uint8Array(x.buffer, x.byteOffset, x.byteLength))`;
  }
  if (x instanceof String || x instanceof Number || x instanceof Boolean) return "a boxed primitive is not a value: pass x.valueOf()";
  if (typeof (x as Partial<Iterable<unknown>>)[Symbol.iterator] === "function") {
    return "a sync iterable is not a value: pass [...x] for a list, or an async iterable for a stream";
  }
  const ctor = (Object.getPrototypeOf(x) as { constructor?: { name?: unknown } }).constructor?.name;
  const what = typeof ctor === "string" && ctor !== "" ? `an instance of ${ctor}` : "an object with a custom prototype";
  return `${what} is not a value: only plain objects become records (copy its fields into one, e.g. { ...x }, ` +
    "or wrap a server object with Interface.server(obj) to pass it as a capability)";
}

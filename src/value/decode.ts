// Values (as the generated codec reads them, src/gen/value.ts) → JS values:
// the inverse of encode.ts.
//
//   null → null; bool → boolean; float → number; text → string
//   int     → number when it is a safe integer, else bigint
//             (`integers: "bigint"`: always bigint)
//   bytes   → Uint8Array (a view of the received message, not a copy)
//   list    → array
//   record  → a plain object ({}), fields in the sender's order as far as JS
//             keeps it (integer-like names come first in any JS object), a
//             field named "__proto__" as an own property;
//             `records: "map"`: a Map, which keeps the order exactly
//   capability → the client, owned by the receiver (a null pointer → null)
//   stream  → a reader (StreamReader: `for await`, `readable()`,
//             `nodeReadable()`), of Uint8Array chunks (kind bytes) or of
//             plain values converted with the same options (kind values).
//             Reading starts once the whole value has converted, and the
//             stream's capability is released then (reading does not need
//             it): a stream in a value is read once, by this conversion.
//             One not wanted is cancel()ed, or it holds its producer a
//             window ahead until the connection closes.
//   error   → ErrorValue
//
// A received value went through Cap'n Proto's own limits first: the
// transport's message size and read budget, and its nesting limit (64 pointer
// hops by default), which also bounds how deep the generated decoder and this
// walk recurse, whatever a peer sends. The value limits (limits.ts) are then
// checked on the way down, as when encoding.
import type { Value } from "../gen/value.js";
import type { Capability } from "../rpc/types.js";
import { ErrorValue } from "./error-value.js";
import { ValueFormatError, ValueLimitError } from "./errors.js";
import { resolveValueLimits, utf8Length, type ValueLimits } from "./limits.js";
import { formatPath, type PathStep } from "./path.js";
import type { StreamReader } from "../stream/reader.js";
import { readStream } from "../stream/stream-value.js";

/** What fromValue gives: the JS form of a Value. */
export type PlainValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PlainValue[]
  | { [name: string]: PlainValue }
  | Map<string, PlainValue>
  | Capability
  | StreamReader<Uint8Array>
  | StreamReader<PlainValue>
  | ErrorValue;

export interface FromValueOptions extends Partial<ValueLimits> {
  /** Records as plain objects (default) or as Maps. */
  records?: "object" | "map";
  /** Integers as numbers when safe, else bigints (default), or always as bigints. */
  integers?: "number" | "bigint";
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Converts a Value (e.g. a decoded field of type Value) to plain JS. Throws a
 * ValueLimitError past a limit and a ValueFormatError for a value that breaks
 * the schema's rules, both naming the path.
 */
export function fromValue(v: Value, options: FromValueOptions = {}): PlainValue {
  const { records, integers, ...limits } = options;
  if (records !== undefined && records !== "object" && records !== "map") {
    throw new TypeError(`capmesh: fromValue option records must be "object" or "map", got ${String(records)}`);
  }
  if (integers !== undefined && integers !== "number" && integers !== "bigint") {
    throw new TypeError(`capmesh: fromValue option integers must be "number" or "bigint", got ${String(integers)}`);
  }
  const decoder = new Decoder(resolveValueLimits(limits), records === "map", integers === "bigint");
  const out = decoder.value(v, 0);
  return decoder.streams.length === 0 ? out : decoder.readStreams(out, options);
}

/** Where a received stream goes once the value has converted: into `holder` at `key` (the value itself when holder is null). */
interface StreamSlot {
  holder: PlainValue[] | Record<string, PlainValue> | Map<string, PlainValue> | ErrorValue | null;
  key: string | number;
  kind: "bytes" | "values";
  cap: Capability;
}

/** Stands for a stream until readStreams puts its reader in its place. */
const PENDING = Symbol("capmesh.pendingStream");

class Decoder {
  private items = 0;
  private bytes = 0;
  private readonly steps: PathStep[] = [];
  /** The streams met, in order, read once the value has converted (a value refused starts none). */
  readonly streams: StreamSlot[] = [];

  constructor(
    private readonly limits: ValueLimits,
    private readonly maps: boolean,
    private readonly bigints: boolean,
  ) {}

  private where(): string {
    return formatPath(this.steps);
  }

  private addBytes(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) {
      throw new ValueLimitError(this.where(), "maxBytes",
        `the received value holds more than maxBytes (${this.limits.maxBytes}) bytes of text and bytes`);
    }
  }

  private addItems(n: number): void {
    this.items += n;
    if (this.items > this.limits.maxItems) {
      throw new ValueLimitError(this.where(), "maxItems",
        `the received value holds more than maxItems (${this.limits.maxItems}) list elements and record fields`);
    }
  }

  private enter(depth: number, levels: number): number {
    if (depth + levels > this.limits.maxDepth) {
      throw new ValueLimitError(this.where(), "maxDepth",
        `the received value nests deeper than maxDepth (${this.limits.maxDepth}) levels`);
    }
    return depth + levels;
  }

  /** Starts reading each stream met and puts its reader in its place; returns the value. */
  readStreams(out: PlainValue, options: FromValueOptions): PlainValue {
    const started: StreamReader<unknown>[] = [];
    for (const slot of this.streams) {
      let reader: PlainValue;
      try {
        reader = readStream(slot.kind, slot.cap, options) as PlainValue;
      } catch (error) {
        // All or none: the readers already started would hold their producers a window ahead.
        for (const r of started) r.cancel(error);
        throw error;
      }
      started.push(reader as StreamReader<unknown>);
      const { holder, key } = slot;
      if (holder === null) out = reader;
      else if (holder instanceof Map) holder.set(key as string, reader);
      else if (holder instanceof ErrorValue) Object.defineProperty(holder, "details", { value: reader });
      else Object.defineProperty(holder, key, { value: reader, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  /** Notes a stream for readStreams: `holder[key]` is where it goes (set by the caller to the placeholder returned). */
  private stream(kind: "bytes" | "values", cap: Capability): PlainValue {
    this.streams.push({ holder: null, key: 0, kind, cap });
    return PENDING as unknown as PlainValue;
  }

  /** Gives the last stream noted its place, if `x` is its placeholder. */
  private place(x: PlainValue, holder: NonNullable<StreamSlot["holder"]>, key: string | number): void {
    if ((x as unknown) === PENDING) {
      const slot = this.streams[this.streams.length - 1]!;
      slot.holder = holder;
      slot.key = key;
    }
  }

  private bad(problem: string): ValueFormatError {
    return new ValueFormatError(this.where(), problem);
  }

  value(v: Value, depth: number): PlainValue {
    if (typeof v !== "object" || v === null) throw this.bad("not a Value (expected an object with a `which`, as the codec reads it)");
    switch (v.which) {
      case "null":
        return null;
      case "bool":
        return v.bool;
      case "int": {
        const n = v.int;
        if (this.bigints) return n;
        return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n;
      }
      case "float":
        return v.float;
      case "text":
        this.addBytes(utf8Length(v.text));
        return v.text;
      case "bytes":
        this.addBytes(v.bytes.byteLength);
        return v.bytes;
      case "list":
        return this.list(v.list, depth);
      case "record":
        return this.record(v.record.names, v.record.values, depth);
      case "capability":
        return v.capability;
      case "stream": {
        const { kind, cap } = v.stream;
        if (kind !== "bytes" && kind !== "values") throw this.bad(`a stream of unknown kind ${String(kind)} (sent by a newer peer?)`);
        if (cap === null) throw this.bad("a stream without a capability");
        return this.stream(kind, cap);
      }
      case "error": {
        const inner = this.enter(depth, 2);
        const { message, code, details } = v.error;
        this.addBytes(utf8Length(message) + utf8Length(code));
        this.steps.push("details");
        const d = details == null ? null : this.value(details, inner);
        this.steps.pop();
        const error = new ErrorValue(message, { code, details: d });
        this.place(d, error, "details");
        return error;
      }
    }
    const which: unknown = (v as { which?: unknown }).which;
    throw this.bad(`a value of unknown kind ${typeof which === "string" ? JSON.stringify(which) : String(which)} (sent by a newer peer?)`);
  }

  private list(list: readonly Value[], depth: number): PlainValue[] {
    const inner = this.enter(depth, 1);
    const n = list.length;
    this.addItems(n);
    const out = new Array<PlainValue>(n);
    for (let i = 0; i < n; i++) {
      this.steps.push(i);
      out[i] = this.value(list[i]!, inner);
      this.place(out[i]!, out, i);
      this.steps.pop();
    }
    return out;
  }

  private record(names: readonly string[], values: readonly Value[], depth: number): PlainValue {
    const inner = this.enter(depth, 1);
    const n = names.length;
    if (values.length !== n) throw this.bad(`a record with ${n} names but ${values.length} values`);
    this.addItems(n);
    const map = this.maps ? new Map<string, PlainValue>() : null;
    const obj: { [name: string]: PlainValue } = {};
    for (let i = 0; i < n; i++) {
      const name = names[i]!;
      this.addBytes(utf8Length(name));
      if (map !== null ? map.has(name) : Object.hasOwn(obj, name)) {
        throw this.bad(`a record that names field ${JSON.stringify(name)} twice`);
      }
      this.steps.push(name);
      const x = this.value(values[i]!, inner);
      this.steps.pop();
      if (map !== null) map.set(name, x);
      // Assigning "__proto__" would set the prototype instead of a field.
      else if (name === "__proto__") Object.defineProperty(obj, name, { value: x, enumerable: true, writable: true, configurable: true });
      else obj[name] = x;
      this.place(x, map ?? obj, name);
    }
    return map ?? obj;
  }
}

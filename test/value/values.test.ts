// Values (schema/value.capnp) to and from plain JS, through real messages.
import { describe, expect, it } from "vitest";
import { Counter } from "../../src/gen/demo.js";
import { Readable } from "node:stream";
import {
  byteStreamValue,
  CapabilityClient,
  DEFAULT_VALUE_LIMITS,
  decodeValue,
  encodeValue,
  ErrorValue,
  fromValue,
  StreamReader,
  StreamValue,
  toValue,
  toValueSource,
  valueStreamValue,
  ValueFormatError,
  ValueLimitError,
  ValueTypeError,
  type Value,
} from "../../src/index.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { PassCaps, roundTrip } from "./helpers.js";

describe("round trips", () => {
  it("carries every scalar kind", () => {
    expect(roundTrip(null)).toBe(null);
    expect(roundTrip(undefined)).toBe(null);
    expect(roundTrip(true)).toBe(true);
    expect(roundTrip(false)).toBe(false);
    expect(roundTrip(0)).toBe(0);
    expect(roundTrip(-42)).toBe(-42);
    expect(roundTrip(1.5)).toBe(1.5);
    expect(roundTrip("")).toBe("");
    expect(roundTrip("héllo, 世界 🎉")).toBe("héllo, 世界 🎉");
    expect(roundTrip(new Uint8Array([0, 1, 255]))).toEqual(new Uint8Array([0, 1, 255]));
    expect(roundTrip(new Uint8Array(0))).toEqual(new Uint8Array(0));
  });

  it("encodes integral numbers as int and the rest as float", () => {
    const kind = (x: unknown) => toValue(x).which;
    expect(kind(7)).toBe("int");
    expect(kind(-(2 ** 53 - 1))).toBe("int");
    expect(kind(2 ** 53)).toBe("float"); // not exact any more: stays a double
    expect(kind(0.5)).toBe("float");
    expect(kind(-0)).toBe("float");
    expect(kind(NaN)).toBe("float");
    expect(kind(Infinity)).toBe("float");
    expect(kind(5n)).toBe("int");
  });

  it("keeps NaN, -0 and the infinities", () => {
    expect(roundTrip(NaN)).toBeNaN();
    expect(Object.is(roundTrip(-0), -0)).toBe(true);
    expect(roundTrip(Infinity)).toBe(Infinity);
    expect(roundTrip(-Infinity)).toBe(-Infinity);
    expect(roundTrip(Number.MIN_VALUE)).toBe(Number.MIN_VALUE);
    expect(roundTrip(Number.MAX_VALUE)).toBe(Number.MAX_VALUE);
  });

  it("gives numbers for safe integers and bigints beyond 2^53", () => {
    const max = Number.MAX_SAFE_INTEGER; // 2^53 - 1
    expect(roundTrip(max)).toBe(max);
    expect(roundTrip(-max)).toBe(-max);
    expect(roundTrip(BigInt(max))).toBe(max);
    expect(roundTrip(2n ** 53n)).toBe(2n ** 53n);
    expect(roundTrip(2n ** 53n + 1n)).toBe(2n ** 53n + 1n);
    expect(roundTrip(-(2n ** 53n) - 1n)).toBe(-(2n ** 53n) - 1n);
    expect(roundTrip(-(2n ** 63n))).toBe(-(2n ** 63n));
    expect(roundTrip(2n ** 63n - 1n)).toBe(2n ** 63n - 1n);
    expect(roundTrip(2 ** 53)).toBe(2 ** 53); // a float on the wire, the same number back
  });

  it("gives bigints for every int when asked", () => {
    expect(roundTrip(1, { integers: "bigint" })).toBe(1n);
    expect(roundTrip([1, 2.5], { integers: "bigint" })).toEqual([1n, 2.5]);
  });

  it("refuses bigints outside Int64", () => {
    expect(() => toValue({ n: 2n ** 63n })).toThrow(ValueLimitError);
    expect(() => toValue({ n: 2n ** 63n })).toThrow("capmesh: value.n: 9223372036854775808n is outside the Int64 range");
    expect(() => toValue(-(2n ** 63n) - 1n)).toThrow(/outside the Int64 range/);
  });

  it("carries lists and records, nested", () => {
    const x = {
      name: "capmesh",
      tags: ["a", "b", []],
      nested: { deeper: { list: [1, [2, [3, { four: 4 }]]] } },
      nothing: null,
      empty: {},
    };
    expect(roundTrip(x)).toEqual(x);
  });

  it("turns undefined fields and array holes into null", () => {
    // eslint-disable-next-line no-sparse-arrays
    expect(roundTrip({ a: undefined, b: [1, , 3] })).toEqual({ a: null, b: [1, null, 3] });
  });

  it("sends only the bytes of a view, and decodes bytes as bytes", () => {
    const buffer = new Uint8Array([9, 9, 1, 2, 3, 9, 9]);
    const view = buffer.subarray(2, 5);
    const out = roundTrip({ view, buf: Buffer.from("hi"), ab: new Uint8Array([7, 8]).buffer });
    expect(out).toEqual({ view: new Uint8Array([1, 2, 3]), buf: new Uint8Array([104, 105]), ab: new Uint8Array([7, 8]) });
    expect((out as { view: unknown }).view).toBeInstanceOf(Uint8Array);
  });

  it("keeps records with odd field names as plain own fields", () => {
    const odd = JSON.parse('{"__proto__": {"polluted": true}, "": 1, "constructor": 2, "toString": 3, "ключ": 4, "🔑": 5, "a b": 6}');
    const out = roundTrip(odd) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(["__proto__", "", "constructor", "toString", "ключ", "🔑", "a b"]);
    expect(Object.getOwnPropertyDescriptor(out, "__proto__")?.value).toEqual({ polluted: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(out[""]).toBe(1);
    expect(out.toString).toBe(3);
    expect(out["🔑"]).toBe(5);
  });

  it("keeps the order of fields: exactly with Maps, JS order with objects", () => {
    const m = new Map<string, unknown>([["b", 1], ["2", 2], ["a", 3]]);
    const asMap = roundTrip(m, { records: "map" }) as Map<string, unknown>;
    expect([...asMap.keys()]).toEqual(["b", "2", "a"]);
    const asObject = roundTrip(m) as Record<string, unknown>;
    expect(asObject).toEqual({ b: 1, 2: 2, a: 3 });
    expect(Object.keys(asObject)).toEqual(["2", "b", "a"]); // integer-like keys first: JS's rule
    const v = toValue({ b: 1, a: 2 });
    expect(v.which === "record" && v.record.names).toEqual(["b", "a"]);
  });

  it("refuses Maps with keys that are not strings", () => {
    expect(() => toValue({ m: new Map([[1, "x"]]) })).toThrow(/value\.m: a Map key is not a string \(number\)/);
  });

  it("carries errors as values, with a code and details", () => {
    const out = roundTrip({ failed: new ErrorValue("no such file", { code: "ENOENT", details: { path: "/x", tries: 3 } }) }) as {
      failed: ErrorValue;
    };
    expect(out.failed).toBeInstanceOf(ErrorValue);
    expect(out.failed).toBeInstanceOf(Error);
    expect(out.failed.message).toBe("no such file");
    expect(out.failed.code).toBe("ENOENT");
    expect(out.failed.details).toEqual({ path: "/x", tries: 3 });

    const plain = roundTrip(new TypeError("bad")) as ErrorValue;
    expect(plain).toBeInstanceOf(ErrorValue);
    expect(plain.message).toBe("bad");
    expect(plain.code).toBeUndefined();
    expect(plain.details).toBe(null);

    const sys = Object.assign(new Error("refused"), { code: "ECONNREFUSED" });
    expect((roundTrip(sys) as ErrorValue).code).toBe("ECONNREFUSED");
  });

  it("passes capabilities through (the sender keeps its reference)", () => {
    const counter = Counter.server({ add: ({ by }) => ({ total: by }), get: () => ({ total: 0 }) });
    const caps = new PassCaps();
    const out = roundTrip({ counter, list: [counter] }, undefined, caps) as { counter: unknown; list: unknown[] };
    expect(out.counter).toBe(counter);
    expect(out.list[0]).toBe(counter);
    expect(caps.table).toEqual([counter, counter]);
    counter.release();
  });

  it("carries streams as a kind and a capability, and gives back a reader of that kind", async () => {
    const cap = toValueSource(["a", 1n, { b: [true] }]);
    const v = toValue({ s: new StreamValue("values", cap) });
    expect(v).toMatchObject({ which: "record", record: { values: [{ which: "stream", stream: { kind: "values", cap } }] } });
    const out = roundTrip({ s: new StreamValue("values", cap) }) as { s: StreamReader<unknown> };
    expect(out.s).toBeInstanceOf(StreamReader);
    expect(out.s.kind).toBe("values");
    const items: unknown[] = [];
    for await (const item of out.s) items.push(item);
    expect(items).toEqual(["a", 1, { b: [true] }]);
  });

  it("stores a value as a message of its own", () => {
    const x = { when: 1700000000000, big: 2n ** 60n, blob: new Uint8Array([1, 2]), list: [true, "x", 0.25] };
    const bytes = encodeValue(x);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(decodeValue(bytes)).toEqual(x);
    expect(decodeValue(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer)).toEqual(x);
  });
});

describe("what is not a value", () => {
  class Point {
    x = 1;
  }
  const cases: [string, unknown, RegExp][] = [
    ["a symbol", [Symbol("s")], /^capmesh: value\[0\]: a symbol is not a value/],
    ["a class instance", { p: new Point() }, /value\.p: an instance of Point is not a value: only plain objects become records/],
    ["a Date", new Date(0), /^capmesh: value: a Date is not a value: pass date\.toISOString\(\)/],
    ["a Set", { s: new Set([1]) }, /a Set is not a value: pass \[\.\.\.set\]/],
    ["a promise", { p: Promise.resolve(1) }, /value\.p: a promise \(or thenable\) is not a value: await it first/],
    ["another typed array", { a: new Int16Array(2) }, /value\.a: a Int16Array is not a value: only Uint8Array is bytes/],
    ["a boxed primitive", { s: new String("x") }, /a boxed primitive is not a value/],
  ];
  it.each(cases)("refuses %s with a TypeError naming the path", (_what, x, message) => {
    let error: unknown;
    try {
      toValue(x);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValueTypeError);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(message);
  });

  it("skips symbol keys, as structuredClone does", () => {
    expect(roundTrip({ a: 1, [Symbol("hidden")]: 2 })).toEqual({ a: 1 });
  });

  it("accepts objects with a null prototype", () => {
    const x = Object.assign(Object.create(null) as object, { a: 1 });
    expect(roundTrip(x)).toEqual({ a: 1 });
  });
});

describe("received values that break the rules", () => {
  const NULL: Value = { which: "null", null: true };
  it("refuses a record whose lists differ in length", () => {
    const v: Value = { which: "record", record: { names: ["a", "b"], values: [NULL] } };
    expect(() => fromValue(v)).toThrow(ValueFormatError);
    expect(() => fromValue(v)).toThrow("capmesh: received value: a record with 2 names but 1 values");
  });

  it("refuses a record that repeats a name, as an object and as a Map", () => {
    const v: Value = { which: "list", list: [{ which: "record", record: { names: ["x", "x"], values: [NULL, NULL] } }] };
    expect(() => fromValue(v)).toThrow('capmesh: received value[0]: a record that names field "x" twice');
    expect(() => fromValue(v, { records: "map" })).toThrow(/names field "x" twice/);
    const proto: Value = { which: "record", record: { names: ["__proto__", "__proto__"], values: [NULL, NULL] } };
    expect(() => fromValue(proto)).toThrow(/names field "__proto__" twice/);
  });

  it("refuses a kind it does not know, from a message a newer peer wrote", () => {
    // Value's union with a discriminant past `error`: written raw, as a newer schema would.
    const bytes = encodeValue(null);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    // Stream framing: 8 bytes of segment table, then the root pointer, then the struct.
    view.setUint16(8 + 8, 42, true);
    expect(() => decodeValue(bytes)).toThrow("capmesh: received value: a value of unknown kind 42 (sent by a newer peer?)");
  });

  it("refuses a stream without a capability or of an unknown kind", () => {
    expect(() => fromValue({ which: "stream", stream: { kind: "bytes", cap: null } })).toThrow(/a stream without a capability/);
    const cap = Counter.server({ add: ({ by }) => ({ total: by }), get: () => ({ total: 0 }) });
    expect(() => fromValue({ which: "stream", stream: { kind: 7, cap } })).toThrow(/a stream of unknown kind 7/);
    cap.release();
  });

  it("checks its options", () => {
    expect(() => fromValue({ which: "null", null: true }, { records: "array" as "map" })).toThrow(/records must be "object" or "map"/);
    expect(() => toValue(1, { maxDepth: -1 })).toThrow(/maxDepth must be a non-negative integer/);
    expect(() => toValue(1, { maxItems: 1.5 })).toThrow(/maxItems must be a non-negative integer/);
    expect(() => toValue(1, { maxDepth: 1e6 })).toThrow(/maxDepth must be at most 1024/);
    expect(DEFAULT_VALUE_LIMITS).toEqual({ maxDepth: 32, maxItems: 1_000_000, maxBytes: 32 * 1024 * 1024 });
  });
});

describe("streams found in a value", () => {
  /** The stream slots of a value toValue made from a record, by field name. */
  function streamsOf(v: Value): Record<string, { kind: string; cap: { release(): void } | null }> {
    if (v.which !== "record") throw new Error("expected a record");
    const out: Record<string, { kind: string; cap: { release(): void } | null }> = {};
    v.record.names.forEach((name, i) => {
      const x = v.record.values[i]!;
      if (x.which === "stream") out[name] = x.stream as never;
    });
    return out;
  }

  it("serves each kind of input as the stream it says it is, and leaves bytes, text and lists alone", () => {
    async function* gen() {
      yield new Uint8Array([1]);
    }
    const v = toValue({
      file: Readable.from([Buffer.from("x")], { objectMode: false }),
      objects: Readable.from([{ a: 1 }]),
      webBytes: new ReadableStream({ type: "bytes", pull: (c) => c.close() }),
      web: new ReadableStream({ pull: (c) => c.close() }),
      gen: gen(),
      explicit: new StreamValue("bytes", toValueSource([])),
      raw: new Uint8Array([1, 2]),
      text: "abc",
      list: [1, 2],
    });
    const streams = streamsOf(v);
    expect(Object.fromEntries(Object.entries(streams).map(([k, s]) => [k, s.kind]))).toEqual({
      file: "bytes",
      objects: "values",
      webBytes: "bytes",
      web: "values",
      gen: "values",
      explicit: "bytes",
    });
    for (const s of Object.values(streams)) expect(s.cap).toBeInstanceOf(CapabilityClient);
    expect(v.which === "record" && v.record.values.slice(6).map((x) => x.which)).toEqual(["bytes", "text", "list"]);
    for (const s of Object.values(streams)) s.cap!.release();
  });

  it("a received stream given to toValue again keeps its kind", async () => {
    const out = roundTrip({ s: byteStreamValue([new Uint8Array([1, 2, 3])]) }) as { s: StreamReader<Uint8Array> };
    const again = streamsOf(toValue({ s: out.s }));
    expect(again.s!.kind).toBe("bytes");
    const back = roundTrip({ s: new StreamValue("bytes", again.s!.cap as never) }) as { s: StreamReader<Uint8Array> };
    const chunks: Uint8Array[] = [];
    for await (const c of back.s) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from([1, 2, 3]));
  });

  it("a received stream passed on and then dropped unread stops its producer", async () => {
    let closed = false;
    let pulled = 0;
    async function* endless() {
      try {
        for (;;) yield pulled++;
      } finally {
        closed = true;
      }
    }
    const out = roundTrip({ s: valueStreamValue(endless()) }) as { s: StreamReader<unknown> };
    // Running (a generator returned before its first item runs no finally): filling the reader's window.
    await eventually(() => pulled > 0, "the producer to start");
    const passed = streamsOf(toValue({ s: out.s }));
    expect(passed.s!.kind).toBe("values");
    passed.s!.cap!.release();
    await eventually(() => closed, "the producer's generator to be returned");
    expect(out.s.settled).toBe(true);
  });

  it("a value refused reads none of its streams; the same stream twice is refused", () => {
    let started = false;
    async function* gen() {
      started = true;
      yield 1;
    }
    const file = Readable.from([Buffer.from("x")], { objectMode: false });
    expect(() => toValue({ file, g: gen(), bad: new Date(0) })).toThrow(ValueTypeError);
    expect(file.destroyed).toBe(false);
    expect(started).toBe(false);
    const g = gen();
    expect(() => toValue([g, { again: g }])).toThrow("capmesh: value[1].again: the same stream is in the value twice: a stream is read once");
    file.destroy();
  });

  it("refuses sync iterables other than arrays, saying what to pass", () => {
    function* sync() {
      yield 1;
    }
    expect(() => toValue({ s: sync() })).toThrow("capmesh: value.s: a sync iterable is not a value: pass [...x] for a list, or an async iterable for a stream");
  });
});

// The limits on a value (schema/value.capnp): cycles, depth, items and bytes,
// refused while encoding and while decoding, and hostile messages that must
// fail cleanly rather than exhaust the stack or memory.
import { describe, expect, it } from "vitest";
import { readMessage, writeMessage } from "../../src/codec/runtime.js";
import { Value$codec } from "../../src/gen/value.js";
import {
  DEFAULT_VALUE_LIMITS,
  decodeValue,
  ErrorValue,
  fromValue,
  toValue,
  ValueLimitError,
  ValueTypeError,
  type Value,
} from "../../src/index.js";
import { indexPath, nest, roundTrip } from "./helpers.js";

/** The error `f` throws (fails the test if it returns). */
function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error, but it returned");
}

describe("cycles", () => {
  it("refuses a cycle, naming both ends", () => {
    const a: Record<string, unknown> = {};
    const x = { a };
    a.b = [1, 2, 3, a];
    const e = thrown(() => toValue(x));
    expect(e).toBeInstanceOf(ValueTypeError);
    expect(e.message).toBe("capmesh: value.a.b[3]: refers back to value.a: a value cannot hold a cycle");
  });

  it("refuses an array that holds itself, a Map that holds itself and an error whose details hold it", () => {
    const list: unknown[] = [];
    list.push(list);
    expect(() => toValue(list)).toThrow("capmesh: value[0]: refers back to value: a value cannot hold a cycle");
    const m = new Map<string, unknown>();
    m.set("self", m);
    expect(() => toValue(m)).toThrow("capmesh: value.self: refers back to value");
    const details: Record<string, unknown> = {};
    const err = new ErrorValue("x", { details });
    details.err = err;
    expect(() => toValue(err)).toThrow("capmesh: value.details.err: refers back to value");
  });

  it("accepts the same object twice when it is not its own ancestor", () => {
    const shared = { n: 1 };
    expect(roundTrip({ a: shared, b: [shared, shared] })).toEqual({ a: { n: 1 }, b: [{ n: 1 }, { n: 1 }] });
  });
});

describe("nesting depth", () => {
  const max = DEFAULT_VALUE_LIMITS.maxDepth;

  it(`accepts exactly ${max} levels and refuses ${max + 1}, naming the path`, () => {
    expect(roundTrip(nest(max, "deep"))).toEqual(nest(max, "deep"));
    const e = thrown(() => toValue(nest(max + 1)));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect((e as ValueLimitError).limit).toBe("maxDepth");
    expect((e as ValueLimitError).path).toBe(indexPath(max));
    expect(e.message).toBe(`capmesh: ${indexPath(max)}: the value nests deeper than maxDepth (${max}) levels`);
  });

  it("counts records like lists, and errors as two levels", () => {
    let rec: unknown = 1;
    for (let i = 0; i < max; i++) rec = { r: rec };
    expect(roundTrip(rec)).toEqual(rec);
    expect(() => toValue({ r: rec })).toThrow(/nests deeper than maxDepth/);
    expect(roundTrip(nest(max - 2, new ErrorValue("x")))).toBeTruthy();
    expect(() => toValue(nest(max - 1, new ErrorValue("x")))).toThrow(/nests deeper than maxDepth/);
  });

  it("refuses 100 levels at the documented limit", () => {
    expect(() => toValue(nest(100))).toThrow(`capmesh: ${indexPath(max)}: the value nests deeper than maxDepth (${max}) levels`);
  });

  it("applies a lower limit to both sides", () => {
    expect(roundTrip(nest(3), { maxDepth: 3 })).toEqual(nest(3));
    expect(() => toValue(nest(4), { maxDepth: 3 })).toThrow("capmesh: value[0][0][0]: the value nests deeper than maxDepth (3) levels");
    const v = toValue(nest(4));
    const e = thrown(() => fromValue(v, { maxDepth: 3 }));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect(e.message).toBe("capmesh: value[0][0][0]: the received value nests deeper than maxDepth (3) levels");
    expect(() => toValue([], { maxDepth: 0 })).toThrow(/deeper than maxDepth \(0\)/);
    expect(toValue("scalar", { maxDepth: 0 }).which).toBe("text");
  });
});

describe("items", () => {
  it("accepts exactly maxItems and refuses one more, counting every level", () => {
    const limits = { maxItems: 5 };
    expect(roundTrip([1, 2, 3, 4, 5], limits)).toEqual([1, 2, 3, 4, 5]);
    expect(() => toValue([1, 2, 3, 4, 5, 6], limits)).toThrow(
      "capmesh: value: the value holds more than maxItems (5) list elements and record fields",
    );
    // 2 fields + 2 elements + 2 elements = 6 items.
    const e = thrown(() => toValue({ a: [1, 2], b: [3, 4] }, limits));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect((e as ValueLimitError).limit).toBe("maxItems");
    expect((e as ValueLimitError).path).toBe("value.b");
    expect(roundTrip({ a: [1, 2], b: [3] }, limits)).toEqual({ a: [1, 2], b: [3] });
  });

  it("bounds a shared object that is reached many times", () => {
    const row = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const table = Array.from({ length: 10 }, () => Array.from({ length: 10 }, () => row));
    expect(() => toValue(table, { maxItems: 1000 })).toThrow(/more than maxItems \(1000\)/);
  });

  it("refuses a received value with too many items", () => {
    const v = toValue({ a: [1, 2, 3], b: [4, 5, 6] });
    expect(() => fromValue(v, { maxItems: 7 })).toThrow(
      "capmesh: value.b: the received value holds more than maxItems (7) list elements and record fields",
    );
    expect(fromValue(v, { maxItems: 8 })).toEqual({ a: [1, 2, 3], b: [4, 5, 6] });
  });

  it(`takes ${DEFAULT_VALUE_LIMITS.maxItems} items by default and refuses lists of more from their length`, () => {
    const max = DEFAULT_VALUE_LIMITS.maxItems;
    // Sparse arrays: only the length costs anything.
    const v = toValue(new Array(max));
    expect(v.which === "list" && v.list.length).toBe(max);
    const e = thrown(() => toValue(new Array(max + 1)));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect(e.message).toBe(`capmesh: value: the value holds more than maxItems (${max}) list elements and record fields; ` +
      "send long sequences as a value stream, or raise the limit on both sides");
    const started = performance.now();
    expect(() => toValue({ huge: new Array(10 ** 7) })).toThrow(/value\.huge: .*maxItems/);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("bytes", () => {
  it("counts text, field names and bytes against maxBytes", () => {
    const limits = { maxBytes: 10 };
    expect(roundTrip({ ab: "cd", x: new Uint8Array(5) }, limits)).toEqual({ ab: "cd", x: new Uint8Array(5) });
    expect(() => toValue({ ab: "cd", x: new Uint8Array(6) }, limits)).toThrow(
      /^capmesh: value\.x: the value holds more than maxBytes \(10\) bytes of text and bytes/,
    );
    // UTF-8 bytes, not UTF-16 units: "é" is 2 bytes, "🎉" 4.
    expect(() => toValue("éééééé", limits)).toThrow(/maxBytes \(10\)/);
    expect(() => toValue(["🎉🎉", "🎉"], limits)).toThrow("capmesh: value[1]: the value holds more than maxBytes (10)");
    const v = toValue(["12345", "123456"]);
    expect(() => fromValue(v, limits)).toThrow("capmesh: value[1]: the received value holds more than maxBytes (10) bytes of text and bytes");
  });
});

// ---------------------------------------------------------------------------
// Hostile messages, written word by word as a peer could send them.

/** A stream-framed single-segment message of `words` (each [lo, hi] as 32-bit little-endian halves). */
function frame(words: [number, number][]): Uint8Array {
  const out = new DataView(new ArrayBuffer(8 + words.length * 8));
  out.setUint32(0, 0, true); // one segment
  out.setUint32(4, words.length, true);
  words.forEach(([lo, hi], i) => {
    out.setUint32(8 + i * 8, lo >>> 0, true);
    out.setUint32(12 + i * 8, hi >>> 0, true);
  });
  return new Uint8Array(out.buffer);
}

const VALUE_DATA = 2; // words
const VALUE_PTRS = 2;
const LIST = 6; // Value's union discriminant for `list`
const structPtr = (offset: number): [number, number] => [offset << 2, VALUE_DATA | (VALUE_PTRS << 16)];
const compositeListPtr = (offset: number, words: number): [number, number] => [(offset << 2) | 1, 7 | (words << 3)];
const compositeTag = (count: number): [number, number] => [count << 2, VALUE_DATA | (VALUE_PTRS << 16)];

/**
 * A Value nested `levels` lists deep: each list holds one Value, the last a
 * null. Word layout per level: the Value (2 data words, pointer 0 to the
 * next list, pointer 1 null), then that list's tag word.
 */
function deepListMessage(levels: number): Uint8Array {
  const words: [number, number][] = [structPtr(0)];
  for (let i = 0; i < levels; i++) {
    words.push([LIST, 0], [0, 0], compositeListPtr(1, VALUE_DATA + VALUE_PTRS), [0, 0], compositeTag(1));
  }
  words.push([0, 0], [0, 0], [0, 0], [0, 0]); // the innermost Value: null
  return frame(words);
}

describe("hostile messages", () => {
  it("decodes a hand-built nested message like one toValue wrote", () => {
    expect(decodeValue(deepListMessage(3))).toEqual(nest(3));
  });

  it("refuses a received value past maxDepth with the value's own error", () => {
    const levels = DEFAULT_VALUE_LIMITS.maxDepth + 8;
    const e = thrown(() => decodeValue(deepListMessage(levels)));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect(e.message).toBe(`capmesh: ${indexPath(32)}: the received value nests deeper than maxDepth (32) levels`);
  });

  it("stops a message 100,000 levels deep at Cap'n Proto's nesting limit, without a stack overflow", () => {
    const bytes = deepListMessage(100_000); // 4 MB
    const e = thrown(() => decodeValue(bytes));
    expect(e).not.toBeInstanceOf(RangeError); // a stack overflow is a RangeError
    expect(e.message).toMatch(/^capmesh: malformed message: nesting limit exceeded \(the message nests pointers deeper than the transport.s nestingLimit, 64 by default/);
  });

  it("stops a list that contains itself (a pointer loop in 6 words)", () => {
    // Root Value → list whose one element is a Value whose list pointer points back at the same list.
    const bytes = frame([
      structPtr(0),
      [LIST, 0], [0, 0], compositeListPtr(1, 4), [0, 0], // root Value; its list's tag is at word 5
      compositeTag(1),
      [LIST, 0], [0, 0], compositeListPtr(-4, 4), [0, 0], // element: pointer at word 8 → word 5
    ]);
    const e = thrown(() => decodeValue(bytes));
    expect(e).not.toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/^capmesh: malformed message: nesting limit exceeded \(the message nests pointers deeper than the transport.s nestingLimit, 64 by default/);
  });

  it("refuses a list that claims more elements than the message holds", () => {
    const bytes = frame([structPtr(0), [LIST, 0], [0, 0], compositeListPtr(1, 4 * 10_000_000), [0, 0], compositeTag(10_000_000)]);
    expect(() => decodeValue(bytes)).toThrow(/capmesh: malformed message: (list pointer out of bounds|composite list overruns)/);
  });

  it("charges pointers that alias one list against the read budget", () => {
    // A list of 1,000 Values whose list pointers all point at one shared list
    // of 1,000 nulls: 64 KB that would decode to 10^6 Values. Reading stops
    // at the read budget (4× the message's size, at least 1 MiB) instead.
    const n = 1000;
    const words: [number, number][] = [structPtr(0), [LIST, 0], [0, 0], compositeListPtr(1, n * 4), [0, 0], compositeTag(n)];
    const shared = words.length + n * 4 + 1; // the shared list's tag word, after the outer list's elements
    for (let i = 0; i < n; i++) {
      const at = words.length; // this element's first word; its pointer 0 is at + 2
      words.push([LIST, 0], [0, 0], compositeListPtr(shared - (at + 3), n * 4), [0, 0]);
    }
    words.push([0, 0], compositeTag(n)); // padding, then the shared list
    for (let i = 0; i < n * 4; i++) words.push([0, 0]);
    const bytes = frame(words);
    expect(() => decodeValue(bytes)).toThrow(/^capmesh: malformed message: traversal limit exceeded/);
    // With a budget big enough to read it all, the value's own item limit still refuses it.
    const e = thrown(() => fromValue(readMessage(Value$codec, bytes)));
    expect(e).toBeInstanceOf(ValueLimitError);
    expect(e.message).toMatch(/^capmesh: value\[\d+\]: the received value holds more than maxItems \(1000000\)/);
  });
});

describe("writing bypasses nothing", () => {
  it("the generated codec writes what toValue made, and a Value built by hand still gets its limits checked on receipt", () => {
    let v: Value = { which: "null", null: true };
    for (let i = 0; i < 40; i++) v = { which: "list", list: [v] };
    const bytes = new Uint8Array(writeMessage(Value$codec, v).toArrayBuffer());
    expect(() => decodeValue(bytes)).toThrow(/nests deeper than maxDepth \(32\)/);
  });
});

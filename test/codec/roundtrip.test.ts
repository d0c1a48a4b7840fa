// Round trips through the generated fixture codecs and the codec runtime.
import { Message, Pointer, Struct, utils } from "capnp-es";
import { describe, expect, it } from "vitest";
import {
  defineStruct,
  LIST_INT32,
  listOfStruct,
  noCaps,
  readList,
  readMessage,
  readPointer,
  writeMessage,
  writePointer,
  type Codec,
} from "../../src/codec/runtime.js";
import type { Init } from "../../src/codec/init.js";
import {
  AllTypes$codec,
  Color,
  Defaults$codec,
  Holder$codec,
  Nested$codec,
  Point$codec,
  Service,
  Shape$codec,
  SubService,
  SubService$child$Results$codec,
  UsesGeneric$codec,
  answer,
  bigNumber,
  blob,
  defaultColor,
  flag,
  greeting,
  ratio,
  type AllTypes,
  type Defaults,
  type Shape,
} from "./fixtures/gen/codectest.js";
import { FakeCaps, bytesOf, fakeClient, rootData } from "./helpers.js";
import { SAMPLE } from "./samples.js";

function roundTrip<T>(codec: Codec<T>, value: NoInfer<Init<T>>, caps: FakeCaps = new FakeCaps()): T {
  const bytes = bytesOf(writeMessage(codec, value, caps));
  return readMessage(codec, bytes, caps);
}


describe("primitives, text, data, nested structs and lists", () => {
  it("round-trips every field kind", () => {
    const out = roundTrip(AllTypes$codec, SAMPLE);
    expect(out).toMatchObject({
      voidField: true,
      boolField: true,
      int8Field: -123,
      int16Field: -12345,
      int32Field: -1234567,
      int64Field: -123456789012345n,
      uInt8Field: 234,
      uInt16Field: 45678,
      uInt32Field: 3456789012,
      uInt64Field: 12345678901234567890n,
      float32Field: 1234.5,
      float64Field: -1.25e-10,
      textField: "foo ✓ 😀",
      enumField: "blue",
      anyField: null,
      voidList: [true, true, true],
      boolList: [true, false, true, true, false, false, false, false, true],
      int8List: [-1, 2],
      int16List: [300, -300],
      int32List: [1, -2, 3],
      int64List: [1n, -2n],
      uInt8List: [0, 255],
      uInt16List: [65535],
      uInt32List: [4294967295],
      uInt64List: [18446744073709551615n],
      float32List: [0.5, -0.25],
      float64List: [1e100],
      textList: ["a", "", "ccc"],
      structList: [
        { x: 1, y: 2 },
        { x: -3, y: 4 },
      ],
      enumList: ["red", "blue", "green"],
      listList: [[1, 2], [], [3]],
      textListList: [["x"], ["y", "z"]],
      structListList: [[{ x: 1, y: 0 }], [{ x: 0, y: 2 }, { x: 0, y: 0 }]],
    });
    expect(Array.from(out.dataField)).toEqual([1, 2, 255]);
    expect(out.dataList.map((d) => Array.from(d))).toEqual([[1], []]);
    expect(out.structField?.textField).toBe("nested");
    expect(out.structField?.structField?.int32Field).toBe(7);
    // Every field is present on decode. AllTypes contains itself: that field
    // is nullable, so a null pointer there decodes as null.
    expect(out.structField?.structField?.structField).toBeNull();
    expect(Object.keys(out)).toHaveLength(36);
  });

  it("decodes an empty struct to zero values, empty strings, empty lists and default structs", () => {
    const out = roundTrip(AllTypes$codec, {});
    expect(out.int64Field).toBe(0n);
    expect(out.textField).toBe("");
    expect(out.dataField).toBeInstanceOf(Uint8Array);
    expect(out.dataField.length).toBe(0);
    expect(out.int32List).toEqual([]);
    expect(out.structField).toBeNull();
    expect(out.enumField).toBe("red");
  });

  it("writes integers at the edges of their ranges", () => {
    const edges = { int8Field: -128, int16Field: 32767, int32Field: -(2 ** 31), uInt32Field: 2 ** 32 - 1, int64Field: 2n ** 63n - 1n, uInt64Field: 2n ** 64n - 1n };
    expect(roundTrip(AllTypes$codec, edges)).toMatchObject(edges);
  });

  it("accepts numbers for 64-bit fields", () => {
    expect(roundTrip(AllTypes$codec, { int64Field: -5 as unknown as bigint }).int64Field).toBe(-5n);
  });

  it("handles text of every length and script", () => {
    const samples = ["", "a", "x".repeat(24), "y".repeat(25), "z".repeat(1000), "é", "日本語テキスト", "🎉".repeat(20), "\u0000mid"];
    for (const textField of samples) expect(roundTrip(AllTypes$codec, { textField }).textField).toBe(textField);
    // A lone surrogate cannot be UTF-8: it is written as U+FFFD, like TextEncoder does.
    expect(roundTrip(AllTypes$codec, { textField: "a\ud800b" }).textField).toBe("a\ufffdb");
  });

  it("decodes Data as a view of the message", () => {
    const message = writeMessage(AllTypes$codec, { dataField: new Uint8Array([9, 8, 7]) });
    const out = readMessage(AllTypes$codec, message);
    expect(out.dataField.buffer).toBe(message.getSegment(0).buffer);
    expect(Array.from(out.dataField)).toEqual([9, 8, 7]);
  });

  it("leaves null list elements at their defaults", () => {
    const out = roundTrip(AllTypes$codec, {
      textList: ["a", null, "c"] as unknown as string[],
      structList: [{ x: 1 }, null, { y: 3 }] as unknown as Init<AllTypes>["structList"],
      int32List: [1, null, 3] as unknown as number[],
    });
    expect(out.textList).toEqual(["a", "", "c"]);
    expect(out.structList).toEqual([
      { x: 1, y: 0 },
      { x: 0, y: 0 },
      { x: 0, y: 3 },
    ]);
    expect(out.int32List).toEqual([1, 0, 3]);
  });

  it("round-trips nested declarations", () => {
    const out = roundTrip(Nested$codec, { inner: { value: 5, mood: "sad" }, inners: [{ mood: "happy" }, { value: 9 }] });
    expect(out).toEqual({
      inner: { value: 5, mood: "sad" },
      inners: [
        { value: 0, mood: "happy" },
        { value: 9, mood: "happy" },
      ],
    });
  });

  it("exports constants", () => {
    expect(answer).toBe(42);
    expect(greeting).toBe("hello");
    expect(bigNumber).toBe(18446744073709551615n);
    expect(ratio).toBe(0.25);
    expect(flag).toBe(true);
    expect(Array.from(blob)).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(defaultColor).toBe("blue");
  });
});

describe("defaults", () => {
  const DEFAULTS = {
    b: true,
    i8: -5,
    i16: -1234,
    i32: -123456,
    i64: -1234567890123n,
    u8: 200,
    u16: 60000,
    u32: 4000000000,
    u64: 12345678901234567890n,
    f32: 1.5,
    f64: -2.25,
    color: "green",
    text: "dflt",
    point: { x: 7, y: -7 },
    ints: [1, 2, 3],
    b2: false,
  };

  it("decodes missing fields (and a null struct) to the schema defaults", () => {
    const out = roundTrip(Defaults$codec, {});
    expect(out).toMatchObject(DEFAULTS);
    expect(Array.from(out.data)).toEqual([1, 2]);
  });

  it("stores primitives XOR their defaults: the defaults themselves are all-zero bytes", () => {
    const message = writeMessage(Defaults$codec, DEFAULTS as Init<Defaults>);
    expect(rootData(message).every((b) => b === 0)).toBe(true);
    expect(readMessage(Defaults$codec, message)).toMatchObject(DEFAULTS);
  });

  it("stores zero values as the default's bit pattern", () => {
    const zeros = { b: false, i8: 0, i16: 0, i32: 0, i64: 0n, u8: 0, u16: 0, u32: 0, u64: 0n, f32: 0, f64: 0, color: "red", b2: true } as const;
    const message = writeMessage(Defaults$codec, zeros);
    const d = new DataView(rootData(message).buffer);
    expect(d.getUint8(0)).toBe(0b11); // b: false ^ true; b2: true ^ false
    expect(d.getInt8(1)).toBe(-5);
    expect(d.getInt16(2, true)).toBe(-1234);
    expect(d.getInt32(4, true)).toBe(-123456);
    expect(d.getBigInt64(8, true)).toBe(-1234567890123n);
    expect(d.getUint8(16)).toBe(200);
    expect(d.getUint16(18, true)).toBe(60000);
    expect(d.getUint32(20, true)).toBe(4000000000);
    expect(d.getBigUint64(24, true)).toBe(12345678901234567890n);
    expect(d.getFloat32(32, true)).toBe(1.5);
    expect(d.getUint16(36, true)).toBe(1);
    expect(d.getFloat64(40, true)).toBe(-2.25);
    expect(readMessage(Defaults$codec, message)).toMatchObject(zeros);
  });

  it("XORs arbitrary values both ways", () => {
    const values = { i8: 127, i16: -32768, i32: 2147483647, i64: -(2n ** 63n), u8: 1, u16: 65535, u32: 1, u64: 2n ** 64n - 1n, f32: -0.1875, f64: 1e300, color: "blue" } as const;
    expect(roundTrip(Defaults$codec, values)).toMatchObject(values);
    expect(roundTrip(Defaults$codec, { f32: Number.NaN, f64: Number.NEGATIVE_INFINITY })).toMatchObject({ f32: Number.NaN, f64: Number.NEGATIVE_INFINITY });
  });

  it("decodes a pointer default freshly each time", () => {
    const a = roundTrip(Defaults$codec, {});
    const b = roundTrip(Defaults$codec, {});
    a.ints.push(4);
    a.data[0] = 99;
    expect(b.ints).toEqual([1, 2, 3]);
    expect(Array.from(b.data)).toEqual([1, 2]);
  });

  it("reads fields beyond a smaller (older) struct as defaults", () => {
    // A Point is one data word and no pointers; read it as Defaults.
    const bytes = bytesOf(writeMessage(Point$codec, { x: 0, y: 0 }));
    const out = readMessage(Defaults$codec, bytes);
    // Word 0 exists (all zeros: XOR gives the defaults back)...
    expect(out).toMatchObject({ b: true, i8: -5, i16: -1234, i32: -123456 });
    // ...the rest of the data section and every pointer are out of range.
    expect(out).toMatchObject({ i64: -1234567890123n, u64: 12345678901234567890n, f64: -2.25, text: "dflt", point: { x: 7, y: -7 }, ints: [1, 2, 3] });
  });

  it("ignores fields a larger (newer) struct has", () => {
    const bytes = bytesOf(writeMessage(Defaults$codec, { b: false, i8: 3, text: "x" }));
    const p = readMessage(Point$codec, bytes);
    // Point.x is bits 0..31 of word 0: b (bit 0) and i8 (byte 1) and i16 (bytes 2-3).
    expect(p.x & 0xffff).toBe(((3 ^ -5) & 0xff) << 8 | 1);
  });
});

describe("unions and groups", () => {
  it("round-trips each union member with groups and a union inside a group", () => {
    const cases: Init<Shape>[] = [
      { name: "c", circle: 2.5 },
      { name: "r", rectangle: { width: 2, height: 3 }, style: { color: "blue", border: { dashed: "--" } } },
      { which: "empty", style: { border: { solid: 7 } } },
      { points: [{ x: 1, y: 2 }] },
    ];
    const expected = [
      { name: "c", which: "circle", circle: 2.5, style: { color: "red", border: { which: "none", none: true } } },
      { name: "r", which: "rectangle", rectangle: { width: 2, height: 3 }, style: { color: "blue", border: { which: "dashed", dashed: "--" } } },
      { name: "", which: "empty", empty: true, style: { color: "red", border: { which: "solid", solid: 7 } } },
      { name: "", which: "points", points: [{ x: 1, y: 2 }], style: { color: "red", border: { which: "none", none: true } } },
    ];
    cases.forEach((c, i) => expect(roundTrip(Shape$codec, c)).toEqual(expected[i]));
  });

  it("decodes only the active member", () => {
    const out = roundTrip(Shape$codec, { circle: 1 });
    expect(Object.keys(out).sort()).toEqual(["circle", "name", "style", "which"]);
  });

  it("defaults to the first member (discriminant 0)", () => {
    expect(roundTrip(Shape$codec, {})).toMatchObject({ which: "circle", circle: 0 });
  });

  it("lets `which` pick the member even without a value, and wins over other fields", () => {
    expect(roundTrip(Shape$codec, { which: "points" })).toMatchObject({ which: "points", points: [] });
    const both = { which: "rectangle", circle: 5, rectangle: { width: 1 } } as unknown as Init<Shape>;
    expect(roundTrip(Shape$codec, both)).toMatchObject({ which: "rectangle", rectangle: { width: 1, height: 0 } });
  });

  it("writes the discriminant at discriminantOffset", () => {
    const message = writeMessage(Shape$codec, { points: [] });
    // Shape's discriminant is at 16-bit offset 4 (byte 8); points is member 3.
    expect(new DataView(rootData(message).buffer).getUint16(8, true)).toBe(3);
  });

  it("rejects a `which` that is no member", () => {
    expect(() => writeMessage(Shape$codec, { which: "triangle" } as unknown as Init<Shape>)).toThrow(
      /^capmesh: Shape\.which: expected a member of Shape's union .*, got the string "triangle"$/,
    );
  });

  it("decodes an unknown discriminant (a newer member) as its number", () => {
    const message = writeMessage(Shape$codec, { name: "n" });
    const seg = message.getSegment(0);
    seg.setUint16(8 + 8, 9); // root struct data starts at byte 8
    const out = readMessage(Shape$codec, message) as unknown as { which: unknown; name: string };
    expect(out.which).toBe(9);
    expect(out.name).toBe("n");
    expect(Object.keys(out).sort()).toEqual(["name", "style", "which"]);
  });

  it("escapes a field named `which` in a struct with a union", () => {
    const caps = new FakeCaps();
    const out = roundTrip(Holder$codec, { which_: 200, a: true }, caps);
    expect(out).toMatchObject({ which_: 200, which: "a", a: true });
  });
});

describe("enums", () => {
  it("round-trips names and passes unknown ordinals through as numbers", () => {
    expect(roundTrip(AllTypes$codec, { enumField: "green" }).enumField).toBe("green");
    expect(roundTrip(AllTypes$codec, { enumField: 2 }).enumField).toBe("blue");
    expect(roundTrip(AllTypes$codec, { enumField: 77 }).enumField).toBe(77);
    expect(roundTrip(AllTypes$codec, { enumList: ["blue", 5] }).enumList).toEqual(["blue", 5]);
  });

  it("rejects names that are no enumerant", () => {
    // (The type already rejects it: Color is "red" | "green" | "blue" | number.)
    expect(() => writeMessage(AllTypes$codec, { enumField: "purple" as "red" })).toThrow(
      /^capmesh: AllTypes\.enumField: expected Color \(one of "red", "green", "blue", or an ordinal in 0\.\.65535\), got the string "purple"$/,
    );
    expect(Color.ordinalOf("green")).toBe(1);
    expect(Color.nameOf(2)).toBe("blue");
  });
});

describe("capabilities", () => {
  it("writes interface fields through the cap table and reads them back by index", () => {
    const caps = new FakeCaps();
    const svc = fakeClient("svc");
    const sub = fakeClient("sub");
    const anyCap = fakeClient("any");
    const message = writeMessage(Holder$codec, { svc, sub, svcs: [svc, null, sub], any: anyCap, b: svc }, caps);
    expect(caps.added.map((c) => [c.value, c.iface?.name ?? null])).toEqual([
      [svc, "Service"],
      [sub, "SubService"],
      [svc, "Service"],
      [sub, "Service"],
      [anyCap, null],
      [svc, "Service"],
    ]);
    // Interface pointers carry the index the cap table returned.
    const root = utils.getPointer(0, new Struct(message.getSegment(0), 0));
    expect(utils.getPointerType(root)).toBe(3);
    expect(utils.getCapabilityId(root)).toBe(0);

    const out = readMessage(Holder$codec, message, caps);
    expect(out.svc).toEqual({ index: 0, iface: "Service", value: svc });
    expect(out.sub).toEqual({ index: 1, iface: "SubService", value: sub });
    expect(out.svcs).toEqual([{ index: 2, iface: "Service", value: svc }, null, { index: 3, iface: "Service", value: sub }]);
    expect(out.any).toEqual({ index: 4, iface: null, value: anyCap });
    expect(out).toMatchObject({ which: "b", b: { index: 5, iface: "Service", value: svc } });
  });

  it("leaves null capabilities as null pointers without touching the cap table", () => {
    const caps = new FakeCaps();
    const out = roundTrip(Holder$codec, { svc: null, svcs: [null] }, caps);
    expect(caps.added).toEqual([]);
    expect(out.svc).toBeNull();
    expect(out.sub).toBeNull();
    expect(out.svcs).toEqual([null]);
  });

  it("refuses capabilities in a message without a cap table", () => {
    expect(() => writeMessage(Holder$codec, { svc: fakeClient("svc") })).toThrow(/cannot carry capabilities/);
  });

  it("round-trips capability lists in results", () => {
    const caps = new FakeCaps();
    const [a, b] = [fakeClient("a"), fakeClient("b")];
    const out = roundTrip(SubService$child$Results$codec, { svc: a, list: [b, null] }, caps);
    expect(out.svc).toMatchObject({ iface: "SubService", value: a });
    expect(out.list).toEqual([{ index: 1, iface: "Service", value: b }, null]);
  });
});

describe("pipeline tables and interface definitions", () => {
  it("lists struct, group and interface pointer fields", () => {
    expect(AllTypes$codec.pipeline).toEqual({ structField: { kind: "struct", pointer: 2, codec: AllTypes$codec } });
    expect(Shape$codec.pipeline).toEqual({
      rectangle: { kind: "group", codec: expect.objectContaining({ name: "Shape_rectangle" }) },
      style: { kind: "group", codec: expect.objectContaining({ name: "Shape_style" }) },
    });
    expect(Holder$codec.pipeline).toEqual({
      svc: { kind: "interface", pointer: 0, iface: Service },
      sub: { kind: "interface", pointer: 1, iface: SubService },
      any: { kind: "interface", pointer: 3, iface: null },
      b: { kind: "interface", pointer: 4, iface: Service },
    });
    expect(Point$codec.pipeline).toEqual({});
  });

  it("describes interfaces, streaming and reserved method names", () => {
    expect(Service.id).toBe(0x8d1892b5a93f0ef3n);
    expect(Service.methods.map((m) => [m.name, m.ordinal, m.stream])).toEqual([
      ["get", 0, false],
      ["stream", 1, true],
      ["then", 2, false],
      ["release", 3, false],
    ]);
    expect(SubService.superclasses).toEqual([Service]);
    expect(SubService.methods[1]!.params).toBe(Shape$codec);
    expect(SubService.methods[1]!.results).toBe(Point$codec);
    expect(Service.methods[1]!.results.size.dataByteLength).toBe(0);
  });

  it("sizes codecs like the schema", () => {
    expect(AllTypes$codec.size.dataByteLength).toBe(48);
    expect(AllTypes$codec.size.pointerLength).toBe(23);
    expect(Shape$codec.size.dataByteLength).toBe(24);
  });
});

describe("wire structure", () => {
  it("reads wider list encodings (struct lists from primitive lists and back)", () => {
    const message = writeMessage(AllTypes$codec, { int32List: [5, -6], structList: [{ x: 11, y: 12 }, { x: 13 }] });
    const asPoints = defineStruct<{ ints: { x: number; y: number }[]; xs: number[] }>({
      name: "Probe",
      dataWords: 6,
      pointers: 23,
      read: (v, caps) => ({ ints: readList(v, 8, listOfStruct(Point$codec), caps), xs: readList(v, 18, LIST_INT32, caps) }),
      write: () => {},
    });
    const out = readMessage(asPoints, message);
    expect(out.ints).toEqual([
      { x: 5, y: 0 },
      { x: -6, y: 0 },
    ]);
    expect(out.xs).toEqual([11, 13]);
  });

  it("rejects list encodings that cannot be read as the element type", () => {
    const message = writeMessage(AllTypes$codec, { int8List: [1] });
    const probe = defineStruct<{ xs: number[] }>({
      name: "Probe",
      dataWords: 6,
      pointers: 23,
      read: (v, caps) => ({ xs: readList(v, 6, LIST_INT32, caps) }),
      write: () => {},
    });
    expect(() => readMessage(probe, message)).toThrow(/list elements are not Int32/);
  });

  it("follows and writes far pointers (multi-segment messages)", () => {
    // A message read from bytes has full segments: everything written into
    // it lands in new segments, behind far pointers (double-far for content
    // that exactly fills its segment).
    const base = writeMessage(AllTypes$codec, {});
    const message = new Message(bytesOf(base), false);
    const big = new Uint8Array(4096).map((_, i) => i & 0xff);
    AllTypes$codec.encode({ ...SAMPLE, dataField: big }, new Struct(message.getSegment(0), 0), noCaps);
    expect(message._capnp.segments.length).toBeGreaterThan(5);
    const seg0 = message.getSegment(0);
    // Root struct data at byte 8 (6 words), then pointers: textField, dataField.
    expect(seg0.getUint32(8 + 48) & 7).toBe(2); // single far pointer
    expect(seg0.getUint32(8 + 56) & 7).toBe(6); // double far: the 4096 bytes filled a segment
    const out = readMessage(AllTypes$codec, bytesOf(message));
    expect(Array.from(out.dataField)).toEqual(Array.from(big));
    expect(out.textList).toEqual(["a", "", "ccc"]);
    expect(out.structListList).toEqual([[{ x: 1, y: 0 }], [{ x: 0, y: 2 }, { x: 0, y: 0 }]]);
    expect(out.structField?.structField?.int32Field).toBe(7);
  });

  it("encodes into and decodes from capnp-es structs like the RPC engine does", () => {
    const message = new Message();
    const slot = new Pointer(message.getSegment(0), 0);
    const s = new Struct(slot.segment, slot.byteOffset);
    utils.initStruct(Point$codec.size, s);
    Point$codec.encode({ x: 3, y: 4 }, s, noCaps);
    expect(Point$codec.decode(new Struct(slot.segment, slot.byteOffset), noCaps)).toEqual({ x: 3, y: 4 });
    expect(readPointer(Point$codec, slot, noCaps)).toEqual({ x: 3, y: 4 });
  });

  it("encodes into a null pointer by allocating, and decodes a null pointer as defaults", () => {
    const message = new Message();
    const slot = new Pointer(message.getSegment(0), 0);
    expect(Defaults$codec.decode(new Struct(slot.segment, slot.byteOffset), noCaps).i32).toBe(-123456);
    Point$codec.encode({ y: 9 }, new Struct(slot.segment, slot.byteOffset), noCaps);
    expect(readMessage(Point$codec, message)).toEqual({ x: 0, y: 9 });
  });

  it("refuses to encode into a struct that is too small", () => {
    const message = new Message();
    const s = new Struct(message.getSegment(0), 0);
    utils.initStruct(Point$codec.size, s);
    expect(() => AllTypes$codec.encode({}, s, noCaps)).toThrow(/cannot encode into a struct/);
  });

  it("decodes composite-list elements handed over as capnp-es structs", () => {
    const message = writeMessage(AllTypes$codec, { structList: [{ x: 1 }, { x: 2, y: 3 }] });
    const seg = message.getSegment(0);
    // The list is pointer 18 of the root struct (6 data words, at byte 8).
    const listPointer = 8 + 6 * 8 + 18 * 8;
    expect(Point$codec.decode(new Struct(seg, listPointer, undefined, 1), noCaps)).toEqual({ x: 2, y: 3 });
  });

  it("writePointer fills an AnyPointer slot", () => {
    const message = new Message();
    writePointer(Shape$codec, { circle: 4 }, new Pointer(message.getSegment(0), 0), noCaps);
    expect(readMessage(Shape$codec, message)).toMatchObject({ which: "circle", circle: 4 });
  });

  it("copies AnyPointer fields and leaves generic parameters as AnyPointer", () => {
    const src = writeMessage(Point$codec, { x: 1, y: 2 });
    const pointer = new Pointer(src.getSegment(0), 0);
    const out = roundTrip(AllTypes$codec, { anyField: pointer });
    expect(out.anyField).toBeInstanceOf(Pointer);
    expect(readPointer(Point$codec, out.anyField!, noCaps)).toEqual({ x: 1, y: 2 });
    const boxed = roundTrip(UsesGeneric$codec, { box: { value: pointer, count: 3 } });
    expect(boxed.box.count).toBe(3);
    expect(readPointer(Point$codec, boxed.box.value!, noCaps)).toEqual({ x: 1, y: 2 });
    expect(() => writeMessage(AllTypes$codec, { anyField: { x: 1 } as unknown as Pointer })).toThrow(/AnyPointer/);
  });
});

describe("malformed messages", () => {
  it("enforces the traversal limit against tiny messages claiming huge lists", () => {
    const message = writeMessage(AllTypes$codec, {});
    const seg = message.getSegment(0);
    const voidListPointer = 8 + 6 * 8 + 4 * 8;
    seg.setUint32(voidListPointer, 1); // list, offset 0
    seg.setUint32(voidListPointer + 4, 0x1fffffff << 3); // void elements, 2^29 - 1 of them
    expect(() => readMessage(AllTypes$codec, bytesOf(message))).toThrow(/traversal limit/);
  });

  it("rejects pointers out of bounds and of the wrong kind", () => {
    const message = writeMessage(AllTypes$codec, { textField: "abc" });
    const seg = message.getSegment(0);
    const textPointer = 8 + 6 * 8;
    const bad = bytesOf(message);
    const view = new DataView(bad.buffer);
    view.setUint32(8 + textPointer, (1000 << 2) | 1, true);
    expect(() => readMessage(AllTypes$codec, bad)).toThrow(/out of bounds/);
    // A struct pointer where Text is expected.
    seg.setUint32(textPointer, 0);
    seg.setUint32(textPointer + 4, 1);
    expect(() => readMessage(AllTypes$codec, message)).toThrow(/expected a list pointer/);
  });

  it("limits nesting depth", () => {
    let value: Init<AllTypes> = { int32Field: 1 };
    for (let i = 0; i < 70; i++) value = { structField: value };
    const bytes = bytesOf(writeMessage(AllTypes$codec, value));
    expect(() => readMessage(AllTypes$codec, bytes)).toThrow(/nesting limit/);
  });
});

describe("names that clash with the runtime or with JavaScript", () => {
  it("escapes fields, constants and methods and still round-trips", async () => {
    const names = await import("./fixtures/gen/names.js");
    expect(names.readText).toBe(7);
    expect(names.delete_).toBe("gone");
    const p = roundTrip(names.Pointer$codec, { then_: 3, catch_: "c", which: true });
    expect(p).toEqual({ then_: 3, catch_: "c", which: true });
    // Not thenable, so it can be returned from async functions as is.
    expect(await Promise.resolve(p)).toBe(p);
    expect(names.Capability.methods.map((m) => m.name)).toEqual(["dup", "castAs"]);
  });

  it("makes mutually recursive struct fields nullable and decodes them finitely", async () => {
    const { Init$codec, Pair$codec } = await import("./fixtures/gen/names.js");
    expect(roundTrip(Init$codec, {})).toEqual({ self: null, children: [], pair: null });
    const deep = roundTrip(Init$codec, { self: { children: [{}] }, pair: { more: {} } });
    expect(deep.self).toEqual({ self: null, children: [{ self: null, children: [], pair: null }], pair: null });
    expect(deep.pair).toEqual({ init: null, which: "more", more: { init: null, which: "none", none: true } });
    expect(roundTrip(Pair$codec, { which: "more" })).toEqual({ init: null, which: "more", more: { init: null, which: "none", none: true } });
  });
});

describe("nesting limit from the reader", () => {
  it("honours the depth limit of the capnp-es pointer it is given", () => {
    let value: Init<AllTypes> = { int32Field: 1 };
    for (let i = 0; i < 5; i++) value = { structField: value };
    const message = writeMessage(AllTypes$codec, value);
    const seg = message.getSegment(0);
    expect(() => AllTypes$codec.decode(new Struct(seg, 0, 3), noCaps)).toThrow(/nesting limit/);
    expect(AllTypes$codec.decode(new Struct(seg, 0, 10), noCaps).structField).not.toBeNull();
  });
});

// Values that do not fit the schema: the encoder throws a TypeError naming
// the field path and the expected type, instead of coercing the value
// ("text" as Data used to arrive as zero bytes, 300 as a UInt8 as 44).
import { Message, Pointer, Struct } from "capnp-es";
import { describe, expect, it } from "vitest";
import { noCaps, readMessage, SchemaTypeError, writeMessage, writePointer, type Codec } from "../../src/codec/runtime.js";
import type { Init } from "../../src/codec/init.js";
import { AllTypes$codec, Holder$codec, Nested$codec, Point$codec, Record$codec, Shape$codec, type AllTypes } from "./fixtures/gen/codectest.js";
import { FakeCaps, fakeClient } from "./helpers.js";
import { Greeter } from "../../src/gen/demo.js";

/** The error writeMessage throws for `value` (which must not fit). */
function refusal<T>(codec: Codec<T>, value: unknown, caps = new FakeCaps()): SchemaTypeError {
  try {
    writeMessage(codec, value as Init<T>, caps);
  } catch (e) {
    expect(e).toBeInstanceOf(TypeError);
    expect(e).toBeInstanceOf(SchemaTypeError);
    return e as SchemaTypeError;
  }
  throw new Error(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))} was accepted`);
}

const INT32 = "Int32 (an integer in -2147483648..2147483647)";
const UINT8 = "UInt8 (an integer in 0..255)";

describe("values that do not fit the field's type", () => {
  it("a string where Data is expected", () => {
    expect(refusal(AllTypes$codec, { dataField: "text" }).message).toBe(
      'capmesh: AllTypes.dataField: expected Data (a Uint8Array), got the string "text"',
    );
    expect(refusal(AllTypes$codec, { dataList: [new Uint8Array(1), [1, 2]] }).message).toBe(
      "capmesh: AllTypes.dataList[1]: expected Data (a Uint8Array), got an array of 2",
    );
  });

  it("300 in a UInt8 field or a List(UInt8)", () => {
    expect(refusal(AllTypes$codec, { uInt8Field: 300 }).message).toBe(`capmesh: AllTypes.uInt8Field: expected ${UINT8}, got 300`);
    expect(refusal(AllTypes$codec, { uInt8List: [1, 300] }).message).toBe(`capmesh: AllTypes.uInt8List[1]: expected ${UINT8}, got 300`);
    expect(refusal(AllTypes$codec, { uInt8List: new Uint16Array([1, 2, 300]) }).message).toBe(
      `capmesh: AllTypes.uInt8List[2]: expected ${UINT8}, got 300`,
    );
  });

  it("a number where Text is expected", () => {
    expect(refusal(AllTypes$codec, { textField: 5 }).message).toBe("capmesh: AllTypes.textField: expected Text (a string), got 5");
    expect(refusal(AllTypes$codec, { textListList: [["a"], ["b", "c", 7n]] }).message).toBe(
      "capmesh: AllTypes.textListList[1][2]: expected Text (a string), got 7n",
    );
  });

  it("a float (or a numeric string) where an integer is expected", () => {
    expect(refusal(AllTypes$codec, { int32Field: 1.5 }).message).toBe(`capmesh: AllTypes.int32Field: expected ${INT32}, got 1.5`);
    expect(refusal(AllTypes$codec, { int32Field: "7" }).message).toBe(`capmesh: AllTypes.int32Field: expected ${INT32}, got the string "7"`);
    expect(refusal(AllTypes$codec, { int64Field: 0.5 }).message).toMatch(/^capmesh: AllTypes\.int64Field: expected Int64 .*, got 0\.5$/);
    expect(refusal(AllTypes$codec, { int16List: [1, Number.NaN] }).message).toMatch(/^capmesh: AllTypes\.int16List\[1\]: expected Int16 .*, got NaN$/);
    expect(refusal(AllTypes$codec, { uInt64List: [1n, 2.5] }).message).toMatch(/^capmesh: AllTypes\.uInt64List\[1\]: expected UInt64 .*, got 2\.5$/);
  });

  it("numbers and bigints out of range of the field's integer type", () => {
    const cases: [Init<Record<string, unknown>>, string][] = [
      [{ int8Field: 128 }, "int8Field: expected Int8 (an integer in -128..127), got 128"],
      [{ int8Field: -129 }, "int8Field: expected Int8 (an integer in -128..127), got -129"],
      [{ int16Field: 32768 }, "int16Field: expected Int16 (an integer in -32768..32767), got 32768"],
      [{ uInt16Field: -1 }, "uInt16Field: expected UInt16 (an integer in 0..65535), got -1"],
      [{ int32Field: 2 ** 31 }, `int32Field: expected ${INT32}, got 2147483648`],
      [{ uInt32Field: 2 ** 32 }, "uInt32Field: expected UInt32 (an integer in 0..4294967295), got 4294967296"],
      [{ uInt32Field: -1 }, "uInt32Field: expected UInt32 (an integer in 0..4294967295), got -1"],
      [{ int64Field: 2n ** 63n }, "int64Field: expected Int64 (a bigint, or an integral number, in -2^63..2^63-1), got 9223372036854775808n"],
      [{ int64Field: -(2 ** 64) }, "int64Field: expected Int64 (a bigint, or an integral number, in -2^63..2^63-1), got -18446744073709552000"],
      [{ uInt64Field: -1n }, "uInt64Field: expected UInt64 (a bigint, or an integral number, in 0..2^64-1), got -1n"],
      [{ uInt64Field: 2n ** 64n }, "uInt64Field: expected UInt64 (a bigint, or an integral number, in 0..2^64-1), got 18446744073709551616n"],
      [{ int8List: [0, -200] }, "int8List[1]: expected Int8 (an integer in -128..127), got -200"],
      [{ uInt32List: [2 ** 32] }, "uInt32List[0]: expected UInt32 (an integer in 0..4294967295), got 4294967296"],
      [{ int64List: [2n ** 63n] }, "int64List[0]: expected Int64 (a bigint, or an integral number, in -2^63..2^63-1), got 9223372036854775808n"],
    ];
    for (const [value, message] of cases) expect(refusal(AllTypes$codec, value).message).toBe(`capmesh: AllTypes.${message}`);
    // The edges themselves fit, numbers included for 64-bit fields.
    const edges = { int8Field: -128, uInt16Field: 65535, uInt32Field: 2 ** 32 - 1, int64Field: -(2 ** 53), uInt64Field: 2 ** 53, int8List: [127, -128] };
    expect(readMessage(AllTypes$codec, writeMessage(AllTypes$codec, edges as unknown as Init<AllTypes>))).toMatchObject({ ...edges, int64Field: -(2n ** 53n), uInt64Field: 2n ** 53n });
  });

  it("Bool, Float and Void-list elements of the wrong kind", () => {
    expect(refusal(AllTypes$codec, { boolField: 1 }).message).toBe("capmesh: AllTypes.boolField: expected Bool (true or false), got 1");
    expect(refusal(AllTypes$codec, { boolList: [true, "false"] }).message).toBe(
      'capmesh: AllTypes.boolList[1]: expected Bool (true or false), got the string "false"',
    );
    expect(refusal(AllTypes$codec, { float64Field: 1n }).message).toBe("capmesh: AllTypes.float64Field: expected Float64 (a number), got 1n");
    expect(refusal(AllTypes$codec, { float32List: [0.5, "1"] }).message).toBe(
      'capmesh: AllTypes.float32List[1]: expected Float32 (a number), got the string "1"',
    );
  });

  it("an enum value that is no enumerant (a name it does not have, or no UInt16)", () => {
    const expected = 'expected Color (one of "red", "green", "blue", or an ordinal in 0..65535)';
    expect(refusal(AllTypes$codec, { enumField: "purple" }).message).toBe(`capmesh: AllTypes.enumField: ${expected}, got the string "purple"`);
    expect(refusal(AllTypes$codec, { enumField: 70000 }).message).toBe(`capmesh: AllTypes.enumField: ${expected}, got 70000`);
    expect(refusal(AllTypes$codec, { enumList: ["red", 1.5] }).message).toBe(`capmesh: AllTypes.enumList[1]: ${expected}, got 1.5`);
    expect(refusal(Nested$codec, { inners: [{ mood: "happy" }, { mood: "glad" }] }).message).toMatch(
      /^capmesh: Nested\.inners\[1\]\.mood: expected Nested\.Inner\.Mood \(one of "happy", "sad", .*\), got the string "glad"$/,
    );
    // An ordinal this schema does not know still goes through (a newer peer's enumerant).
    expect(readMessage(AllTypes$codec, writeMessage(AllTypes$codec, { enumField: 9 })).enumField).toBe(9);
  });

  it("a value of the wrong shape for a list, a struct or a group", () => {
    expect(refusal(AllTypes$codec, { int32List: "123" }).message).toBe(
      'capmesh: AllTypes.int32List: expected List(Int32) (an array), got the string "123"',
    );
    expect(refusal(AllTypes$codec, { structList: { x: 1 } }).message).toBe("capmesh: AllTypes.structList: expected List(Point) (an array), got an object");
    expect(refusal(AllTypes$codec, { structField: 5 }).message).toBe("capmesh: AllTypes.structField: expected AllTypes (an object), got 5");
    expect(refusal(AllTypes$codec, { structList: [{ x: 1 }, [2, 3]] }).message).toBe(
      "capmesh: AllTypes.structList[1]: expected Point (an object), got an array of 2",
    );
    expect(refusal(Shape$codec, { style: "red" }).message).toBe('capmesh: Shape.style: expected Shape_style (an object), got the string "red"');
    expect(refusal(Shape$codec, { style: { border: { solid: 70000 } } }).message).toBe(
      "capmesh: Shape.style.border.solid: expected UInt16 (an integer in 0..65535), got 70000",
    );
    expect(refusal(Shape$codec, { which: "hexagon" }).message).toMatch(/^capmesh: Shape\.which: expected a member of Shape's union .*, got the string "hexagon"$/);
  });

  it("builds the path through nested structs and lists: Outer.list[3].name", () => {
    const structListList = [[{ x: 1 }], [{ y: 2 }, {}, { x: 3 }, { x: 4, y: "5" }]];
    expect(refusal(AllTypes$codec, { structField: { structField: { structListList } } }).message).toBe(
      `capmesh: AllTypes.structField.structField.structListList[1][3].y: expected ${INT32}, got the string "5"`,
    );
    const e = refusal(Record$codec, { origin: { x: 1.25 } });
    expect(e.root).toBe("Record");
    expect(e.path).toBe(".origin.x");
    expect(e.where).toBe("Record.origin.x");
    expect(e.problem).toBe(`expected ${INT32}, got 1.25`);
    // The stack trace's header says the same as the message.
    expect(e.stack!.split("\n")[0]).toBe(`TypeError: ${e.message}`);
  });
});

describe("fields the schema does not have", () => {
  it("names an unknown key, at any depth, with the struct's fields", () => {
    expect(refusal(Point$codec, { x: 1, z: 2 }).message).toBe("capmesh: Point.z: no such field in Point (its fields: x, y)");
    expect(refusal(AllTypes$codec, { structList: [{ x: 1 }, { x: 2, why: 3 }] }).message).toBe(
      "capmesh: AllTypes.structList[1].why: no such field in Point (its fields: x, y)",
    );
    expect(refusal(Shape$codec, { name: "n", style: { colour: "red" } }).message).toBe(
      "capmesh: Shape.style.colour: no such field in Shape_style (its fields: color, border)",
    );
    // A typo of a field name is caught even when nothing else is set.
    expect(refusal(Record$codec, { nmae: "x" }).message).toMatch(/^capmesh: Record\.nmae: no such field in Record \(its fields: id, score, name, /);
  });

  it("accepts null and undefined fields, `which`, union members beside `which`, and decoded values", () => {
    const value = { id: 1, name: null, tags: undefined, origin: { x: 1, y: undefined } };
    expect(readMessage(Record$codec, writeMessage(Record$codec, value))).toMatchObject({ id: 1, name: "", tags: [], origin: { x: 1, y: 0 } });
    const shape = readMessage(Shape$codec, writeMessage(Shape$codec, { which: "circle", circle: 2, style: { border: { which: "dashed", dashed: "-" } } }));
    // A decoded value goes back in as it came out.
    expect(readMessage(Shape$codec, writeMessage(Shape$codec, shape))).toEqual(shape);
    expect(() => writeMessage(Shape$codec, { which: "rectangle", circle: 5, rectangle: { width: 1 } } as Init<typeof shape>)).not.toThrow();
  });

  it("does not count inherited keys: a prototype's properties are not fields", () => {
    const proto = { stray: 1 };
    const point = Object.assign(Object.create(proto) as object, { x: 1, y: 2 });
    expect(readMessage(Point$codec, writeMessage(Point$codec, point))).toEqual({ x: 1, y: 2 });
  });
});

describe("capabilities", () => {
  it("refuses an object without the interface's methods where a capability is expected", () => {
    const expected = "expected a Service capability (a client, or a server object with any of the methods get, stream, then_, release_)";
    expect(refusal(Holder$codec, { svc: { name: "not a server" } }).message).toBe(`capmesh: Holder.svc: ${expected}, got an object`);
    expect(refusal(Holder$codec, { svc: "svc" }).message).toBe(`capmesh: Holder.svc: ${expected}, got the string "svc"`);
    expect(refusal(Holder$codec, { svcs: [fakeClient("a"), { heard() {} }] }).message).toBe(`capmesh: Holder.svcs[1]: ${expected}, got an object`);
    // A SubService field takes Service's methods too (superclasses), and names them.
    expect(refusal(Holder$codec, { sub: {} }).message).toMatch(/^capmesh: Holder\.sub: expected a SubService capability .*child, shape, get, stream, then_, release_\), got an object$/);
    // An untyped capability field takes clients only.
    expect(refusal(Holder$codec, { any: { get() {} } }).message).toBe(
      "capmesh: Holder.any: expected a capability client (wrap a server object with Interface.server(obj)), got an object",
    );
  });

  it("accepts clients, and server objects with some of the methods (the rest answer unimplemented)", () => {
    const caps = new FakeCaps();
    const server = { get: () => ({}) };
    class Impl {
      release_(): void {}
    }
    const impl = new Impl();
    writeMessage(Holder$codec, { svc: server, sub: fakeClient("sub"), svcs: [impl, null], any: fakeClient("any") }, caps);
    expect(caps.added.map((c) => c.value)).toEqual([server, expect.objectContaining({ name: "sub" }), impl, expect.objectContaining({ name: "any" })]);
  });
});

describe("how the errors surface", () => {
  it("every entry point throws synchronously, naming the root struct", () => {
    const bad = { x: "1" } as unknown as Init<{ x: number; y: number }>;
    const message = `capmesh: Point.x: expected ${INT32}, got the string "1"`;
    expect(() => writeMessage(Point$codec, bad)).toThrow(message);
    expect(() => writePointer(Point$codec, bad, new Pointer(new Message().getSegment(0), 0), noCaps)).toThrow(message);
    const s = new Struct(new Message().getSegment(0), 0);
    expect(() => Point$codec.encode(bad, s, noCaps)).toThrow(message);
  });

  it("a typed call with params that do not fit rejects with the TypeError, and the client keeps working", async () => {
    using greeter = Greeter.server({ greet: ({ name }) => ({ greeting: `hello, ${name}` }), room: () => ({}) });
    const refused = await greeter.greet({ name: 5 } as unknown as { name: string }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(TypeError);
    expect((refused as Error).message).toBe("capmesh: Greeter$greet$Params.name: expected Text (a string), got 5");
    const typo = await greeter.greet({ nmae: "x" } as unknown as { name: string }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((typo as Error).message).toBe("capmesh: Greeter$greet$Params.nmae: no such field in Greeter$greet$Params (its fields: name)");
    expect((await greeter.greet({ name: "world" })).greeting).toBe("hello, world");
  });
});

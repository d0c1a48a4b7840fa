// Wire compatibility with the reference implementation: what we encode, the
// C++ `capnp decode` reads back as the same values, and what `capnp encode`
// produces, we decode to the same values.
import { Message, Struct } from "capnp-es";
import { describe, expect, it } from "vitest";
import { noCaps, readMessage, writeMessage } from "../../src/codec/runtime.js";
import { AllTypes$codec, Defaults$codec, Nested$codec, Shape$codec, type AllTypes } from "./fixtures/gen/codectest.js";
import { bytesOf, capnpDecode, capnpEncode, hasCapnp } from "./helpers.js";
import { SAMPLE } from "./samples.js";

const SAMPLE_TEXT =
  "(voidField = void, boolField = true, int8Field = -123, int16Field = -12345, int32Field = -1234567, " +
  "int64Field = -123456789012345, uInt8Field = 234, uInt16Field = 45678, uInt32Field = 3456789012, " +
  "uInt64Field = 12345678901234567890, float32Field = 1234.5, float64Field = -1.25e-10, " +
  'textField = "foo ✓ 😀", dataField = "\\001\\002\\377", ' +
  "structField = (voidField = void, boolField = false, int8Field = 0, int16Field = 0, int32Field = 0, " +
  "int64Field = 0, uInt8Field = 0, uInt16Field = 0, uInt32Field = 0, uInt64Field = 0, float32Field = 0, " +
  'float64Field = 0, textField = "nested", structField = (voidField = void, boolField = false, int8Field = 0, ' +
  "int16Field = 0, int32Field = 7, int64Field = 0, uInt8Field = 0, uInt16Field = 0, uInt32Field = 0, " +
  "uInt64Field = 0, float32Field = 0, float64Field = 0, enumField = red), enumField = red), enumField = blue, " +
  "voidList = [void, void, void], boolList = [true, false, true, true, false, false, false, false, true], " +
  "int8List = [-1, 2], int16List = [300, -300], int32List = [1, -2, 3], int64List = [1, -2], " +
  "uInt8List = [0, 255], uInt16List = [65535], uInt32List = [4294967295], uInt64List = [18446744073709551615], " +
  'float32List = [0.5, -0.25], float64List = [1e100], textList = ["a", "", "ccc"], dataList = ["\\001", ""], ' +
  "structList = [(x = 1, y = 2), (x = -3, y = 4)], enumList = [red, blue, green], " +
  'listList = [[1, 2], [], [3]], textListList = [["x"], ["y", "z"]], ' +
  "structListList = [[(x = 1, y = 0)], [(x = 0, y = 2), (x = 0, y = 0)]])";

describe.skipIf(!hasCapnp)("wire compatibility with the C++ capnp tool", () => {
  it("capnp decode reads what we encode (every field kind)", () => {
    expect(capnpDecode("AllTypes", bytesOf(writeMessage(AllTypes$codec, SAMPLE)))).toBe(SAMPLE_TEXT);
  });

  it("we decode what capnp encode writes (every field kind)", () => {
    const out = readMessage(AllTypes$codec, capnpEncode("AllTypes", SAMPLE_TEXT));
    const again = readMessage(AllTypes$codec, bytesOf(writeMessage(AllTypes$codec, SAMPLE)));
    expect(out).toEqual(again);
    expect(out.textField).toBe("foo ✓ 😀");
    expect(out.uInt64Field).toBe(12345678901234567890n);
    expect(out.structListList).toEqual([[{ x: 1, y: 0 }], [{ x: 0, y: 2 }, { x: 0, y: 0 }]]);
  });

  it("agrees on defaults: absent fields, and zeros stored XOR the defaults", () => {
    expect(capnpDecode("Defaults", bytesOf(writeMessage(Defaults$codec, {})))).toBe(
      "(b = true, i8 = -5, i16 = -1234, i32 = -123456, i64 = -1234567890123, u8 = 200, u16 = 60000, " +
        "u32 = 4000000000, u64 = 12345678901234567890, f32 = 1.5, f64 = -2.25, color = green, b2 = false)",
    );
    const zeros = writeMessage(Defaults$codec, {
      b: false, i8: 0, i16: 0, i32: 0, i64: 0n, u8: 0, u16: 0, u32: 0, u64: 0n, f32: 0, f64: 0,
      color: "red", text: "", data: new Uint8Array(0), point: {}, ints: [], b2: true,
    });
    expect(capnpDecode("Defaults", bytesOf(zeros))).toBe(
      "(b = false, i8 = 0, i16 = 0, i32 = 0, i64 = 0, u8 = 0, u16 = 0, u32 = 0, u64 = 0, f32 = 0, f64 = 0, " +
        'color = red, text = "", data = "", point = (x = 0, y = 0), ints = [], b2 = true)',
    );
    // And the other way: capnp writes -1 for i8 as (-1 XOR -5); we must undo that.
    const fromCapnp = readMessage(Defaults$codec, capnpEncode("Defaults", "(i8 = -1, u32 = 0, f64 = 3.5, color = red, b = false)"));
    expect(fromCapnp).toMatchObject({ i8: -1, u32: 0, f64: 3.5, color: "red", b: false, i16: -1234, text: "dflt", ints: [1, 2, 3] });
    expect(fromCapnp.point).toEqual({ x: 7, y: -7 });
  });

  it("agrees on unions, groups and unions in groups", () => {
    const cases: [Parameters<typeof Shape$codec.encode>[0], string][] = [
      [{ name: "c", circle: 2.5 }, '(name = "c", circle = 2.5, style = (color = red, border = (none = void)))'],
      [
        { name: "r", rectangle: { width: 2, height: 3 }, style: { color: "blue", border: { dashed: "--" } } },
        '(name = "r", rectangle = (width = 2, height = 3), style = (color = blue, border = (dashed = "--")))',
      ],
      [{ which: "empty", style: { border: { solid: 7 } } }, "(empty = void, style = (color = red, border = (solid = 7)))"],
      [{ points: [{ x: 1, y: 2 }] }, "(points = [(x = 1, y = 2)], style = (color = red, border = (none = void)))"],
    ];
    for (const [value, text] of cases) {
      expect(capnpDecode("Shape", bytesOf(writeMessage(Shape$codec, value)))).toBe(text);
      const back = readMessage(Shape$codec, capnpEncode("Shape", text));
      expect(back).toEqual(readMessage(Shape$codec, writeMessage(Shape$codec, value)));
    }
  });

  it("agrees on nested declarations and struct lists", () => {
    const value = { inner: { value: 5, mood: "sad" }, inners: [{ mood: "happy" }, { value: 9, mood: "sad" }] } as const;
    const text = "(inner = (value = 5, mood = sad), inners = [(value = 0, mood = happy), (value = 9, mood = sad)])";
    expect(capnpDecode("Nested", bytesOf(writeMessage(Nested$codec, value)))).toBe(text);
    expect(readMessage(Nested$codec, capnpEncode("Nested", text))).toEqual({
      inner: { value: 5, mood: "sad" },
      inners: [
        { value: 0, mood: "happy" },
        { value: 9, mood: "sad" },
      ],
    });
  });

  it("capnp decode follows the far and double-far pointers we write", () => {
    const message = new Message(bytesOf(writeMessage(AllTypes$codec, {})), false);
    AllTypes$codec.encode({ ...SAMPLE, dataField: new Uint8Array(4096) }, new Struct(message.getSegment(0), 0), noCaps);
    expect(message._capnp.segments.length).toBeGreaterThan(5);
    const text = capnpDecode("AllTypes", bytesOf(message));
    expect(text).toBe(SAMPLE_TEXT.replace('dataField = "\\001\\002\\377"', `dataField = "${"\\000".repeat(4096)}"`));
  });

  it("we read messages whose older struct layout lacks newer fields", () => {
    // capnp encodes a Point (1 data word); read as Defaults every later field is its default.
    const out = readMessage(Defaults$codec, capnpEncode("Point", "(x = 0, y = 0)"));
    expect(out).toMatchObject({ b: true, i64: -1234567890123n, text: "dflt", point: { x: 7, y: -7 } });
  });

  it("round-trips random values through capnp's text form", () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 20; i++) {
      const value: Partial<AllTypes> = {
        int8Field: (rand() % 256) - 128,
        int16Field: (rand() % 65536) - 32768,
        int32Field: rand() - 2 ** 30,
        int64Field: BigInt(rand()) * BigInt(rand()) - 2n ** 60n,
        uInt32Field: rand() * 2,
        uInt64Field: BigInt(rand()) * BigInt(rand()) * 8n,
        float64Field: rand() / 7,
        boolList: Array.from({ length: rand() % 20 }, () => rand() % 2 === 0),
        int16List: Array.from({ length: rand() % 5 }, () => (rand() % 65536) - 32768),
        textField: "t".repeat(rand() % 40),
      };
      const text = capnpDecode("AllTypes", bytesOf(writeMessage(AllTypes$codec, value)));
      expect(readMessage(AllTypes$codec, capnpEncode("AllTypes", text))).toMatchObject(value);
    }
  });
});

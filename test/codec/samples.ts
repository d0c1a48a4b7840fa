// Values shared by the codec tests.
import type { Init } from "../../src/codec/init.js";
import type { AllTypes } from "./fixtures/gen/codectest.js";

/** An AllTypes with every field set to something other than its default. */
export const SAMPLE: Init<AllTypes> = {
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
  dataField: new Uint8Array([1, 2, 255]),
  structField: { textField: "nested", structField: { int32Field: 7 } },
  enumField: "blue",
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
  dataList: [new Uint8Array([1]), new Uint8Array(0)],
  structList: [
    { x: 1, y: 2 },
    { x: -3, y: 4 },
  ],
  enumList: ["red", "blue", "green"],
  listList: [[1, 2], [], [3]],
  textListList: [["x"], ["y", "z"]],
  structListList: [[{ x: 1 }], [{ y: 2 }, {}]],
};

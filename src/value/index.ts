// capmesh values (schema/value.capnp): a dynamically typed value for generic
// interfaces, and its mapping to and from plain JS values. A field of type
// Value holds the generated shape (`Value`); convert at the edges:
//
//   const { value } = await service.transform({ value: toValue({ n: 1, tags: ["a"] }) });
//   const result = fromValue(value); // plain objects, arrays, numbers, ...
export { toValue } from "./encode.js";
export { fromValue, type FromValueOptions, type PlainValue } from "./decode.js";
export { encodeValue, decodeValue } from "./message.js";
export { DEFAULT_VALUE_LIMITS, type ValueLimits } from "./limits.js";
export { ValueFormatError, ValueLimitError, ValueTypeError, type ValueLimitName } from "./errors.js";
export { ErrorValue, type ErrorValueOptions } from "./error-value.js";
export { StreamValue, type StreamValueKind } from "./stream.js";
export { Value$codec, type Value, type ErrorInfo as ValueErrorInfo } from "../gen/value.js";

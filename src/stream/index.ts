// capmesh streams (schema/stream.capnp): bytes and values as capabilities,
// with backpressure end to end and cancellation both ways.
//
// A stream travels as its source (ByteSource, ValueSource): put one in
// params to send data with a call, in results to send data back, in a Value
// (toValue serves an iterable or stream it finds there; byteStreamValue and
// valueStreamValue choose the kind). Make one from an async iterable, an
// iterable, a Web ReadableStream or a Node Readable; read a received one
// with `for await`, or as a ReadableStream or a Readable:
//
//   const { output } = await tool.run({ input: toByteSource(fs.createReadStream("in")) });
//   await pipeline(fromByteSource(output).nodeReadable(), fs.createWriteStream("out"));
export { toByteSource, fromByteSource, BYTE_WRITE_BYTES, type ByteChunk, type ByteInput, type ByteReader } from "./bytes.js";
export { toValueSource, fromValueSource, type ValueReader } from "./values.js";
export { byteStreamValue, valueStreamValue, readStreamValue } from "./stream-value.js";
export { StreamReader } from "./reader.js";
export type { StreamInput } from "./input.js";
export { ByteSource, ByteSink, ValueSource, ValueSink } from "../gen/stream.js";
export type { ByteSourceServer, ByteSinkServer, ValueSourceServer, ValueSinkServer } from "../gen/stream.js";

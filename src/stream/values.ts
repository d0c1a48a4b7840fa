// Value streams (schema/stream.capnp ValueSource and ValueSink): sequences
// of plain JS values, each converted with toValue on the way out and
// fromValue on the way in (src/value/), so an item is anything a Value
// field takes: numbers, strings, bytes, arrays, records, errors, even
// capabilities and other streams.
//
//   return { rows: toValueSource(db.query(sql)) };           // an async iterable of rows
//   for await (const row of fromValueSource(results.rows)) console.log(row.name);
import type { Value } from "../gen/value.js";
import { ValueSink, ValueSource } from "../gen/stream.js";
import { fromValue, type FromValueOptions, type PlainValue } from "../value/decode.js";
import { toValue } from "../value/encode.js";
import type { ValueLimits } from "../value/limits.js";
import { readSource } from "./consume.js";
import type { StreamInput } from "./input.js";
import { ownValue } from "./own.js";
import type { PumpShape } from "./pump.js";
import type { StreamReader } from "./reader.js";
import { SourceServer, UNTIMED } from "./source.js";

/** A received value stream: `for await` it, or take `readable()` or `nodeReadable()` (object mode), once. */
export type ValueReader<T = PlainValue> = StreamReader<T>;

/** Values written together, at most: what accumulates while the window is full goes in one call. */
const BATCH_ITEMS = 1024;
const BATCH_BYTES = 64 * 1024;

/** About how many bytes a value takes in a message (enough to size a batch). */
function sizeOf(v: Value): number {
  switch (v.which) {
    case "text":
      return 16 + v.text.length;
    case "bytes":
      return 16 + v.bytes.byteLength;
    case "list": {
      let n = 16;
      for (const item of v.list) n += sizeOf(item);
      return n;
    }
    case "record": {
      let n = 16;
      for (const name of v.record.names) n += 8 + name.length;
      for (const item of v.record.values) n += sizeOf(item);
      return n;
    }
    case "error":
      return 32 + v.error.message.length + v.error.code.length + (v.error.details ? sizeOf(v.error.details) : 0);
    default:
      return 16;
  }
}

function valueShape(limits: Partial<ValueLimits> | undefined): PumpShape<unknown, Value> {
  return {
    pieces: (item) => [toValue(item, limits)],
    sizeOf,
    maxBytes: BATCH_BYTES,
    maxItems: BATCH_ITEMS,
    join: (batch) => batch,
  };
}

/** Releases the capabilities a batch carried: sent, they are the reader's now. */
function releaseCaps(batch: Value[]): void {
  for (const v of batch) release(v);
}

function release(v: Value): void {
  switch (v.which) {
    case "capability":
      v.capability?.release();
      return;
    case "stream":
      v.stream.cap?.release();
      return;
    case "list":
      v.list.forEach(release);
      return;
    case "record":
      v.record.values.forEach(release);
      return;
    case "error":
      if (v.error.details) release(v.error.details);
      return;
  }
}

/**
 * Serves `input` (an async iterable, iterable, Web ReadableStream or object-
 * mode Node Readable of plain values) as a ValueSource capability. As
 * toByteSource: read once, lazily, at most a window ahead of the reader, and
 * always finished. An item that has no Value form (or breaks the limits)
 * fails the stream for the reader with the ValueTypeError's message, and the
 * input is returned. Capabilities (and streams) in items are moved, as a
 * server's results are: released here once sent; yield `cap.dup()` to keep one.
 */
export function toValueSource(input: StreamInput<unknown>, options: { limits?: Partial<ValueLimits> } = {}): ValueSource {
  return ValueSource.server(
    new SourceServer<unknown, Value, ValueSink>(input, "ValueSource", valueShape(options.limits), (values) => ({ values }), releaseCaps),
  );
}

/**
 * Reads a ValueSource received in params or results, each item converted
 * with fromValue (`options` as fromValue's: records as objects or Maps,
 * integers as numbers or bigints, limits). As fromByteSource: reading starts
 * at once, items are the reader's own (bytes copied, capabilities its own
 * references), the producer stays within one window, and errors and
 * cancellation travel both ways.
 */
export function fromValueSource(source: ValueSource, options: FromValueOptions = {}): ValueReader {
  return readSource<Value, PlainValue>(
    (h) =>
      source.pipeTo({
        sink: ValueSink.server({
          write: ({ values }) => h.write(values),
          end: () => h.end(),
          abort: ({ error }) => h.abort(error),
          [Symbol.dispose]: () => h.dispose(),
        }),
      }, UNTIMED),
    // Converted while its write is open: the value's bytes and capabilities live that long.
    (value) => ownValue(fromValue(value, options)),
    true,
  );
}

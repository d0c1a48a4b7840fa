// Byte streams (schema/stream.capnp ByteSource and ByteSink) from and to
// JS's own shapes.
//
//   // producer: put a source where the schema has a ByteSource
//   return { output: toByteSource(fs.createReadStream(path)) };
//
//   // consumer: read a ByteSource it received
//   for await (const chunk of fromByteSource(results.output)) hash.update(chunk);
//   await pipeline(fromByteSource(results.output).nodeReadable(), fs.createWriteStream(out));
import { concatBytes } from "../transport/bytes.js";
import { ByteSink, ByteSource } from "../gen/stream.js";
import { readSource } from "./consume.js";
import { describe, type StreamInput } from "./input.js";
import type { PumpShape } from "./pump.js";
import type { StreamReader } from "./reader.js";
import { SourceServer, UNTIMED } from "./source.js";

/** The most bytes one chunk is written in; larger chunks are split. Writes join smaller ones up to about twice this. */
export const BYTE_WRITE_BYTES = 64 * 1024;

/** What a byte stream can be made of: chunks of Uint8Array (Buffer too), ArrayBuffer, another typed array, or string (as UTF-8). */
export type ByteChunk = Uint8Array | ArrayBuffer | ArrayBufferView | string;
export type ByteInput = StreamInput<ByteChunk>;

/** A received byte stream: `for await` it, or take `readable()` or `nodeReadable()` (one of them, once). */
export type ByteReader = StreamReader<Uint8Array>;

const utf8 = new TextEncoder();

function toBytes(chunk: ByteChunk): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return utf8.encode(chunk);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`capmesh: a byte stream's chunks are Uint8Array, ArrayBuffer or string, got ${describe(chunk)}`);
}

const byteShape: PumpShape<ByteChunk, Uint8Array> = {
  pieces(chunk) {
    const bytes = toBytes(chunk);
    if (bytes.byteLength <= BYTE_WRITE_BYTES) return bytes.byteLength === 0 ? [] : [bytes];
    const out: Uint8Array[] = [];
    for (let at = 0; at < bytes.byteLength; at += BYTE_WRITE_BYTES) out.push(bytes.subarray(at, at + BYTE_WRITE_BYTES));
    return out;
  },
  sizeOf: (piece) => piece.byteLength,
  maxBytes: BYTE_WRITE_BYTES,
  maxItems: 1024,
  // A producer may reuse a chunk's memory once it yields the next: a piece that waits is copied.
  keep: (piece) => piece.slice(),
  join(batch) {
    return batch.length === 1 ? batch : [concatBytes(batch)];
  },
};

/**
 * Serves `input` as a ByteSource capability, for a params or results field
 * of that type (inside a Value, toValue does it). Nothing is read from
 * `input` until the receiver reads the stream; it is read once, never more
 * than the flow-control window ahead of the reader, and always finished:
 * read to its end, or stopped with return() (a Readable destroyed, a
 * ReadableStream canceled, a generator's `finally` run) when the reader
 * stops, goes away, or drops the capability unread. If `input` throws, the
 * reader's read fails with its message (and its `code`, when it has one),
 * after the data before it.
 *
 * The client returned is a reference like any other: results move it; after
 * passing it in params, the caller releases its own (or `using`).
 */
export function toByteSource(input: ByteInput): ByteSource {
  return ByteSource.server(new SourceServer<ByteChunk, Uint8Array, ByteSink>(input, "ByteSource", byteShape, (batch) => ({ bytes: batch[0]! })));
}

/**
 * Reads a ByteSource received in params or results. Reading starts at once
 * (the producer starts sending), so `source` may be released right after,
 * and a server may read a source from its params without dup(). Every chunk
 * is the reader's own to keep (a copy, not a view of the message it came in).
 *
 * Backpressure: the producer runs at most one flow-control window (256 KiB
 * to 16 MiB, see setStreamWindow) ahead of this reader, however slowly it
 * reads. Errors: the producer's failure rejects the read after the data sent
 * before it, with an ErrorValue of its message and code; a producer that
 * goes away without ending rejects the next read with an RpcError of type
 * `disconnected`. Stopping early (break, cancel(), the ReadableStream
 * canceled, the Readable destroyed) stops the producer.
 */
export function fromByteSource(source: ByteSource): ByteReader {
  return readSource<Uint8Array, Uint8Array>(
    (h) =>
      source.pipeTo({
        sink: ByteSink.server({
          write: ({ bytes }) => h.write([bytes]),
          end: () => h.end(),
          abort: ({ error }) => h.abort(error),
          [Symbol.dispose]: () => h.dispose(),
        }),
      }, UNTIMED),
    // The chunk is a view of a message the engine reuses once its write returns.
    (bytes) => bytes.slice(),
    false,
  );
}

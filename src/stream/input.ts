// What a producer may hand us, as one shape: an async iterator we pull from
// and can stop (return()), which frees the source's resources.
import { Readable } from "node:stream";

/** Anything a stream can be produced from. */
export type StreamInput<T> = AsyncIterable<T> | Iterable<T> | ReadableStream<T> | Readable;

/** Opens `input` for reading; return() stops it and frees what it holds. */
export function openInput<T>(input: StreamInput<T>): AsyncIterator<T> {
  // Web streams first: Node's have Symbol.asyncIterator, other realms' may not.
  if (isReadableStream(input)) return readerIterator(input.getReader());
  if (input instanceof Readable) {
    // Its iterator destroys the Readable on return(), as pipeline() would.
    return input[Symbol.asyncIterator]() as AsyncIterator<T>;
  }
  const asyncIterable = input as AsyncIterable<T>;
  if (typeof asyncIterable[Symbol.asyncIterator] === "function") return asyncIterable[Symbol.asyncIterator]();
  const iterable = input as Iterable<T>;
  if (typeof iterable[Symbol.iterator] === "function" && typeof input !== "string") {
    const it = iterable[Symbol.iterator]();
    return {
      next: async () => it.next(),
      return: async (value?: unknown) => (it.return?.(value), { done: true, value: undefined as never }),
    };
  }
  throw new TypeError(
    `capmesh: a stream is made from an async iterable, an iterable, a Web ReadableStream or a Node Readable, got ${describe(input)}`,
  );
}

function isReadableStream(x: unknown): x is ReadableStream {
  return typeof x === "object" && x !== null && typeof (x as ReadableStream).getReader === "function" && "locked" in x;
}

function readerIterator<T>(reader: ReadableStreamDefaultReader<T>): AsyncIterator<T> {
  return {
    next: async () => {
      const r = await reader.read();
      return r.done ? { done: true, value: undefined as never } : { done: false, value: r.value };
    },
    return: async () => {
      await reader.cancel().catch(() => {});
      reader.releaseLock();
      return { done: true, value: undefined as never };
    },
  };
}

export function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x !== "object") return typeof x;
  return (x as object).constructor?.name ?? "an object";
}

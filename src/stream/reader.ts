// The consumer's handle on a received stream: an async iterable (for await),
// or, once, a Web ReadableStream (pipeTo, pipeThrough) or a Node Readable
// (pipe, pipeline). Whichever is used, stopping it early (break, cancel(),
// destroy()) stops the producer: the writes it has in flight fail, its
// source is returned, and the call that carried the data is canceled.
import { Readable } from "node:stream";
import type { Intake } from "./intake.js";

export class StreamReader<T> implements AsyncIterable<T> {
  #intake: Intake<unknown, T>;
  #claimedBy: string | null = null;
  readonly #objectMode: boolean;

  /** @internal */
  constructor(intake: Intake<unknown, T>, objectMode: boolean) {
    this.#intake = intake;
    this.#objectMode = objectMode;
  }

  /** What it carries: "bytes" (chunks of Uint8Array) or "values" (plain values, fromValue's). */
  get kind(): "bytes" | "values" {
    return this.#objectMode ? "values" : "bytes";
  }

  /** Whether the stream has ended, failed or been canceled. */
  get settled(): boolean {
    return this.#intake.settled;
  }

  /**
   * Stops reading: the producer's writes fail, its source is returned (its
   * `finally` runs) and nothing more is delivered. Reads after it see the end.
   */
  cancel(reason?: unknown): void {
    this.#intake.cancel(reason ?? null);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    this.#claim("for await");
    return this.#iterator();
  }

  /** A Web ReadableStream of the data (its cancel() stops the producer). */
  readable(): ReadableStream<T> {
    this.#claim("readable()");
    const it = this.#iterator();
    return new ReadableStream<T>(
      {
        pull: async (controller) => {
          const r = await it.next();
          if (r.done) controller.close();
          else controller.enqueue(r.value);
        },
        cancel: (reason) => {
          this.cancel(reason);
        },
      },
      // Pulled only when its reader asks: the backpressure stays with the producer's window.
      { highWaterMark: 0 },
    );
  }

  /** A Node Readable of the data (destroying it stops the producer). */
  nodeReadable(): Readable {
    this.#claim("nodeReadable()");
    const it = this.#iterator();
    return new Readable({
      objectMode: this.#objectMode,
      // One item ahead at most; the rest waits in the producer's window.
      highWaterMark: this.#objectMode ? 1 : 0,
      read() {
        it.next().then(
          (r) => void this.push(r.done ? null : r.value),
          (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
        );
      },
      destroy: (err, callback) => {
        this.cancel(err ?? "the Readable was destroyed");
        callback(err);
      },
    });
  }

  #iterator(): AsyncIterableIterator<T> {
    const intake = this.#intake;
    const iterator: AsyncIterableIterator<T> = {
      next: () => intake.read(),
      return: async () => {
        intake.cancel("the reader returned");
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #claim(how: string): void {
    if (this.#claimedBy !== null) {
      throw new TypeError(`capmesh: this stream is already being read (by ${this.#claimedBy}); a stream is read once, one way`);
    }
    this.#claimedBy = how;
  }
}

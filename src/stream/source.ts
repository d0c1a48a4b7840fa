// The producer's capability: a ByteSource or ValueSource server around the
// input it was made from. The input is opened on the first pipeTo (nothing
// is read before a reader asks) and finished however the stream ends;
// released unread, it is finished unopened.
import type { ErrorInfo } from "../gen/value.js";
import { RpcError } from "../rpc/errors.js";
import type { CallContext, CallOptions } from "../rpc/types.js";

/**
 * A stream's calls last as long as its reader takes (a write returns when
 * its data is read): the connection's callTimeoutMs does not apply to them.
 */
export const UNTIMED: CallOptions = { timeout: 0 };
import { Readable } from "node:stream";
import { describe, openInput, type StreamInput } from "./input.js";
import { StreamReader } from "./reader.js";
import { pump, type PumpShape, type PumpTarget } from "./pump.js";

/** The sink methods a producer calls (ByteSink and ValueSink alike). */
export interface SinkClient<P> {
  write(params: P, opts?: CallOptions): Promise<void>;
  end(params?: Record<string, never>, opts?: CallOptions): Promise<unknown>;
  abort(params: { error: ErrorInfo }, opts?: CallOptions): Promise<unknown>;
  dup(): this;
  release(): void;
}

export class SourceServer<I, W, S extends SinkClient<unknown>> {
  #input: StreamInput<I> | null;

  constructor(
    input: StreamInput<I>,
    private readonly name: string,
    private readonly shape: PumpShape<I, W>,
    /** The write params for one batch. */
    private readonly params: (batch: W[]) => S extends SinkClient<infer P> ? P : never,
    /** Called once a batch is encoded (values: their capabilities are moved, as results' are). */
    private readonly written: (batch: W[]) => void = () => {},
  ) {
    // Checked here, where the mistake is, rather than when a peer reads.
    checkInput(input);
    this.#input = input;
  }

  async pipeTo({ sink }: { sink: S | null }, ctx: CallContext): Promise<void> {
    const input = this.#input;
    if (input === null) throw RpcError.failed(`capmesh: this ${this.name} has been read already; a stream is read once`);
    if (sink === null) throw RpcError.failed(`capmesh: ${this.name}.pipeTo was called without a sink`);
    this.#input = null;
    // The sink is lent for this call, which lasts as long as the stream.
    const held = sink.dup();
    const target: PumpTarget<W> = {
      write: (batch) => {
        try {
          return held.write(this.params(batch), UNTIMED);
        } finally {
          this.written(batch);
        }
      },
      end: () => held.end({}, UNTIMED),
      abort: (error) => held.abort({ error }, UNTIMED),
    };
    try {
      await pump(openInput(input), target, this.shape, ctx.signal);
    } finally {
      held.release();
    }
  }

  [Symbol.dispose](): void {
    const input = this.#input;
    if (input === null) return;
    this.#input = null;
    closeUnread(input);
  }
}

/** Frees what an input never read holds. */
function closeUnread(input: StreamInput<unknown>): void {
  try {
    // A received stream passed on (asking for its iterator would claim it): stops its producer.
    if (input instanceof StreamReader) input.cancel();
    else if (input instanceof Readable) input.destroy();
    else if (typeof (input as ReadableStream).getReader === "function") void (input as ReadableStream).cancel().catch(() => {});
    else {
      // An iterator that is its own iterable (a generator): closed. A fresh
      // iterator of any other iterable would hold nothing to free.
      const it = input as Partial<AsyncIterator<unknown>> & AsyncIterable<unknown>;
      if (typeof it.return === "function" && typeof it[Symbol.asyncIterator] === "function" && it[Symbol.asyncIterator]() === it) {
        void Promise.resolve(it.return()).catch(() => {});
      } else {
        const sync = input as Partial<Iterator<unknown>> & Iterable<unknown>;
        if (typeof sync.return === "function" && typeof sync[Symbol.iterator] === "function" && sync[Symbol.iterator]() === sync) sync.return();
      }
    }
  } catch {
    // Closing is best effort: the input is dropped either way.
  }
}

function checkInput(input: unknown): void {
  const ok =
    typeof input === "object" &&
    input !== null &&
    (typeof (input as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" ||
      typeof (input as Iterable<unknown>)[Symbol.iterator] === "function" ||
      typeof (input as ReadableStream).getReader === "function");
  if (!ok) {
    throw new TypeError(
      `capmesh: a stream is made from an async iterable, an iterable, a Web ReadableStream or a Node Readable, got ${describe(input)}`,
    );
  }
}

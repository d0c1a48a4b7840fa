// The producer's side of a stream: pulls from the source and writes to the
// consumer's sink, never more than the flow-control window ahead of it.
//
// The pull loop awaits the window (the promise a `-> stream` call returns),
// so a source far faster than its consumer is pulled only as fast as the
// consumer takes. What the source yields while the window is full is batched
// into the next write (up to a batch's limits), and so is what it yields in
// one turn of the event loop while the window is open: a source of many
// small items does not cost a call per item, and an item waits at most for
// the end of the current turn (or for the window).
import { RpcError } from "../rpc/errors.js";
import type { ErrorInfo } from "../gen/value.js";
import { errorInfoOf } from "./errors.js";

export interface PumpTarget<W> {
  /** A `-> stream` write of one batch: resolves when the window has room. */
  write(batch: W[]): Promise<void>;
  end(): Promise<unknown>;
  abort(error: ErrorInfo): Promise<unknown>;
}

export interface PumpShape<I, W> {
  /** Turns one source item into what is written (bytes: split to the write size; values: converted). */
  pieces(item: I): W[];
  sizeOf(piece: W): number;
  /** A batch is written once it holds this many bytes, or `maxItems` pieces. */
  maxBytes: number;
  maxItems: number;
  /** Joins a batch into what one write carries. */
  join(batch: W[]): W[];
  /** Copies a piece that waits in a batch while the producer pulls more (bytes: it may reuse its buffer). */
  keep?(piece: W): W;
}

/** Why the pump stopped early: the consumer, not the source. */
class Stopped extends Error {}

/**
 * Streams `source` into `target` until the source ends (then `end`), throws
 * (then `abort` with its error), or the consumer stops (a write fails, or
 * `signal` aborts: then the source is returned). Resolves once `end` or
 * `abort` has returned; rejects when the consumer stopped or went away. The
 * source is always finished: exhausted, thrown, or returned.
 */
export async function pump<I, W>(source: AsyncIterator<I>, target: PumpTarget<W>, shape: PumpShape<I, W>, signal: AbortSignal): Promise<void> {
  let returned = false;
  const stopSource = () => {
    if (returned) return;
    returned = true;
    // A source suspended in next() (an async generator) finishes after it; others at once.
    void Promise.resolve()
      .then(() => source.return?.())
      .catch(() => {});
  };
  const onAbort = () => stopSource();
  signal.addEventListener("abort", onAbort, { once: true });

  const writer = new BatchWriter(target, shape);
  try {
    for (;;) {
      if (signal.aborted) throw new Stopped();
      let r: IteratorResult<I>;
      try {
        r = await source.next();
      } catch (err) {
        returned = true; // a source that threw is finished
        if (signal.aborted) throw new Stopped();
        writer.flush();
        await target.abort(errorInfoOf(err));
        return;
      }
      if (r.done) {
        returned = true;
        break;
      }
      if (signal.aborted) throw new Stopped();
      let pieces: W[];
      try {
        pieces = shape.pieces(r.value);
      } catch (err) {
        // An item the stream cannot carry is the producer's failure: the consumer hears why.
        stopSource();
        writer.flush();
        await target.abort(errorInfoOf(err));
        return;
      }
      for (const piece of pieces) await writer.add(piece);
    }
    writer.flush();
    await target.end();
  } catch (err) {
    stopSource();
    if (err instanceof Stopped) throw RpcError.failed("capmesh: the consumer canceled the stream");
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Writes pieces: joined while the flow-control window is full, and within one turn of the event loop. */
class BatchWriter<W> {
  private batch: W[] = [];
  private bytes = 0;
  /** Pending while the window is full; its settling flushes what accumulated. */
  private window: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;
  /** A flush is due at the end of this turn of the event loop. */
  private scheduled = false;

  constructor(
    private readonly target: PumpTarget<W>,
    private readonly shape: PumpShape<unknown, W>,
  ) {}

  /** Adds a piece; resolves when the producer may pull the next item. */
  async add(piece: W): Promise<void> {
    if (this.failure) throw this.failure.error;
    this.bytes += this.shape.sizeOf(piece);
    if (this.window === null && this.batch.length === 0 && this.full()) {
      // A full write on its own (bulk bytes): sent at once, without a copy.
      this.batch.push(piece);
      return this.flush();
    }
    this.batch.push(this.shape.keep ? this.shape.keep(piece) : piece);
    if (this.window === null) {
      // The window is open: send what the source yields in this turn of the
      // event loop together (a burst of small items is one call, not one
      // each), or at once when that fills a batch.
      if (this.full()) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          if (this.window === null) this.flush();
        });
      }
      return;
    }
    while (this.window !== null && this.full()) await this.window;
    const failure = this.failure as { error: unknown } | null; // set while we waited
    if (failure) throw failure.error;
    if (this.full()) this.flush();
  }

  private full(): boolean {
    return this.bytes >= this.shape.maxBytes || this.batch.length >= this.shape.maxItems;
  }

  /** Sends what accumulated, whatever the window says. */
  flush(): void {
    if (this.batch.length === 0 || this.failure) return;
    const batch = this.shape.join(this.batch);
    this.batch = [];
    this.bytes = 0;
    let sent: Promise<void>;
    try {
      sent = this.target.write(batch);
    } catch (err) {
      this.failure = { error: err };
      return;
    }
    const gate: Promise<void> = sent.then(
      () => {
        if (this.window !== gate) return;
        this.window = null;
        this.flush();
      },
      (err: unknown) => {
        this.failure ??= { error: err };
        if (this.window === gate) this.window = null;
      },
    );
    this.window = gate;
  }
}

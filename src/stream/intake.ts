// The consumer's side of a stream: what its sink's write calls deliver,
// queued until the reader takes it.
//
// Backpressure is the point of this queue: a write call returns only when
// the reader has taken everything it carried, so the producer (whose
// `-> stream` window counts unanswered writes) can never be more than one
// window ahead of the reader, and a reader that stops taking stops the
// producer. The queue therefore never holds more than the producer's window.
import { RpcError } from "../rpc/errors.js";

interface Batch<R> {
  readonly items: readonly R[];
  next: number;
  /** Answers the write call that delivered the batch. */
  resolve(): void;
  reject(error: unknown): void;
}

interface Waiting<T> {
  resolve(result: IteratorResult<T>): void;
  reject(error: unknown): void;
}

type State = "open" | "ending" | "failing" | "done" | "failed";

/**
 * A queue of batches of raw items (R, valid while their write call is
 * unanswered) that a reader takes one item at a time, converted by `take`
 * into what the reader may keep (T). The write is answered once its last
 * item is taken: raw items are never used after that.
 */
export class Intake<R, T> {
  private readonly queue: Batch<R>[] = [];
  private waiting: Waiting<T> | null = null;
  private state: State = "open";
  private error: unknown = null;
  private endAnswer: { resolve(): void; reject(e: unknown): void } | null = null;
  /** Raw items queued and not yet taken (for stats and tests). */
  queuedItems = 0;

  constructor(
    private readonly take: (raw: R) => T,
    /** Called once the stream is settled from the reader's side (cancel or a failed take). */
    private readonly onStop: (reason: unknown) => void,
  ) {}

  /** Whether the stream has settled (ended, failed or canceled). */
  get settled(): boolean {
    return this.state === "done" || this.state === "failed";
  }

  /** A write call: resolves when the reader has taken every item. */
  write(items: readonly R[]): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.refusal("write"));
    if (items.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ items, next: 0, resolve, reject });
      this.queuedItems += items.length;
      this.serve();
    });
  }

  /** The producer's end: resolves once the reader has seen it. */
  end(): Promise<void> {
    if (this.state !== "open") return Promise.reject(this.refusal("end"));
    this.state = "ending";
    return new Promise<void>((resolve, reject) => {
      this.endAnswer = { resolve, reject };
      this.serve();
    });
  }

  /** The producer's failure: the reader gets it after the items written before it. */
  abort(error: unknown): void {
    if (this.state !== "open") return;
    this.state = "failing";
    this.error = error;
    this.serve();
  }

  /**
   * The producer went away (its sink released, its call failed): the reader's
   * next read fails with `error` at once; queued items are dropped.
   */
  lost(error: unknown): void {
    if (this.settled) return;
    if (this.state === "ending" || this.state === "failing") {
      // Its last word is already here: deliver what was promised.
      return;
    }
    this.fail(error, error);
  }

  /** The reader stops: every write held and to come fails with `reason`. */
  cancel(reason: unknown): void {
    if (this.settled) return;
    this.fail(null, reason);
    this.onStop(reason);
  }

  /** The reader's next item. */
  read(): Promise<IteratorResult<T>> {
    if (this.waiting) return Promise.reject(new Error("capmesh: a stream was read again before its previous read settled"));
    return new Promise<IteratorResult<T>>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    const batch = this.queue[0];
    if (batch) {
      this.waiting = null;
      const raw = batch.items[batch.next++]!;
      this.queuedItems--;
      if (batch.next === batch.items.length) this.queue.shift();
      let item: T;
      try {
        item = this.take(raw);
      } catch (err) {
        // An item we cannot take (a malformed value): the stream fails here.
        if (batch.next === batch.items.length) batch.reject(err);
        this.fail(err, err);
        this.onStop(err);
        waiting.reject(err);
        return;
      }
      if (batch.next === batch.items.length) batch.resolve();
      waiting.resolve({ value: item, done: false });
      return;
    }
    switch (this.state) {
      case "open":
        return;
      case "ending":
        this.waiting = null;
        this.state = "done";
        this.endAnswer?.resolve();
        this.endAnswer = null;
        waiting.resolve({ value: undefined, done: true });
        return;
      case "failing":
        this.waiting = null;
        this.state = "failed";
        waiting.reject(this.error);
        return;
      case "done":
        this.waiting = null;
        waiting.resolve({ value: undefined, done: true });
        return;
      case "failed":
        this.waiting = null;
        if (this.error === null) waiting.resolve({ value: undefined, done: true });
        else waiting.reject(this.error);
        return;
    }
  }

  /** Settles the stream: `error` for the reader (null: it sees the end), `reason` for the producer's calls. */
  private fail(error: unknown, reason: unknown): void {
    this.state = "failed";
    this.error = error;
    const refusal = producerRefusal(reason);
    for (const batch of this.queue.splice(0)) batch.reject(refusal);
    this.queuedItems = 0;
    this.endAnswer?.reject(refusal);
    this.endAnswer = null;
    this.serve();
  }

  private refusal(what: string): RpcError {
    if (this.state === "failed" && this.error === null) return producerRefusal(null);
    return RpcError.failed(`capmesh: ${what} on a stream that has already ended; a producer makes no calls after end or abort`);
  }
}

/** What a producer's writes fail with once the reader has stopped. */
function producerRefusal(reason: unknown): RpcError {
  const why = reason instanceof Error ? `: ${reason.message}` : reason == null ? "" : `: ${String(reason)}`;
  return RpcError.failed(`capmesh: the consumer stopped reading the stream${why}`);
}

// The answer table: calls the peer sent us, by the peer's question ID. An
// entry lives until we have sent the Return and the peer has sent Finish.
import type { PipelineSource, Response } from "./hook.js";
import type { Provision } from "./third-party.js";
import type { OutgoingEnvelope } from "./wire.js";

/** What made the entry: a Call, a Bootstrap, or Level 3's Provide (no Return ever) and Accept. */
export type AnswerKind = "call" | "bootstrap" | "provide" | "accept";

export class Answer {
  kind: AnswerKind = "call";
  /** A Provide's provision (kind "provide"), closed by its Finish. */
  provision: Provision | null = null;
  /** What promisedAnswer targets resolve against (null: no caps to pipeline on). */
  pipeline: PipelineSource | null = null;
  /** The results, kept for pipelining until Finish. */
  response: Response | null = null;
  /** Exports written into the Return: released if Finish says releaseResultCaps. */
  resultExports: number[] = [];
  returnSent = false;
  finishReceived = false;
  /** Made on first use of `signal`: most calls never look at it. */
  private abort: AbortController | null = null;
  private canceledWith: Error | null = null;
  /** Set once the call is done: cancellation no longer applies. */
  settled = false;
  /** The Return message the server writes its results into (see connection.ts). */
  prepared: OutgoingEnvelope | null = null;
  /** For `sendResultsTo.yourself`: the results, for a later takeFromOtherQuestion. */
  redirected: Promise<Response> | null = null;
  /** A takeFromOtherQuestion took `redirected` (it may do so once). */
  resultsTaken = false;

  constructor(readonly id: number) {}

  /**
   * Cancels the server's work. Deferred past delivery: old C++ peers send
   * Finish right after pipelining on a call (and after every streaming
   * call) and still expect it to run, so the call is always delivered and
   * its signal fires afterwards (rpc.capnp Finish.requireEarlyCancellationWorkaround).
   */
  cancel(reason: Error): void {
    if (this.settled || this.canceledWith) return;
    this.canceledWith = reason;
    const abort = this.abort;
    if (abort) setImmediate(() => abort.abort(reason));
  }

  /** Fires when the caller cancels (Finish before Return) or the connection dies. */
  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      const reason = this.canceledWith;
      if (reason) {
        const abort = this.abort;
        setImmediate(() => abort.abort(reason));
      }
    }
    return this.abort.signal;
  }
}

export class AnswerTable {
  private readonly entries = new Map<number, Answer>();

  get size(): number {
    return this.entries.size;
  }
  get(id: number): Answer | undefined {
    return this.entries.get(id);
  }
  has(id: number): boolean {
    return this.entries.has(id);
  }
  add(answer: Answer): void {
    this.entries.set(answer.id, answer);
  }
  delete(id: number): void {
    this.entries.delete(id);
  }
  values(): IterableIterator<Answer> {
    return this.entries.values();
  }
  clear(): void {
    this.entries.clear();
  }
}

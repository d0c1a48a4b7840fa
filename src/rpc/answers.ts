// The answer table: calls the peer sent us, by the peer's question ID. An
// entry lives until we have sent the Return and the peer has sent Finish.
import type { PipelineSource, Response } from "./hook.js";

export class Answer {
  /** What promisedAnswer targets resolve against (null: no caps to pipeline on). */
  pipeline: PipelineSource | null = null;
  /** The results, kept for pipelining until Finish. */
  response: Response | null = null;
  /** Exports written into the Return: released if Finish says releaseResultCaps. */
  resultExports: number[] = [];
  returnSent = false;
  finishReceived = false;
  /** Fired when the caller cancels (Finish before Return) or the connection dies. */
  abort: AbortController | null = null;
  /** For `sendResultsTo.yourself`: the results, for a later takeFromOtherQuestion. */
  redirected: Promise<Response> | null = null;

  constructor(readonly id: number) {}

  /**
   * Cancels the server's work. Deferred past delivery: old C++ peers send
   * Finish right after pipelining on a call (and after every streaming
   * call) and still expect it to run, so the call is always delivered and
   * its signal fires afterwards (rpc.capnp Finish.requireEarlyCancellationWorkaround).
   */
  cancel(reason: Error): void {
    const abort = this.abort;
    this.abort = null;
    if (abort) setImmediate(() => abort.abort(reason));
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

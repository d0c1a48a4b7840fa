// The consumer's side of a received source: a sink of our own handed to
// source.pipeTo, whose calls feed an Intake that a StreamReader reads.
import type { ErrorInfo } from "../gen/value.js";
import { errorFromInfo, producerGone } from "./errors.js";
import { Intake } from "./intake.js";
import { StreamReader } from "./reader.js";

/** What the sink server does with each call (ByteSink and ValueSink alike, after unpacking params). */
export interface SinkHandlers<R> {
  write(items: readonly R[]): Promise<void>;
  end(): Promise<void>;
  abort(error: ErrorInfo): void;
  /** The producer released the sink. */
  dispose(): void;
}

type Call = Promise<unknown> & { [Symbol.dispose](): void };

/**
 * Starts reading: `start` makes the sink server from the handlers and calls
 * pipeTo with it (at once, so the caller may release the source right
 * after). `take` turns a received item into what the reader keeps, while the
 * write call that carried it is still open.
 */
export function readSource<R, T>(start: (handlers: SinkHandlers<R>) => Call, take: (raw: R) => T, objectMode: boolean): StreamReader<T> {
  let call: Call | null = null;
  const intake = new Intake<R, T>(take, () => call?.[Symbol.dispose]());
  const handlers: SinkHandlers<R> = {
    write: (items) => intake.write(items),
    end: () => intake.end(),
    abort: (error) => intake.abort(errorFromInfo(error)),
    dispose: () => intake.lost(producerGone("it released the sink")),
  };
  try {
    call = start(handlers);
  } catch (err) {
    intake.lost(err);
  }
  call?.then(
    // The producer returns only after end or abort; anything else broke the contract.
    () => intake.lost(producerGone("its pipeTo returned without end or abort")),
    // Disconnected when the producer's vat went away; the producer's own refusal otherwise.
    (err: unknown) => intake.lost(err),
  );
  return new StreamReader<T>(intake as unknown as Intake<unknown, T>, objectMode);
}

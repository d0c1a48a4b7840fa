// An error carried as data (schema/value.capnp Value.error): what fromValue
// gives for one, and what a producer may build to say more than an Error
// does (a code for programs, details as a value).
//
// Any Error passed to toValue is carried: its message, its `code` when it is
// a string or a number (as Node's system errors have), and its `details` when
// it has them. Its name, stack and cause are not: a stack names the sender's
// files, and the receiver could not rebuild the class anyway.

export interface ErrorValueOptions {
  /** A short stable identifier for programs, e.g. "ENOENT". */
  code?: string;
  /** Anything else worth saying, as a value (anything toValue accepts). */
  details?: unknown;
}

export class ErrorValue extends Error {
  /** The producer's code; undefined when it sent none. */
  readonly code: string | undefined;
  /** What the producer added, as a plain value (null when nothing). */
  readonly details: unknown;
  constructor(message: string, options: ErrorValueOptions = {}) {
    super(message);
    this.name = "ErrorValue";
    this.code = options.code === "" ? undefined : options.code;
    this.details = options.details ?? null;
  }
}

// Errors of converting values. Each names where in the value the problem is
// (`path`, e.g. value.a.b[3]) so that a large value's sender can find it.

/**
 * A JS value that has no Value form (a function, a symbol, a class instance,
 * a cycle, ...). Thrown by toValue before anything is built or sent.
 */
export class ValueTypeError extends TypeError {
  /** Where the value is, e.g. value.a.b[3]. */
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`capmesh: ${path}: ${problem}`);
    this.name = "ValueTypeError";
    this.path = path;
  }
}

/** Which limit a value went past: a ValueLimits field, or the Int64 range. */
export type ValueLimitName = "maxDepth" | "maxItems" | "maxBytes" | "int64";

/** A value beyond one of its limits (schema/value.capnp), found while encoding or decoding. */
export class ValueLimitError extends RangeError {
  readonly path: string;
  readonly limit: ValueLimitName;
  constructor(path: string, limit: ValueLimitName, problem: string) {
    super(`capmesh: ${path}: ${problem}`);
    this.name = "ValueLimitError";
    this.path = path;
    this.limit = limit;
  }
}

/**
 * A received value that breaks the schema's rules (a record whose name and
 * value lists differ in length or repeat a name, a stream with no
 * capability) or is of a kind this implementation does not know (sent by a
 * newer peer).
 */
export class ValueFormatError extends Error {
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`capmesh: received ${path}: ${problem}`);
    this.name = "ValueFormatError";
    this.path = path;
  }
}

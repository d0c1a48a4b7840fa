// Errors for values that do not fit the schema, found while encoding.
//
// The writers check each value where they store it (a compare or a typeof on
// the happy path) and throw a SchemaTypeError that knows only what was
// expected and what was given. The field path is added as the error unwinds:
// every generated struct writer catches, prepends `.field`, and rethrows;
// list writers prepend `[i]`; the entry points (writeMessage, writePointer,
// Codec.encode) prepend the root struct's name. Nothing is built for the path
// unless something is wrong.

/**
 * A value that does not fit the schema where it was put, e.g.
 * `capmesh: Outer.list[3].name: expected Text (a string), got 5`.
 * Thrown synchronously by the encoder; nothing has been sent.
 */
export class SchemaTypeError extends TypeError {
  /** The root struct (a codec name), once the error has unwound that far. */
  root = "";
  /** From the root to the offending value: `.list[3].name`. */
  path = "";
  /** What is wrong there: `expected Text (a string), got 5`. */
  readonly problem: string;

  constructor(problem: string, options?: { cause?: unknown }) {
    super(`capmesh: ${problem}`, options);
    this.problem = problem;
  }

  /** `Outer.list[3].name` (without a root: `list[3].name`). */
  get where(): string {
    return this.root === "" ? this.path.replace(/^\./, "") : this.root + this.path;
  }
}

/** Rewrites the message (and the header line of the already captured stack) after the path grew. */
function refresh(e: SchemaTypeError): SchemaTypeError {
  const where = e.where;
  const old = e.message;
  e.message = where === "" ? `capmesh: ${e.problem}` : `capmesh: ${where}: ${e.problem}`;
  const stack = e.stack;
  const header = `${e.name}: ${old}`;
  if (typeof stack === "string" && stack.startsWith(header)) e.stack = `${e.name}: ${e.message}${stack.slice(header.length)}`;
  return e;
}

/**
 * The error to rethrow from a struct writer: a TypeError from below (ours,
 * or e.g. the cap table's) gets the path; anything else passes unchanged.
 */
function adopt(e: unknown): SchemaTypeError | null {
  if (e instanceof SchemaTypeError) return e;
  if (e instanceof TypeError) return new SchemaTypeError(e.message.replace(/^capmesh: /, ""), { cause: e });
  return null;
}

/** `e`, thrown while writing field `field`, with `.field` prepended to its path. */
export function fieldError(e: unknown, field: string): unknown {
  const err = adopt(e);
  if (err === null) return e;
  err.path = `.${field}${err.path}`;
  return refresh(err);
}

/** `e`, thrown while writing list element `index`, with `[index]` prepended to its path. */
export function elementError(e: unknown, index: number): unknown {
  const err = adopt(e);
  if (err === null) return e;
  err.path = `[${index}]${err.path}`;
  return refresh(err);
}

/** `e`, thrown while writing a value of struct `root`, named from that root. */
export function rootError(e: unknown, root: string): unknown {
  const err = adopt(e);
  if (err === null || err.root !== "") return e;
  err.root = root;
  return refresh(err);
}

/** A short description of a value that did not fit. */
export function describe(x: unknown): string {
  switch (typeof x) {
    case "string":
      return x.length > 40 ? `the string ${JSON.stringify(x.slice(0, 40))}…` : `the string ${JSON.stringify(x)}`;
    case "bigint":
      return `${x}n`;
    case "number":
    case "boolean":
    case "undefined":
      return String(x);
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
  }
  if (x === null) return "null";
  if (Array.isArray(x)) return `an array of ${x.length}`;
  const ctor = (Object.getPrototypeOf(x) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  if (typeof ctor !== "string" || ctor === "" || ctor === "Object") return "an object";
  return `${/^[AEIOU]/.test(ctor) ? "an" : "a"} ${ctor}`;
}

/** "expected `expected`, got `value`". */
export function badValue(expected: string, value: unknown): SchemaTypeError {
  return new SchemaTypeError(`expected ${expected}, got ${describe(value)}`);
}

// Resource limits applied to every message a transport receives.
//
// The defaults follow the C++ reference implementation's ReaderOptions and
// stream reader, so a capmesh peer accepts what a C++ peer accepts:
//
//  - traversal limit: 8 Mi words (64 MiB);
//  - nesting limit: 64 pointer levels;
//  - segment count: 512. (The C++ stream reader rejects a frame unless its
//    segment count is below 512, i.e. it accepts at most 511; real writers
//    never come close to either number.)
//  - message size: the traversal limit in bytes. The C++ reader likewise
//    refuses a frame whose segments add up to more than the traversal limit.
//
// One rule is stricter than C++: a message's read budget also scales with its
// own size (readBudgetFactor × its bytes, at least READ_BUDGET_FLOOR_BYTES),
// so aliased pointers cannot make a few hundred bytes cost as much to read as
// 64 MiB: every message costs time linear in its size.

/** Read budget every inbound message gets whatever its size (1 MiB). */
export const READ_BUDGET_FLOOR_BYTES = 1024 * 1024;

/** Limits on what a peer may send us. All fields are positive integers. */
export interface TransportLimits {
  /**
   * Largest accepted message, in bytes: the sum of its segment sizes as
   * declared in the frame header (the header itself is not counted; it is
   * bounded by `maxSegments`). Checked as soon as the segment table has
   * arrived, before any of the body is buffered.
   */
  maxMessageBytes: number;
  /** Most segments one message may have. Checked from the first 4 bytes. */
  maxSegments: number;
  /**
   * Read budget handed to each decoded message, in 8-byte words. capnp-es
   * charges one word (8 bytes of its byte-denominated budget) for every
   * pointer object it constructs while reading, so this bounds how many
   * pointer dereferences a reader may make (amplification attacks), not the
   * bytes those pointers cover.
   */
  traversalLimitWords: number;
  /**
   * Deepest pointer nesting a reader may follow from the root. Enforced when
   * the root is obtained with `message.getRoot(...)` on a decoded message.
   */
  nestingLimit: number;
  /**
   * Each inbound message may be read (pointer traversal, in bytes) up to
   * this many times its own size, or READ_BUDGET_FLOOR_BYTES if that is
   * more, and never past traversalLimitWords. Reading a message once costs
   * its size; the engine and a decoder read it about once.
   */
  readBudgetFactor: number;
}

const WORD_BYTES = 8;

/** Largest value accepted for any limit (keeps arithmetic exact). */
const MAX_LIMIT = Number.MAX_SAFE_INTEGER;

export const DEFAULT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  traversalLimitWords: 8 * 1024 * 1024,
  nestingLimit: 64,
  maxSegments: 512,
  maxMessageBytes: 8 * 1024 * 1024 * WORD_BYTES,
  readBudgetFactor: 4,
});

const LIMIT_KEYS: readonly (keyof TransportLimits)[] = [
  "maxMessageBytes",
  "maxSegments",
  "traversalLimitWords",
  "nestingLimit",
  "readBudgetFactor",
];

/**
 * Fills in defaults for the limits not given and validates the rest.
 * Throws a TypeError or RangeError naming the offending field.
 */
export function resolveLimits(partial?: Partial<TransportLimits>): TransportLimits {
  if (partial === undefined || partial === null) return { ...DEFAULT_LIMITS };
  if (typeof partial !== "object") {
    throw new TypeError(`transport limits must be an object, got ${typeof partial}`);
  }
  for (const key of Object.keys(partial)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(key)) {
      throw new TypeError(
        `unknown transport limit "${key}"; the known limits are ${LIMIT_KEYS.join(", ")}`,
      );
    }
  }
  const out: TransportLimits = { ...DEFAULT_LIMITS };
  for (const key of LIMIT_KEYS) {
    const value = partial[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new TypeError(`transport limit ${key} must be an integer, got ${String(value)}`);
    }
    if (value < 1 || value > MAX_LIMIT) {
      throw new RangeError(
        `transport limit ${key} must be between 1 and ${MAX_LIMIT}, got ${value}`,
      );
    }
    out[key] = value;
  }
  if (out.maxMessageBytes < WORD_BYTES) {
    throw new RangeError(
      `transport limit maxMessageBytes must be at least ${WORD_BYTES} (one word for the root pointer), got ${out.maxMessageBytes}`,
    );
  }
  // capnp-es keeps the read budget in bytes and the depth in a signed 32-bit
  // style counter; keep both representable.
  if (out.traversalLimitWords * WORD_BYTES > MAX_LIMIT) {
    throw new RangeError(
      `transport limit traversalLimitWords is too large: at most ${Math.floor(MAX_LIMIT / WORD_BYTES)}`,
    );
  }
  if (out.nestingLimit > 0x7fffffff) {
    throw new RangeError(`transport limit nestingLimit must be at most ${0x7fffffff}`);
  }
  return out;
}

/** The read budget, in bytes, of an inbound message of `messageBytes` bytes. */
export function readBudgetBytes(limits: Readonly<TransportLimits>, messageBytes: number): number {
  const scaled = Math.max(READ_BUDGET_FLOOR_BYTES, limits.readBudgetFactor * messageBytes);
  return Math.min(limits.traversalLimitWords * WORD_BYTES, scaled);
}

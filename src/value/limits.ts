// The limits on one value (schema/value.capnp documents them as the contract):
// checked while a JS value is converted for the wire, before any message is
// built, and while a received value is converted back.

/** Limits on one value. Every field is a non-negative integer. */
export interface ValueLimits {
  /**
   * Deepest nesting: a list or record adds one level, an error two (its
   * details are two pointer hops away); scalars, capabilities and streams
   * add none. Default 32.
   */
  maxDepth: number;
  /** Most list elements plus record fields, counted over the whole value. Default 1,000,000. */
  maxItems: number;
  /** Most UTF-8 bytes of text (record field names included) plus bytes, over the whole value. Default 32 MiB. */
  maxBytes: number;
}

export const DEFAULT_VALUE_LIMITS: Readonly<ValueLimits> = Object.freeze({
  maxDepth: 32,
  maxItems: 1_000_000,
  maxBytes: 32 * 1024 * 1024,
});

/**
 * Deepest nesting an option may ask for. Conversion recurses once per level,
 * and Cap'n Proto readers stop at 64 pointer hops by default anyway: this
 * only keeps a typo from turning into a stack overflow.
 */
export const MAX_DEPTH_LIMIT = 1024;

const KEYS: readonly (keyof ValueLimits)[] = ["maxDepth", "maxItems", "maxBytes"];

/** The defaults with `partial` applied; throws a TypeError or RangeError naming a bad option. */
export function resolveValueLimits(partial?: Partial<ValueLimits>): ValueLimits {
  if (partial === undefined) return DEFAULT_VALUE_LIMITS;
  const out: ValueLimits = { ...DEFAULT_VALUE_LIMITS };
  for (const key of KEYS) {
    const v = partial[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new TypeError(`capmesh: value limit ${key} must be a non-negative integer, got ${String(v)}`);
    }
    if (key === "maxDepth" && v > MAX_DEPTH_LIMIT) {
      throw new RangeError(`capmesh: value limit maxDepth must be at most ${MAX_DEPTH_LIMIT}, got ${v}`);
    }
    out[key] = v;
  }
  return out;
}

/** The UTF-8 length of `s` as the codec writes it (a lone surrogate takes 3 bytes): what maxBytes counts. */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

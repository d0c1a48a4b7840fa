import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, resolveLimits } from "../../src/transport/index.js";

describe("limits", () => {
  it("defaults follow the C++ reference ReaderOptions", () => {
    expect(DEFAULT_LIMITS).toEqual({
      traversalLimitWords: 8 * 1024 * 1024,
      nestingLimit: 64,
      maxSegments: 512,
      maxMessageBytes: 64 * 1024 * 1024,
      readBudgetFactor: 4,
    });
    expect(Object.isFrozen(DEFAULT_LIMITS)).toBe(true);
  });

  it("fills in missing fields", () => {
    expect(resolveLimits()).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({ maxMessageBytes: 1024 })).toEqual({ ...DEFAULT_LIMITS, maxMessageBytes: 1024 });
    expect(resolveLimits({ nestingLimit: undefined })).toEqual(DEFAULT_LIMITS);
    // A fresh object each time, never the frozen default.
    expect(resolveLimits()).not.toBe(DEFAULT_LIMITS);
  });

  it("rejects bad values, naming the field", () => {
    expect(() => resolveLimits({ maxSegments: 0 })).toThrow(/maxSegments must be between 1/);
    expect(() => resolveLimits({ maxSegments: -5 })).toThrow(RangeError);
    expect(() => resolveLimits({ nestingLimit: 1.5 })).toThrow(/nestingLimit must be an integer/);
    expect(() => resolveLimits({ traversalLimitWords: Number.NaN })).toThrow(TypeError);
    expect(() => resolveLimits({ maxMessageBytes: "10" as unknown as number })).toThrow(/maxMessageBytes must be an integer/);
    expect(() => resolveLimits({ maxMessageBytes: 4 })).toThrow(/at least 8/);
    expect(() => resolveLimits({ traversalLimitWords: Number.MAX_SAFE_INTEGER })).toThrow(/too large/);
    expect(() => resolveLimits({ nestingLimit: 2 ** 31 })).toThrow(/nestingLimit must be at most/);
  });

  it("rejects unknown fields (typos)", () => {
    expect(() => resolveLimits({ maxMessageSize: 5 } as never)).toThrow(/unknown transport limit "maxMessageSize"/);
  });
});

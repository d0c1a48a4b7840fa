// Input types: what callers may pass when a struct is encoded. Every field is
// optional (a missing field is written as its schema default), recursively.
import type { Capability } from "../rpc/types.js";

export type Init<T> = T extends Capability
  ? T | object
  : T extends Uint8Array
    ? T
    : T extends readonly (infer E)[]
      ? readonly Init<E>[]
      : T extends object
        ? { [K in keyof T]?: Init<T[K]> | null }
        : T;

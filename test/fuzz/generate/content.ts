// Random payload content and capability descriptors: honest params for the
// TestService methods (so calls reach real code) and hostile shapes
// (aliased DAGs, nesting past the limit, self-loops, counts no bytes back,
// far pointers to nowhere, capability indexes past the cap table).
import { ByteSink, Callback, Counter, TestService } from "../../interop/schema/interop.js";
import { INTERESTING_U32, type Rng } from "../prng.js";
import type { ContentSpec, DescriptorSpec } from "../raw.js";

export const IFACE = {
  testService: TestService.id,
  counter: Counter.id,
  callback: Callback.id,
  byteSink: ByteSink.id,
} as const;

/** TestService method ordinals (test/interop/schema/interop.capnp). */
export const M = {
  echo: 0,
  newCounter: 1,
  callBack: 2,
  echoCap: 3,
  later: 4,
  resolveLater: 5,
  fail: 6,
  hang: 7,
  canceledCount: 8,
  tracked: 9,
  liveTracked: 10,
  sink: 11,
  payload: 12,
  checksum: 13,
  counters: 14,
  sumCounters: 15,
  nested: 16,
  callMany: 17,
} as const;

/** An id: mostly small (likely in use), sometimes unused or huge. */
export function idValue(rng: Rng, inUse: readonly number[] = [0, 1, 2, 3]): number {
  return rng.weighted<() => number>([
    [5, () => (inUse.length > 0 ? rng.pick(inUse) : 0)],
    [3, () => rng.int(8)],
    [1, () => rng.range(8, 1000)],
    [2, () => rng.pick(INTERESTING_U32)],
  ])();
}

const text = (rng: Rng, max = 64): ContentSpec => ({
  kind: "bytes",
  length: rng.smallish(max),
  fill: 0x61 + rng.int(26),
  nulTerminated: rng.chance(0.9),
});
const data = (rng: Rng, max = 256): ContentSpec => ({ kind: "bytes", length: rng.smallish(max), fill: rng.int(256), nulTerminated: false });
const i64 = (rng: Rng): bigint => BigInt.asIntN(64, BigInt(rng.u32()) | (rng.chance(0.2) ? BigInt(rng.u32()) << 32n : 0n));

/** Params for TestService method `method`, mostly as the schema says. */
export function methodParams(rng: Rng, method: number): ContentSpec {
  switch (method) {
    case M.echo:
      return { kind: "struct", data: [i64(rng)], ptrs: [text(rng), data(rng)] };
    case M.newCounter:
    case M.later:
    case M.nested:
      return { kind: "struct", data: [i64(rng)], ptrs: [] };
    case M.callBack:
      return { kind: "struct", data: [], ptrs: [capSlot(rng), text(rng)] };
    case M.echoCap:
      return { kind: "struct", data: [], ptrs: [capSlot(rng)] };
    case M.fail:
      return { kind: "struct", data: [BigInt(rng.int(6))], ptrs: [text(rng)] };
    case M.payload:
    case M.counters:
      return { kind: "struct", data: [BigInt(rng.chance(0.8) ? rng.smallish(5000) : rng.pick(INTERESTING_U32))], ptrs: [] };
    case M.checksum:
      return { kind: "struct", data: [], ptrs: [data(rng, 4096)] };
    case M.sumCounters:
      return {
        kind: "struct",
        data: [],
        ptrs: [{ kind: "cap-list", indices: Array.from({ length: rng.smallish(16) }, () => (rng.chance(0.2) ? -1 : rng.int(4))) }],
      };
    case M.callMany:
      return { kind: "struct", data: [BigInt(rng.smallish(20))], ptrs: [capSlot(rng)] };
    default:
      return rng.chance(0.8) ? { kind: "empty" } : { kind: "struct", data: [], ptrs: [capSlot(rng)] };
  }
}

/** A capability field: pointer to cap table entry 0 mostly, else null or out of range. */
function capSlot(rng: Rng): ContentSpec {
  return rng.weighted<ContentSpec>([
    [6, { kind: "capPtr", index: 0 }],
    [1, { kind: "null" }],
    [1, { kind: "capPtr", index: rng.pick([1, 5, 0xffffffff]) }],
  ]);
}

/** Hostile content of any shape. */
export function hostileContent(rng: Rng): ContentSpec {
  return rng.weighted<() => ContentSpec>([
    [3, () => ({ kind: "dag", depth: rng.range(8, 60), fanout: rng.pick([2, 2, 3, 8, 64]) })],
    [2, () => ({ kind: "dag-list", n: rng.range(2, 4096), words: rng.range(1, 512) })],
    [2, () => ({ kind: "deep", depth: rng.pick([63, 64, 65, 100, 1000, 5000]) })],
    [1, () => ({ kind: "self-loop" })],
    [2, () => ({ kind: "huge-list", elemSize: rng.int(8), count: rng.pick([0x1fffffff, 0x10000000, rng.u32() & 0x1fffffff]) })],
    [2, () => ({ kind: "zero-struct-list", count: rng.pick([0x3fffffff, 0x1000000, rng.u32() & 0x3fffffff]) })],
    [1, () => ({ kind: "far", segment: rng.pick([0, 1, 2, 511, 0xffffffff]), pad: rng.int(1 << 20), double: rng.chance(0.5) })],
    [1, () => ({ kind: "cap", index: rng.pick(INTERESTING_U32) })],
    [1, () => ({ kind: "text", length: rng.smallish(200), terminated: rng.chance(0.3) })],
    [2, () => ({ kind: "random", n: rng.range(1, 64), seed: rng.u32() })],
  ])();
}

/** Content for a payload whose schema is unknown to the receiver (AnyPointer): honest or hostile. */
export function randomContent(rng: Rng): ContentSpec {
  if (rng.chance(0.5)) return hostileContent(rng);
  return rng.weighted<ContentSpec>([
    [2, { kind: "empty" }],
    [1, { kind: "null" }],
    [2, { kind: "struct", data: [i64(rng)], ptrs: [text(rng), data(rng)] }],
    [1, { kind: "struct", data: [], ptrs: [{ kind: "capPtr", index: 0 }] }],
  ]);
}

export function randomDescriptor(rng: Rng, exportGuesses: readonly number[] = [0, 1, 2, 3]): DescriptorSpec {
  return rng.weighted<DescriptorSpec>([
    [1, { kind: "none" }],
    [4, { kind: "senderHosted", id: rng.chance(0.8) ? rng.int(16) : rng.pick(INTERESTING_U32) }],
    [3, { kind: "senderPromise", id: rng.chance(0.8) ? rng.int(16) : rng.pick(INTERESTING_U32) }],
    [3, { kind: "receiverHosted", id: idValue(rng, exportGuesses) }],
    [2, { kind: "receiverAnswer", question: idValue(rng), transform: rng.chance(0.6) ? [] : [rng.int(3), rng.pick([0, 1, 0xffff])] }],
    [1, { kind: "thirdPartyHosted", vine: idValue(rng) }],
    [1, { kind: "unknown", tag: rng.range(6, 0xffff) }],
  ]);
}

export function randomDescriptors(rng: Rng): DescriptorSpec[] {
  const n = rng.weighted<number>([
    [4, 0],
    [4, 1],
    [2, rng.range(2, 8)],
    [1, rng.range(9, 2000)],
  ]);
  return Array.from({ length: n }, () => randomDescriptor(rng));
}

// Byte-level mutation of a framed stream: bit flips and byte sets anywhere,
// 32-bit words set to values that break arithmetic, pointer words replaced
// by crafted ones (huge offsets and counts, far pointers to missing segments,
// capability indexes past the table, self-references), segment-table lies
// (count and sizes larger or smaller than the body, huge counts), frames
// duplicated, dropped, spliced in from elsewhere, junk between frames, and
// the stream cut short.
import { INTERESTING_U32, type Rng } from "../prng.js";
import { frameHeaderBytes } from "../frames.js";

/** Largest segment size (in words) a lie may announce: the engine's default limit is 8 Mi words. */
const LIMIT_WORDS = 8 * 1024 * 1024;

export type ByteMutator = (rng: Rng, frames: Uint8Array[], donors: readonly Uint8Array[]) => string;

/** A private copy of a frame (at offset 0 of its own buffer) and a view of it. */
function copyOf(frame: Uint8Array): { f: Uint8Array; dv: DataView } {
  const f = new Uint8Array(frame);
  return { f, dv: new DataView(f.buffer) };
}

function pickIndex(rng: Rng, frames: readonly Uint8Array[]): number {
  return rng.int(frames.length);
}

function headerOf(frame: Uint8Array): { count: number; header: number } | null {
  if (frame.length < 8) return null;
  const count = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true) + 1;
  if (count > 512) return null;
  return { count, header: frameHeaderBytes(count) };
}

/** A crafted pointer word. */
function pointerWord(rng: Rng): [number, number] {
  return rng.weighted<() => [number, number]>([
    // struct: huge or negative offset, huge sections
    [2, () => [((rng.pick([0x1fffffff, -1, -2, -0x20000000, rng.u32() >> 2]) << 2) | 0) >>> 0, rng.u32()]],
    // list: any element size, huge count
    [3, () => [((rng.int(1 << 10) << 2) | 1) >>> 0, ((rng.int(8) | (rng.pick([0x1fffffff, 0x10000000, rng.u32() >>> 3]) << 3)) >>> 0)]],
    // far: missing segment, landing pad out of range, double-far
    [2, () => [(((rng.int(1 << 20) << 3) | (rng.chance(0.5) ? 4 : 0) | 2) >>> 0), rng.pick([1, 2, 511, 0xffffffff])]],
    // capability: index past any cap table
    [1, () => [3, rng.pick(INTERESTING_U32)]],
    // struct pointing at itself (offset -1) with one pointer
    [1, () => [0xfffffffc, 1 << 16]],
  ])();
}

const MUTATORS: readonly (readonly [number, string, ByteMutator])[] = [
  [
    4,
    "bit flips",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const { f } = copyOf(frames[i]!);
      const n = rng.range(1, 4);
      for (let k = 0; k < n; k++) f[rng.int(f.length)] ^= 1 << rng.int(8);
      frames[i] = f;
      return `flipped ${n} bits in frame ${i}`;
    },
  ],
  [
    2,
    "byte sets",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const { f } = copyOf(frames[i]!);
      const n = rng.range(1, 8);
      for (let k = 0; k < n; k++) f[rng.int(f.length)] = rng.pick([0, 0xff, 0x7f, 0x80, rng.int(256)]);
      frames[i] = f;
      return `set ${n} bytes in frame ${i}`;
    },
  ],
  [
    4,
    "interesting u32",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const { f, dv } = copyOf(frames[i]!);
      const at = rng.int(Math.max(1, f.length >> 2)) << 2;
      if (at + 4 <= f.length) dv.setUint32(at, rng.pick(INTERESTING_U32), true);
      frames[i] = f;
      return `set a u32 at ${at} of frame ${i}`;
    },
  ],
  [
    5,
    "pointer word",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const h = headerOf(frames[i]!);
      if (!h || frames[i]!.length < h.header + 8) return "no body to point into";
      const { f, dv } = copyOf(frames[i]!);
      const words = (f.length - h.header) >> 3;
      const at = h.header + rng.int(words) * 8;
      const [lo, hi] = pointerWord(rng);
      dv.setUint32(at, lo, true);
      dv.setUint32(at + 4, hi, true);
      frames[i] = f;
      return `crafted a pointer at word ${(at - h.header) / 8} of frame ${i}`;
    },
  ],
  [
    3,
    "segment table lie",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const h = headerOf(frames[i]!);
      if (!h) return "no header";
      if (frames[i]!.length < h.header) return "header cut short";
      const { f, dv } = copyOf(frames[i]!);
      const which = rng.int(h.count);
      const size = dv.getUint32(4 + 4 * which, true);
      const lie = rng.weighted<number>([
        [3, size + rng.range(1, 4)],
        [3, Math.max(0, size - rng.range(1, 4))],
        [1, 0],
        [1, size * 2],
        [1, rng.range(1, 4096)],
        [1, LIMIT_WORDS],
        [1, rng.pick([LIMIT_WORDS + 1, 0x7fffffff, 0xffffffff])],
      ]);
      dv.setUint32(4 + 4 * which, lie >>> 0, true);
      frames[i] = f;
      return `segment ${which} of frame ${i}: ${size} → ${lie >>> 0} words`;
    },
  ],
  [
    2,
    "segment count lie",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      if (frames[i]!.length < 4) return "no count word";
      const { f, dv } = copyOf(frames[i]!);
      const count = rng.weighted<number>([
        [3, rng.range(1, 4)],
        [1, rng.range(5, 511)],
        [1, rng.pick([511, 512, 513, 0x7fffffff, 0xfffffffe, 0xffffffff])],
      ]);
      dv.setUint32(0, count, true);
      frames[i] = f;
      return `frame ${i} declares ${count + 1} segments`;
    },
  ],
  [
    2,
    "header without its body",
    (rng, frames) => {
      const words = rng.weighted<number>([
        [2, rng.range(1, 1024)],
        [2, rng.range(1024, 1 << 20)],
        [1, LIMIT_WORDS],
        [1, rng.range(1, LIMIT_WORDS)],
      ]);
      const segs = rng.chance(0.8) ? 1 : rng.range(2, 8);
      const h = new Uint8Array(frameHeaderBytes(segs));
      const dv = new DataView(h.buffer);
      dv.setUint32(0, segs - 1, true);
      for (let s = 0; s < segs; s++) dv.setUint32(4 + 4 * s, s === 0 ? words : rng.range(0, 1024), true);
      const at = rng.int(frames.length + 1);
      frames.splice(at, 0, h, ...(rng.chance(0.5) ? [rng.bytes(rng.smallish(256))] : []));
      return `a header announcing ${words} words (${segs} segments), body missing, at ${at}`;
    },
  ],
  [
    2,
    "duplicate frame",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const n = rng.chance(0.8) ? 1 : rng.range(2, 50);
      frames.splice(i + 1, 0, ...Array.from({ length: n }, () => frames[i]!));
      return `frame ${i} repeated ${n} more times`;
    },
  ],
  [
    1,
    "drop frame",
    (rng, frames) => {
      if (frames.length < 2) return "nothing to drop";
      const i = pickIndex(rng, frames);
      frames.splice(i, 1);
      return `dropped frame ${i}`;
    },
  ],
  [
    1,
    "swap frames",
    (rng, frames) => {
      if (frames.length < 2) return "nothing to swap";
      const i = rng.int(frames.length - 1);
      [frames[i], frames[i + 1]] = [frames[i + 1]!, frames[i]!];
      return `swapped frames ${i} and ${i + 1}`;
    },
  ],
  [
    2,
    "splice donor",
    (rng, frames, donors) => {
      if (donors.length === 0) return "no donors";
      const at = rng.int(frames.length + 1);
      const n = rng.range(1, 4);
      const taken = Array.from({ length: n }, () => rng.pick(donors));
      frames.splice(at, 0, ...taken);
      return `spliced ${n} donor frames at ${at}`;
    },
  ],
  [
    1,
    "junk between frames",
    (rng, frames) => {
      const at = rng.int(frames.length + 1);
      frames.splice(at, 0, rng.bytes(rng.range(1, 64)));
      return `junk at ${at}`;
    },
  ],
  [
    2,
    "truncate",
    (rng, frames) => {
      const i = pickIndex(rng, frames);
      const cut = rng.int(frames[i]!.length);
      frames.splice(i, frames.length - i, frames[i]!.subarray(0, cut));
      return `cut at byte ${cut} of frame ${i}`;
    },
  ],
];

/** Applies `n` random byte-level mutations to `frames` in place; returns their descriptions. */
export function mutateBytes(rng: Rng, frames: Uint8Array[], donors: readonly Uint8Array[], n: number): string[] {
  const done: string[] = [];
  for (let k = 0; k < n && frames.length > 0; k++) {
    const [, name, mutate] = rng.weighted(MUTATORS.map((m) => [m[0], m] as const));
    done.push(`${name}: ${mutate(rng, frames, donors)}`);
  }
  return done;
}

/** Splits `bytes` into socket writes: whole, per frame, at random points, or in tiny pieces. */
export function chunk(rng: Rng, frames: readonly Uint8Array[]): Uint8Array[] {
  const all = Buffer.concat(frames);
  const mode = rng.weighted<string>([
    [4, "whole"],
    [3, "frames"],
    [2, "random"],
    [1, "tiny"],
  ]);
  if (mode === "whole" || all.length === 0) return [all];
  if (mode === "frames") return frames.filter((f) => f.length > 0).map((f) => new Uint8Array(f));
  const cuts = new Set<number>();
  if (mode === "random") {
    const n = rng.range(1, 16);
    for (let i = 0; i < n; i++) cuts.add(rng.int(all.length));
  } else {
    // At most ~2000 writes, in pieces of 1–7 bytes for the start of the stream.
    let at = 0;
    for (let i = 0; i < 2000 && at < all.length; i++) cuts.add((at += rng.range(1, 7)));
  }
  const sorted = [...cuts].filter((c) => c > 0 && c < all.length).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(all.subarray(prev, c));
    prev = c;
  }
  out.push(all.subarray(prev));
  return out;
}

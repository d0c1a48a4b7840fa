// Word-level construction of Cap'n Proto messages, for shapes a well-behaved
// builder cannot make: pointers aliasing one struct (a DAG whose copy grows
// exponentially), self-referencing pointers, nesting past the limit, list
// counts not backed by any bytes, far pointers to missing segments and
// capability pointers past the cap table. Layouts are rpc.capnp's (as
// `capnp compile -ocapnp rpc.capnp` prints them).
import type { Rng } from "./prng.js";
import { frameOf } from "./frames.js";

/** One segment, grown word by word. Word indexes are absolute within it. */
export class SegmentBuilder {
  #buf = new Uint8Array(256);
  #dv = new DataView(this.#buf.buffer);
  words = 0;

  /** Allocates `n` zeroed words; returns the index of the first. */
  alloc(n: number): number {
    const at = this.words;
    this.words += n;
    const need = this.words * 8;
    if (need > this.#buf.length) {
      let size = this.#buf.length;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buf);
      this.#buf = next;
      this.#dv = new DataView(next.buffer);
    }
    return at;
  }

  setU8(word: number, byte: number, v: number): void {
    this.#dv.setUint8(word * 8 + byte, v);
  }
  setU16(word: number, byte: number, v: number): void {
    this.#dv.setUint16(word * 8 + byte, v, true);
  }
  setU32(word: number, byte: number, v: number): void {
    this.#dv.setUint32(word * 8 + byte, v >>> 0, true);
  }
  setU64(word: number, v: bigint): void {
    this.#dv.setBigUint64(word * 8, BigInt.asUintN(64, v), true);
  }
  /** Raw pointer word: low and high 32 bits. */
  setWord(word: number, lo: number, hi: number): void {
    this.setU32(word, 0, lo);
    this.setU32(word, 4, hi);
  }

  /** A struct pointer at `at` to a struct at `target`. */
  structPtr(at: number, target: number, dataWords: number, ptrCount: number): void {
    this.setWord(at, ((target - at - 1) << 2) | 0, (dataWords & 0xffff) | ((ptrCount & 0xffff) << 16));
  }
  /** A list pointer; `elemSize` is the 3-bit size code (0 void … 6 pointer, 7 composite). */
  listPtr(at: number, target: number, elemSize: number, count: number): void {
    this.setWord(at, ((target - at - 1) << 2) | 1, (elemSize & 7) | ((count & 0x1fffffff) << 3));
  }
  /** The tag word of a composite list: `count` elements of the given struct size. */
  compositeTag(at: number, count: number, dataWords: number, ptrCount: number): void {
    this.setWord(at, (count & 0x3fffffff) << 2, (dataWords & 0xffff) | ((ptrCount & 0xffff) << 16));
  }
  /** A far pointer to word `padOffset` of segment `segment`. */
  farPtr(at: number, segment: number, padOffset: number, double = false): void {
    this.setWord(at, ((padOffset & 0x1fffffff) << 3) | (double ? 4 : 0) | 2, segment);
  }
  /** A capability pointer naming cap table index `index`. */
  capPtr(at: number, index: number): void {
    this.setWord(at, 3, index);
  }

  bytes(): Uint8Array {
    return this.#buf.slice(0, this.words * 8);
  }
}

// ---------------------------------------------------------------------------
// Hostile content: what goes in an AnyPointer (payload content, recipient,
// keyPart, provision, obsolete save).

export type ContentSpec =
  | { kind: "empty" }
  /** A null pointer. */
  | { kind: "null" }
  /** An honest struct: data words, then one pointer per entry of `ptrs`. */
  | { kind: "struct"; data: bigint[]; ptrs: ContentSpec[] }
  /** A List(UInt8) of `length` bytes of `fill` (Data, or Text when it ends in 0). */
  | { kind: "bytes"; length: number; fill: number; nulTerminated: boolean }
  /** A List(AnyPointer) of capability pointers (-1: null). */
  | { kind: "cap-list"; indices: number[] }
  /** depth levels of structs with `fanout` pointers all aimed at the next level: a copy has fanout^depth nodes. */
  | { kind: "dag"; depth: number; fanout: number }
  /** A list of `n` pointers all aimed at one struct of `words` data words. */
  | { kind: "dag-list"; n: number; words: number }
  /** A chain of `depth` single-pointer structs. */
  | { kind: "deep"; depth: number }
  /** A struct whose only pointer points at itself. */
  | { kind: "self-loop" }
  /** A list pointer whose count is not backed by bytes (elemSize 0, void, is always in bounds). */
  | { kind: "huge-list"; elemSize: number; count: number }
  /** A composite list of `count` zero-sized structs: in bounds for any count. */
  | { kind: "zero-struct-list"; count: number }
  | { kind: "far"; segment: number; pad: number; double: boolean }
  /** A struct whose only pointer is capability `index`. */
  | { kind: "cap"; index: number }
  /** The capability pointer itself (for a struct's interface field). */
  | { kind: "capPtr"; index: number }
  /** A struct whose first pointer is a text of `length` bytes, NUL-terminated or not. */
  | { kind: "text"; length: number; terminated: boolean }
  /** `n` random words behind a struct pointer claiming them all as pointers. */
  | { kind: "random"; n: number; seed: number }
  /** A List(UInt64) of `dataWords` zero words (a big but honest payload). */
  | { kind: "big"; dataWords: number };

/** Writes `spec` and makes the pointer at word `at` point to it. */
export function writeContent(b: SegmentBuilder, at: number, spec: ContentSpec, rngFor?: (seed: number) => Rng): void {
  switch (spec.kind) {
    case "empty":
      // The canonical zero-sized struct: offset -1, pointing at itself.
      b.structPtr(at, at, 0, 0);
      return;
    case "null":
      return;
    case "struct": {
      const s = b.alloc(spec.data.length + spec.ptrs.length);
      b.structPtr(at, s, spec.data.length, spec.ptrs.length);
      spec.data.forEach((w, i) => b.setU64(s + i, w));
      spec.ptrs.forEach((p, i) => writeContent(b, s + spec.data.length + i, p, rngFor));
      return;
    }
    case "bytes": {
      const length = spec.length + (spec.nulTerminated ? 1 : 0);
      const list = b.alloc(Math.ceil(length / 8));
      for (let i = 0; i < spec.length; i++) b.setU8(list, i, spec.fill);
      b.listPtr(at, list, 2, length);
      return;
    }
    case "cap-list": {
      const list = b.alloc(spec.indices.length);
      b.listPtr(at, list, 6, spec.indices.length);
      spec.indices.forEach((index, i) => {
        if (index >= 0) b.capPtr(list + i, index);
      });
      return;
    }
    case "dag": {
      const fanout = Math.max(1, Math.min(spec.fanout, 64));
      let ptrAt = at;
      let ptrCount = 1;
      for (let level = 0; level < spec.depth; level++) {
        const node = b.alloc(fanout);
        for (let i = 0; i < ptrCount; i++) b.structPtr(ptrAt + i, node, 0, fanout);
        ptrAt = node;
        ptrCount = fanout;
      }
      const leaf = b.alloc(1);
      b.setU64(leaf, 0x0123456789abcdefn);
      for (let i = 0; i < ptrCount; i++) b.structPtr(ptrAt + i, leaf, 1, 0);
      return;
    }
    case "dag-list": {
      const list = b.alloc(spec.n);
      b.listPtr(at, list, 6, spec.n);
      const target = b.alloc(Math.max(1, spec.words));
      for (let i = 0; i < spec.n; i++) b.structPtr(list + i, target, Math.max(1, spec.words), 0);
      return;
    }
    case "deep": {
      let ptrAt = at;
      for (let i = 0; i < spec.depth; i++) {
        const node = b.alloc(1);
        b.structPtr(ptrAt, node, 0, 1);
        ptrAt = node;
      }
      return;
    }
    case "self-loop": {
      const s = b.alloc(1);
      b.structPtr(at, s, 0, 1);
      b.structPtr(s, s, 0, 1);
      return;
    }
    case "huge-list": {
      const target = b.alloc(1);
      b.listPtr(at, target, spec.elemSize, spec.count);
      return;
    }
    case "zero-struct-list": {
      const tag = b.alloc(1);
      b.listPtr(at, tag, 7, 0);
      b.compositeTag(tag, spec.count, 0, 0);
      return;
    }
    case "far":
      b.farPtr(at, spec.segment, spec.pad, spec.double);
      return;
    case "capPtr":
      b.capPtr(at, spec.index);
      return;
    case "cap": {
      const s = b.alloc(1);
      b.structPtr(at, s, 0, 1);
      b.capPtr(s, spec.index);
      return;
    }
    case "text": {
      const s = b.alloc(1);
      b.structPtr(at, s, 0, 1);
      const length = spec.length + (spec.terminated ? 1 : 0);
      const text = b.alloc(Math.ceil(length / 8));
      for (let i = 0; i < spec.length; i++) b.setU8(text, i, 0x61);
      b.listPtr(s, text, 2, length);
      return;
    }
    case "random": {
      const s = b.alloc(spec.n);
      b.structPtr(at, s, 0, spec.n);
      const rng = rngFor?.(spec.seed);
      for (let i = 0; i < spec.n; i++) b.setWord(s + i, rng ? rng.u32() : 0, rng ? rng.u32() : 0);
      return;
    }
    case "big": {
      // A list, not a struct: a struct's data section stops at 65535 words.
      const list = b.alloc(spec.dataWords);
      b.listPtr(at, list, 5, spec.dataWords);
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// rpc messages built word by word.

/** Root pointer → Message (1 data word: the union tag; 1 pointer: the body) → body. */
export function rpcRaw(
  tag: number,
  bodyData: number,
  bodyPtrs: number,
  fill: (b: SegmentBuilder, body: { data: number; ptrs: number }) => void,
): Uint8Array {
  const b = new SegmentBuilder();
  const root = b.alloc(1);
  const msg = b.alloc(2);
  b.structPtr(root, msg, 1, 1);
  b.setU16(msg, 0, tag);
  const body = b.alloc(bodyData + bodyPtrs);
  b.structPtr(msg + 1, body, bodyData, bodyPtrs);
  fill(b, { data: body, ptrs: body + bodyData });
  return frameOf([b.bytes()]);
}

export type TargetSpec = { importedCap: number } | { promisedAnswer: number; transform: number[] };

export function writeTarget(b: SegmentBuilder, at: number, target: TargetSpec): void {
  const t = b.alloc(2);
  b.structPtr(at, t, 1, 1);
  if ("importedCap" in target) {
    b.setU32(t, 0, target.importedCap);
    return;
  }
  b.setU16(t, 4, 1);
  const pa = b.alloc(2);
  b.structPtr(t + 1, pa, 1, 1);
  b.setU32(pa, 0, target.promisedAnswer);
  if (target.transform.length > 0) {
    const tag = b.alloc(1 + target.transform.length);
    b.listPtr(pa + 1, tag, 7, target.transform.length);
    b.compositeTag(tag, target.transform.length, 1, 0);
    target.transform.forEach((field, i) => {
      b.setU16(tag + 1 + i, 0, field < 0 ? 0 : 1);
      b.setU16(tag + 1 + i, 2, Math.max(0, field));
    });
  }
}

export type DescriptorSpec =
  | { kind: "none" }
  | { kind: "senderHosted" | "senderPromise" | "receiverHosted"; id: number }
  | { kind: "receiverAnswer"; question: number; transform: number[] }
  | { kind: "thirdPartyHosted"; vine: number }
  | { kind: "unknown"; tag: number };

const DESCRIPTOR_TAGS = { none: 0, senderHosted: 1, senderPromise: 2, receiverHosted: 3, receiverAnswer: 4, thirdPartyHosted: 5 };

export function writeDescriptor(b: SegmentBuilder, at: number, d: DescriptorSpec): void {
  // `at` is the first word of a CapDescriptor element (1 data word, 1 pointer).
  b.setU16(at, 0, d.kind === "unknown" ? d.tag : DESCRIPTOR_TAGS[d.kind]);
  switch (d.kind) {
    case "senderHosted":
    case "senderPromise":
    case "receiverHosted":
      b.setU32(at, 4, d.id);
      return;
    case "receiverAnswer": {
      const pa = b.alloc(2);
      b.structPtr(at + 1, pa, 1, 1);
      b.setU32(pa, 0, d.question);
      if (d.transform.length > 0) {
        const tag = b.alloc(1 + d.transform.length);
        b.listPtr(pa + 1, tag, 7, d.transform.length);
        b.compositeTag(tag, d.transform.length, 1, 0);
        d.transform.forEach((field, i) => {
          b.setU16(tag + 1 + i, 0, 1);
          b.setU16(tag + 1 + i, 2, field);
        });
      }
      return;
    }
    case "thirdPartyHosted": {
      const tp = b.alloc(2);
      b.structPtr(at + 1, tp, 1, 1);
      b.setU32(tp, 0, d.vine);
      return;
    }
    default:
      return;
  }
}

/** A Payload (content, capTable) behind the pointer at `at`. */
export function writePayload(
  b: SegmentBuilder,
  at: number,
  content: ContentSpec,
  caps: readonly DescriptorSpec[],
  rngFor?: (seed: number) => Rng,
): void {
  const p = b.alloc(2);
  b.structPtr(at, p, 0, 2);
  writeContent(b, p, content, rngFor);
  if (caps.length > 0) {
    const tag = b.alloc(1 + caps.length * 2);
    b.listPtr(p + 1, tag, 7, caps.length * 2);
    b.compositeTag(tag, caps.length, 1, 1);
    caps.forEach((d, i) => writeDescriptor(b, tag + 1 + i * 2, d));
  }
}

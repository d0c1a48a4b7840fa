// Copying a pointer's content from one message into another, in time linear
// in what is copied and never more than the source holds.
//
// Cap'n Proto pointers may alias: two pointers can name the same struct, so
// a few hundred bytes can describe a DAG whose tree expansion has 2^20 nodes.
// A naive deep copy (capnp-es's utils.copyFrom) expands it, freezing the
// process and sending megabytes back. Every copy here draws on a word budget,
// by default the source message's own size: an honest message (writers never
// alias) always fits, and a hostile one fails as soon as the copy would
// outgrow the bytes the peer actually sent. Capabilities are carried over
// through the messages' cap tables (`message._capnp.capTable`), as capnp-es
// does, without taking references: the caller owns that step.
import { Pointer, type Message } from "capnp-es";
import { allocatePointer, followPointer, NESTING_LIMIT, type PointerRef, type Segment } from "./runtime.js";
import { messageBytes } from "./message.js";

/** A copy would have used more than its budget (aliased pointers), or the source is malformed. */
export class CopyLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CopyLimitError";
  }
}

export interface CopyOptions {
  /** Words the copy may write; default: the source message's size in words (plus one). */
  budgetWords?: number;
  /** Pointer levels the copy may descend; default NESTING_LIMIT (64, as the C++ reader). */
  nestingLimit?: number;
  /** Leave pointers deeper than nestingLimit null instead of failing: a shallow copy. */
  truncate?: boolean;
}

interface CopyContext {
  budget: number;
  readonly truncate: boolean;
  readonly srcCaps: unknown[] | undefined;
  readonly dstMessage: Message;
  readonly src: PointerRef;
  readonly dst: PointerRef;
}

/**
 * Copies what `from` points at into the null pointer `to` (in another
 * message). Capability pointers are appended to the destination's cap table
 * (the caller adds references for the new entries); a capability index the
 * source table does not have is copied as a null pointer; a source with no
 * cap table at all keeps its indexes. Throws
 * CopyLimitError when the copy would exceed its budget or nesting limit, or
 * the source is out of bounds; the destination then holds a partial copy.
 */
export function copyPointer(from: Pointer, to: Pointer, options: CopyOptions = {}): void {
  const srcMessage = from.segment.message;
  const ctx: CopyContext = {
    budget: options.budgetWords ?? messageBytes(srcMessage) / 8 + 1,
    truncate: options.truncate ?? false,
    srcCaps: (srcMessage._capnp as { capTable?: unknown[] }).capTable,
    dstMessage: to.segment.message,
    src: { seg: from.segment, off: 0, lo: 0, hi: 0 },
    dst: { seg: to.segment, off: 0, lo: 0, hi: 0 },
  };
  copyAt(ctx, from.segment, from.byteOffset, to.segment, to.byteOffset, options.nestingLimit ?? NESTING_LIMIT);
}

// Objects of no size are charged nothing: the pointer to one is a word of
// its parent's content, already charged, so the work stays within the budget.
function charge(ctx: CopyContext, words: number): void {
  if ((ctx.budget -= words) < 0) {
    throw new CopyLimitError(
      "capmesh: copying this data would write more than its message holds (aliased pointers); refusing to expand it",
    );
  }
}

function outOfBounds(what: string): CopyLimitError {
  return new CopyLimitError(`capmesh: malformed message: ${what} out of bounds`);
}

const ELEMENT_BITS = [0, 1, 8, 16, 32, 64, 64];

function copyAt(ctx: CopyContext, srcSeg: Segment, srcOff: number, dstSeg: Segment, dstOff: number, depth: number): void {
  const src = ctx.src;
  if (!followPointer(srcSeg, srcOff, src)) return;
  const kind = src.lo & 3;
  if (kind === 3) {
    copyCapability(ctx, src.hi, dstSeg, dstOff);
    return;
  }
  if (depth <= 0) {
    if (ctx.truncate) return;
    throw new CopyLimitError("capmesh: malformed message: nesting limit exceeded");
  }
  const fromSeg = src.seg;
  const from = src.off;
  const hi = src.hi;
  if (kind === 0) copyStruct(ctx, fromSeg, from, hi, dstSeg, dstOff, depth);
  else if (kind === 1) copyList(ctx, fromSeg, from, hi, dstSeg, dstOff, depth);
  else throw new CopyLimitError("capmesh: malformed message: unknown pointer kind");
}

function copyCapability(ctx: CopyContext, index: number, dstSeg: Segment, dstOff: number): void {
  let dstIndex = index;
  if (ctx.srcCaps) {
    const hook = ctx.srcCaps[index];
    if (hook === undefined) return;
    dstIndex = ctx.dstMessage.addCap(hook as never);
  }
  // (A source without a cap table, such as a raw message being echoed, keeps its indexes.)
  dstSeg.setUint32(dstOff, 3);
  dstSeg.setUint32(dstOff + 4, dstIndex);
}

function copyStruct(
  ctx: CopyContext,
  fromSeg: Segment,
  from: number,
  hi: number,
  dstSeg: Segment,
  dstOff: number,
  depth: number,
): void {
  const dataBytes = (hi & 0xffff) * 8;
  const ptrCount = hi >>> 16;
  const bytes = dataBytes + ptrCount * 8;
  if (from < 0 || from + bytes > fromSeg.byteLength) throw outOfBounds("struct");
  charge(ctx, bytes / 8);
  const dst = ctx.dst;
  allocatePointer(dstSeg, dstOff, bytes, 0, hi, dst);
  const toSeg = dst.seg;
  const to = dst.off;
  copyBytes(fromSeg, from, toSeg, to, dataBytes);
  for (let i = 0; i < ptrCount; i++) {
    const at = dataBytes + i * 8;
    copyAt(ctx, fromSeg, from + at, toSeg, to + at, depth - 1);
  }
}

function copyList(
  ctx: CopyContext,
  fromSeg: Segment,
  from: number,
  hi: number,
  dstSeg: Segment,
  dstOff: number,
  depth: number,
): void {
  const size = hi & 7;
  const count = hi >>> 3;
  const dst = ctx.dst;
  if (size === 7) {
    // Composite: `count` is the content's word count; a tag word leads it.
    const words = count;
    if (from < 0 || from + 8 + words * 8 > fromSeg.byteLength) throw outOfBounds("struct list");
    const tag = fromSeg.getUint32(from);
    if ((tag & 3) !== 0) throw new CopyLimitError("capmesh: malformed message: composite list tag is not a struct tag");
    const elements = tag >>> 2;
    const dataBytes = fromSeg.getUint16(from + 4) * 8;
    const ptrCount = fromSeg.getUint16(from + 6);
    const stride = dataBytes + ptrCount * 8;
    if (elements * stride > words * 8) throw new CopyLimitError("capmesh: malformed message: composite list overruns its words");
    charge(ctx, words + 1); // with the tag word
    // The list pointer's count is in words, shifted left by 3: words × 8 = bytes.
    allocatePointer(dstSeg, dstOff, 8 + elements * stride, 1, 7 + elements * stride, dst);
    const toSeg = dst.seg;
    const to = dst.off;
    copyBytes(fromSeg, from, toSeg, to, 8); // the tag word
    if (ptrCount === 0) {
      copyBytes(fromSeg, from + 8, toSeg, to + 8, elements * stride);
      return;
    }
    for (let e = 0; e < elements; e++) {
      const at = 8 + e * stride;
      copyBytes(fromSeg, from + at, toSeg, to + at, dataBytes);
      for (let i = 0; i < ptrCount; i++) {
        const p = at + dataBytes + i * 8;
        copyAt(ctx, fromSeg, from + p, toSeg, to + p, depth - 1);
      }
    }
    return;
  }
  if (size === 6) {
    if (from < 0 || from + count * 8 > fromSeg.byteLength) throw outOfBounds("pointer list");
    charge(ctx, count);
    allocatePointer(dstSeg, dstOff, count * 8, 1, hi, dst);
    const toSeg = dst.seg;
    const to = dst.off;
    for (let i = 0; i < count; i++) copyAt(ctx, fromSeg, from + i * 8, toSeg, to + i * 8, depth - 1);
    return;
  }
  const bytes = Math.ceil((count * ELEMENT_BITS[size]!) / 8);
  if (from < 0 || from + bytes > fromSeg.byteLength) throw outOfBounds("list");
  charge(ctx, Math.ceil(bytes / 8));
  allocatePointer(dstSeg, dstOff, bytes, 1, hi, dst);
  copyBytes(fromSeg, from, dst.seg, dst.off, bytes);
}

function copyBytes(fromSeg: Segment, from: number, toSeg: Segment, to: number, n: number): void {
  if (n === 0) return;
  new Uint8Array(toSeg.buffer, to, n).set(new Uint8Array(fromSeg.buffer, from, n));
}

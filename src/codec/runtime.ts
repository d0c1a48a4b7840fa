// The struct codec runtime: the helpers generated code (src/gen/) calls to
// move plain objects in and out of Cap'n Proto messages.
//
// Everything here works on raw segment offsets rather than capnp-es's Struct
// and List objects: a struct is described once by a StructView (where its
// data and pointer sections are and how big they are) and then every field is
// read straight from the segment's DataView. capnp-es is used for messages,
// segments and allocation only. This keeps decode to one small object per
// struct plus the values themselves.
//
// Wire rules implemented here (Cap'n Proto encoding spec):
// - primitive fields are stored XOR their schema default; a field beyond the
//   end of a (smaller, older) struct's data section reads as its default;
// - a pointer beyond the end of the pointer section, or a null pointer, reads
//   as the field's default;
// - near, far and double-far pointers are followed when reading and written
//   when an allocation lands in another segment;
// - lists may be read with a wider element encoding than expected (struct
//   lists from primitive/pointer lists and primitive/pointer lists from
//   struct lists), as the spec's upgrade rules allow.
import { Message, ObjectSize, Pointer, utils } from "capnp-es";
import type { Struct } from "capnp-es";
import type { Init } from "./init.js";
import { copyPointer } from "./copy.js";
import { functionServerFor } from "./function-caps.js";
import { newMessage } from "./message.js";
import { badValue, elementError, fieldError, rootError, SchemaTypeError } from "./check.js";
import { methodName } from "../codegen/names.js";
import type {
  CapTableReader,
  CapTableWriter,
  InterfaceDef,
  PipelineField,
  StructCodec,
} from "./types.js";

export type { Init } from "./init.js";
export type {
  CapTableReader,
  CapTableWriter,
  InterfaceDef,
  MethodDef,
  PipelineField,
  StructCodec,
} from "./types.js";

export { SchemaTypeError, fieldError } from "./check.js";

/**
 * The value of an AnyPointer field: a capnp-es Pointer into a message.
 * Re-exported so that generated code and its users need capmesh alone.
 */
export type AnyPointer = Pointer;
export { Pointer };

/** A capnp-es message segment (not exported by capnp-es under a name). */
export type Segment = Pointer["segment"];

/** What generated `write` functions receive: an Init<T>, read loosely. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Loose = { readonly [field: string]: any };

/** Maximum struct/list nesting followed while decoding (as in C++). */
export const NESTING_LIMIT = 64;

function malformed(what: string): Error {
  return new Error(`capmesh: malformed message: ${what}`);
}

// ---------------------------------------------------------------------------
// Struct views

/**
 * Where one struct's sections are. Byte offsets are into `seg`. Views handed
 * to a codec's `read`/`write` are only valid during that call: list decoding
 * reuses one view for all elements.
 */
export class StructView {
  constructor(
    public seg: Segment,
    /** Byte offset of the data section. */
    public data: number,
    /** Length of the data section, in bytes. */
    public dataLen: number,
    /** Byte offset of the pointer section. */
    public ptrs: number,
    /** Number of pointers. */
    public ptrCount: number,
    /** Remaining nesting depth. */
    public depth: number,
  ) {}
}

/** A struct with no data and no pointers: every field reads as its default. */
const EMPTY_VIEW = new StructView(null as unknown as Segment, 0, 0, 0, 0, NESTING_LIMIT);

// Results of resolvePointer(). Module-level so that following a pointer does
// not allocate; read them immediately after the call.
let rSeg: Segment = null as unknown as Segment;
let rOff = 0;
let rLo = 0;
let rHi = 0;

/**
 * Follows the pointer at `off` (through far pointers). Returns false for a
 * null pointer; otherwise sets rSeg/rOff to the content and rLo/rHi to the
 * pointer's tag words (type bits, sizes).
 */
function resolvePointer(seg: Segment, off: number): boolean {
  let lo = seg.getInt32(off);
  let hi = seg.getUint32(off + 4);
  if (lo === 0 && hi === 0) return false;
  if ((lo & 3) === 2) {
    const message = seg.message;
    const padSeg = message.getSegment(hi);
    const pad = (lo >>> 3) * 8;
    if ((lo & 4) === 0) {
      lo = padSeg.getInt32(pad);
      hi = padSeg.getUint32(pad + 4);
      if ((lo & 3) === 2) throw malformed("far pointer landing pad is a far pointer");
      rSeg = padSeg;
      rOff = pad + 8 + (lo >> 2) * 8;
    } else {
      const farLo = padSeg.getInt32(pad);
      if ((farLo & 7) !== 2) throw malformed("bad double-far landing pad");
      rSeg = message.getSegment(padSeg.getUint32(pad + 4));
      rOff = (farLo >>> 3) * 8;
      lo = padSeg.getInt32(pad + 8);
      hi = padSeg.getUint32(pad + 12);
    }
  } else {
    rSeg = seg;
    rOff = off + 8 + (lo >> 2) * 8;
  }
  rLo = lo;
  rHi = hi;
  return true;
}

/** Where a pointer leads: filled in by followPointer and allocatePointer. */
export interface PointerRef {
  seg: Segment;
  /** Byte offset of the content (for a list of structs: of its tag word). */
  off: number;
  /** The pointer's two tag words (type bits, sizes), after any far pointers. */
  lo: number;
  hi: number;
}

/** Follows the pointer at (seg, off) through far pointers into `out`; false for a null pointer. */
export function followPointer(seg: Segment, off: number, out: PointerRef): boolean {
  if (!resolvePointer(seg, off)) return false;
  out.seg = rSeg;
  out.off = rOff;
  out.lo = rLo;
  out.hi = rHi;
  return true;
}

/**
 * Allocates `bytes` of content for the (null) pointer at (seg, ptrOff) and
 * writes that pointer (`kind` 0 struct or 1 list, `hi` its second word);
 * `out` gets where the content is.
 */
export function allocatePointer(seg: Segment, ptrOff: number, bytes: number, kind: number, hi: number, out: PointerRef): void {
  allocate(seg, ptrOff, bytes, kind, hi);
  out.seg = aSeg;
  out.off = aOff;
}

const NESTING_EXCEEDED =
  "nesting limit exceeded (the message nests pointers deeper than the transport's nestingLimit, 64 by default; " +
  "raise it on the receiving side if this is legitimate)";

/** Counts bytes read against the message's traversal limit (amplification guard). */
function charge(seg: Segment, bytes: number): void {
  const m = seg.message._capnp;
  if ((m.traversalLimit -= bytes < 8 ? 8 : bytes) < 0) {
    throw malformed(
      "traversal limit exceeded (the message was read past its read budget: the transport limits " +
        "traversalLimitWords and readBudgetFactor bound it; raise them on the receiving side if this is legitimate)",
    );
  }
}

/** The struct the pointer at `off` points to; null for a null pointer. */
function structAt(seg: Segment, off: number, depth: number): StructView | null {
  if (!resolvePointer(seg, off)) return null;
  if ((rLo & 3) !== 0) throw malformed("expected a struct pointer");
  if (depth <= 0) throw malformed(NESTING_EXCEEDED);
  const dataLen = (rHi & 0xffff) * 8;
  const ptrCount = rHi >>> 16;
  const start = rOff;
  const end = start + dataLen + ptrCount * 8;
  if (start < 0 || end > rSeg.byteLength) throw malformed("struct pointer out of bounds");
  charge(rSeg, end - start);
  return new StructView(rSeg, start, dataLen, start + dataLen, ptrCount, depth - 1);
}

// Results of listAt(), same convention as resolvePointer().
let lSeg: Segment = null as unknown as Segment;
let lOff = 0;
let lCount = 0;
/** Element size code from the pointer (0 void, 1 bit, 2..5 bytes, 6 pointer, 7 composite). */
let lSize = 0;
/** Bytes from one element to the next (0 for void and bit lists). */
let lStride = 0;
/** Bytes of data per element (composite: the data section; bit lists: 0). */
let lDataLen = 0;
/** Pointers per element. */
let lPtrCount = 0;

const ELEMENT_BYTES = [0, 0, 1, 2, 4, 8, 0];

/** The list the pointer at `off` points to; false for a null pointer. */
function listAt(seg: Segment, off: number, depth: number): boolean {
  if (!resolvePointer(seg, off)) return false;
  if ((rLo & 3) !== 1) throw malformed("expected a list pointer");
  if (depth <= 0) throw malformed(NESTING_EXCEEDED);
  const size = rHi & 7;
  let count = rHi >>> 3;
  let start = rOff;
  let bytes: number;
  if (size === 7) {
    // Composite: `count` is the word count; the tag word says the rest.
    const words = count;
    if (start < 0 || start + 8 > rSeg.byteLength) throw malformed("list pointer out of bounds");
    const tag = rSeg.getUint32(start);
    if ((tag & 3) !== 0) throw malformed("composite list tag is not a struct tag");
    count = tag >>> 2;
    const dataWords = rSeg.getUint16(start + 4);
    const ptrCount = rSeg.getUint16(start + 6);
    lStride = (dataWords + ptrCount) * 8;
    lDataLen = dataWords * 8;
    lPtrCount = ptrCount;
    if (count * lStride > words * 8) throw malformed("composite list overruns its words");
    start += 8;
    bytes = words * 8;
  } else if (size === 6) {
    lStride = 8;
    lDataLen = 0;
    lPtrCount = 1;
    bytes = count * 8;
  } else if (size === 1) {
    lStride = 0;
    lDataLen = 0;
    lPtrCount = 0;
    bytes = (count + 7) >>> 3;
  } else {
    lStride = ELEMENT_BYTES[size]!;
    lDataLen = lStride;
    lPtrCount = 0;
    bytes = count * lStride;
  }
  if (start < 0 || start + bytes > rSeg.byteLength) throw malformed("list pointer out of bounds");
  // Zero-sized elements still cost a word each: a tiny message must not be
  // able to make us build a huge array.
  charge(rSeg, lStride === 0 && size !== 1 ? count * 8 : bytes);
  lSeg = rSeg;
  lOff = start;
  lCount = count;
  lSize = size;
  return true;
}

/**
 * The nesting depth left below a capnp-es pointer: its own depth limit when
 * the reader set one (e.g. the transport's configured limit), else ours.
 */
function depthOf(p: Pointer): number {
  const d = p._capnp.depthLimit;
  return d > 0xffff ? NESTING_LIMIT : d;
}

/** A view of the struct a capnp-es Struct points to (for decoding). */
export function viewOf(s: Struct): StructView {
  if (s._capnp.compositeIndex !== undefined) return compositeElementView(s);
  return structAt(s.segment, s.byteOffset, depthOf(s)) ?? EMPTY_VIEW;
}

function compositeElementView(s: Struct): StructView {
  const content = utils.getContent(s);
  const size = utils.getSize(s);
  return new StructView(
    content.segment,
    content.byteOffset,
    size.dataByteLength,
    content.byteOffset + size.dataByteLength,
    size.pointerLength,
    depthOf(s),
  );
}

/**
 * A view of the struct a capnp-es Struct points to, for encoding a value of
 * `size` into it. A null pointer is allocated first.
 */
function writableViewOf(s: Struct, size: ObjectSize): StructView {
  let v: StructView | null;
  if (s._capnp.compositeIndex !== undefined) {
    v = compositeElementView(s);
  } else {
    v = structAt(s.segment, s.byteOffset, NESTING_LIMIT);
    if (v === null) {
      allocate(s.segment, s.byteOffset, size.dataByteLength + size.pointerLength * 8, 0,
        (size.dataByteLength >>> 3) | (size.pointerLength << 16));
      return new StructView(aSeg, aOff, size.dataByteLength, aOff + size.dataByteLength,
        size.pointerLength, NESTING_LIMIT);
    }
  }
  if (v.dataLen < size.dataByteLength || v.ptrCount < size.pointerLength) {
    throw new Error(
      `capmesh: cannot encode into a struct of ${v.dataLen / 8} data words and ${v.ptrCount} pointers: ` +
        `${size.dataByteLength / 8} and ${size.pointerLength} are needed`,
    );
  }
  return v;
}

// ---------------------------------------------------------------------------
// Allocation

// Results of allocate(): where the new object's content is.
let aSeg: Segment = null as unknown as Segment;
let aOff = 0;

/**
 * Allocates `bytes` for the content of the pointer at (seg, ptrOff) and writes
 * that pointer: `kind` is 0 (struct) or 1 (list), `hi` its second word. Far
 * pointers (and landing pads) are written when the content lands in another
 * segment. Sets aSeg/aOff to the content.
 */
function allocate(seg: Segment, ptrOff: number, bytes: number, kind: number, hi: number): void {
  if (bytes === 0) {
    // Nothing to allocate. A zero-sized struct uses offset -1 so that its
    // pointer is not all zeros (which would read as null).
    seg.setInt32(ptrOff, kind === 0 ? -4 : kind);
    seg.setUint32(ptrOff + 4, hi);
    aSeg = seg;
    aOff = ptrOff + 8;
    return;
  }
  let cSeg: Segment;
  let cOff: number;
  const padded = (bytes + 7) & ~7;
  if (seg.byteLength + padded <= seg.buffer.byteLength) {
    // Room in this segment: bump-allocate (fresh segment memory is zero, as
    // capnp-es's own allocate assumes) without creating a capnp-es Pointer.
    cSeg = seg;
    cOff = seg.byteLength;
    seg.byteLength += padded;
  } else {
    const content = seg.allocate(bytes);
    cSeg = content.segment;
    cOff = content.byteOffset;
  }
  if (cSeg === seg) {
    seg.setInt32(ptrOff, (((cOff - ptrOff - 8) >> 3) << 2) | kind);
    seg.setUint32(ptrOff + 4, hi);
  } else if (cSeg.hasCapacity(8)) {
    // Single far pointer to a landing pad next to the content.
    const pad = cSeg.allocate(8).byteOffset;
    cSeg.setInt32(pad, (((cOff - pad - 8) >> 3) << 2) | kind);
    cSeg.setUint32(pad + 4, hi);
    seg.setUint32(ptrOff, pad | 2);
    seg.setUint32(ptrOff + 4, cSeg.id);
  } else {
    // Double far: a two-word pad (far pointer to the content + tag) anywhere.
    const padPtr = seg.allocate(16);
    const pSeg = padPtr.segment;
    const pad = padPtr.byteOffset;
    pSeg.setUint32(pad, cOff | 2);
    pSeg.setUint32(pad + 4, cSeg.id);
    pSeg.setUint32(pad + 8, kind);
    pSeg.setUint32(pad + 12, hi);
    seg.setUint32(ptrOff, pad | 6);
    seg.setUint32(ptrOff + 4, pSeg.id);
  }
  aSeg = cSeg;
  aOff = cOff;
}

function checkListLength(n: number): void {
  if (n > 0x1fffffff) throw new RangeError("capmesh: list too long for Cap'n Proto");
}

// ---------------------------------------------------------------------------
// Primitive fields (data section), XOR'd against their schema defaults.

const scratch = new DataView(new ArrayBuffer(8));

/** Primitive element types, indexing the tables below. */
const enum Prim {
  Int8,
  Uint8,
  Int16,
  Uint16,
  Int32,
  Uint32,
  Int64,
  Uint64,
  Float32,
  Float64,
}

const PRIM_BYTES = [1, 1, 2, 2, 4, 4, 8, 8, 4, 8];
const PRIM_SIZE_CODE = [2, 2, 3, 3, 4, 4, 5, 5, 4, 5];
const PRIM_NAMES = ["Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float32", "Float64"];

/** What a value of each integer type must be, for error messages. */
const EXPECT_INT = [
  "Int8 (an integer in -128..127)",
  "UInt8 (an integer in 0..255)",
  "Int16 (an integer in -32768..32767)",
  "UInt16 (an integer in 0..65535)",
  "Int32 (an integer in -2147483648..2147483647)",
  "UInt32 (an integer in 0..4294967295)",
  "Int64 (a bigint, or an integral number, in -2^63..2^63-1)",
  "UInt64 (a bigint, or an integral number, in 0..2^64-1)",
];
const EXPECT_FLOAT = ["Float32 (a number)", "Float64 (a number)"];
const EXPECT_BOOL = "Bool (true or false)";


export function readBool(v: StructView, bit: number, def = false): boolean {
  const byte = bit >>> 3;
  if (byte >= v.dataLen) return def;
  return ((v.seg.getUint8(v.data + byte) & (1 << (bit & 7))) !== 0) !== def;
}

export function readInt8(v: StructView, off: number, def = 0): number {
  return off < v.dataLen ? ((v.seg.getInt8(v.data + off) ^ def) << 24) >> 24 : def;
}

export function readUint8(v: StructView, off: number, def = 0): number {
  return off < v.dataLen ? (v.seg.getUint8(v.data + off) ^ def) & 0xff : def;
}

export function readInt16(v: StructView, off: number, def = 0): number {
  return off + 2 <= v.dataLen ? ((v.seg.getInt16(v.data + off) ^ def) << 16) >> 16 : def;
}

export function readUint16(v: StructView, off: number, def = 0): number {
  return off + 2 <= v.dataLen ? (v.seg.getUint16(v.data + off) ^ def) & 0xffff : def;
}

export function readInt32(v: StructView, off: number, def = 0): number {
  return off + 4 <= v.dataLen ? v.seg.getInt32(v.data + off) ^ def : def;
}

export function readUint32(v: StructView, off: number, def = 0): number {
  return off + 4 <= v.dataLen ? (v.seg.getUint32(v.data + off) ^ def) >>> 0 : def;
}

export function readInt64(v: StructView, off: number, def = 0n): bigint {
  if (off + 8 > v.dataLen) return def;
  const raw = v.seg.getInt64(v.data + off);
  return def === 0n ? raw : raw ^ def;
}

export function readUint64(v: StructView, off: number, def = 0n): bigint {
  if (off + 8 > v.dataLen) return def;
  const raw = v.seg.getUint64(v.data + off);
  return def === 0n ? raw : raw ^ def;
}

/** `defBits`: the default's IEEE-754 bit pattern, as a uint32. */
export function readFloat32(v: StructView, off: number, defBits = 0): number {
  if (off + 4 > v.dataLen) {
    scratch.setUint32(0, defBits, true);
    return scratch.getFloat32(0, true);
  }
  if (defBits === 0) return v.seg.getFloat32(v.data + off);
  scratch.setUint32(0, v.seg.getUint32(v.data + off) ^ defBits, true);
  return scratch.getFloat32(0, true);
}

/** `defLo`/`defHi`: the default's IEEE-754 bit pattern, low and high uint32. */
export function readFloat64(v: StructView, off: number, defLo = 0, defHi = 0): number {
  if (off + 8 > v.dataLen) {
    scratch.setUint32(0, defLo, true);
    scratch.setUint32(4, defHi, true);
    return scratch.getFloat64(0, true);
  }
  if (defLo === 0 && defHi === 0) return v.seg.getFloat64(v.data + off);
  scratch.setUint32(0, v.seg.getUint32(v.data + off) ^ defLo, true);
  scratch.setUint32(4, v.seg.getUint32(v.data + off + 4) ^ defHi, true);
  return scratch.getFloat64(0, true);
}

// Writers check that the value fits the field (an integer in range, a
// number, a boolean) with a compare on the happy path, and throw a
// SchemaTypeError (a TypeError) instead of storing a wrapped or coerced value.

export function writeBool(v: StructView, bit: number, value: boolean, def = false): void {
  if (typeof value !== "boolean") throw badValue(EXPECT_BOOL, value);
  const at = v.data + (bit >>> 3);
  const mask = 1 << (bit & 7);
  const b = v.seg.getUint8(at);
  v.seg.setUint8(at, value !== def ? b | mask : b & ~mask);
}

export function writeInt8(v: StructView, off: number, value: number, def = 0): void {
  if ((value << 24) >> 24 !== value) throw badValue(EXPECT_INT[Prim.Int8]!, value);
  v.seg.setUint8(v.data + off, (value ^ def) & 0xff);
}

export function writeUint8(v: StructView, off: number, value: number, def = 0): void {
  if ((value & 0xff) !== value) throw badValue(EXPECT_INT[Prim.Uint8]!, value);
  v.seg.setUint8(v.data + off, (value ^ def) & 0xff);
}

export function writeInt16(v: StructView, off: number, value: number, def = 0): void {
  if ((value << 16) >> 16 !== value) throw badValue(EXPECT_INT[Prim.Int16]!, value);
  v.seg.setUint16(v.data + off, (value ^ def) & 0xffff);
}

export function writeUint16(v: StructView, off: number, value: number, def = 0): void {
  if ((value & 0xffff) !== value) throw badValue(EXPECT_INT[Prim.Uint16]!, value);
  v.seg.setUint16(v.data + off, (value ^ def) & 0xffff);
}

export function writeInt32(v: StructView, off: number, value: number, def = 0): void {
  if ((value | 0) !== value) throw badValue(EXPECT_INT[Prim.Int32]!, value);
  v.seg.setInt32(v.data + off, value ^ def);
}

export function writeUint32(v: StructView, off: number, value: number, def = 0): void {
  if (value >>> 0 !== value) throw badValue(EXPECT_INT[Prim.Uint32]!, value);
  v.seg.setInt32(v.data + off, value ^ def);
}

// asIntN/asUintN return an in-range bigint as it is: cheaper than two comparisons.

/** `value` as an Int64 (a bigint, or an integral number), or a SchemaTypeError. */
function int64(value: unknown): bigint {
  if (typeof value === "bigint") {
    if (BigInt.asIntN(64, value) === value) return value;
  } else if (Number.isInteger(value) && (value as number) >= -(2 ** 63) && (value as number) < 2 ** 63) {
    return BigInt(value as number);
  }
  throw badValue(EXPECT_INT[Prim.Int64]!, value);
}

/** `value` as a UInt64 (a bigint, or an integral number), or a SchemaTypeError. */
function uint64(value: unknown): bigint {
  if (typeof value === "bigint") {
    if (BigInt.asUintN(64, value) === value) return value;
  } else if (Number.isInteger(value) && (value as number) >= 0 && (value as number) < 2 ** 64) {
    return BigInt(value as number);
  }
  throw badValue(EXPECT_INT[Prim.Uint64]!, value);
}

export function writeInt64(v: StructView, off: number, value: bigint | number, def = 0n): void {
  const b = int64(value);
  v.seg.setInt64(v.data + off, def === 0n ? b : BigInt.asIntN(64, b ^ def));
}

export function writeUint64(v: StructView, off: number, value: bigint | number, def = 0n): void {
  const b = uint64(value);
  v.seg.setUint64(v.data + off, def === 0n ? b : BigInt.asUintN(64, b ^ def));
}

export function writeFloat32(v: StructView, off: number, value: number, defBits = 0): void {
  if (typeof value !== "number") throw badValue(EXPECT_FLOAT[0]!, value);
  if (defBits === 0) {
    v.seg.setFloat32(v.data + off, value);
  } else {
    scratch.setFloat32(0, value, true);
    v.seg.setUint32(v.data + off, (scratch.getUint32(0, true) ^ defBits) >>> 0);
  }
}

export function writeFloat64(v: StructView, off: number, value: number, defLo = 0, defHi = 0): void {
  if (typeof value !== "number") throw badValue(EXPECT_FLOAT[1]!, value);
  if (defLo === 0 && defHi === 0) {
    v.seg.setFloat64(v.data + off, value);
  } else {
    scratch.setFloat64(0, value, true);
    v.seg.setUint32(v.data + off, (scratch.getUint32(0, true) ^ defLo) >>> 0);
    v.seg.setUint32(v.data + off + 4, (scratch.getUint32(4, true) ^ defHi) >>> 0);
  }
}

// ---------------------------------------------------------------------------
// Enums

/**
 * An enum's enumerant names by ordinal. Decoded values are names; an ordinal
 * this schema does not know (from a newer peer) decodes to the number itself.
 */
export class EnumDef<N extends string = string> {
  readonly #ordinals = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly names: readonly N[],
  ) {
    names.forEach((n, i) => this.#ordinals.set(n, i));
  }

  /** The name of ordinal `n`, or `n` itself when unknown. */
  nameOf(n: number): N | number {
    return n < this.names.length ? this.names[n]! : n;
  }

  /**
   * The ordinal of a name, or a number passed through (an enumerant this
   * schema may not know, from a newer peer: any UInt16).
   */
  ordinalOf(value: N | number | string): number {
    if (typeof value === "string") {
      const n = this.#ordinals.get(value);
      if (n !== undefined) return n;
    } else if ((value & 0xffff) === value) {
      return value;
    }
    throw badValue(this.expected(), value);
  }

  /** What a value of this enum must be, for error messages. */
  expected(): string {
    return `${this.name} (one of ${this.names.map((n) => JSON.stringify(n)).join(", ")}, or an ordinal in 0..65535)`;
  }
}

export function defineEnum<const N extends string>(name: string, names: readonly N[]): EnumDef<N> {
  return new EnumDef(name, names);
}

export function readEnum<N extends string>(v: StructView, off: number, e: EnumDef<N>, def = 0): N | number {
  return e.nameOf(off + 2 <= v.dataLen ? v.seg.getUint16(v.data + off) ^ def : def);
}

export function writeEnum(v: StructView, off: number, e: EnumDef, value: string | number, def = 0): void {
  v.seg.setUint16(v.data + off, (e.ordinalOf(value) ^ def) & 0xffff);
}

// ---------------------------------------------------------------------------
// Pointer defaults

/**
 * A schema default for a struct, list or AnyPointer field: a one-segment
 * message (hex of its words) whose root pointer holds the default value.
 */
export class DefaultValue {
  #segment: Segment | undefined;

  constructor(readonly hex: string) {}

  /** The segment holding the default; its root pointer is at offset 0. */
  get segment(): Segment {
    if (this.#segment === undefined) {
      const bytes = new Uint8Array(this.hex.length / 2);
      for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(this.hex.slice(i * 2, i * 2 + 2), 16);
      const message = new Message(bytes, false, true);
      // Defaults are read again and again: they must not use up a limit.
      message._capnp.traversalLimit = Number.POSITIVE_INFINITY;
      this.#segment = message.getSegment(0);
    }
    return this.#segment;
  }
}

export function defaultValue(hex: string): DefaultValue {
  return new DefaultValue(hex);
}

// ---------------------------------------------------------------------------
// Text and Data

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function utf8Length(s: string): number {
  const len = s.length;
  let n = len;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if ((c & 0xfc00) === 0xd800 && i + 1 < len && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 2 UTF-16 units, 4 bytes
      i++;
    } else {
      n += 2; // 3 bytes (a lone surrogate is written as U+FFFD, also 3)
    }
  }
  return n;
}

function decodeUtf8(seg: Segment, off: number, n: number): string {
  if (n <= 24) {
    let s = "";
    for (let i = 0; i < n; i++) {
      const b = seg.getUint8(off + i);
      if (b >= 0x80) return textDecoder.decode(new Uint8Array(seg.buffer, off, n));
      s += String.fromCharCode(b);
    }
    return s;
  }
  return textDecoder.decode(new Uint8Array(seg.buffer, off, n));
}

function readTextAt(seg: Segment, off: number, depth: number, def: string): string {
  if (!listAt(seg, off, depth)) return def;
  if (lSize !== 2) throw malformed("expected a byte list for Text");
  const n = lCount;
  if (n === 0) return "";
  // Text ends in a NUL that is not part of the value.
  return decodeUtf8(lSeg, lOff, lSeg.getUint8(lOff + n - 1) === 0 ? n - 1 : n);
}

function writeTextAt(seg: Segment, ptrOff: number, value: string): void {
  if (typeof value !== "string") throw badValue("Text (a string)", value);
  const s = value;
  const n = utf8Length(s);
  checkListLength(n + 1);
  allocate(seg, ptrOff, n + 1, 1, 2 | ((n + 1) << 3));
  if (n === s.length && n <= 32) {
    const out = aSeg;
    const at = aOff;
    for (let i = 0; i < n; i++) out.setUint8(at + i, s.charCodeAt(i));
  } else {
    textEncoder.encodeInto(s, new Uint8Array(aSeg.buffer, aOff, n));
  }
}

/**
 * Data is decoded without copying: the Uint8Array is a view of the message's
 * buffer, which capnp-es never reuses for another message.
 */
function readDataAt(seg: Segment, off: number, depth: number, def: Uint8Array | undefined): Uint8Array {
  if (!listAt(seg, off, depth)) return def === undefined ? new Uint8Array(0) : def.slice();
  if (lSize !== 2) throw malformed("expected a byte list for Data");
  return new Uint8Array(lSeg.buffer, lOff, lCount);
}

function writeDataAt(seg: Segment, ptrOff: number, value: Uint8Array): void {
  // A string or a number[] would be stored as zeros or wrapped bytes.
  if (!(value instanceof Uint8Array)) throw badValue("Data (a Uint8Array)", value);
  const n = value.length;
  checkListLength(n);
  allocate(seg, ptrOff, n, 1, 2 | (n << 3));
  if (n > 0) new Uint8Array(aSeg.buffer, aOff, n).set(value);
}

export function readText(v: StructView, i: number, def = ""): string {
  return i < v.ptrCount ? readTextAt(v.seg, v.ptrs + i * 8, v.depth, def) : def;
}

export function writeText(v: StructView, i: number, value: string): void {
  writeTextAt(v.seg, v.ptrs + i * 8, value);
}

export function readData(v: StructView, i: number, def?: Uint8Array): Uint8Array {
  if (i < v.ptrCount) return readDataAt(v.seg, v.ptrs + i * 8, v.depth, def);
  return def === undefined ? new Uint8Array(0) : def.slice();
}

export function writeData(v: StructView, i: number, value: Uint8Array): void {
  writeDataAt(v.seg, v.ptrs + i * 8, value);
}

// ---------------------------------------------------------------------------
// Struct fields

function readStructAt<T>(
  seg: Segment,
  off: number,
  depth: number,
  codec: Codec<T>,
  caps: CapTableReader,
  def: DefaultValue | undefined,
): T {
  const child = structAt(seg, off, depth);
  if (child !== null) return codec.read(child, caps);
  if (def !== undefined) return codec.read(structAt(def.segment, 0, NESTING_LIMIT) ?? EMPTY_VIEW, caps);
  return codec.read(EMPTY_VIEW, caps);
}

function writeStructAt(seg: Segment, ptrOff: number, codec: Codec<unknown>, value: Loose, caps: CapTableWriter): void {
  const dataLen = codec.dataWords * 8;
  allocate(seg, ptrOff, dataLen + codec.pointers * 8, 0, codec.dataWords | (codec.pointers << 16));
  codec.write(value, new StructView(aSeg, aOff, dataLen, aOff + dataLen, codec.pointers, NESTING_LIMIT), caps);
}

export function readStructField<T>(
  v: StructView,
  i: number,
  codec: Codec<T>,
  caps: CapTableReader,
  def?: DefaultValue,
): T {
  if (i < v.ptrCount) return readStructAt(v.seg, v.ptrs + i * 8, v.depth, codec, caps, def);
  if (def !== undefined) return codec.read(structAt(def.segment, 0, NESTING_LIMIT) ?? EMPTY_VIEW, caps);
  return codec.read(EMPTY_VIEW, caps);
}

/**
 * A struct field of a recursive type: a null pointer reads as null (or the
 * schema default, if there is one) instead of an endless default struct.
 */
export function readStructFieldOrNull<T>(
  v: StructView,
  i: number,
  codec: Codec<T>,
  caps: CapTableReader,
  def?: DefaultValue,
): T | null {
  if (i < v.ptrCount) {
    const child = structAt(v.seg, v.ptrs + i * 8, v.depth);
    if (child !== null) return codec.read(child, caps);
  }
  if (def !== undefined) return codec.read(structAt(def.segment, 0, NESTING_LIMIT) ?? EMPTY_VIEW, caps);
  return null;
}

export function writeStructField(
  v: StructView,
  i: number,
  codec: Codec<unknown>,
  value: Loose,
  caps: CapTableWriter,
): void {
  writeStructAt(v.seg, v.ptrs + i * 8, codec, value, caps);
}

// ---------------------------------------------------------------------------
// Capabilities

function readCapAt(seg: Segment, off: number, iface: InterfaceDef | null, caps: CapTableReader): unknown {
  const lo = seg.getUint32(off);
  const hi = seg.getUint32(off + 4);
  if (lo === 0 && hi === 0) return null;
  if (lo !== 3) throw malformed("expected a capability pointer");
  return caps.get(hi, iface);
}

/** Property names of the methods a server of `iface` (and its superclasses) implements. */
const serverMethodNames = new WeakMap<InterfaceDef, readonly string[]>();

function methodNamesOf(iface: InterfaceDef): readonly string[] {
  let names = serverMethodNames.get(iface);
  if (names === undefined) {
    const found = new Set<string>();
    const visit = (def: InterfaceDef): void => {
      for (const m of def.methods) found.add(methodName(m.name));
      for (const s of def.superclasses) visit(s);
    };
    visit(iface);
    names = [...found];
    serverMethodNames.set(iface, names);
  }
  return names;
}

/**
 * Whether `value` can go where the schema has a capability of `iface` (null:
 * any interface): a client (anything with the Capability methods), or a
 * server object with at least one method of the interface (the others
 * answer `unimplemented`, as in the C++ API). A data object put in a
 * capability field by mistake has none.
 */
function fitsCapability(value: unknown, iface: InterfaceDef | null): boolean {
  if (typeof value === "function") return functionServerFor(iface) !== undefined;
  if (typeof value !== "object" || value === null) return false;
  const x = value as Record<string, unknown>;
  if (typeof x.whenResolved === "function" && typeof x.dup === "function" && typeof x.release === "function") return true;
  if (iface === null) return false;
  const names = methodNamesOf(iface);
  if (names.length === 0) return true;
  for (const name of names) if (typeof x[name] === "function") return true;
  return false;
}

function expectedCapability(iface: InterfaceDef | null): string {
  if (iface === null) return "a capability client (wrap a server object with Interface.server(obj))";
  const names = methodNamesOf(iface);
  const methods = names.length === 0 ? "" : ` with any of the methods ${names.join(", ")}`;
  return `a ${iface.name} capability (a client, or a server object${methods})`;
}

function writeCapAt(seg: Segment, off: number, iface: InterfaceDef | null, value: unknown, caps: CapTableWriter): void {
  if (!fitsCapability(value, iface)) throw badValue(expectedCapability(iface), value);
  const index = caps.add(value, iface);
  if (index >= 0) {
    seg.setUint32(off, 3);
    seg.setUint32(off + 4, index);
  }
}

/** The capability in pointer `i` as a typed client (owned by the caller), or null. */
export function readCap<C>(v: StructView, i: number, iface: InterfaceDef | null, caps: CapTableReader): C | null {
  return i < v.ptrCount ? (readCapAt(v.seg, v.ptrs + i * 8, iface, caps) as C | null) : null;
}

export function writeCap(v: StructView, i: number, iface: InterfaceDef | null, value: unknown, caps: CapTableWriter): void {
  writeCapAt(v.seg, v.ptrs + i * 8, iface, value, caps);
}

// ---------------------------------------------------------------------------
// AnyPointer

/** An AnyPointer field, as a capnp-es Pointer into the message (or null). */
export function readAnyPointer(v: StructView, i: number): Pointer | null {
  if (i >= v.ptrCount) return null;
  const off = v.ptrs + i * 8;
  if (v.seg.getUint32(off) === 0 && v.seg.getUint32(off + 4) === 0) return null;
  return new Pointer(v.seg, off, v.depth);
}

function writeAnyPointerAt(seg: Segment, off: number, value: unknown): void {
  if (!(value instanceof Pointer)) throw badValue("AnyPointer (a capnp-es Pointer, or null)", value);
  copyPointer(value, new Pointer(seg, off));
}

/** Copies a capnp-es Pointer (e.g. one decoded from another message) into the field. */
export function writeAnyPointer(v: StructView, i: number, value: unknown): void {
  writeAnyPointerAt(v.seg, v.ptrs + i * 8, value);
}

// ---------------------------------------------------------------------------
// Lists

/**
 * How to read and write one list element type. Generated code uses the
 * LIST_* constants for primitive, Text and Data elements and the listOf*
 * functions for the rest.
 */
export abstract class ListType<T> {
  /** The schema type of such a list, e.g. `List(UInt8)`, for error messages. */
  abstract readonly typeName: string;
  /** Reads the list described by the l* results of listAt(). */
  abstract read(caps: CapTableReader, depth: number): T[];
  /** Allocates and fills a list for the pointer at (seg, ptrOff). */
  abstract write(seg: Segment, ptrOff: number, values: readonly unknown[], caps: CapTableWriter): void;
}

function elementMismatch(what: string): Error {
  return malformed(`list elements are not ${what}`);
}

/**
 * Throws unless `values` is an array (for lists of numbers, a typed array
 * will do too): a string or an object would otherwise be read as a list.
 */
function checkArray(values: unknown, type: ListType<unknown>, typed: boolean): void {
  if (Array.isArray(values)) return;
  if (typed && ArrayBuffer.isView(values) && !(values instanceof DataView)) return;
  throw badValue(`${type.typeName} (an array)`, values);
}

class VoidListType extends ListType<true> {
  readonly typeName = "List(Void)";
  read(): true[] {
    return new Array<true>(lCount).fill(true);
  }
  write(seg: Segment, ptrOff: number, values: readonly unknown[]): void {
    checkArray(values, this, false);
    checkListLength(values.length);
    allocate(seg, ptrOff, 0, 1, values.length << 3);
  }
}

class BoolListType extends ListType<boolean> {
  readonly typeName = "List(Bool)";
  read(): boolean[] {
    if (lSize !== 1) throw elementMismatch("Bool");
    const seg = lSeg;
    const off = lOff;
    const n = lCount;
    const out = new Array<boolean>(n);
    for (let i = 0; i < n; i++) out[i] = (seg.getUint8(off + (i >>> 3)) & (1 << (i & 7))) !== 0;
    return out;
  }
  write(seg: Segment, ptrOff: number, values: readonly unknown[]): void {
    checkArray(values, this, false);
    const n = values.length;
    checkListLength(n);
    allocate(seg, ptrOff, (n + 7) >>> 3, 1, 1 | (n << 3));
    const out = aSeg;
    const off = aOff;
    for (let i = 0; i < n; i++) {
      const x = values[i];
      if (x === true) {
        const at = off + (i >>> 3);
        out.setUint8(at, out.getUint8(at) | (1 << (i & 7)));
      } else if (x !== false && x != null) {
        throw elementError(badValue(EXPECT_BOOL, x), i);
      }
    }
  }
}

class PrimitiveListType<T extends number | bigint> extends ListType<T> {
  readonly typeName: string;
  constructor(readonly prim: Prim) {
    super();
    this.typeName = `List(${PRIM_NAMES[prim]!})`;
  }

  read(): T[] {
    const bytes = PRIM_BYTES[this.prim]!;
    if (lSize === 1 || lDataLen < bytes) throw elementMismatch(PRIM_NAMES[this.prim]!);
    const seg = lSeg;
    const off = lOff;
    const stride = lStride;
    const n = lCount;
    const out = new Array<T>(n);
    switch (this.prim) {
      case Prim.Int8:
        for (let i = 0; i < n; i++) out[i] = seg.getInt8(off + i * stride) as T;
        break;
      case Prim.Uint8:
        for (let i = 0; i < n; i++) out[i] = seg.getUint8(off + i * stride) as T;
        break;
      case Prim.Int16:
        for (let i = 0; i < n; i++) out[i] = seg.getInt16(off + i * stride) as T;
        break;
      case Prim.Uint16:
        for (let i = 0; i < n; i++) out[i] = seg.getUint16(off + i * stride) as T;
        break;
      case Prim.Int32:
        for (let i = 0; i < n; i++) out[i] = seg.getInt32(off + i * stride) as T;
        break;
      case Prim.Uint32:
        for (let i = 0; i < n; i++) out[i] = seg.getUint32(off + i * stride) as T;
        break;
      case Prim.Int64:
        for (let i = 0; i < n; i++) out[i] = seg.getInt64(off + i * stride) as T;
        break;
      case Prim.Uint64:
        for (let i = 0; i < n; i++) out[i] = seg.getUint64(off + i * stride) as T;
        break;
      case Prim.Float32:
        for (let i = 0; i < n; i++) out[i] = seg.getFloat32(off + i * stride) as T;
        break;
      case Prim.Float64:
        for (let i = 0; i < n; i++) out[i] = seg.getFloat64(off + i * stride) as T;
        break;
    }
    return out;
  }

  write(seg: Segment, ptrOff: number, values: readonly unknown[]): void {
    checkArray(values, this, true);
    const n = values.length;
    checkListLength(n);
    const bytes = PRIM_BYTES[this.prim]!;
    allocate(seg, ptrOff, n * bytes, 1, PRIM_SIZE_CODE[this.prim]! | (n << 3));
    const out = aSeg;
    const off = aOff;
    const prim = this.prim;
    for (let i = 0; i < n; i++) {
      const x = values[i] as number;
      if (x == null) continue;
      const at = off + i * bytes;
      // Each case checks that the value fits, as the field writers do.
      switch (prim) {
        case Prim.Int8:
          if ((x << 24) >> 24 !== x) throw badElement(prim, x, i);
          out.setUint8(at, x & 0xff);
          break;
        case Prim.Uint8:
          if ((x & 0xff) !== x) throw badElement(prim, x, i);
          out.setUint8(at, x);
          break;
        case Prim.Int16:
          if ((x << 16) >> 16 !== x) throw badElement(prim, x, i);
          out.setUint16(at, x & 0xffff);
          break;
        case Prim.Uint16:
          if ((x & 0xffff) !== x) throw badElement(prim, x, i);
          out.setUint16(at, x);
          break;
        case Prim.Int32:
          if ((x | 0) !== x) throw badElement(prim, x, i);
          out.setInt32(at, x);
          break;
        case Prim.Uint32:
          if (x >>> 0 !== x) throw badElement(prim, x, i);
          out.setUint32(at, x);
          break;
        case Prim.Int64:
          try {
            out.setInt64(at, int64(x));
          } catch (e) {
            throw elementError(e, i);
          }
          break;
        case Prim.Uint64:
          try {
            out.setUint64(at, uint64(x));
          } catch (e) {
            throw elementError(e, i);
          }
          break;
        case Prim.Float32:
          if (typeof x !== "number") throw badElement(prim, x, i);
          out.setFloat32(at, x);
          break;
        case Prim.Float64:
          if (typeof x !== "number") throw badElement(prim, x, i);
          out.setFloat64(at, x);
          break;
      }
    }
  }
}

function badElement(prim: Prim, x: unknown, i: number): unknown {
  return elementError(badValue(prim >= Prim.Float32 ? EXPECT_FLOAT[prim - Prim.Float32]! : EXPECT_INT[prim]!, x), i);
}

class EnumListType<N extends string> extends ListType<N | number> {
  readonly typeName: string;
  constructor(readonly def: EnumDef<N>) {
    super();
    this.typeName = `List(${def.name})`;
  }
  read(): (N | number)[] {
    if (lSize === 1 || lDataLen < 2) throw elementMismatch(`enum ${this.def.name}`);
    const seg = lSeg;
    const off = lOff;
    const stride = lStride;
    const n = lCount;
    const out = new Array<N | number>(n);
    for (let i = 0; i < n; i++) out[i] = this.def.nameOf(seg.getUint16(off + i * stride));
    return out;
  }
  write(seg: Segment, ptrOff: number, values: readonly unknown[]): void {
    checkArray(values, this, false);
    const n = values.length;
    checkListLength(n);
    allocate(seg, ptrOff, n * 2, 1, 3 | (n << 3));
    const out = aSeg;
    const off = aOff;
    let i = 0;
    try {
      for (; i < n; i++) {
        const x = values[i];
        if (x != null) out.setUint16(off + i * 2, this.def.ordinalOf(x as string | number));
      }
    } catch (e) {
      throw elementError(e, i);
    }
  }
}

/** Element types stored as one pointer each (Text, Data, lists, caps, AnyPointer). */
abstract class PointerListType<T> extends ListType<T> {
  abstract what: string;
  abstract readAt(seg: Segment, off: number, depth: number, caps: CapTableReader): T;
  abstract writeAt(seg: Segment, off: number, value: unknown, caps: CapTableWriter): void;

  read(caps: CapTableReader, depth: number): T[] {
    if (lPtrCount === 0) throw elementMismatch(this.what);
    const seg = lSeg;
    const first = lOff + lDataLen;
    const stride = lStride;
    const n = lCount;
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = this.readAt(seg, first + i * stride, depth, caps);
    return out;
  }

  write(seg: Segment, ptrOff: number, values: readonly unknown[], caps: CapTableWriter): void {
    checkArray(values, this, false);
    const n = values.length;
    checkListLength(n);
    allocate(seg, ptrOff, n * 8, 1, 6 | (n << 3));
    const out = aSeg;
    const off = aOff;
    let i = 0;
    try {
      for (; i < n; i++) {
        const x = values[i];
        if (x != null) this.writeAt(out, off + i * 8, x, caps);
      }
    } catch (e) {
      throw elementError(e, i);
    }
  }
}

class TextListType extends PointerListType<string> {
  what = "Text";
  readonly typeName = "List(Text)";
  readAt(seg: Segment, off: number, depth: number): string {
    return readTextAt(seg, off, depth, "");
  }
  writeAt(seg: Segment, off: number, value: unknown): void {
    writeTextAt(seg, off, value as string);
  }
}

class DataListType extends PointerListType<Uint8Array> {
  what = "Data";
  readonly typeName = "List(Data)";
  readAt(seg: Segment, off: number, depth: number): Uint8Array {
    return readDataAt(seg, off, depth, undefined);
  }
  writeAt(seg: Segment, off: number, value: unknown): void {
    writeDataAt(seg, off, value as Uint8Array);
  }
}

class AnyPointerListType extends PointerListType<Pointer | null> {
  what = "pointers";
  readonly typeName = "List(AnyPointer)";
  readAt(seg: Segment, off: number, depth: number): Pointer | null {
    if (seg.getUint32(off) === 0 && seg.getUint32(off + 4) === 0) return null;
    return new Pointer(seg, off, depth);
  }
  writeAt(seg: Segment, off: number, value: unknown): void {
    writeAnyPointerAt(seg, off, value);
  }
}

class CapListType<C> extends PointerListType<C | null> {
  what = "capabilities";
  readonly typeName: string;
  constructor(readonly iface: InterfaceDef | null) {
    super();
    this.typeName = `List(${iface?.name ?? "Capability"})`;
  }
  readAt(seg: Segment, off: number, _depth: number, caps: CapTableReader): C | null {
    return readCapAt(seg, off, this.iface, caps) as C | null;
  }
  writeAt(seg: Segment, off: number, value: unknown, caps: CapTableWriter): void {
    writeCapAt(seg, off, this.iface, value, caps);
  }
}

class ListListType<E> extends PointerListType<E[]> {
  what = "lists";
  readonly typeName: string;
  constructor(readonly element: ListType<E>) {
    super();
    this.typeName = `List(${element.typeName})`;
  }
  readAt(seg: Segment, off: number, depth: number, caps: CapTableReader): E[] {
    return listAt(seg, off, depth) ? this.element.read(caps, depth - 1) : [];
  }
  writeAt(seg: Segment, off: number, value: unknown, caps: CapTableWriter): void {
    this.element.write(seg, off, value as readonly unknown[], caps);
  }
}

class StructListType<T> extends ListType<T> {
  readonly typeName: string;
  constructor(readonly codec: Codec<T>) {
    super();
    this.typeName = `List(${codec.name})`;
  }
  read(caps: CapTableReader, depth: number): T[] {
    if (lSize === 1) throw elementMismatch(this.codec.name);
    const seg = lSeg;
    const start = lOff;
    const stride = lStride;
    const dataLen = lDataLen;
    const n = lCount;
    const out = new Array<T>(n);
    // One view, moved from element to element: codecs do not keep views.
    const view = new StructView(seg, start, dataLen, start + dataLen, lPtrCount, depth);
    for (let i = 0; i < n; i++) {
      view.data = start + i * stride;
      view.ptrs = view.data + dataLen;
      out[i] = this.codec.read(view, caps);
    }
    return out;
  }
  write(seg: Segment, ptrOff: number, values: readonly unknown[], caps: CapTableWriter): void {
    checkArray(values, this, false);
    const n = values.length;
    checkListLength(n);
    const { dataWords, pointers } = this.codec;
    const words = dataWords + pointers;
    if (n * words > 0x1fffffff) throw new RangeError("capmesh: list too long for Cap'n Proto");
    allocate(seg, ptrOff, 8 + n * words * 8, 1, 7 | ((n * words) << 3));
    const out = aSeg;
    const tag = aOff;
    out.setUint32(tag, n << 2);
    out.setUint32(tag + 4, dataWords | (pointers << 16));
    const dataLen = dataWords * 8;
    const view = new StructView(out, tag + 8, dataLen, tag + 8 + dataLen, pointers, NESTING_LIMIT);
    let i = 0;
    try {
      for (; i < n; i++) {
        const x = values[i];
        if (x == null) continue;
        view.data = tag + 8 + i * words * 8;
        view.ptrs = view.data + dataLen;
        this.codec.write(x as Loose, view, caps);
      }
    } catch (e) {
      throw elementError(e, i);
    }
  }
}

export const LIST_VOID: ListType<true> = new VoidListType();
export const LIST_BOOL: ListType<boolean> = new BoolListType();
export const LIST_INT8: ListType<number> = new PrimitiveListType(Prim.Int8);
export const LIST_UINT8: ListType<number> = new PrimitiveListType(Prim.Uint8);
export const LIST_INT16: ListType<number> = new PrimitiveListType(Prim.Int16);
export const LIST_UINT16: ListType<number> = new PrimitiveListType(Prim.Uint16);
export const LIST_INT32: ListType<number> = new PrimitiveListType(Prim.Int32);
export const LIST_UINT32: ListType<number> = new PrimitiveListType(Prim.Uint32);
export const LIST_INT64: ListType<bigint> = new PrimitiveListType(Prim.Int64);
export const LIST_UINT64: ListType<bigint> = new PrimitiveListType(Prim.Uint64);
export const LIST_FLOAT32: ListType<number> = new PrimitiveListType(Prim.Float32);
export const LIST_FLOAT64: ListType<number> = new PrimitiveListType(Prim.Float64);
export const LIST_TEXT: ListType<string> = new TextListType();
export const LIST_DATA: ListType<Uint8Array> = new DataListType();
export const LIST_ANY_POINTER: ListType<Pointer | null> = new AnyPointerListType();

export function listOfStruct<T>(codec: Codec<T>): ListType<T> {
  return new StructListType(codec);
}
export function listOfList<E>(element: ListType<E>): ListType<E[]> {
  return new ListListType(element);
}
export function listOfEnum<N extends string>(def: EnumDef<N>): ListType<N | number> {
  return new EnumListType(def);
}
/** `iface` null: capabilities of any interface. */
export function listOfCap<C>(iface: InterfaceDef | null): ListType<C | null> {
  return new CapListType<C>(iface);
}

export function readList<T>(
  v: StructView,
  i: number,
  type: ListType<T>,
  caps: CapTableReader,
  def?: DefaultValue,
): T[] {
  if (i < v.ptrCount && listAt(v.seg, v.ptrs + i * 8, v.depth)) return type.read(caps, v.depth - 1);
  if (def !== undefined && listAt(def.segment, 0, NESTING_LIMIT)) return type.read(caps, NESTING_LIMIT - 1);
  return [];
}

export function writeList(
  v: StructView,
  i: number,
  type: ListType<unknown>,
  values: readonly unknown[],
  caps: CapTableWriter,
): void {
  type.write(v.seg, v.ptrs + i * 8, values, caps);
}

/** The error for a union `which` naming no member of the union. */
export function badUnionMember(struct: string, which: unknown): TypeError {
  return badValue(`a member of ${struct}'s union (a name, or a discriminant in 0..65535)`, which);
}

/**
 * Throws unless `x` is an object whose own keys are all fields the schema
 * knows (`present` of them were found not null/undefined). Generated writers
 * count the keys of `x` themselves and call this only when the count differs
 * from `present` (an unknown key, or just a null-valued field), so the happy
 * path costs a for-in and no call.
 */
export function checkFields(x: Loose, present: number, codec: Codec<unknown>): void {
  let keys = 0;
  for (const _ in x) keys++;
  if (keys === present && typeof x === "object" && !Array.isArray(x)) return;
  unknownField(x, codec);
}

function unknownField(x: unknown, codec: Codec<unknown>): void {
  if (typeof x !== "object" || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) {
    throw badValue(`${codec.name} (an object)`, x);
  }
  const known = codec.fields;
  if (known === undefined) return;
  for (const key of Object.keys(x)) {
    if (!known.includes(key)) {
      const fields = known.length === 0 ? "it has none" : `its fields: ${known.join(", ")}`;
      throw fieldError(new SchemaTypeError(`no such field in ${codec.name} (${fields})`), key);
    }
  }
}

// ---------------------------------------------------------------------------
// Struct codecs

/** What generated code passes to defineStruct. */
export interface StructDef<T> {
  readonly name: string;
  readonly dataWords: number;
  readonly pointers: number;
  /**
   * The keys a value may have (field names as in the plain-object type, and
   * `which` for a union): checkFields reports any other key as unknown.
   */
  readonly fields?: readonly string[];
  /** Reads a plain object; must not keep `v`. */
  read(v: StructView, caps: CapTableReader): T;
  /** Writes the fields of `x` that are not null/undefined; must not keep `v`. */
  write(x: Loose, v: StructView, caps: CapTableWriter): void;
  /** The pipeline table, built on first use (so it may name later codecs). */
  pipeline?: () => Record<string, PipelineField>;
}

const NO_PIPELINE: Readonly<Record<string, PipelineField>> = Object.freeze({});

/**
 * A generated struct codec: the StructCodec contract plus the view-based
 * `read`/`write` that codecs use for each other's fields.
 */
export class Codec<T> implements StructCodec<T> {
  readonly name: string;
  readonly size: ObjectSize;
  readonly dataWords: number;
  readonly pointers: number;
  /** See StructDef.fields. */
  readonly fields: readonly string[] | undefined;
  readonly read: (v: StructView, caps: CapTableReader) => T;
  readonly write: (x: Loose, v: StructView, caps: CapTableWriter) => void;
  #pipeline: Readonly<Record<string, PipelineField>> | (() => Record<string, PipelineField>);

  constructor(def: StructDef<T>) {
    this.name = def.name;
    this.dataWords = def.dataWords;
    this.pointers = def.pointers;
    this.fields = def.fields;
    this.size = new ObjectSize(def.dataWords * 8, def.pointers);
    this.read = def.read;
    this.write = def.write;
    this.#pipeline = def.pipeline ?? NO_PIPELINE;
  }

  get pipeline(): Readonly<Record<string, PipelineField>> {
    if (typeof this.#pipeline === "function") this.#pipeline = Object.freeze(this.#pipeline());
    return this.#pipeline;
  }

  /** Writes `value` (an Init<T>: missing fields keep their defaults) into `s`. */
  encode(value: T | Init<T>, s: Struct, caps: CapTableWriter): void {
    const v = writableViewOf(s, this.size);
    try {
      if (value != null) this.write(value as Loose, v, caps);
    } catch (e) {
      throw rootError(e, this.name);
    }
  }

  decode(s: Struct, caps: CapTableReader): T {
    return this.read(viewOf(s), caps);
  }
}

export function defineStruct<T>(def: StructDef<T>): Codec<T> {
  return new Codec(def);
}

// ---------------------------------------------------------------------------
// Messages and raw pointers

/** A cap table for messages that carry no capabilities: any capability is an error. */
export const noCaps: CapTableReader & CapTableWriter = {
  add(value: unknown): number {
    if (value == null) return -1;
    throw new Error("capmesh: this message cannot carry capabilities");
  },
  get(): unknown {
    throw new Error("capmesh: this message carries no capabilities");
  },
};

/** The root struct of a message (an empty view for a null root). */
export function viewOfMessageRoot(message: Message): StructView {
  const limit = (message as { nestingLimit?: number }).nestingLimit ?? NESTING_LIMIT;
  return structAt(message.getSegment(0), 0, limit) ?? EMPTY_VIEW;
}

/** Allocates a struct for pointer field `i` of `v` and returns a view of it. */
export function initStructField(v: StructView, i: number, dataWords: number, pointers: number): StructView {
  const dataLen = dataWords * 8;
  allocate(v.seg, v.ptrs + i * 8, dataLen + pointers * 8, 0, dataWords | (pointers << 16));
  return new StructView(aSeg, aOff, dataLen, aOff + dataLen, pointers, NESTING_LIMIT);
}

/**
 * Follows a promise-pipelining transform (rpc.capnp PromisedAnswer.Op: a
 * pointer index per step) from an AnyPointer slot through structs to a
 * capability pointer; returns its cap-table index, or -1 where the path
 * meets a null pointer or a field the struct does not have.
 */
export function capIndexAt(slot: Pointer, ops: readonly number[]): number {
  let seg = slot.segment;
  let off = slot.byteOffset;
  // Not charged to the read budget: the path is as long as `ops`, which the
  // caller already paid for, and a response pipelined on for the life of a
  // connection would otherwise run out of budget one call at a time.
  for (let i = 0; i < ops.length; i++) {
    if (i >= NESTING_LIMIT) throw malformed(NESTING_EXCEEDED);
    if (!resolvePointer(seg, off)) return -1;
    if ((rLo & 3) !== 0) throw malformed("expected a struct pointer");
    const dataLen = (rHi & 0xffff) * 8;
    const ptrCount = rHi >>> 16;
    if (rOff < 0 || rOff + dataLen + ptrCount * 8 > rSeg.byteLength) throw malformed("struct pointer out of bounds");
    const index = ops[i]!;
    if (index >= ptrCount) return -1;
    seg = rSeg;
    off = rOff + dataLen + index * 8;
  }
  const lo = seg.getUint32(off);
  const hi = seg.getUint32(off + 4);
  if (lo === 0 && hi === 0) return -1;
  if (lo !== 3) throw malformed("the pipelined field is not a capability");
  return hi;
}

/** Decodes the struct the capnp-es pointer `p` points to (e.g. Payload.content). */
export function readPointer<T>(codec: Codec<T>, p: Pointer, caps: CapTableReader): T {
  return codec.read(structAt(p.segment, p.byteOffset, depthOf(p)) ?? EMPTY_VIEW, caps);
}

/** Allocates a struct for `codec` at pointer `p` (replacing nothing: p should be null) and encodes `value`. */
export function writePointer<T>(codec: Codec<T>, value: T | Init<T>, p: Pointer, caps: CapTableWriter): void {
  try {
    writeStructAt(p.segment, p.byteOffset, codec as Codec<unknown>, (value ?? {}) as Loose, caps);
  } catch (e) {
    throw rootError(e, codec.name);
  }
}

/** A new message whose root is `value`. */
export function writeMessage<T>(codec: Codec<T>, value: T | Init<T>, caps: CapTableWriter = noCaps): Message {
  const message = newMessage();
  try {
    writeStructAt(message.getSegment(0), 0, codec as Codec<unknown>, (value ?? {}) as Loose, caps);
  } catch (e) {
    throw rootError(e, codec.name);
  }
  return message;
}

/** Decodes the root of `message` (a Message, or unpacked stream-framed bytes). */
export function readMessage<T>(
  codec: Codec<T>,
  message: Message | ArrayBuffer | Uint8Array,
  caps: CapTableReader = noCaps,
): T {
  const m = message instanceof Message ? message : new Message(message, false);
  return codec.read(structAt(m.getSegment(0), 0, NESTING_LIMIT) ?? EMPTY_VIEW, caps);
}

// Cap'n Proto standard stream framing.
//
// A frame is:
//   u32 LE  segment count - 1
//   u32 LE  size of each segment, in 8-byte words
//   4 zero bytes of padding when the segment count is even (so the header is
//           a whole number of words)
//   the segments, back to back
//
// Decoding gives every segment its own exactly-sized ArrayBuffer, handed to
// capnp-es without further copying. A frame that arrives whole in one chunk,
// or is small (up to FREE_BYTES_PER_CONNECTION), is copied straight into
// those buffers, allocated once the segment table is known. A larger frame
// still arriving is not allocated at the size its header announces (a peer
// sending 16 bytes could claim 64 MiB): its body is kept as it comes, charged
// to the process-wide inbound budget (inbound-budget.ts), and copied into the
// segments once complete. Large pieces are kept by reference to the chunk
// they came in (so a 64 KiB call arriving in two reads is copied once, not
// twice); small ones are gathered into blocks. Each segment's own buffer is on purpose:
// capnp-es reads through a DataView over a segment's whole buffer, so a bad
// pointer can at worst reach the end of its own segment, where the DataView
// throws a RangeError, and never a neighbouring segment or a later message.
//
// Decoded messages are NOT validated: pointer errors (a root pointer outside
// its segment, a list running past the end, a far pointer to a missing
// segment) surface when the message is read, as ordinary catchable errors
// thrown by capnp-es (Error "CAPNP-TS0xx ..." or RangeError) from getRoot() or
// a field getter. The RPC engine must read inside try/catch and treat a throw
// as a protocol error of that connection.

import { concatBytes } from "./bytes.js";
import { Message, type Struct, type StructCtor } from "capnp-es";
import { FREE_BYTES_PER_CONNECTION, processInboundBudget, type InboundBudget } from "./inbound-budget.js";
import { readBudgetBytes, resolveLimits, type TransportLimits } from "./limits.js";

export type FrameErrorCode = "segment-count" | "message-too-large" | "truncated" | "malformed";

/** Bad framing from the peer. The connection cannot continue after one. */
export class FrameError extends Error {
  readonly code: FrameErrorCode;
  constructor(code: FrameErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FrameError";
    this.code = code;
  }
}

const WORD = 8;
/** The smallest block a large frame's body is collected in; pieces this large are kept by reference. */
const MIN_BLOCK_BYTES = 4096;
/** Segments this large are allocated without zero-filling: every byte is written before the message exists. */
const UNZEROED_SEGMENT_BYTES = 4096;

// Large inbound segments are reused once their message is given back
// (releaseInboundMessage: the engine does so for `-> stream` calls once their
// method has returned). Each fresh 64 KiB buffer is external memory that
// drives V8's full collections, and filling fresh memory costs several times
// filling memory just used. A buffer is given back detached (transferred), so
// every view of it a reader kept becomes empty instead of showing the next
// message's bytes. Pooled buffers are exactly segment-sized and overwritten
// whole by the next frame: nothing of an earlier message is readable.
/** Segments at least this large are taken from and given back to the pool. */
const POOLED_SEGMENT_BYTES = 16 * 1024;
/** Bytes the pool may hold (process-wide), and buffers of one size. */
const SEGMENT_POOL_LIMIT_BYTES = 2 * 1024 * 1024;
const SEGMENT_POOL_LIMIT_PER_SIZE = 8;
const segmentPool = new Map<number, ArrayBuffer[]>();
let segmentPoolBytes = 0;

function takeSegment(bytes: number): ArrayBuffer {
  if (bytes >= POOLED_SEGMENT_BYTES) {
    const spare = segmentPool.get(bytes)?.pop();
    if (spare !== undefined) {
      segmentPoolBytes -= bytes;
      return spare;
    }
  }
  return bytes >= UNZEROED_SEGMENT_BYTES ? Buffer.allocUnsafeSlow(bytes).buffer : new ArrayBuffer(bytes);
}

const EMPTY_SEGMENT = new ArrayBuffer(0);
const releasedMessages = new WeakSet<object>();

/**
 * Gives the large segments of a decoded message back for reuse by later
 * frames. The message is empty afterwards (reading it throws) and every view
 * of those segments (a Data field read from it) becomes zero-length. For
 * whoever owns the message and knows nothing reads it any more.
 */
export function releaseInboundMessage(message: Message): void {
  if (!(message instanceof InboundMessage) || releasedMessages.has(message)) return;
  releasedMessages.add(message);
  for (const segment of message._capnp.segments) {
    const buffer = segment.buffer;
    const bytes = buffer.byteLength;
    if (bytes < POOLED_SEGMENT_BYTES) continue;
    segment.byteLength = 0;
    segment.replaceBuffer(EMPTY_SEGMENT);
    if (segmentPoolBytes + bytes > SEGMENT_POOL_LIMIT_BYTES) continue;
    let list = segmentPool.get(bytes);
    if (list === undefined) segmentPool.set(bytes, (list = []));
    if (list.length >= SEGMENT_POOL_LIMIT_PER_SIZE) continue;
    let moved: ArrayBuffer;
    try {
      // The same memory under a new ArrayBuffer; the old one (and its views) detached.
      moved = structuredClone(buffer, { transfer: [buffer] });
    } catch {
      continue; // not transferable: left to the collector
    }
    list.push(moved);
    segmentPoolBytes += bytes;
  }
}

/** Bytes of segment buffers held for reuse (for tests and stats). */
export function inboundSegmentPoolBytes(): number {
  return segmentPoolBytes;
}

/** Empties the segment pool (every connection of the process has gone idle); returns the bytes let go. */
export function releaseInboundSegmentPool(): number {
  const bytes = segmentPoolBytes;
  segmentPool.clear();
  segmentPoolBytes = 0;
  return bytes;
}

/** Bytes of the frame header for `count` segments. */
export function frameHeaderBytes(count: number): number {
  return WORD * (Math.floor(count / 2) + 1);
}

// ---------------------------------------------------------------------------
// Building messages from segment buffers without copying.
//
// capnp-es copies when given bytes (`new Message(bytes, false)` slices the
// input and then slices every segment again), but accepts an arena "as is".
// Its MultiSegmentArena and Segment classes are not exported, so we take the
// constructors from a message it built itself, and check that they behave as
// expected. Should a
// future capnp-es change this, we fall back to the copying public API.

type ArenaCtor = new (buffers: ArrayBuffer[]) => unknown;
type SegmentCtor = new (id: number, message: Message, buffer: ArrayBuffer, byteLength: number) => unknown;
type MessageSource = ConstructorParameters<typeof Message>[0];

function findCapnpInternals(): { Arena: ArenaCtor; Segment: SegmentCtor } | undefined {
  try {
    const probe = new Message(new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), false);
    const arena = probe._capnp.arena as unknown as { buffers?: unknown; constructor?: unknown };
    if (!Array.isArray(arena.buffers) || typeof arena.constructor !== "function") return undefined;
    const Ctor = arena.constructor as ArenaCtor;
    const a = new ArrayBuffer(8);
    const b = new ArrayBuffer(16);
    const m = new Message(new Ctor([a, b]) as MessageSource);
    const segs = m._capnp.segments;
    if (segs.length !== 2 || segs[0]!.buffer !== a || segs[1]!.buffer !== b) return undefined;
    if (segs[0]!.byteLength !== 8 || segs[1]!.byteLength !== 16) return undefined;
    return { Arena: Ctor, Segment: segs[0]!.constructor as unknown as SegmentCtor };
  } catch {
    return undefined;
  }
}

const capnpInternals = findCapnpInternals();

/** Whether decoded frames are wrapped in place (capnp-es internals as expected) or copied (fallback). */
export const WRAPS_SEGMENTS_IN_PLACE = capnpInternals !== undefined;

/**
 * A message decoded from the wire. It is a plain capnp-es Message except that
 * `getRoot()` starts the root at the receiver's nesting limit, so reading
 * deeper than `limits.nestingLimit` pointer levels throws.
 * (capnp-es's static `Message.getRoot(Ctor, m)` bypasses this; use the method.)
 */
export class InboundMessage extends Message {
  /** Pointer nesting allowed below the root. */
  nestingLimit = 64;

  override getRoot<T extends Struct>(RootStruct: StructCtor<T>): T {
    const root = super.getRoot(RootStruct);
    return new RootStruct(root.segment, root.byteOffset, this.nestingLimit);
  }
}

/**
 * Wraps received segment buffers (ownership passes to the message; they are
 * not copied) into a Message with the read limits of `limits` applied.
 * Segment 0 must hold at least the root pointer and every buffer must be a
 * whole number of words.
 */
export function messageFromSegments(
  segments: ArrayBuffer[],
  limits?: Partial<TransportLimits>,
): InboundMessage {
  return wrapSegments(segments, resolveLimits(limits));
}

function wrapSegments(segments: ArrayBuffer[], lim: Readonly<TransportLimits>): InboundMessage {
  if (segments.length === 0) throw new FrameError("malformed", "a message needs at least one segment");
  if (segments[0]!.byteLength < WORD) {
    throw new FrameError("malformed", "the first segment is empty: it must hold at least the root pointer (one word)");
  }
  for (const [i, s] of segments.entries()) {
    if (s.byteLength % WORD !== 0) {
      throw new FrameError("malformed", `segment ${i} is ${s.byteLength} bytes, not a whole number of words`);
    }
  }
  let message: InboundMessage;
  if (capnpInternals) {
    // What `new Message(arena)` builds, without its generic set-up
    // (Array.from, per-segment arena lookups), which showed as ~5% of an
    // RPC round trip: every incoming frame comes through here.
    message = Object.create(InboundMessage.prototype) as InboundMessage;
    const wrapped = new Array<unknown>(segments.length);
    for (let i = 0; i < segments.length; i++) {
      wrapped[i] = new capnpInternals.Segment(i, message, segments[i]!, segments[i]!.byteLength);
    }
    (message as { _capnp: unknown })._capnp = {
      arena: new capnpInternals.Arena(segments),
      segments: wrapped,
      traversalLimit: 0,
    };
  } else {
    // Fallback: build a framed buffer and let capnp-es parse (and copy) it.
    const header = new Uint8Array(frameHeaderBytes(segments.length));
    const dv = new DataView(header.buffer);
    dv.setUint32(0, segments.length - 1, true);
    let total = header.byteLength;
    segments.forEach((s, i) => {
      dv.setUint32(4 + 4 * i, s.byteLength / WORD, true);
      total += s.byteLength;
    });
    const all = new Uint8Array(total);
    all.set(header);
    let at = header.byteLength;
    for (const s of segments) {
      all.set(new Uint8Array(s), at);
      at += s.byteLength;
    }
    message = new InboundMessage(all.buffer, false, false);
  }
  // capnp-es keeps its read budget in bytes and charges 8 per pointer read;
  // the codec runtime charges the size of each struct and list it reads.
  let bytes = 0;
  for (const s of segments) bytes += s.byteLength;
  message._capnp.traversalLimit = readBudgetBytes(lim, bytes);
  message.nestingLimit = lim.nestingLimit;
  return message;
}

// ---------------------------------------------------------------------------
// Encoding

/**
 * The frame for `message`: a header followed by views of the message's own
 * segment buffers (no copy; only the used `byteLength` of each segment).
 * The views alias the message: do not modify the message until they have
 * been written out.
 */
export function encodeFrame(message: Message): Uint8Array[] {
  if (message._capnp.segments.length === 0) {
    // A never-touched message: give it its (null) root pointer, as
    // Message.toArrayBuffer() does.
    message.getSegment(0);
  }
  const segments = message._capnp.segments;
  const header = new Uint8Array(frameHeaderBytes(segments.length));
  writeHeader(segments, new DataView(header.buffer));
  const out: Uint8Array[] = [header];
  for (const s of segments) if (s.byteLength > 0) out.push(new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
  return out;
}

/** Writes the segment table (count − 1, sizes in words, padding) for `segments` into `dv`. */
function writeHeader(segments: readonly Message["_capnp"]["segments"][number][], dv: DataView): void {
  const count = segments.length;
  dv.setUint32(0, count - 1, true);
  for (let i = 0; i < count; i++) {
    const len = segments[i]!.byteLength;
    if (len % WORD !== 0) {
      throw new Error(`cannot frame message: segment ${i} has ${len} bytes, not a whole number of words`);
    }
    dv.setUint32(4 + 4 * i, len / WORD, true);
  }
  // The header's padding word, when the segment count is even.
  if (count % 2 === 0) dv.setUint32(4 + 4 * count, 0, true);
}

/** The size in bytes of `message`'s frame (header and segments). */
export function frameSize(message: Message): number {
  if (message._capnp.segments.length === 0) message.getSegment(0);
  const segments = message._capnp.segments;
  let total = frameHeaderBytes(segments.length);
  for (let i = 0; i < segments.length; i++) total += segments[i]!.byteLength;
  return total;
}

/**
 * Writes `message`'s frame into `out` at `offset` (which must have room for
 * frameSize(message) bytes); returns the offset just past it.
 */
export function writeFrameInto(message: Message, out: Uint8Array, offset: number): number {
  const segments = message._capnp.segments;
  const headerBytes = frameHeaderBytes(segments.length);
  writeHeader(segments, new DataView(out.buffer, out.byteOffset + offset, headerBytes));
  let at = offset + headerBytes;
  for (const s of segments) {
    out.set(new Uint8Array(s.buffer, s.byteOffset, s.byteLength), at);
    at += s.byteLength;
  }
  return at;
}

/** The frame for `message` as one contiguous buffer (copies the segments once). */
export function frameBytes(message: Message): Uint8Array {
  return concatBytes(encodeFrame(message));
}

// ---------------------------------------------------------------------------
// Decoding

const State = {
  /** Collecting the first 4 bytes (segment count - 1). */
  Count: 0,
  /** Collecting the rest of the header: sizes and padding. */
  Table: 1,
  /** Copying segment bytes. */
  Body: 2,
  /** A FrameError was thrown; the stream is unrecoverable. */
  Failed: 3,
} as const;
type State = (typeof State)[keyof typeof State];

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * Incremental decoder for a byte stream of framed messages. Feed it chunks
 * of any size with push(); every complete message is passed to onMessage, in
 * order, synchronously from push(). Call end() at end of stream.
 *
 * push() throws a FrameError on bad framing; after that the decoder is dead
 * and every later push() throws the same error. If onMessage throws, push()
 * rethrows and the decoder is likewise unusable (the rest of the chunk is
 * lost).
 */
export class FrameDecoder {
  readonly limits: Readonly<TransportLimits>;
  onMessage: (message: InboundMessage) => void;

  #state: State = State.Count;
  #failure: Error | undefined;
  #inPush = false;

  // Header bytes collected so far.
  #header = new Uint8Array(16);
  #headerView = new DataView(this.#header.buffer);
  #headerLen = 0;
  #headerNeed = 4;
  #segmentCount = 0;

  // Body, when its segments are allocated up front.
  #segments: ArrayBuffer[] = [];
  #views: Uint8Array[] = [];
  #segIndex = 0;
  #segOffset = 0;
  #bodyBytes = 0;
  #bodyReceived = 0;
  /** Bytes of the current chunk not yet consumed (for #readTable's choice). */
  #available = 0;
  /** The chunk being consumed may be overwritten once push returns: keep no view of it. */
  #transient = false;

  // Body, when it is collected as it arrives (large frames arriving in parts):
  // the pieces in order, each either a view of a pushed chunk or a block the
  // small pieces were copied into (the last block may be partly filled).
  #collecting = false;
  #blocks: Uint8Array[] = [];
  #block: Uint8Array | null = null;
  #blockUsed = 0;
  /** Bytes charged to the budget for the blocks. */
  #charged = 0;
  readonly #budget: InboundBudget;

  constructor(
    limits?: Partial<TransportLimits>,
    onMessage?: (message: InboundMessage) => void,
    budget: InboundBudget = processInboundBudget,
  ) {
    this.#budget = budget;
    this.limits = Object.freeze(resolveLimits(limits));
    this.onMessage =
      onMessage ??
      (() => {
        throw new Error("FrameDecoder: a message arrived but no onMessage handler is set");
      });
  }

  /** True while part of a frame has been received but not all of it. */
  get midFrame(): boolean {
    return this.#state === State.Table || this.#state === State.Body || this.#headerLen > 0;
  }

  /** Bytes held for the incomplete frame (allocated segments or collected blocks). */
  get heldBytes(): number {
    return this.#collecting ? this.#charged : this.#state === State.Body ? this.#bodyBytes : 0;
  }

  /** Frees what an incomplete frame holds (the stream is closing). Later pushes fail. */
  dispose(): void {
    if (this.#state === State.Failed) return;
    this.#state = State.Failed;
    this.#failure = new Error("FrameDecoder: the stream was closed");
    this.#release();
  }

  /**
   * Feeds bytes. Throws FrameError on bad framing (see class doc). The
   * decoder may keep a view of `chunk` until the frame it ends in is
   * complete: do not modify a chunk after pushing it, unless `transient`
   * (then the decoder copies what it keeps: the chunk may be reused once
   * push returns).
   */
  push(chunk: Uint8Array, transient = false): void {
    if (this.#failure) throw this.#failure;
    if (this.#inPush) throw new Error("FrameDecoder.push() called re-entrantly from onMessage");
    this.#inPush = true;
    this.#transient = transient;
    try {
      this.#consume(chunk);
    } catch (e) {
      this.#state = State.Failed;
      this.#failure = e instanceof Error ? e : new Error(String(e));
      this.#release();
      throw e;
    } finally {
      this.#inPush = false;
    }
  }

  /**
   * Declares end of stream. Throws a "truncated" FrameError if a frame was
   * only partly received.
   */
  end(): void {
    if (this.#failure) throw this.#failure;
    if (!this.midFrame) return;
    let detail: string;
    if (this.#state === State.Body) {
      detail = `after ${this.#bodyReceived} of the ${this.#bodyBytes} body bytes its header announced`;
    } else {
      detail = `after ${this.#headerLen} of its ${this.#headerNeed} header bytes`;
    }
    const err = new FrameError(
      "truncated",
      `the stream ended in the middle of a Cap'n Proto frame (${detail}); the peer closed the connection while sending`,
    );
    this.#state = State.Failed;
    this.#failure = err;
    this.#release();
    throw err;
  }

  #consume(chunk: Uint8Array): void {
    let pos = 0;
    const len = chunk.byteLength;
    while (pos < len) {
      if (this.#state === State.Body) {
        pos = this.#collecting ? this.#collectBody(chunk, pos) : this.#copyBody(chunk, pos);
        continue;
      }
      // Header states: gather #headerNeed bytes.
      const take = Math.min(this.#headerNeed - this.#headerLen, len - pos);
      this.#header.set(chunk.subarray(pos, pos + take), this.#headerLen);
      this.#headerLen += take;
      pos += take;
      if (this.#headerLen < this.#headerNeed) return;
      this.#available = len - pos;
      if (this.#state === State.Count) this.#readCount();
      else this.#readTable();
    }
  }

  #readCount(): void {
    const raw = this.#headerView.getUint32(0, true);
    if (raw === 0xffffffff) {
      throw new FrameError(
        "malformed",
        "invalid Cap'n Proto frame: the segment count field is 0xFFFFFFFF, which wraps to zero segments",
      );
    }
    const count = raw + 1;
    const max = this.limits.maxSegments;
    if (count > max) {
      throw new FrameError(
        "segment-count",
        `incoming Cap'n Proto frame declares ${count} segments, over this receiver's limit of ${max} ` +
          `(to accept it, raise the transport limit maxSegments on the receiving side)`,
      );
    }
    this.#segmentCount = count;
    const need = frameHeaderBytes(count);
    if (need > this.#header.byteLength) {
      const bigger = new Uint8Array(need);
      bigger.set(this.#header.subarray(0, this.#headerLen));
      this.#header = bigger;
      this.#headerView = new DataView(bigger.buffer);
    }
    this.#headerNeed = need;
    this.#state = State.Table;
  }

  #readTable(): void {
    const count = this.#segmentCount;
    const dv = this.#headerView;
    let total = 0;
    for (let i = 0; i < count; i++) total += dv.getUint32(4 + 4 * i, true) * WORD;
    const max = this.limits.maxMessageBytes;
    if (total > max) {
      throw new FrameError(
        "message-too-large",
        `incoming Cap'n Proto message is ${total} bytes (${plural(count, "segment")}), over this receiver's limit ` +
          `of ${max} bytes (to accept it, raise the transport limit maxMessageBytes on the receiving side)`,
      );
    }
    if (dv.getUint32(4, true) === 0) {
      throw new FrameError(
        "malformed",
        "invalid Cap'n Proto frame: the first segment is empty, so the message has no root pointer",
      );
    }
    this.#bodyBytes = total;
    this.#bodyReceived = 0;
    this.#state = State.Body;
    if (total > FREE_BYTES_PER_CONNECTION && total > this.#available) {
      // Large, and not all here yet: collect what arrives, allocate at the end.
      this.#collecting = true;
      return;
    }
    this.#allocateSegments();
    this.#segIndex = 0;
    this.#segOffset = 0;
    this.#skipEmptySegments();
  }

  /** One exactly-sized buffer per segment, as the segment table says. */
  #allocateSegments(): void {
    const count = this.#segmentCount;
    const dv = this.#headerView;
    const segments: ArrayBuffer[] = new Array(count);
    const views: Uint8Array[] = new Array(count);
    try {
      for (let i = 0; i < count; i++) {
        const bytes = dv.getUint32(4 + 4 * i, true) * WORD;
        // An exactly-sized ArrayBuffer of its own (offset 0: capnp-es's
        // Segment reads through a DataView over its whole buffer).
        const buf = takeSegment(bytes);
        segments[i] = buf;
        views[i] = new Uint8Array(buf);
      }
    } catch (e) {
      throw new FrameError(
        "message-too-large",
        `cannot allocate ${this.#bodyBytes} bytes for an incoming Cap'n Proto message (lower maxMessageBytes or free memory)`,
        { cause: e },
      );
    }
    this.#segments = segments;
    this.#views = views;
  }

  /** Keeps the next part of a large frame's body, charged to the budget. */
  #collectBody(chunk: Uint8Array, pos: number): number {
    const take = Math.min(this.#bodyBytes - this.#bodyReceived, chunk.byteLength - pos);
    let from = pos;
    const end = pos + take;
    // A large piece is kept as a view of the chunk (the chunk is never
    // written to again: see push), charged at the size of the memory it keeps
    // alive, when that is at most twice the piece (what is held stays within
    // twice what arrived, as with blocks).
    const retained = chunk.buffer.byteLength;
    if (!this.#transient && take >= MIN_BLOCK_BYTES && retained <= 2 * take) {
      this.#sealBlock();
      this.#blocks.push(chunk.subarray(from, end));
      this.#charged += retained;
      this.#budget.charge(retained);
      this.#bodyReceived += take;
      if (this.#bodyReceived === this.#bodyBytes) this.#assemble();
      return end;
    }
    while (from < end) {
      let block = this.#block;
      if (block === null || this.#blockUsed === block.byteLength) {
        this.#sealBlock();
        // Each block as large as what came before it (so there are few, and
        // what is held stays within twice what arrived), at least 4 KiB,
        // never past the end of the body.
        const size = Math.min(this.#bodyBytes - this.#bodyReceived, Math.max(MIN_BLOCK_BYTES, end - from, this.#bodyReceived));
        block = new Uint8Array(size);
        this.#block = block;
        this.#blockUsed = 0;
        this.#charged += size;
        this.#budget.charge(size);
      }
      const n = Math.min(block.byteLength - this.#blockUsed, end - from);
      block.set(chunk.subarray(from, from + n), this.#blockUsed);
      this.#blockUsed += n;
      this.#bodyReceived += n;
      from += n;
    }
    if (this.#bodyReceived === this.#bodyBytes) this.#assemble();
    return end;
  }

  /** Ends the current block: its filled part joins the pieces. */
  #sealBlock(): void {
    const block = this.#block;
    if (block === null) return;
    if (this.#blockUsed > 0) this.#blocks.push(this.#blockUsed === block.byteLength ? block : block.subarray(0, this.#blockUsed));
    this.#block = null;
    this.#blockUsed = 0;
  }

  /** The whole body has arrived: copy it into its segments. */
  #assemble(): void {
    this.#sealBlock();
    this.#allocateSegments();
    let seg = 0;
    let at = 0;
    for (const block of this.#blocks) {
      let from = 0;
      while (from < block.byteLength) {
        const view = this.#views[seg]!;
        if (at === view.byteLength) {
          seg++;
          at = 0;
          continue;
        }
        const n = Math.min(view.byteLength - at, block.byteLength - from);
        view.set(block.subarray(from, from + n), at);
        at += n;
        from += n;
      }
    }
    this.#finish();
  }

  #skipEmptySegments(): void {
    while (this.#segIndex < this.#segmentCount && this.#segOffset === this.#views[this.#segIndex]!.byteLength) {
      this.#segIndex++;
      this.#segOffset = 0;
    }
    if (this.#segIndex === this.#segmentCount) this.#finish();
  }

  #copyBody(chunk: Uint8Array, pos: number): number {
    const view = this.#views[this.#segIndex]!;
    const take = Math.min(view.byteLength - this.#segOffset, chunk.byteLength - pos);
    view.set(chunk.subarray(pos, pos + take), this.#segOffset);
    this.#segOffset += take;
    this.#bodyReceived += take;
    this.#skipEmptySegments();
    return pos + take;
  }

  #finish(): void {
    const segments = this.#segments;
    this.#reset();
    const message = wrapSegments(segments, this.limits);
    this.onMessage(message);
  }

  #reset(): void {
    this.#state = State.Count;
    this.#headerLen = 0;
    this.#headerNeed = 4;
    this.#segmentCount = 0;
    this.#release();
  }

  #release(): void {
    if (this.#charged > 0) {
      this.#budget.release(this.#charged);
      this.#charged = 0;
    }
    this.#collecting = false;
    this.#blocks = [];
    this.#block = null;
    this.#blockUsed = 0;
    this.#segments = [];
    this.#views = [];
    this.#segIndex = 0;
    this.#segOffset = 0;
    this.#bodyBytes = 0;
    this.#bodyReceived = 0;
  }
}

/**
 * Decodes exactly one frame from `bytes` (which must contain nothing else).
 * Copies the body once, like FrameDecoder.
 */
export function decodeFrame(bytes: Uint8Array, limits?: Partial<TransportLimits>): InboundMessage {
  const messages: InboundMessage[] = [];
  const decoder = new FrameDecoder(limits, (m) => messages.push(m));
  decoder.push(bytes);
  decoder.end();
  if (messages.length !== 1) {
    throw new FrameError("malformed", `expected exactly one Cap'n Proto frame, found ${messages.length}`);
  }
  return messages[0]!;
}

// Messages that capmesh builds: one segment that grows geometrically.
//
// capnp-es grows a single-segment message by max(request, 4 KiB) and copies
// the whole segment each time, so building an n-byte message costs O(n²)
// (an 8 MiB result took seconds). Its multi-segment arena instead starts a
// 4 KiB segment per overflow, which would put thousands of segments (and far
// pointers) into a large message, past what receivers accept (the C++ reader
// takes at most 511). Here the one segment doubles instead: every byte is
// copied O(1) times on average, and the frame stays a single segment.
import { Message } from "capnp-es";

type Segment = Message["_capnp"]["segments"][number];
type ArenaCtor = new (buffer: ArrayBuffer) => { buffer: ArrayBuffer };
type SegmentCtor = new (id: number, message: Message, buffer: ArrayBuffer, byteLength: number) => Segment;

// The arena and segment classes are not exported by name: take them from a
// probe message, and fail loudly at load time should capnp-es change shape.
const probe = new Message();
const SingleSegmentArena = (probe._capnp.arena as unknown as { constructor: ArenaCtor }).constructor;
const SegmentClass = (probe.getSegment(0) as unknown as { constructor: SegmentCtor }).constructor;
/** capnp-es's default read budget, in bytes (for messages we build and may read back). */
export const DEFAULT_TRAVERSAL_LIMIT = probe._capnp.traversalLimit;
if (
  Object.keys(probe).join() !== "_capnp" ||
  typeof (probe._capnp.arena as unknown as { buffer?: unknown }).buffer !== "object" ||
  typeof (probe.getSegment(0) as unknown as { replaceBuffer?: unknown }).replaceBuffer !== "function" ||
  !((probe.getSegment(0) as unknown as { _dv?: unknown })._dv instanceof DataView) ||
  typeof (Message.prototype as unknown as { allocateSegment?: unknown }).allocateSegment !== "function"
) {
  throw new Error("capmesh: unsupported capnp-es version (its Message/Segment layout changed); install the version capmesh pins");
}

/** Largest segment a frame header can describe (u32 words), kept within ArrayBuffer limits. */
const MAX_SEGMENT_BYTES = 2 ** 32 - 8;

// Large builder buffers are reused. Each new 64 KiB ArrayBuffer is external
// memory that V8 counts towards its next full collection: streaming 64 KiB
// calls with a fresh buffer per call ran a full GC every few tens of
// milliseconds. A message that opts in (`recyclable`, set where the engine
// never reads a message after sending it) gives its buffer back once the
// transport has copied its frame (recycleMessage), zeroed: builders rely on
// fresh memory reading as zero.
/** Buffers at least this large come from the pool, in power-of-two sizes (a Call starts at 512). */
const POOLED_MIN_BYTES = 512;
/** Buffers larger than this are never pooled. */
const POOLED_MAX_BYTES = 1024 * 1024;
/** Bytes the pool may hold at once (process-wide), and buffers of one size. */
const POOL_LIMIT_BYTES = 1024 * 1024;
const POOL_LIMIT_PER_SIZE = 16;
const pool = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;

/** A zeroed buffer of at least `bytes` (exactly `bytes` outside the pooled range). */
function takeBuffer(bytes: number): ArrayBuffer {
  if (bytes < POOLED_MIN_BYTES || bytes > POOLED_MAX_BYTES) return new ArrayBuffer(bytes);
  const size = 2 ** Math.ceil(Math.log2(bytes));
  const spare = pool.get(size)?.pop();
  if (spare === undefined) return new ArrayBuffer(size);
  pooledBytes -= size;
  return spare;
}

/** Gives a buffer from takeBuffer back, `used` bytes of it dirty. */
function giveBack(buffer: ArrayBuffer, used: number): void {
  const size = buffer.byteLength;
  if (size < POOLED_MIN_BYTES || size > POOLED_MAX_BYTES || (size & (size - 1)) !== 0) return;
  if (pooledBytes + size > POOL_LIMIT_BYTES) return;
  let list = pool.get(size);
  if (list === undefined) pool.set(size, (list = []));
  if (list.length >= POOL_LIMIT_PER_SIZE) return;
  new Uint8Array(buffer, 0, used).fill(0);
  list.push(buffer);
  pooledBytes += size;
}

/** Bytes held by the builder-buffer pool (for tests and stats). */
export function builderPoolBytes(): number {
  return pooledBytes;
}

/** Empties the builder-buffer pool (every connection of the process has gone idle); returns the bytes let go. */
export function releaseBuilderPool(): number {
  const bytes = pooledBytes;
  pool.clear();
  pooledBytes = 0;
  return bytes;
}

const EMPTY = new ArrayBuffer(0);
/** One view of EMPTY for every recycled segment (replaceBuffer would make a DataView per message). */
const EMPTY_VIEW = new DataView(EMPTY);

/**
 * Hands a sent message's buffer back for reuse, if the message opted in
 * (`recyclable`); the message is empty afterwards. Called by a transport
 * once it holds its own copy of the frame.
 */
export function recycleMessage(message: Message): void {
  if (!(message instanceof BuilderMessage) || !message.recyclable) return;
  message.recyclable = false;
  const segments = message._capnp.segments;
  if (segments.length !== 1) return;
  const segment = segments[0]!;
  const buffer = segment.buffer;
  const used = segment.byteLength;
  // Anything still reading this message now fails instead of reading the next one's bytes.
  segment.byteLength = 0;
  (segment as unknown as { _dv: DataView })._dv = EMPTY_VIEW;
  segment.buffer = EMPTY;
  (message._capnp.arena as unknown as { buffer: ArrayBuffer }).buffer = EMPTY;
  giveBack(buffer, used);
}

/**
 * A message under construction. capnp-es asks `allocateSegment` for room when
 * segment 0 is full; we answer with segment 0 itself in a buffer at least
 * twice as large.
 */
export class BuilderMessage extends Message {
  /** How many times segment 0 moved to a larger buffer (for tests). */
  growths = 0;
  /**
   * Set by whoever builds a message that nothing reads once it is sent (a
   * Call): the transport may then recycle its buffer (recycleMessage).
   */
  recyclable = false;

  override allocateSegment(byteLength: number): Segment {
    const segment = this._capnp.segments[0]!;
    const used = segment.byteLength;
    const needed = used + ((byteLength + 7) & ~7);
    if (needed > MAX_SEGMENT_BYTES) {
      throw new RangeError(`capmesh: a message cannot grow past ${MAX_SEGMENT_BYTES} bytes (needed ${needed})`);
    }
    const capacity = Math.min(MAX_SEGMENT_BYTES, Math.max(needed, segment.buffer.byteLength * 2));
    const buffer = takeBuffer(capacity);
    new Uint8Array(buffer).set(new Uint8Array(segment.buffer, 0, used));
    segment.replaceBuffer(buffer);
    (this._capnp.arena as unknown as { buffer: ArrayBuffer }).buffer = buffer;
    this.growths++;
    return segment;
  }
}

/**
 * A new message whose first segment has room for `bytes` (it grows by
 * doubling when needed), with its root pointer already reserved (as
 * getSegment(0) would). Building any message this way takes time linear in
 * its size.
 */
export function newMessage(bytes = 1024): BuilderMessage {
  const size = Math.max(16, (bytes + 7) & ~7);
  const buffer = takeBuffer(size);
  const message = Object.create(BuilderMessage.prototype) as BuilderMessage;
  message.growths = 0;
  message.recyclable = false;
  const internal = {
    arena: new SingleSegmentArena(buffer),
    segments: [] as Segment[],
    traversalLimit: DEFAULT_TRAVERSAL_LIMIT,
  };
  (message as { _capnp: unknown })._capnp = internal;
  internal.segments.push(new SegmentClass(0, message, buffer, 8));
  return message;
}

/** Total bytes of a message's segments (what its frame body carries). */
export function messageBytes(message: Message): number {
  let total = 0;
  for (const segment of message._capnp.segments) total += segment.byteLength;
  return total;
}

// Messages carrying a payload (params or results). The capabilities of a
// payload live in capnp-es's own per-message cap table
// (`message._capnp.capTable`), holding CapHooks: that way capnp-es's pointer
// copy (utils.copyFrom) carries capabilities across messages for us.
import { Message, ObjectSize, Pointer, Struct, utils } from "capnp-es";
import { ProtocolError, type RpcError } from "./errors.js";
import type { CapHook } from "./hook.js";

export type CapTable = (CapHook | null)[];

export function capTableOf(message: Message): CapTable {
  const internal = message._capnp as { capTable?: unknown[] };
  if (!internal.capTable) internal.capTable = [];
  return internal.capTable as CapTable;
}

/** The connection a payload was received on (see badCapIndex). */
export interface PayloadOrigin {
  abort(error: RpcError): void;
}

export function setCapTable(message: Message, table: CapTable, receivedOn?: PayloadOrigin): void {
  (message._capnp as { capTable?: unknown[] }).capTable = table;
  if (receivedOn) (message._capnp as { receivedOn?: PayloadOrigin }).receivedOn = receivedOn;
}

/**
 * A capability pointer names an index past the message's cap table. In a
 * payload a peer sent, that is a protocol fault (issue 2, "Bad input"): the
 * connection it came on is aborted. Returns the error for the reader to throw.
 */
export function badCapIndex(message: Message, index: number): RpcError {
  const length = (message._capnp as { capTable?: CapTable }).capTable?.length ?? 0;
  const error = new ProtocolError(`capability index ${index} is outside the message's cap table (${length})`);
  (message._capnp as { receivedOn?: PayloadOrigin }).receivedOn?.abort(error);
  return error;
}

/** Releases every capability a payload message holds. */
export function releaseCapTable(message: Message): void {
  const table = (message._capnp as { capTable?: CapTable }).capTable;
  if (!table) return;
  (message._capnp as { capTable?: CapTable }).capTable = [];
  for (const hook of table) hook?.release();
}

// capnp-es gives every new message a 4 KiB first segment; most RPC messages
// need a few dozen bytes. Handing its constructor an arena would mark the
// whole buffer as used (that path is for reading), so build the message
// around an empty single-segment arena of the size we want instead. The
// arena class is not exported by name: take it from a probe message.
type ArenaCtor = new (buffer: ArrayBuffer) => unknown;
const probe = new Message();
const SingleSegmentArena = (probe._capnp.arena as unknown as { constructor: ArenaCtor }).constructor;
const TRAVERSAL_LIMIT = probe._capnp.traversalLimit;
if (Object.keys(probe).join() !== "_capnp" || probe._capnp.segments.length !== 0 || probe._capnp.arena === undefined) {
  throw new Error("capmesh: unsupported capnp-es version (Message layout changed)");
}

type SegmentCtor = new (id: number, message: Message, buffer: ArrayBuffer, byteLength: number) => unknown;
const SegmentClass = (probe.getSegment(0) as unknown as { constructor: SegmentCtor }).constructor;

/**
 * A new message whose first segment has room for `bytes` (it grows if
 * needed), with its root pointer already reserved (as getSegment(0) would).
 */
export function sizedMessage(bytes: number): Message {
  const size = Math.max(16, (bytes + 7) & ~7);
  const buffer = new ArrayBuffer(size);
  const message = Object.create(Message.prototype) as Message;
  const internal = {
    arena: new SingleSegmentArena(buffer),
    segments: [] as unknown[],
    traversalLimit: TRAVERSAL_LIMIT,
  };
  (message as { _capnp: unknown })._capnp = internal;
  internal.segments.push(new SegmentClass(0, message, buffer, 8));
  return message;
}

/** A fresh message whose root is an AnyPointer slot for a payload. */
export function newPayloadMessage(sizeHint = 256): { message: Message; content: Pointer } {
  const message = sizedMessage(sizeHint);
  setCapTable(message, []);
  const content = new Pointer(message.getSegment(0), 0);
  return { message, content };
}

/** Allocates a struct of `size` in the AnyPointer slot `slot`. */
export function initStructIn(slot: Pointer, size: ObjectSize): Struct {
  const s = new Struct(slot.segment, slot.byteOffset, slot._capnp.depthLimit);
  utils.initStruct(size, s);
  return s;
}

/** Reads the struct an AnyPointer slot points at (null pointer → empty struct). */
export function readStructIn(slot: Pointer): Struct {
  return new Struct(slot.segment, slot.byteOffset, slot._capnp.depthLimit);
}

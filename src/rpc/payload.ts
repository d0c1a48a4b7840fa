// Messages carrying a payload (params or results). The capabilities of a
// payload live in capnp-es's own per-message cap table
// (`message._capnp.capTable`), holding CapHooks: that way a pointer copy
// (codec/copy.ts) carries capabilities across messages.
import { Message, ObjectSize, Pointer, Struct, utils } from "capnp-es";
import { ProtocolError, type RpcError } from "./errors.js";
import type { CapHook } from "./hook.js";
import { newMessage } from "../codec/message.js";

export type CapTable = (CapHook | null)[];

export function capTableOf(message: Message): CapTable {
  const internal = message._capnp as { capTable?: unknown[] };
  if (!internal.capTable) internal.capTable = [];
  return internal.capTable as CapTable;
}

// Params a peer sent that a call forwarded by copying them into a Call on
// another connection (remoteCall), while the connection that received them
// was still dispatching: nothing reads them any more, so that connection
// gives their large segments back at once (releaseInboundMessage) instead of
// leaving 64 KiB per relayed stream chunk to the collector.
const copiedOut = new WeakSet<Message>();

/** Notes that `message`'s payload has been copied into another message. */
export function noteCopiedOut(message: Message): void {
  copiedOut.add(message);
}

/** True (once) when `message`'s payload was copied out since it was received. */
export function takeCopiedOut(message: Message): boolean {
  return copiedOut.delete(message);
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

/** A fresh message whose root is an AnyPointer slot for a payload. */
export function newPayloadMessage(sizeHint = 256): { message: Message; content: Pointer } {
  const message = newMessage(sizeHint);
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

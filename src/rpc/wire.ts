// The rpc.capnp envelope on the hot path (Call, Return, Finish, Release),
// read and written straight from segments with the codec runtime's views
// instead of capnp-es's object-per-field accessors: a call costs a handful
// of small objects instead of dozens. Layouts are rpc.capnp's (offsets as
// `capnp compile -ocapnp rpc.capnp` prints them). Rare messages still use
// capnp-es's generated rpc classes in connection.ts.
//
// Level 3 (three-party handoff: Provide, Accept, CapDescriptor.thirdPartyHosted,
// the Disembargo with context.accept) is read and written only here, in the
// layout of Cap'n Proto's v2 branch (commit 2c2709587d32475ff6b9e88385f460f45249a064,
// c++/src/capnp/rpc.capnp). capnp-es's rpc classes come from a 0.9-era
// rpc.capnp whose Level 3 differs (Accept.embargo a Bool, Disembargo with one
// pointer and a `provide` context): never use their Level 3 accessors. Level
// 0/1 placement is the same in both, so the 0.9.2 peer is unaffected.
import { Message, Pointer } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import {
  defineStruct,
  listOfStruct,
  noCaps,
  readList,
  readStructField,
  readText,
  readUint16,
  readUint32,
  readUint64,
  readBool,
  LIST_UINT64,
  readAnyPointer,
  readData,
  StructView,
  viewOfMessageRoot,
  writeBool,
  writeData,
  writeList,
  writeStructField,
  writeText,
  writeUint16,
  writeUint32,
  writeUint64,
  initStructField,
  followPointer,
  type Codec,
  type PointerRef,
} from "../codec/runtime.js";
import { ProtocolError } from "./errors.js";
import { CopyLimitError, copyPointer } from "../codec/copy.js";
import { messageBytes, newMessage } from "../codec/message.js";
import { setCapTable } from "./payload.js";

// ---------------------------------------------------------------------------
// Plain forms

export type WireTarget =
  | { readonly importedCap: number; readonly promisedAnswer?: undefined }
  | { readonly importedCap?: undefined; readonly promisedAnswer: WirePromisedAnswer };

export interface WirePromisedAnswer {
  readonly questionId: number;
  readonly transform: readonly number[];
}

export type WireDescriptor =
  | { readonly kind: "none" }
  | { readonly kind: "senderHosted" | "senderPromise" | "receiverHosted"; readonly id: number }
  | { readonly kind: "receiverAnswer"; readonly answer: WirePromisedAnswer }
  | {
      readonly kind: "thirdPartyHosted";
      readonly vineId: number;
      /**
       * ThirdPartyCapDescriptor.id (the network's ThirdPartyToContact), or
       * null when absent. Read: a view into the received message (valid while
       * it is). Written: copied, at most MAX_CONTACT_BYTES; it must carry no
       * capabilities.
       */
      readonly contact: Pointer | null;
    };

export interface WireException {
  readonly type: number;
  readonly reason: string;
}

// ---------------------------------------------------------------------------
// Nested structs

const Op: Codec<number> = defineStruct<number>({
  name: "PromisedAnswer.Op",
  dataWords: 1,
  pointers: 0,
  read(v) {
    // getPointerField → its index; noop → -1 (skipped); unknown → -2 (an error)
    const tag = readUint16(v, 0);
    return tag === 1 ? readUint16(v, 2) : tag === 0 ? -1 : -2;
  },
  write(x, v) {
    writeUint16(v, 0, 1);
    writeUint16(v, 2, x as unknown as number);
  },
});
const OpList = listOfStruct(Op);

const PromisedAnswer: Codec<WirePromisedAnswer> = defineStruct<WirePromisedAnswer>({
  name: "PromisedAnswer",
  dataWords: 1,
  pointers: 1,
  read(v) {
    const ops = readList(v, 0, OpList, noCaps);
    for (const op of ops) if (op < -1) throw new Error("malformed PromisedAnswer.Op");
    return { questionId: readUint32(v, 0), transform: ops.filter((op) => op >= 0) };
  },
  write(x, v) {
    writeUint32(v, 0, x.questionId);
    if (x.transform.length > 0) writeList(v, 0, OpList, x.transform, noCaps);
  },
});

const MessageTarget: Codec<WireTarget> = defineStruct<WireTarget>({
  name: "MessageTarget",
  dataWords: 1,
  pointers: 1,
  read(v) {
    const tag = readUint16(v, 4);
    if (tag === 0) return { importedCap: readUint32(v, 0) };
    if (tag === 1) return { promisedAnswer: readStructField(v, 0, PromisedAnswer, noCaps) };
    throw new Error(`unknown MessageTarget kind ${tag}`);
  },
  write(x, v) {
    if (x.promisedAnswer) {
      writeUint16(v, 4, 1);
      writeStructField(v, 0, PromisedAnswer as Codec<unknown>, x.promisedAnswer, noCaps);
    } else {
      writeUint32(v, 0, x.importedCap);
    }
  },
});

const DESCRIPTOR_KINDS = ["none", "senderHosted", "senderPromise", "receiverHosted", "receiverAnswer", "thirdPartyHosted"] as const;

const CapDescriptor: Codec<WireDescriptor> = defineStruct<WireDescriptor>({
  name: "CapDescriptor",
  dataWords: 1,
  pointers: 1,
  read(v) {
    const tag = readUint16(v, 0);
    switch (tag) {
      case 0:
        return { kind: "none" };
      case 1:
      case 2:
      case 3:
        return { kind: DESCRIPTOR_KINDS[tag] as "senderHosted", id: readUint32(v, 4) };
      case 4:
        return { kind: "receiverAnswer", answer: readStructField(v, 0, PromisedAnswer, noCaps) };
      case 5: {
        const t = readStructField(v, 0, ThirdPartyCapDescriptor, noCaps);
        return { kind: "thirdPartyHosted", vineId: readUint32(t, 0), contact: readAnyPointer(t, 0) };
      }
      default:
        throw new Error(`unknown CapDescriptor kind ${tag}`);
    }
  },
  write(x, v) {
    const d = x as WireDescriptor;
    // attachedFd defaults to 255 ("none"): stored XOR 255, so 0 bits.
    writeUint16(v, 0, DESCRIPTOR_KINDS.indexOf(d.kind));
    if (d.kind === "senderHosted" || d.kind === "senderPromise" || d.kind === "receiverHosted") writeUint32(v, 4, d.id);
    else if (d.kind === "receiverAnswer") writeStructField(v, 0, PromisedAnswer as Codec<unknown>, d.answer, noCaps);
    else if (d.kind === "thirdPartyHosted") writeThirdPartyHosted(v, d.vineId, d.contact);
  },
});
const CapDescriptorList = listOfStruct(CapDescriptor);

// ThirdPartyCapDescriptor (v2 rpc.capnp, same as 0.9.2): vineId bits[0,32),
// id (ThirdPartyToContact, AnyPointer) ptr[0]. It sits at CapDescriptor
// ptr[0], union tag 5.
const ThirdPartyCapDescriptor: Codec<StructView> = defineStruct<StructView>({
  name: "ThirdPartyCapDescriptor",
  dataWords: 1,
  pointers: 1,
  read: (v) => new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth),
  write() {},
});

/** Most bytes a ThirdPartyToContact may take when copied into a descriptor. */
export const MAX_CONTACT_BYTES = 4096;

function writeThirdPartyHosted(v: StructView, vineId: number, contact: Pointer | null): void {
  const t = initStructField(v, 0, 1, 1);
  writeUint32(t, 0, vineId);
  if (contact !== null) copyBounded(contact, new Pointer(t.seg, t.ptrs), MAX_CONTACT_BYTES, "ThirdPartyToContact");
}

/** Copies a network parameter (an AnyPointer) into `to`, refusing one larger than `maxBytes`. */
function copyBounded(from: Pointer, to: Pointer, maxBytes: number, what: string): void {
  try {
    copyPointer(from, to, { budgetWords: maxBytes / 8 });
  } catch (err) {
    if (!(err instanceof CopyLimitError)) throw err;
    throw new Error(`capmesh: the ${what} to send is larger than ${maxBytes} bytes or malformed (${err.message})`);
  }
}

const Exception: Codec<WireException> = defineStruct<WireException>({
  name: "Exception",
  dataWords: 1,
  pointers: 2,
  read: (v) => ({ type: readUint16(v, 4), reason: readText(v, 0) }),
  write(x, v) {
    writeText(v, 0, x.reason);
    writeUint16(v, 4, x.type);
  },
});

// ---------------------------------------------------------------------------
// Incoming

/** Capabilities one message may carry unless the connection says otherwise. */
export const DEFAULT_MAX_CAPS_PER_MESSAGE = 16384;

export interface WirePayload {
  /** The AnyPointer slot of Payload.content. */
  readonly content: Pointer;
  readonly capTable: readonly WireDescriptor[];
}

export type WireIncoming =
  | {
      readonly kind: "call";
      readonly questionId: number;
      readonly target: WireTarget;
      readonly interfaceId: bigint;
      readonly methodId: number;
      /** rpc.capnp Call.sendResultsTo: 0 caller, 1 yourself, 2 thirdParty. */
      readonly sendResultsTo: number;
      readonly params: WirePayload;
      /**
       * capmesh's causes extension (CALL_CAUSES_POINTER): the turn tokens
       * the call was made on behalf of; null when absent (or not a
       * List(UInt64): ignored). A number: the count, over MAX_CAUSES (the
       * call is to fail, the connection carries on).
       */
      readonly causes: readonly bigint[] | number | null;
    }
  | {
      readonly kind: "return";
      readonly answerId: number;
      readonly releaseParamCaps: boolean;
      /** rpc.capnp Return union tag: 0 results … 5 awaitFromThirdParty (0.9.2: acceptFromThirdParty). */
      readonly which: number;
      readonly results: WirePayload | null;
      readonly exception: WireException | null;
      readonly takeFromOtherQuestion: number;
    }
  | { readonly kind: "finish"; readonly questionId: number; readonly releaseResultCaps: boolean }
  | { readonly kind: "release"; readonly id: number; readonly referenceCount: number }
  // Level 3 (v2 layout), only when readIncoming is asked for them:
  | {
      readonly kind: "provide";
      /** Has bit 31 set when the introducer follows v2 (not checked here). */
      readonly questionId: number;
      readonly target: WireTarget;
      /** Provide.recipient: the network's ThirdPartyToAwait (a view into the message), or null. */
      readonly recipient: Pointer | null;
    }
  | {
      readonly kind: "accept";
      readonly questionId: number;
      /** Accept.provision: the network's ThirdPartyCompletion (a view into the message), or null. */
      readonly provision: Pointer | null;
      /** Accept.embargo (a copy): null = no embargo; any other value, even empty, asks for one. */
      readonly embargo: Uint8Array | null;
    }
  | {
      readonly kind: "disembargo-accept";
      readonly target: WireTarget;
      /** Disembargo.context.accept (a copy; empty when the pointer is null). */
      readonly embargoId: Uint8Array;
    }
  | { readonly kind: "other"; readonly which: number };

/** An empty Payload for a missing pointer. */
function emptySlot(): Pointer {
  const m = newMessage(8);
  return new Pointer(m.getSegment(0), 0);
}

function readPayload(v: StructView, index: number, maxCaps: number): WirePayload {
  const p = readStructField(v, index, PayloadView, noCaps);
  if (p.ptrCount === 0) return { content: emptySlot(), capTable: [] };
  if (p.ptrCount > 1) checkCapCount(p, maxCaps);
  return {
    content: new Pointer(p.seg, p.ptrs, p.depth),
    capTable: p.ptrCount > 1 ? readList(p, 1, CapDescriptorList, noCaps) : [],
  };
}

const capTableRef: PointerRef = { seg: null as unknown as PointerRef["seg"], off: 0, lo: 0, hi: 0 };

/**
 * Every capability a message carries costs table entries, a hook and a
 * Release, far more than its 16 bytes: the count is bounded before any is
 * decoded (ConnectionOptions.inbound.maxCapsPerMessage).
 */
function checkCapCount(payload: StructView, maxCaps: number): void {
  if (!followPointer(payload.seg, payload.ptrs + 8, capTableRef)) return;
  // A list of CapDescriptor (2 words each): the list pointer counts words.
  const count = (capTableRef.lo & 3) === 1 && (capTableRef.hi & 7) === 7 ? (capTableRef.hi >>> 3) / 2 : 0;
  if (count > maxCaps) {
    throw new ProtocolError(
      `the message carries up to ${count} capabilities, over this connection's limit of ${maxCaps} ` +
        `(to accept it, raise inbound.maxCapsPerMessage on the receiving side)`,
    );
  }
}

const PayloadView: Codec<StructView> = defineStruct<StructView>({
  name: "Payload",
  dataWords: 0,
  pointers: 2,
  read: (v) => new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth),
  write() {},
});

const CallView = defineStruct<StructView>({ name: "Call", dataWords: 3, pointers: 3, read: (v) => copyView(v), write() {} });

// capmesh's extension of Call (docs/design/call-causes.md): pointer 7 of the
// Call struct, which rpc.capnp does not declare (it uses pointers 0-2:
// target, params, sendResultsTo.thirdParty), holds a List(UInt64) of turn
// tokens, the causes of the call (sequential.ts). Written only when there
// are causes, so every other Call is as before; other implementations skip
// pointers they do not know. Pointers 3-6 stay null, leaving room for
// rpc.capnp's own next pointer fields.
export const CALL_CAUSES_POINTER = 7;
/** Most causes a Call may carry (sequential.ts MAX_CAUSES). */
export const MAX_WIRE_CAUSES = 64;
const causesRef: PointerRef = { seg: null as unknown as PointerRef["seg"], off: 0, lo: 0, hi: 0 };

/**
 * A Call's causes: null when the pointer is absent, null or not a list of
 * 8-byte elements (ignored: another layout is not ours to read); the count
 * when there are more than MAX_WIRE_CAUSES.
 */
function readCauses(c: StructView): readonly bigint[] | number | null {
  if (c.ptrCount <= CALL_CAUSES_POINTER) return null;
  if (!followPointer(c.seg, c.ptrs + CALL_CAUSES_POINTER * 8, causesRef)) return null;
  // A list pointer (tag 1) of eight-byte elements (size code 5).
  if ((causesRef.lo & 3) !== 1 || (causesRef.hi & 7) !== 5) return null;
  const count = causesRef.hi >>> 3;
  if (count === 0) return null;
  if (count > MAX_WIRE_CAUSES) return count;
  return readList(c, CALL_CAUSES_POINTER, LIST_UINT64, noCaps);
}
const ReturnView = defineStruct<StructView>({ name: "Return", dataWords: 2, pointers: 1, read: (v) => copyView(v), write() {} });
const SmallView = defineStruct<StructView>({ name: "Finish/Release", dataWords: 1, pointers: 0, read: (v) => copyView(v), write() {} });
// Level 3 bodies, v2 layout: each has 1 data word and 2 pointers.
//   Provide:    questionId bits[0,32); target ptr[0]; recipient ptr[1]
//   Accept:     questionId bits[0,32); provision ptr[0]; embargo :Data ptr[1]
//               (0.9.2 had embargo :Bool at bits[32,33) and one pointer)
//   Disembargo: target ptr[0]; context tag bits[32,48): 0 senderLoopback,
//               1 receiverLoopback (both UInt32 at bits[0,32)), 2 accept :Data
//               ptr[1] (0.9.2: Void, and tag 3 `provide`, gone in v2)
const Level3View = defineStruct<StructView>({ name: "Provide/Accept/Disembargo", dataWords: 1, pointers: 2, read: (v) => copyView(v), write() {} });
const DISEMBARGO_ACCEPT = 2;

function copyView(v: StructView): StructView {
  return new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth);
}

/** An optional Data field: null when its pointer is null (or absent), else a copy. */
function readDataOrNull(v: StructView, index: number): Uint8Array | null {
  return readAnyPointer(v, index) === null ? null : readData(v, index).slice();
}

/**
 * Reads the envelope of an incoming message. Throws on malformed input.
 * Provide, Accept and Disembargo{context.accept} are decoded (v2 layout) only
 * with `level3`; otherwise they read as "other", like every message the hot
 * path leaves to capnp-es.
 */
export function readIncoming(message: Message, maxCaps = DEFAULT_MAX_CAPS_PER_MESSAGE, level3 = false): WireIncoming {
  const root = viewOfMessageRoot(message);
  const which = readUint16(root, 0);
  switch (which) {
    case rpc.Message.CALL: {
      const c = readStructField(root, 0, CallView, noCaps);
      return {
        kind: "call",
        questionId: readUint32(c, 0),
        target: readStructField(c, 0, MessageTarget, noCaps),
        interfaceId: readUint64(c, 8),
        methodId: readUint16(c, 4),
        sendResultsTo: readUint16(c, 6),
        params: readPayload(c, 1, maxCaps),
        causes: readCauses(c),
      };
    }
    case rpc.Message.RETURN: {
      const r = readStructField(root, 0, ReturnView, noCaps);
      const tag = readUint16(r, 6);
      return {
        kind: "return",
        answerId: readUint32(r, 0),
        releaseParamCaps: readBool(r, 32, true),
        which: tag,
        results: tag === 0 ? readPayload(r, 0, maxCaps) : null,
        exception: tag === 1 ? readStructField(r, 0, Exception, noCaps) : null,
        takeFromOtherQuestion: tag === 4 ? readUint32(r, 8) : 0,
      };
    }
    case rpc.Message.FINISH: {
      const f = readStructField(root, 0, SmallView, noCaps);
      return { kind: "finish", questionId: readUint32(f, 0), releaseResultCaps: readBool(f, 32, true) };
    }
    case rpc.Message.RELEASE: {
      const r = readStructField(root, 0, SmallView, noCaps);
      return { kind: "release", id: readUint32(r, 0), referenceCount: readUint32(r, 4) };
    }
    case rpc.Message.PROVIDE: {
      if (!level3) break;
      const p = readStructField(root, 0, Level3View, noCaps);
      return {
        kind: "provide",
        questionId: readUint32(p, 0),
        target: readStructField(p, 0, MessageTarget, noCaps),
        recipient: readAnyPointer(p, 1),
      };
    }
    case rpc.Message.ACCEPT: {
      if (!level3) break;
      const a = readStructField(root, 0, Level3View, noCaps);
      return { kind: "accept", questionId: readUint32(a, 0), provision: readAnyPointer(a, 0), embargo: readDataOrNull(a, 1) };
    }
    case rpc.Message.DISEMBARGO: {
      if (!level3) break;
      const d = readStructField(root, 0, Level3View, noCaps);
      if (readUint16(d, 4) !== DISEMBARGO_ACCEPT) break; // Level 1 contexts: capnp-es reads them
      return {
        kind: "disembargo-accept",
        target: readStructField(d, 0, MessageTarget, noCaps),
        embargoId: readData(d, 1).slice(),
      };
    }
  }
  return { kind: "other", which };
}

/** Reads a CapDescriptor written by capnp-es (the rare paths). */
export function descriptorFrom(d: rpc.CapDescriptor): WireDescriptor {
  switch (d.which()) {
    case rpc.CapDescriptor.NONE:
      return { kind: "none" };
    case rpc.CapDescriptor.SENDER_HOSTED:
      return { kind: "senderHosted", id: d.senderHosted };
    case rpc.CapDescriptor.SENDER_PROMISE:
      return { kind: "senderPromise", id: d.senderPromise };
    case rpc.CapDescriptor.RECEIVER_HOSTED:
      return { kind: "receiverHosted", id: d.receiverHosted };
    case rpc.CapDescriptor.RECEIVER_ANSWER: {
      const pa = d.receiverAnswer;
      return { kind: "receiverAnswer", answer: promisedAnswerFrom(pa) };
    }
    case rpc.CapDescriptor.THIRD_PARTY_HOSTED: {
      // Same placement in 0.9.2 and v2, so capnp-es's accessors are safe here.
      const t = d.thirdPartyHosted;
      return { kind: "thirdPartyHosted", vineId: t.vineId, contact: t._hasId() ? t.id : null };
    }
    default:
      throw new Error(`unknown CapDescriptor kind ${d.which()}`);
  }
}

export function promisedAnswerFrom(pa: rpc.PromisedAnswer): WirePromisedAnswer {
  const transform: number[] = [];
  if (pa._hasTransform()) {
    const list = pa.transform;
    for (let i = 0; i < list.length; i++) {
      const op = list.get(i);
      if (op._isGetPointerField) transform.push(op.getPointerField);
      else if (!op._isNoop) throw new Error("unknown PromisedAnswer.Op");
    }
  }
  return { questionId: pa.questionId, transform };
}

export function targetFrom(t: rpc.MessageTarget): WireTarget {
  switch (t.which()) {
    case rpc.MessageTarget.IMPORTED_CAP:
      return { importedCap: t.importedCap };
    case rpc.MessageTarget.PROMISED_ANSWER:
      return { promisedAnswer: promisedAnswerFrom(t.promisedAnswer) };
    default:
      throw new Error("unknown MessageTarget kind");
  }
}

/** Writes a plain descriptor into a capnp-es CapDescriptor (the rare paths). */
export function descriptorInto(d: WireDescriptor, out: rpc.CapDescriptor): void {
  switch (d.kind) {
    case "none":
      out.none = true;
      return;
    case "senderHosted":
      out.senderHosted = d.id;
      return;
    case "senderPromise":
      out.senderPromise = d.id;
      return;
    case "receiverHosted":
      out.receiverHosted = d.id;
      return;
    case "receiverAnswer":
      promisedAnswerInto(d.answer, out._initReceiverAnswer());
      return;
    case "thirdPartyHosted": {
      const t = out._initThirdPartyHosted();
      t.vineId = d.vineId;
      if (d.contact !== null) copyBounded(d.contact, t.id, MAX_CONTACT_BYTES, "ThirdPartyToContact");
      return;
    }
  }
}

export function promisedAnswerInto(pa: WirePromisedAnswer, out: rpc.PromisedAnswer): void {
  out.questionId = pa.questionId;
  if (pa.transform.length === 0) return;
  const list = out._initTransform(pa.transform.length);
  for (let i = 0; i < pa.transform.length; i++) list.get(i).getPointerField = pa.transform[i]!;
}

export function targetInto(t: WireTarget, out: rpc.MessageTarget): void {
  if (t.promisedAnswer) promisedAnswerInto(t.promisedAnswer, out._initPromisedAnswer());
  else out.importedCap = t.importedCap;
}

// ---------------------------------------------------------------------------
// Outgoing

/** A message being built whose payload content is filled in before finishing. */
export interface OutgoingEnvelope {
  readonly message: Message;
  /** The AnyPointer slot of the payload's content. */
  readonly content: Pointer;
  /** Writes the payload's cap table (after the content). */
  setCapTable(descriptors: readonly WireDescriptor[]): void;
}

function rootView(message: Message, which: number, dataWords: number, pointers: number): StructView {
  const root = initStructField(new StructView(message.getSegment(0), 0, 0, 0, 1, 64), 0, 1, 1);
  writeUint16(root, 0, which);
  return initStructField(root, 0, dataWords, pointers);
}

// Envelopes are class instances: one object per message, methods on the
// prototype. (newCall once spread an object literal into another, which cost
// microseconds per call: a large share of a ping's whole CPU time.)
class PayloadEnvelope implements OutgoingEnvelope {
  readonly content: Pointer;
  constructor(
    readonly message: Message,
    readonly payload: StructView,
  ) {
    this.content = new Pointer(payload.seg, payload.ptrs);
  }

  setCapTable(descriptors: readonly WireDescriptor[]): void {
    if (descriptors.length > 0) writeList(this.payload, 1, CapDescriptorList, descriptors, noCaps);
  }
}

class CallEnvelope extends PayloadEnvelope {
  constructor(
    message: Message,
    payload: StructView,
    readonly call: StructView,
    readonly interfaceId: bigint,
    readonly methodId: number,
  ) {
    super(message, payload);
  }

  setQuestion(id: number, yourself: boolean): void {
    writeUint32(this.call, 0, id);
    if (yourself) writeUint16(this.call, 6, 1);
  }
}

function envelope(message: Message, payload: StructView): OutgoingEnvelope {
  return new PayloadEnvelope(message, payload);
}

/**
 * A Call (question ID and sendResultsTo filled in at send time). `causes`
 * (at most MAX_WIRE_CAUSES): the CALL_CAUSES_POINTER extension; without
 * them the Call is exactly rpc.capnp's.
 */
export function newCall(
  target: WireTarget,
  interfaceId: bigint,
  methodId: number,
  sizeHint = 512,
  causes: readonly bigint[] | null = null,
): OutgoingEnvelope & { readonly interfaceId: bigint; readonly methodId: number; setQuestion(id: number, yourself: boolean): void } {
  const message = newMessage(sizeHint);
  // The engine never reads a Call once it is sent: its buffer may be reused.
  message.recyclable = true;
  setCapTable(message, []);
  const withCauses = causes !== null && causes.length > 0;
  const call = rootView(message, rpc.Message.CALL, 3, withCauses ? CALL_CAUSES_POINTER + 1 : 3);
  writeStructField(call, 0, MessageTarget as Codec<unknown>, target, noCaps);
  writeUint64(call, 8, interfaceId);
  writeUint16(call, 4, methodId);
  if (withCauses) {
    if (causes.length > MAX_WIRE_CAUSES) throw new Error(`capmesh internal: a Call carries at most ${MAX_WIRE_CAUSES} causes`);
    writeList(call, CALL_CAUSES_POINTER, LIST_UINT64, causes, noCaps);
  }
  const payload = initStructField(call, 1, 0, 2);
  return new CallEnvelope(message, payload, call, interfaceId, methodId);
}

/** A Return carrying results. */
export function newResultsReturn(answerId: number, sizeHint = 512): OutgoingEnvelope {
  const message = newMessage(sizeHint);
  setCapTable(message, []);
  const ret = rootView(message, rpc.Message.RETURN, 2, 1);
  writeUint32(ret, 0, answerId);
  writeBool(ret, 32, false, true); // releaseParamCaps = false
  const payload = initStructField(ret, 0, 0, 2);
  return envelope(message, payload);
}

// Level 3 writers (v2 layout; see Level3View for the offsets). The network
// parameters (ThirdPartyToAwait, ThirdPartyCompletion) are written by the
// caller into the null AnyPointer slot it is handed, e.g. with
// writePointer(codec, value, slot, noCaps).

/** Most bytes an embargo ID may have (we send 16; longer ones are refused). */
export const MAX_EMBARGO_ID_BYTES = 64;

function checkEmbargoId(id: Uint8Array): void {
  if (!(id instanceof Uint8Array) || id.length > MAX_EMBARGO_ID_BYTES) {
    throw new Error(`capmesh: an embargo ID is a Uint8Array of at most ${MAX_EMBARGO_ID_BYTES} bytes`);
  }
}

/**
 * A Provide (Message tag 10): the introducer asks the host to hold `target`
 * for the recipient that `writeRecipient` names (ThirdPartyToAwait, into
 * Provide.recipient). v2: it never gets a Return; the introducer Finishes it.
 */
export function newProvide(questionId: number, target: WireTarget, writeRecipient: (slot: Pointer) => void): Message {
  const message = newMessage(256);
  const p = rootView(message, rpc.Message.PROVIDE, 1, 2);
  writeUint32(p, 0, questionId);
  writeStructField(p, 0, MessageTarget as Codec<unknown>, target, noCaps);
  writeRecipient(new Pointer(p.seg, p.ptrs + 8));
  return message;
}

/**
 * An Accept (Message tag 11): the recipient collects the capability from its
 * host, presenting what `writeCompletion` writes (ThirdPartyCompletion, into
 * Accept.provision). `embargo` non-null: the host holds the Return until the
 * Disembargo with the same ID arrives through the introducer.
 */
export function newAccept(questionId: number, writeCompletion: (slot: Pointer) => void, embargo: Uint8Array | null): Message {
  if (embargo !== null) checkEmbargoId(embargo);
  const message = newMessage(256);
  const a = rootView(message, rpc.Message.ACCEPT, 1, 2);
  writeUint32(a, 0, questionId);
  writeCompletion(new Pointer(a.seg, a.ptrs));
  if (embargo !== null) writeData(a, 1, embargo);
  return message;
}

/**
 * The 3PH Disembargo (Message tag 13, context.accept = `embargoId`). The
 * recipient sends it to the introducer with target importedCap = the vine;
 * the introducer forwards it to the host with target promisedAnswer{the
 * Provide's question ID, no transform}.
 */
export function newThirdPartyDisembargo(target: WireTarget, embargoId: Uint8Array): Message {
  checkEmbargoId(embargoId);
  const message = newMessage(128);
  const d = rootView(message, rpc.Message.DISEMBARGO, 1, 2);
  writeStructField(d, 0, MessageTarget as Codec<unknown>, target, noCaps);
  writeUint16(d, 4, DISEMBARGO_ACCEPT);
  writeData(d, 1, embargoId);
  return message;
}

/**
 * An Unimplemented echo of `received` (rpc.capnp Message.unimplemented: the
 * message is sent back as it came). The echo is never larger than what the
 * peer sent: when aliased pointers would expand the copy past that, or it
 * is malformed below the top, only what identifies the message is echoed —
 * the message kind and the body's data section (its question ID), with the
 * body's pointers left null.
 */
export function newUnimplemented(received: Message): Message {
  const from = new Pointer(received.getSegment(0), 0);
  const nestingLimit = (received as { nestingLimit?: number }).nestingLimit ?? 64;
  try {
    return unimplementedWith(received, (to) => copyPointer(from, to, { nestingLimit }));
  } catch (err) {
    if (!(err instanceof CopyLimitError)) throw err;
    return unimplementedWith(received, (to) => copyPointer(from, to, { nestingLimit: 2, truncate: true }));
  }
}

function unimplementedWith(received: Message, copyRoot: (to: Pointer) => void): Message {
  const message = newMessage(messageBytes(received) + 16);
  const root = initStructField(new StructView(message.getSegment(0), 0, 0, 0, 1, 64), 0, 1, 1);
  writeUint16(root, 0, rpc.Message.UNIMPLEMENTED);
  copyRoot(new Pointer(root.seg, root.ptrs));
  return message;
}

// Finish, Release and Bootstrap are fixed-size: they are framed by hand from
// a template (one segment: root pointer, Message, then the body), with no
// capnp-es message at all.
//   word 0: root pointer → Message (offset 0, 1 data word, 1 pointer)
//   word 1: Message data: union tag
//   word 2: Message pointer → body (offset 0, 1 data word, `bodyPointers` pointers)
//   word 3: the body's data word; then its pointers, all null
function smallFrame(which: number, bodyPointers = 0): Uint8Array {
  const words = 4 + bodyPointers;
  const frame = new Uint8Array(8 + words * 8);
  const dv = new DataView(frame.buffer);
  dv.setUint32(0, 0, true); // one segment
  dv.setUint32(4, words, true);
  dv.setUint32(8, 0, true); // root: struct, offset 0
  dv.setUint32(12, 1 | (1 << 16), true); // 1 data word, 1 pointer
  dv.setUint16(16, which, true);
  dv.setUint32(24, 0, true); // body: struct, offset 0
  dv.setUint32(28, 1 | (bodyPointers << 16), true);
  return frame;
}
const FINISH_TEMPLATE = smallFrame(rpc.Message.FINISH);
const RELEASE_TEMPLATE = smallFrame(rpc.Message.RELEASE);
// Bootstrap: questionId, and deprecatedObjectId (null).
const BOOTSTRAP_TEMPLATE = smallFrame(rpc.Message.BOOTSTRAP, 1);

/** A framed Bootstrap. */
export function newBootstrap(questionId: number): Uint8Array {
  const frame = BOOTSTRAP_TEMPLATE.slice();
  new DataView(frame.buffer).setUint32(32, questionId, true);
  return frame;
}
const scratch = new Uint8Array(40);
const scratchView = new DataView(scratch.buffer);

/** A framed Finish (valid until the next newFinish/newRelease call: send it at once). */
export function newFinish(questionId: number, releaseResultCaps: boolean): Uint8Array {
  scratch.set(FINISH_TEMPLATE);
  scratchView.setUint32(32, questionId, true);
  // releaseResultCaps (bit 32) and requireEarlyCancellationWorkaround
  // (bit 33) both default to true, so they are stored inverted. We do not
  // rely on calls running after their Finish: the workaround bit says false.
  scratch[36] = (releaseResultCaps ? 0 : 1) | 2;
  return scratch;
}

/** A framed Release (valid until the next newFinish/newRelease call: send it at once). */
export function newRelease(id: number, referenceCount: number): Uint8Array {
  scratch.set(RELEASE_TEMPLATE);
  scratchView.setUint32(32, id, true);
  scratchView.setUint32(36, referenceCount, true);
  return scratch;
}

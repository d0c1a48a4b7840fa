// The rpc.capnp envelope on the hot path (Call, Return, Finish, Release),
// read and written straight from segments with the codec runtime's views
// instead of capnp-es's object-per-field accessors: a call costs a handful
// of small objects instead of dozens. Layouts are rpc.capnp's (offsets as
// `capnp compile -ocapnp rpc.capnp` prints them). Rare messages still use
// capnp-es's generated rpc classes in connection.ts.
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
  StructView,
  viewOfMessageRoot,
  writeBool,
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
  | { readonly kind: "thirdPartyHosted"; readonly vineId: number };

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
      case 5:
        return { kind: "thirdPartyHosted", vineId: readUint32(readThirdParty(v), 0) };
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
    else if (d.kind === "thirdPartyHosted") throw new Error("capmesh: thirdPartyHosted descriptors are not written yet");
  },
});
const CapDescriptorList = listOfStruct(CapDescriptor);

const ThirdPartyVine: Codec<StructView> = defineStruct<StructView>({
  name: "ThirdPartyCapDescriptor",
  dataWords: 1,
  pointers: 1,
  read: (v) => new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth),
  write() {},
});
function readThirdParty(v: StructView): StructView {
  return readStructField(v, 0, ThirdPartyVine, noCaps);
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
    }
  | {
      readonly kind: "return";
      readonly answerId: number;
      readonly releaseParamCaps: boolean;
      /** rpc.capnp Return union tag: 0 results … 5 acceptFromThirdParty. */
      readonly which: number;
      readonly results: WirePayload | null;
      readonly exception: WireException | null;
      readonly takeFromOtherQuestion: number;
    }
  | { readonly kind: "finish"; readonly questionId: number; readonly releaseResultCaps: boolean }
  | { readonly kind: "release"; readonly id: number; readonly referenceCount: number }
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
const ReturnView = defineStruct<StructView>({ name: "Return", dataWords: 2, pointers: 1, read: (v) => copyView(v), write() {} });
const SmallView = defineStruct<StructView>({ name: "Finish/Release", dataWords: 1, pointers: 0, read: (v) => copyView(v), write() {} });

function copyView(v: StructView): StructView {
  return new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth);
}

/** Reads the envelope of an incoming message. Throws on malformed input. */
export function readIncoming(message: Message, maxCaps = DEFAULT_MAX_CAPS_PER_MESSAGE): WireIncoming {
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
    default:
      return { kind: "other", which };
  }
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
    case rpc.CapDescriptor.THIRD_PARTY_HOSTED:
      return { kind: "thirdPartyHosted", vineId: d.thirdPartyHosted.vineId };
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
    case "thirdPartyHosted":
      throw new Error("capmesh: thirdPartyHosted descriptors are not written yet");
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

function envelope(message: Message, payload: StructView): OutgoingEnvelope {
  return {
    message,
    content: new Pointer(payload.seg, payload.ptrs),
    setCapTable(descriptors) {
      if (descriptors.length > 0) writeList(payload, 1, CapDescriptorList, descriptors, noCaps);
    },
  };
}

/** A Call (question ID and sendResultsTo filled in at send time). */
export function newCall(
  target: WireTarget,
  interfaceId: bigint,
  methodId: number,
  sizeHint = 512,
): OutgoingEnvelope & { readonly interfaceId: bigint; readonly methodId: number; setQuestion(id: number, yourself: boolean): void } {
  const message = newMessage(sizeHint);
  setCapTable(message, []);
  const call = rootView(message, rpc.Message.CALL, 3, 3);
  writeStructField(call, 0, MessageTarget as Codec<unknown>, target, noCaps);
  writeUint64(call, 8, interfaceId);
  writeUint16(call, 4, methodId);
  const payload = initStructField(call, 1, 0, 2);
  return {
    ...envelope(message, payload),
    interfaceId,
    methodId,
    setQuestion(id, yourself) {
      writeUint32(call, 0, id);
      if (yourself) writeUint16(call, 6, 1);
    },
  };
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

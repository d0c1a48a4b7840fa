// rpc.capnp messages as plain data, and their encoding word by word. The
// fuzzer's hostile scripts are lists of these: easy to mutate (ids reused,
// huge or unused, union tags swapped) and to print in a finding.
import type { Rng } from "./prng.js";
import { Rng as SeededRng } from "./prng.js";
import {
  SegmentBuilder,
  writeContent,
  writeDescriptor,
  writePayload,
  writeTarget,
  type ContentSpec,
  type DescriptorSpec,
  type TargetSpec,
} from "./raw.js";
import { frameOf } from "./frames.js";

export type ReturnBody =
  | { kind: "results"; content: ContentSpec; caps: DescriptorSpec[] }
  | { kind: "exception"; reason: string; type: number }
  | { kind: "canceled" }
  | { kind: "resultsSentElsewhere" }
  | { kind: "takeFromOtherQuestion"; question: number }
  | { kind: "acceptFromThirdParty"; content: ContentSpec }
  | { kind: "unknown"; tag: number };

export type DisembargoContext =
  | { kind: "senderLoopback" | "receiverLoopback" | "provide"; id: number }
  | { kind: "accept" }
  | { kind: "unknown"; tag: number };

export type MessageSpec =
  | { type: "bootstrap"; question: number }
  | {
      type: "call";
      question: number;
      target: TargetSpec;
      interfaceId: bigint;
      methodId: number;
      content: ContentSpec;
      caps: DescriptorSpec[];
      /** 0 caller, 1 yourself, 2 thirdParty, or anything else. */
      sendResultsTo: number;
    }
  | { type: "return"; answer: number; releaseParamCaps: boolean; body: ReturnBody }
  | { type: "finish"; question: number; releaseResultCaps: boolean }
  | { type: "release"; id: number; count: number }
  | { type: "resolve"; promise: number; cap: DescriptorSpec | null; exception?: string }
  | { type: "disembargo"; target: TargetSpec; context: DisembargoContext }
  | { type: "provide"; question: number; target: TargetSpec; recipient: ContentSpec }
  | { type: "accept"; question: number; provision: ContentSpec; embargo: boolean }
  | { type: "join"; question: number; target: TargetSpec; keyPart: ContentSpec }
  | { type: "obsolete"; tag: 7 | 9; content: ContentSpec }
  | { type: "abort"; reason: string }
  | { type: "unimplemented"; inner: MessageSpec }
  /** Any union tag (14 and up are unknown to rpc.capnp) over an arbitrary body. */
  | { type: "unknown"; tag: number; content: ContentSpec };

export const TAG = {
  unimplemented: 0,
  abort: 1,
  call: 2,
  return: 3,
  finish: 4,
  resolve: 5,
  release: 6,
  bootstrap: 8,
  provide: 10,
  accept: 11,
  join: 12,
  disembargo: 13,
} as const;

const rngFor = (seed: number): Rng => new SeededRng(seed);

function writeText(b: SegmentBuilder, at: number, text: string): void {
  const bytes = new TextEncoder().encode(text);
  const words = b.alloc(Math.ceil((bytes.length + 1) / 8));
  bytes.forEach((byte, i) => b.setU8(words, i, byte));
  b.listPtr(at, words, 2, bytes.length + 1);
}

function writeException(b: SegmentBuilder, at: number, reason: string, type: number): void {
  const e = b.alloc(3);
  b.structPtr(at, e, 1, 2);
  b.setU16(e, 4, type);
  writeText(b, e + 1, reason);
}

/** Writes the Message struct for `spec` behind the pointer at `at`. */
export function writeMessage(b: SegmentBuilder, at: number, spec: MessageSpec): void {
  const msg = b.alloc(2);
  b.structPtr(at, msg, 1, 1);
  const body = (tag: number, data: number, ptrs: number) => {
    b.setU16(msg, 0, tag);
    const s = b.alloc(data + ptrs);
    b.structPtr(msg + 1, s, data, ptrs);
    return { d: s, p: s + data };
  };
  switch (spec.type) {
    case "bootstrap": {
      const s = body(TAG.bootstrap, 1, 1);
      b.setU32(s.d, 0, spec.question);
      return;
    }
    case "call": {
      const s = body(TAG.call, 3, 3);
      b.setU32(s.d, 0, spec.question);
      b.setU16(s.d, 4, spec.methodId);
      b.setU16(s.d, 6, spec.sendResultsTo);
      b.setU64(s.d + 1, spec.interfaceId);
      writeTarget(b, s.p, spec.target);
      writePayload(b, s.p + 1, spec.content, spec.caps, rngFor);
      if (spec.sendResultsTo === 2) writeContent(b, s.p + 2, { kind: "empty" });
      return;
    }
    case "return": {
      const s = body(TAG.return, 2, 1);
      b.setU32(s.d, 0, spec.answer);
      // releaseParamCaps defaults to true: stored inverted.
      if (!spec.releaseParamCaps) b.setU8(s.d, 4, 1);
      const r = spec.body;
      switch (r.kind) {
        case "results":
          writePayload(b, s.p, r.content, r.caps, rngFor);
          return;
        case "exception":
          b.setU16(s.d, 6, 1);
          writeException(b, s.p, r.reason, r.type);
          return;
        case "canceled":
          b.setU16(s.d, 6, 2);
          return;
        case "resultsSentElsewhere":
          b.setU16(s.d, 6, 3);
          return;
        case "takeFromOtherQuestion":
          b.setU16(s.d, 6, 4);
          b.setU32(s.d + 1, 0, r.question);
          return;
        case "acceptFromThirdParty":
          b.setU16(s.d, 6, 5);
          writeContent(b, s.p, r.content, rngFor);
          return;
        case "unknown":
          b.setU16(s.d, 6, r.tag);
          return;
      }
      return;
    }
    case "finish": {
      const s = body(TAG.finish, 1, 0);
      b.setU32(s.d, 0, spec.question);
      // releaseResultCaps defaults to true (stored inverted); bit 33 is
      // requireEarlyCancellationWorkaround, also default true: say false.
      b.setU8(s.d, 4, (spec.releaseResultCaps ? 0 : 1) | 2);
      return;
    }
    case "release": {
      const s = body(TAG.release, 1, 0);
      b.setU32(s.d, 0, spec.id);
      b.setU32(s.d, 4, spec.count);
      return;
    }
    case "resolve": {
      const s = body(TAG.resolve, 1, 1);
      b.setU32(s.d, 0, spec.promise);
      if (spec.cap) {
        const d = b.alloc(2);
        b.structPtr(s.p, d, 1, 1);
        writeDescriptor(b, d, spec.cap);
      } else {
        b.setU16(s.d, 4, 1);
        writeException(b, s.p, spec.exception ?? "broken", 0);
      }
      return;
    }
    case "disembargo": {
      const s = body(TAG.disembargo, 1, 1);
      writeTarget(b, s.p, spec.target);
      const c = spec.context;
      const tags = { senderLoopback: 0, receiverLoopback: 1, accept: 2, provide: 3 } as const;
      const tag = c.kind === "unknown" ? c.tag : tags[c.kind];
      b.setU16(s.d, 4, tag);
      if ("id" in c) b.setU32(s.d, 0, c.id);
      return;
    }
    case "provide": {
      const s = body(TAG.provide, 1, 2);
      b.setU32(s.d, 0, spec.question);
      writeTarget(b, s.p, spec.target);
      writeContent(b, s.p + 1, spec.recipient, rngFor);
      return;
    }
    case "accept": {
      const s = body(TAG.accept, 1, 1);
      b.setU32(s.d, 0, spec.question);
      if (spec.embargo) b.setU8(s.d, 4, 1);
      writeContent(b, s.p, spec.provision, rngFor);
      return;
    }
    case "join": {
      const s = body(TAG.join, 1, 2);
      b.setU32(s.d, 0, spec.question);
      writeTarget(b, s.p, spec.target);
      writeContent(b, s.p + 1, spec.keyPart, rngFor);
      return;
    }
    case "obsolete":
    case "unknown": {
      b.setU16(msg, 0, spec.tag);
      writeContent(b, msg + 1, spec.content, rngFor);
      return;
    }
    case "abort": {
      b.setU16(msg, 0, TAG.abort);
      writeException(b, msg + 1, spec.reason, 0);
      return;
    }
    case "unimplemented": {
      b.setU16(msg, 0, TAG.unimplemented);
      writeMessage(b, msg + 1, spec.inner);
      return;
    }
  }
}

/** The framed bytes of `spec` (one segment). */
export function encodeMessage(spec: MessageSpec): Uint8Array {
  const b = new SegmentBuilder();
  const root = b.alloc(1);
  writeMessage(b, root, spec);
  return frameOf([b.bytes()]);
}

/** A short description for logs and finding reports. */
export function describeSpec(spec: MessageSpec): string {
  switch (spec.type) {
    case "bootstrap":
      return `Bootstrap#${spec.question}`;
    case "call":
      return `Call#${spec.question}(${JSON.stringify(spec.target)} ${spec.interfaceId.toString(16)}.${spec.methodId} ${spec.content.kind} caps=${spec.caps.length})`;
    case "return":
      return `Return#${spec.answer}(${spec.body.kind})`;
    case "finish":
      return `Finish#${spec.question}`;
    case "release":
      return `Release(${spec.id}×${spec.count})`;
    case "resolve":
      return `Resolve(${spec.promise} → ${spec.cap ? spec.cap.kind : "exception"})`;
    case "disembargo":
      return `Disembargo(${spec.context.kind})`;
    case "unimplemented":
      return `Unimplemented(${describeSpec(spec.inner)})`;
    case "unknown":
    case "obsolete":
      return `${spec.type}#${spec.tag}(${spec.content.kind})`;
    default:
      return spec.type;
  }
}

// Message-level mutation of recorded frames: each is parsed with capnp-es's
// rpc schema, one field is changed in place (question, answer, import and
// export ids made unused, reused or huge; interface and method ids bogus;
// union tags swapped, so a Call's body is read as a Provide or a Return's
// results as its exception; cap descriptors retyped or renumbered; Release
// counts huge), and the message is framed again. Also: hostile messages
// spliced in, and a frame echoed inside an Unimplemented.
import { utils, type Struct } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { INTERESTING_U32, type Rng } from "../prng.js";
import { frameOf, frameOfMessage, parseFrame, segmentsOf } from "../frames.js";
import { encodeMessage } from "../rpc-spec.js";
import { idValue } from "./content.js";
import { hostileScript } from "./script.js";

type Patch = (rng: Rng, s: Struct) => string;

const u32 = (offset: number, name: string): Patch => (rng, s) => {
  const v = idValue(rng);
  utils.setUint32(offset, v, s);
  return `${name} = ${v}`;
};
const u16 = (offset: number, name: string, values: (rng: Rng) => number): Patch => (rng, s) => {
  const v = values(rng);
  utils.setUint16(offset, v, s);
  return `${name} = ${v}`;
};
const flipByte = (offset: number, name: string): Patch => (rng, s) => {
  utils.setUint8(offset, utils.getUint8(offset, s) ^ (1 << rng.int(8)), s);
  return `${name} bits flipped`;
};

/** Patches for each message kind's body struct. */
const BODY_PATCHES: Partial<Record<number, readonly Patch[]>> = {
  [rpc.Message.CALL]: [
    u32(0, "questionId"),
    u16(4, "methodId", (rng) => (rng.chance(0.7) ? rng.int(20) : rng.pick([0x7fff, 0xffff]))),
    u16(6, "sendResultsTo", (rng) => rng.pick([1, 2, 3, 0xffff])),
    (rng, s) => {
      const v = rng.chance(0.5) ? BigInt(rng.u32()) : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
      utils.setUint64(8, v, s);
      return `interfaceId = 0x${v.toString(16)}`;
    },
  ],
  [rpc.Message.RETURN]: [
    u32(0, "answerId"),
    flipByte(4, "releaseParamCaps"),
    u16(6, "which", (rng) => rng.int(8)),
    u32(8, "takeFromOtherQuestion"),
  ],
  [rpc.Message.FINISH]: [u32(0, "questionId"), flipByte(4, "releaseResultCaps")],
  [rpc.Message.RELEASE]: [
    u32(0, "id"),
    (rng, s) => {
      const v = rng.pick([0, 2, 3, 1000, 0x7fffffff, 0xffffffff]);
      utils.setUint32(4, v, s);
      return `referenceCount = ${v}`;
    },
  ],
  [rpc.Message.RESOLVE]: [u32(0, "promiseId"), u16(4, "which", (rng) => rng.int(4))],
  [rpc.Message.DISEMBARGO]: [u32(0, "context id"), u16(4, "context", (rng) => rng.int(6))],
  [rpc.Message.BOOTSTRAP]: [u32(0, "questionId")],
};

/** The body struct of `root` (its one pointer), read as a bare struct. */
function bodyOf(root: rpc.Message): Struct | null {
  switch (root.which()) {
    case rpc.Message.CALL:
      return root.call;
    case rpc.Message.RETURN:
      return root.return;
    case rpc.Message.FINISH:
      return root.finish;
    case rpc.Message.RELEASE:
      return root.release;
    case rpc.Message.RESOLVE:
      return root.resolve;
    case rpc.Message.DISEMBARGO:
      return root.disembargo;
    case rpc.Message.BOOTSTRAP:
      return root.bootstrap;
    default:
      return null;
  }
}

/** The cap table of a Call's params or a Return's results, if any. */
function capTableOf(root: rpc.Message): rpc.CapDescriptor[] {
  try {
    const payload = root._isCall ? root.call.params : root._isReturn && root.return._isResults ? root.return.results : null;
    if (!payload || !payload._hasCapTable()) return [];
    // A lying count must not make the generator itself loop: a few entries will do.
    const list = payload.capTable;
    return Array.from({ length: Math.min(list.length, 16) }, (_, i) => list.get(i));
  } catch {
    return [];
  }
}

function mutateOne(rng: Rng, frame: Uint8Array): { frame: Uint8Array; what: string } | null {
  const message = parseFrame(frame);
  if (!message) return null;
  try {
    const root = message.getRoot(rpc.Message);
    const which = root.which();
    const caps = capTableOf(root);
    const choice = rng.weighted<string>([
      [6, "field"],
      [2, "retag"],
      [caps.length > 0 ? 3 : 0, "descriptor"],
      [1, "target"],
    ]);
    let what: string;
    if (choice === "retag") {
      const tag = rng.weighted<number>([
        [6, rng.int(14)],
        [1, rng.range(14, 0xffff)],
      ]);
      utils.setUint16(0, tag, root);
      what = `message ${which} retagged as ${tag}`;
    } else if (choice === "descriptor") {
      const d = rng.pick(caps);
      if (rng.chance(0.5)) {
        const tag = rng.int(7);
        utils.setUint16(0, tag, d);
        what = `cap descriptor retyped as ${tag}`;
      } else {
        const id = rng.chance(0.5) ? rng.int(16) : rng.pick(INTERESTING_U32);
        utils.setUint32(4, id, d);
        what = `cap descriptor id = ${id}`;
      }
    } else if (choice === "target" && (root._isCall || root._isDisembargo)) {
      const t = root._isCall ? root.call.target : root.disembargo.target;
      if (rng.chance(0.5)) {
        const v = idValue(rng);
        utils.setUint32(0, v, t);
        what = `target importedCap/id = ${v}`;
      } else {
        const tag = rng.int(4);
        utils.setUint16(4, tag, t);
        what = `target retagged as ${tag}`;
      }
    } else {
      const body = bodyOf(root);
      const patches = BODY_PATCHES[which];
      if (!body || !patches) return null;
      what = rng.pick(patches)(rng, body);
    }
    return { frame: frameOfMessage(message), what: `${rpcName(which)}: ${what}` };
  } catch {
    // capnp-es refused the edit (a field beyond the struct's data): no mutation.
    return null;
  }
}

/**
 * The frame's message echoed back inside an Unimplemented, by wrapping, not
 * copying (a copy of a hostile frame can be exponential: that is one of the
 * things being fuzzed). Single-segment frames only: the segment moves down
 * three words, behind a new root pointer and the outer Message struct, whose
 * pointer is the old root pointer re-aimed from its new place.
 */
export function wrapUnimplemented(frame: Uint8Array): Uint8Array | null {
  const segments = frame.length >= 16 ? segmentsOf(frame) : [];
  if (segments.length !== 1 || segments[0]!.length < 8) return null;
  const old = segments[0]!;
  const out = new Uint8Array(24 + old.length);
  out.set(old, 24);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, (0 << 2) | 0, true); // root → the outer Message at word 1
  dv.setUint32(4, 1 | (1 << 16), true); // 1 data word (tag 0: unimplemented), 1 pointer
  const lo = dv.getUint32(24, true);
  const hi = dv.getUint32(28, true);
  const type = lo & 3;
  if (type === 0 || type === 1) {
    // Struct or list pointer: offset counts from the word after the pointer,
    // which is now one word further from its target.
    const offset = (lo >> 2) + 1;
    dv.setUint32(16, ((offset << 2) | type) >>> 0, true);
    dv.setUint32(20, hi, true);
  } else {
    dv.setUint32(16, lo, true); // far and capability pointers do not depend on where they are
    dv.setUint32(20, hi, true);
  }
  return frameOf([out]);
}

/** Applies `n` message-level mutations to `frames` in place; returns their descriptions. */
export function mutateMessages(rng: Rng, frames: Uint8Array[], n: number): string[] {
  const done: string[] = [];
  for (let k = 0; k < n && frames.length > 0; k++) {
    const i = rng.int(frames.length);
    const op = rng.weighted<string>([
      [8, "field"],
      [2, "splice hostile"],
      [1, "unimplemented"],
    ]);
    if (op === "field") {
      const r = mutateOne(rng, frames[i]!);
      if (r) {
        frames[i] = r.frame;
        done.push(`frame ${i}: ${r.what}`);
      }
    } else if (op === "splice hostile") {
      const script = hostileScript(rng).filter((s) => s.type !== "bootstrap");
      const taken = script.slice(0, rng.range(1, 4));
      frames.splice(i, 0, ...taken.map(encodeMessage));
      done.push(`spliced ${taken.map((s) => s.type).join(", ")} at ${i}`);
    } else {
      const wrapped = wrapUnimplemented(frames[i]!);
      if (wrapped) {
        frames.splice(i + 1, 0, wrapped);
        done.push(`frame ${i} echoed as Unimplemented`);
      }
    }
  }
  return done;
}

const NAMES = Object.fromEntries(Object.entries(rpc.Message_Which).map(([k, v]) => [v, k.toLowerCase()]));
function rpcName(which: number): string {
  return NAMES[which] ?? `tag ${which}`;
}

// Box-stream as an attacker who holds the session keys (it did the
// handshake) writes it: boxes sealed by hand so that they can be dropped,
// replayed, swapped, bit-flipped, cut, or given authentic headers that lie
// about the body length, and a goodbye followed by more data.
import { MAC_LENGTH, secretBox } from "../../../src/auth/secretbox.js";
import type { BoxStreamKeys } from "../../../src/auth/shs1.js";
import type { Rng } from "../prng.js";

export const MAX_BOX_BODY = 4096;
const HEADER = 34;

export type BoxOp =
  | { op: "flip"; box: number; at: number; xor: number }
  | { op: "drop"; box: number }
  | { op: "replay"; box: number }
  | { op: "swap"; box: number }
  /** Box `box` gets an authentic header announcing `length` bytes (its body unchanged). */
  | { op: "lie"; box: number; length: number }
  /** A goodbye in place of box `box`; the boxes after it still follow. */
  | { op: "goodbye"; box: number }
  /** The stream stops `at` bytes into box `box`. */
  | { op: "cut"; box: number; at: number }
  /** Unencrypted bytes after the boxes. */
  | { op: "raw"; bytes: Uint8Array };

function addToNonce(start: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(start);
  let carry = n;
  for (let i = out.length - 1; i >= 0 && carry > 0; i--) {
    const sum = out[i]! + (carry & 0xff);
    out[i] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum >> 8);
  }
  return out;
}

function sealHeader(length: number, bodyMac: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER);
  const plain = out.subarray(MAC_LENGTH);
  plain[0] = (length >>> 8) & 0xff;
  plain[1] = length & 0xff;
  plain.set(bodyMac, 2);
  secretBox.seal(plain, out.subarray(0, MAC_LENGTH), nonce, key);
  return out;
}

interface Box {
  bytes: Uint8Array;
  /** Index in the honest sequence (its nonce is start + 2·index). */
  index: number;
  bodyMac: Uint8Array;
  bodyLength: number;
}

/** The honest boxes for `plaintext` (bodies of at most 4096 bytes), starting at nonce index `first`. */
function seal(plaintext: Uint8Array, keys: BoxStreamKeys, first: number): Box[] {
  const boxes: Box[] = [];
  for (let at = 0, i = first; at < plaintext.length; at += MAX_BOX_BODY, i++) {
    // A copy: sealing encrypts in place, and the plaintext belongs to the case.
    const body = new Uint8Array(plaintext.subarray(at, at + MAX_BOX_BODY));
    const mac = new Uint8Array(MAC_LENGTH);
    const nonce = addToNonce(keys.encryptNonce, 2 * i);
    secretBox.seal(body, mac, addToNonce(nonce, 1), keys.encryptKey);
    const header = sealHeader(body.length, mac, nonce, keys.encryptKey);
    const bytes = new Uint8Array(HEADER + body.length);
    bytes.set(header);
    bytes.set(body, HEADER);
    boxes.push({ bytes, index: i, bodyMac: mac, bodyLength: body.length });
  }
  return boxes;
}

/**
 * The socket writes for `writes` (plaintext chunks, each boxed in turn, as
 * box-stream does per flush), after applying `ops`.
 */
export function boxWrites(writes: readonly Uint8Array[], ops: readonly BoxOp[], keys: BoxStreamKeys): Uint8Array[] {
  // Box lists per write, then ops on the flattened sequence.
  const groups: Box[][] = [];
  let next = 0;
  for (const w of writes) {
    const boxes = seal(w, keys, next);
    next += boxes.length;
    groups.push(boxes);
  }
  const flat = groups.flat();
  const owner = new Map<Box, number>();
  groups.forEach((g, gi) => g.forEach((b) => owner.set(b, gi)));
  let tail: Uint8Array | null = null;
  let cut: { box: Box; at: number } | null = null;
  for (const op of ops) {
    if (op.op === "raw") {
      tail = op.bytes;
      continue;
    }
    if (flat.length === 0) continue;
    const i = op.box % flat.length;
    const box = flat[i]!;
    switch (op.op) {
      case "flip": {
        const bytes = box.bytes.slice();
        bytes[op.at % bytes.length] ^= op.xor || 1;
        flat[i] = { ...box, bytes };
        owner.set(flat[i]!, owner.get(box)!);
        break;
      }
      case "drop":
        flat.splice(i, 1);
        break;
      case "replay":
        flat.splice(i + 1, 0, box);
        break;
      case "swap":
        if (i + 1 < flat.length) [flat[i], flat[i + 1]] = [flat[i + 1]!, box];
        break;
      case "lie": {
        const nonce = addToNonce(keys.encryptNonce, 2 * box.index);
        const bytes = box.bytes.slice();
        bytes.set(sealHeader(op.length & 0xffff, box.bodyMac, nonce, keys.encryptKey));
        flat[i] = { ...box, bytes };
        owner.set(flat[i]!, owner.get(box)!);
        break;
      }
      case "goodbye": {
        const nonce = addToNonce(keys.encryptNonce, 2 * box.index);
        const bye = new Uint8Array(HEADER);
        secretBox.seal(bye.subarray(MAC_LENGTH), bye.subarray(0, MAC_LENGTH), nonce, keys.encryptKey);
        const replaced = { ...box, bytes: bye };
        flat[i] = replaced;
        owner.set(replaced, owner.get(box)!);
        break;
      }
      case "cut":
        cut = { box, at: op.at % Math.max(1, box.bytes.length) };
        break;
    }
  }
  // Regroup into writes, in the (possibly reordered) sequence.
  const out: Uint8Array[] = [];
  let current: Uint8Array[] = [];
  let currentGroup = -1;
  const flush = () => {
    if (current.length > 0) out.push(Buffer.concat(current));
    current = [];
  };
  for (const box of flat) {
    const g = owner.get(box) ?? currentGroup;
    if (g !== currentGroup) flush();
    currentGroup = g;
    if (cut && cut.box === box) {
      current.push(box.bytes.subarray(0, cut.at));
      flush();
      return out;
    }
    current.push(box.bytes);
  }
  flush();
  if (tail) out.push(tail);
  return out;
}

export function randomBoxOps(rng: Rng): BoxOp[] {
  const ops: BoxOp[] = [];
  const n = rng.range(1, 3);
  for (let k = 0; k < n; k++) {
    const box = rng.int(8);
    ops.push(
      rng.weighted<BoxOp>([
        [3, { op: "flip", box, at: rng.int(HEADER + 64), xor: 1 << rng.int(8) }],
        [1, { op: "drop", box }],
        [1, { op: "replay", box }],
        [1, { op: "swap", box }],
        [2, { op: "lie", box, length: rng.pick([0, 1, MAX_BOX_BODY, MAX_BOX_BODY + 1, 0xffff, rng.int(0x10000)]) }],
        [1, { op: "goodbye", box }],
        [1, { op: "cut", box, at: rng.int(HEADER + 64) }],
        [1, { op: "raw", bytes: rng.bytes(rng.range(1, 64)) }],
      ]),
    );
  }
  return ops;
}

// Standard Cap'n Proto stream framing, read leniently: the fuzzer splits
// recorded and mutated byte streams into frames without trusting them, so it
// never allocates by a header's word (a lying header just ends the split).
import { concatBytes } from "../../src/transport/bytes.js";
import { Message } from "capnp-es";

/** Frames above this many segments are not split (the engine refuses them anyway). */
const MAX_SPLIT_SEGMENTS = 512;

export function frameHeaderBytes(count: number): number {
  return 8 * (Math.floor(count / 2) + 1);
}

/** Total length of the frame at `offset`, or -1 if it is incomplete or implausible. */
export function frameLengthAt(bytes: Uint8Array, offset: number): number {
  if (bytes.length - offset < 8) return -1;
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, bytes.length - offset);
  const count = dv.getUint32(0, true) + 1;
  if (count > MAX_SPLIT_SEGMENTS) return -1;
  const header = frameHeaderBytes(count);
  if (dv.byteLength < header) return -1;
  let body = 0;
  for (let i = 0; i < count; i++) body += dv.getUint32(4 + 4 * i, true) * 8;
  const total = header + body;
  return total <= dv.byteLength ? total : -1;
}

/**
 * Splits a stream into its frames. Bytes after the last whole frame (a
 * truncated or lying frame) come back as `rest`.
 */
export function splitFrames(bytes: Uint8Array): { frames: Uint8Array[]; rest: Uint8Array } {
  const frames: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const len = frameLengthAt(bytes, at);
    if (len < 0) break;
    frames.push(new Uint8Array(bytes.subarray(at, at + len)));
    at += len;
  }
  return { frames, rest: new Uint8Array(bytes.subarray(at)) };
}

/** Splits a stream into units for minimization: its frames, then any trailing bytes as one more unit. */
export function frameUnits(bytes: Uint8Array): Uint8Array[] {
  const { frames, rest } = splitFrames(bytes);
  return rest.length > 0 ? [...frames, rest] : frames;
}

export const concat = concatBytes;

/** A frame for the given segments (each a whole number of words). */
export function frameOf(segments: readonly Uint8Array[]): Uint8Array {
  const header = new Uint8Array(frameHeaderBytes(segments.length));
  const dv = new DataView(header.buffer);
  dv.setUint32(0, segments.length - 1, true);
  segments.forEach((s, i) => dv.setUint32(4 + 4 * i, Math.ceil(s.length / 8), true));
  const padded = segments.map((s) => (s.length % 8 === 0 ? s : concat([s, new Uint8Array(8 - (s.length % 8))])));
  return concat([header, ...padded]);
}

/** The segments of a whole frame (views into it). */
export function segmentsOf(frame: Uint8Array): Uint8Array[] {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = dv.getUint32(0, true) + 1;
  let at = frameHeaderBytes(count);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const len = dv.getUint32(4 + 4 * i, true) * 8;
    out.push(frame.subarray(at, at + len));
    at += len;
  }
  return out;
}

/** Parses a frame with capnp-es (copying it), or null if capnp-es refuses it. */
export function parseFrame(frame: Uint8Array): Message | null {
  try {
    return new Message(new Uint8Array(frame), false, false);
  } catch {
    return null;
  }
}

/** A message re-framed after in-place edits. */
export function frameOfMessage(message: Message): Uint8Array {
  return new Uint8Array(message.toArrayBuffer());
}

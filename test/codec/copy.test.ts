// copyPointer: a faithful deep copy in linear time that never writes more
// than its source message holds (issue 8, finding 1: aliased structures),
// and messages that grow by doubling (finding 2: quadratic building).
import { Message, Pointer } from "capnp-es";
import { describe, expect, it } from "vitest";
import { CopyLimitError, copyPointer } from "../../src/codec/copy.js";
import { BuilderMessage, messageBytes, newMessage } from "../../src/codec/message.js";
import { readMessage, writeMessage } from "../../src/codec/runtime.js";
import { frameBytes, decodeFrame } from "../../src/transport/framing.js";
import { AllTypes$codec, Holder$codec } from "./fixtures/gen/codectest.js";
import { FakeCaps, fakeClient } from "./helpers.js";
import { SAMPLE } from "./samples.js";
import { aliasedChain, Words } from "../rpc/helpers/words.js";

function rootOf(message: Message): Pointer {
  return new Pointer(message.getSegment(0), 0);
}

/** A copy of `source`'s root into a new message, as the engine makes one. */
function copied(source: Message, hint = 64): BuilderMessage {
  const target = newMessage(hint);
  copyPointer(rootOf(source), rootOf(target));
  return target;
}

/** A decoded message whose root is an aliased chain of `levels` levels (2^levels leaves). */
function aliasedChainMessage(levels: number): Message {
  const chain = aliasedChain(levels);
  const words = new Words(1 + chain.words);
  chain.write(words, 0, 1);
  return decodeFrame(words.frame());
}

describe("copyPointer", () => {
  it("copies every kind of field faithfully (lists of each width, text, data, nested structs, lists of lists)", () => {
    const source = writeMessage(AllTypes$codec, SAMPLE);
    const copy = copied(source);
    expect(readMessage(AllTypes$codec, copy)).toEqual(readMessage(AllTypes$codec, source));
    // The copy is no larger than the source: nothing is expanded or padded.
    expect(messageBytes(copy)).toBeLessThanOrEqual(messageBytes(source));
  });

  it("copies through far pointers of a multi-segment source", () => {
    const source = writeMessage(AllTypes$codec, SAMPLE);
    const original = frameBytes(source);
    // Re-read it with every segment in place (a decoded frame), then copy.
    const decoded = decodeFrame(original);
    const copy = copied(decoded);
    expect(readMessage(AllTypes$codec, copy)).toEqual(readMessage(AllTypes$codec, source));
  });

  it("carries capabilities over through the cap tables, in order", () => {
    const caps = new FakeCaps();
    const [svc0, a, b, any] = ["svc-0", "a", "b", "any"].map(fakeClient);
    const source = writeMessage(Holder$codec, { svc: svc0, svcs: [a, null, b], any }, caps);
    (source._capnp as { capTable?: unknown[] }).capTable = caps.added.map((c) => c.value);
    const target = newMessage();
    (target._capnp as { capTable?: unknown[] }).capTable = ["already here"];
    copyPointer(rootOf(source), rootOf(target));
    expect((target._capnp as { capTable?: unknown[] }).capTable).toEqual(["already here", svc0, a, b, any]);
  });

  it("refuses to expand aliased pointers past the source's size, quickly", () => {
    const source = aliasedChainMessage(40); // 2^40 leaves if expanded
    const started = process.hrtime.bigint();
    expect(() => copied(source)).toThrow(CopyLimitError);
    expect(() => copied(source)).toThrow(/aliased pointers/);
    // Linear: the copy stops within the source's own size in words.
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(1000);
  });

  it("makes a shallow copy when asked to truncate", () => {
    const source = aliasedChainMessage(20);
    const target = newMessage();
    copyPointer(rootOf(source), rootOf(target), { nestingLimit: 1, truncate: true });
    // The root struct (two pointers) is there; what they point at is not.
    expect(messageBytes(target)).toBe(8 + 16);
  });

  it("fails on a source that points outside its segment", () => {
    const bytes = new Uint8Array(16);
    const dv = new DataView(bytes.buffer);
    dv.setUint32(4, 1, true);
    dv.setUint32(8, 40 << 2, true); // struct 40 words away
    dv.setUint32(12, 1, true);
    expect(() => copied(decodeFrame(bytes))).toThrow(/out of bounds/);
  });
});

describe("building messages", () => {
  it("grows a message's one segment by doubling, so building is linear", () => {
    const list = Array.from({ length: 200_000 }, (_, i) => ({ x: i, y: -i }));
    const message = writeMessage(AllTypes$codec, { structList: list, int64List: list.map((p) => BigInt(p.x)) });
    const used = messageBytes(message);
    expect(used).toBeGreaterThan(3_000_000);
    expect(message._capnp.segments.length).toBe(1);
    const builder = message as BuilderMessage;
    // From 1 KiB to ~3 MiB takes at most log2(3 MiB / 1 KiB) + 1 doublings;
    // capnp-es's own arena grew 4 KiB at a time (hundreds of full copies).
    expect(builder.growths).toBeGreaterThan(0);
    expect(builder.growths).toBeLessThanOrEqual(Math.ceil(Math.log2(used / 1024)) + 1);
    expect(message._capnp.segments[0]!.buffer.byteLength).toBeLessThan(2 * used + 1024);
    // And what was built reads back.
    expect(readMessage(AllTypes$codec, message).structList.at(-1)).toEqual({ x: 199_999, y: -199_999 });
  });
});

// A hostile peer sends values past the limits, built raw on the wire (it
// does not use our encoder, which would refuse to build them): 100 levels of
// nesting, a list of 10^7 items, a list of one item past maxItems. The
// receiver (test/value/hostile-child.ts, a process of its own) refuses each
// call with an error naming the limit, its peak memory stays far below what
// the values would take, and the same connection, and a new one, keep
// working. (test/value/limits.test.ts checks the encoder's side: toValue
// refuses such values from their length or depth, before building anything.)
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompositeList, ObjectSize, Struct, utils } from "capnp-es";
import type * as rpc from "capnp-es/capnp/rpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, DEFAULT_VALUE_LIMITS, fromValue, toValue } from "../../src/index.js";
import { initStructIn } from "../../src/rpc/payload.js";
import { RawPeer } from "../rpc/helpers/raw-peer.js";
import { killLeftAndWait, start, TSX } from "../mesh/helpers/processes.js";
import { Transformer } from "./helpers.js";

const TRANSFORMER_ID = 0xb6f1c0d2e3a4f501n;
const MiB = 1024 * 1024;
const LIST = 6; // Value's union discriminant for `list`

/** A struct of Value's size (2 data words, 2 pointers), to build Values by hand. */
class RawValue extends Struct {
  static override readonly _capnp = { displayName: "RawValue", id: "0", size: new ObjectSize(16, 2) };
}
/** A struct of no size at all: a list of them costs the sender one word, whatever its length, and reads as a list of null Values. */
class Empty extends Struct {
  static override readonly _capnp = { displayName: "Empty", id: "0", size: new ObjectSize(0, 0) };
}

/** A list of `n` null Values in `value`, in one word on the wire. */
function emptyList(n: number) {
  return (value: Struct) => {
    utils.setUint16(0, LIST, value);
    utils.initList(0, CompositeList(Empty), n, value);
  };
}

/** `levels` lists, each holding the next one, the last holding a null Value. */
function nested(levels: number) {
  return (value: Struct) => {
    let v = value;
    for (let i = 0; i < levels; i++) {
      utils.setUint16(0, LIST, v);
      v = utils.initList(0, CompositeList(RawValue), 1, v).get(0);
    }
  };
}

/** A Call to Transformer.transform on `target`, its value built by `build`, with `padBytes` of unrelated data beside it. */
function transformCall(questionId: number, target: number, build: (value: Struct) => void, padBytes = 0) {
  return (root: rpc.Message) => {
    const call = root._initCall();
    call.questionId = questionId;
    call.target.importedCap = target;
    call.interfaceId = TRANSFORMER_ID;
    call.methodId = 0;
    const holder = initStructIn(call._initParams().content, new ObjectSize(0, padBytes > 0 ? 2 : 1));
    build(initStructIn(utils.getPointer(0, holder), new ObjectSize(16, 2)));
    if (padBytes > 0) utils.initData(1, padBytes, holder);
  };
}

const dir = mkdtempSync(join(tmpdir(), "capmesh-value-hostile-"));
const children: ChildProcess[] = [];
const socket = join(dir, "receiver.sock");
let peer: RawPeer;
let target: number;
let question = 10;

beforeAll(async () => {
  const child = start(process.execPath, [...TSX, "test/value/hostile-child.ts", socket], { children });
  await child.waitFor(/^listening /m, "the receiver to listen");
  peer = await RawPeer.connect(socket);
  target = await peer.bootstrap(1);
});

afterAll(async () => {
  peer?.socket.destroy();
  await killLeftAndWait(children);
  rmSync(dir, { recursive: true, force: true });
});

/** Sends a transform call built by `build`; resolves to the exception's reason, or the answer's item count. */
async function send(build: (value: Struct) => void, padBytes = 0): Promise<{ refused: string } | { items: number }> {
  const q = question++;
  peer.send(transformCall(q, target, build, padBytes));
  const ret = await peer.returnFor(q);
  peer.finish(q);
  if (ret._isException) return { refused: ret.exception.reason };
  expect(ret._isResults).toBe(true);
  return { items: -1 };
}

/** The receiver's peak RSS so far, asked over a connection of its own (which also shows it still serves). */
async function peakRss(): Promise<number> {
  const session = await connect(`unix:${socket}`);
  try {
    const { value } = await session.bootstrap(Transformer).transform({ value: toValue({ op: "memory" }) });
    return (fromValue(value) as { maxRss: number }).maxRss;
  } finally {
    await session.close();
  }
}

describe("a hostile peer's values past the limits", () => {
  it("a value of 100 levels of nesting is refused at the nesting limit, and the connection keeps working", async () => {
    const before = await peakRss();
    const answer = await send(nested(100));
    expect(answer).toMatchObject({ refused: expect.stringMatching(/nesting limit exceeded \(.*nestingLimit, 64 by default/) });
    // 40 levels pass Cap'n Proto's nesting limit (64 pointers, the RPC message's included) and meet the value's own.
    const deeper = await send(nested(DEFAULT_VALUE_LIMITS.maxDepth + 8));
    expect(deeper).toMatchObject({
      refused: expect.stringMatching(/value(\[0\]){32}: the received value nests deeper than maxDepth \(32\) levels/),
    });
    // The same connection still works: a value within the limits.
    expect(await send(nested(DEFAULT_VALUE_LIMITS.maxDepth))).toEqual({ items: -1 });
    expect((await peakRss()) - before).toBeLessThan(32 * MiB);
  });

  it("a list of 10^7 items (80 bytes on the wire) is refused by the read budget before it is decoded", async () => {
    const before = await peakRss();
    const answer = await send(emptyList(10_000_000));
    expect(answer).toMatchObject({ refused: expect.stringMatching(/traversal limit exceeded \(the message was read past its read budget/) });
    // Decoded, 10^7 Values would take over 400 MiB of the receiver's memory.
    expect((await peakRss()) - before).toBeLessThan(32 * MiB);
    expect(await send(emptyList(3))).toEqual({ items: -1 });
  });

  it(`a list of maxItems + 1 items within the read budget is refused at maxItems (${DEFAULT_VALUE_LIMITS.maxItems})`, async () => {
    const max = DEFAULT_VALUE_LIMITS.maxItems;
    const before = await peakRss();
    // A message of 3 MiB may be read 12 MiB deep: room for the list's 10^6 + 1 words.
    const answer = await send(emptyList(max + 1), 3 * MiB);
    expect(answer).toEqual({
      refused: `capmesh: value: the received value holds more than maxItems (${max}) list elements and record fields`,
    });
    // Decoding costs memory in proportion to what the read budget lets through (4x the message), and no more.
    const grown = (await peakRss()) - before;
    expect(grown).toBeLessThan(192 * MiB);
    expect(await send(emptyList(max), 3 * MiB)).toEqual({ items: -1 });
  });
});

// capmesh's causes extension of the rpc.capnp Call (docs/design/call-causes.md):
// the Call's pointer 7 carries the turn tokens of the sequential calls it was
// made on behalf of. At the wire level: a Call without causes is rpc.capnp's
// byte for byte, one with causes reads back (and standard readers see the
// same Call), malformed causes are ignored and too many fail only the call.
// Over real sockets between two vats of this process: a sequential call that
// calls a closure across the connection, whose code calls it back, fails at
// once instead of deadlocking.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as rpc from "capnp-es/capnp/rpc";
import { Message } from "capnp-es";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { connect, listen, type Listener, type Session } from "../../src/index.js";
import { CALL_CAUSES_POINTER, MAX_WIRE_CAUSES, newCall, readIncoming } from "../../src/rpc/wire.js";
import { defineStruct, LIST_UINT64, LIST_UINT8, noCaps, readStructField, StructView, viewOfMessageRoot, writeList, initStructField } from "../../src/codec/runtime.js";
import { frameBytes } from "../../src/transport/framing.js";
import { Callback, Probe } from "./schema/actors.js";
import { ProbeImpl } from "./helpers/probe.js";
import { RawPeer, within } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-causes-"));
const open: (Listener | Session)[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const address = () => `unix:${join(dir, `s${n++}.sock`)}`;

const POKE = 2;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** A Call to `target`.poke (empty params: id 0), framed; `causes` as newCall takes them. */
function pokeCall(questionId: number, target: number, causes: readonly bigint[] | null = null): Message {
  const call = newCall({ importedCap: target }, Probe.id, POKE, 512, causes);
  call.setQuestion(questionId, false);
  call.setCapTable([]);
  return call.message;
}

const CallStruct = defineStruct<StructView>({
  name: "Call",
  dataWords: 3,
  pointers: 3,
  read: (v) => new StructView(v.seg, v.data, v.dataLen, v.ptrs, v.ptrCount, v.depth),
  write() {},
});
const callOf = (message: Message) => readStructField(viewOfMessageRoot(message), 0, CallStruct, noCaps);

describe("the Call's causes on the wire", () => {
  it("a Call without causes is rpc.capnp's Call, byte for byte as before", () => {
    const bytes = frameBytes(pokeCall(7, 5));
    // Recorded from newCall as it was before the extension (git HEAD at the time): 3 data words, 3 pointers.
    expect(hex(bytes)).toBe(
      "000000000d000000" + // one segment of 13 words
        "0000000001000100" + // root -> Message: 1 data word, 1 pointer
        "0200000000000000" + // Message.call
        "0000000003000300" + // -> Call: 3 data words, 3 pointers
        "0700000002000000" + // questionId 7, methodId 2, sendResultsTo caller
        "fe0551f139beebac" + // interfaceId (Probe)
        "0000000000000000" +
        "0800000001000100" + // target -> MessageTarget
        "0c00000000000200" + // params -> Payload
        "0000000000000000" + // sendResultsTo.thirdParty
        "0500000000000000" + // MessageTarget: importedCap 5
        "0000000000000000" +
        "0000000000000000" + // Payload: content (null), capTable (none)
        "0000000000000000",
    );
    expect(callOf(pokeCall(7, 5)).ptrCount).toBe(3);
    const read = readIncoming(pokeCall(7, 5));
    expect(read.kind === "call" && read.causes).toBeNull();
    // Empty causes are no causes.
    expect(hex(frameBytes(pokeCall(7, 5, [])))).toBe(hex(bytes));
  });

  it("a Call with causes carries them at pointer 7, reads back, and reads as the same Call elsewhere", () => {
    const causes = [0x0123456789abcdefn, 0xfedcba9876543210n, 1n];
    const message = pokeCall(9, 4, causes);
    const view = callOf(message);
    expect(view.ptrCount).toBe(CALL_CAUSES_POINTER + 1);
    const read = readIncoming(message);
    expect(read.kind).toBe("call");
    if (read.kind !== "call") return;
    expect(read.causes).toEqual(causes);
    expect(read).toMatchObject({ questionId: 9, target: { importedCap: 4 }, interfaceId: Probe.id, methodId: POKE, sendResultsTo: 0 });
    // A reader that knows only rpc.capnp (capnp-es's generated classes, as C++'s) sees the Call unchanged.
    const again = new Message(frameBytes(message), false);
    const call = again.getRoot(rpc.Message).call;
    expect([call.questionId, call.target.importedCap, call.interfaceId, call.methodId, call._hasParams()]).toEqual([9, 4, Probe.id, POKE, true]);
    // The pointers between rpc.capnp's and ours stay null.
    for (let i = 3; i < CALL_CAUSES_POINTER; i++) expect(view.seg.getUint32(view.ptrs + i * 8) | view.seg.getUint32(view.ptrs + i * 8 + 4)).toBe(0);
  });

  it("ignores causes in another layout, and reports more than the limit by their count", () => {
    const withList = (write: (call: StructView) => void) => {
      const message = pokeCall(1, 0, [1n]);
      write(callOf(message));
      return readIncoming(message);
    };
    // A list of bytes, a struct: not ours to read, as if absent.
    const bytes = withList((c) => writeList(c, CALL_CAUSES_POINTER, LIST_UINT8, [1, 2, 3], noCaps));
    expect(bytes.kind === "call" && bytes.causes).toBeNull();
    const struct = withList((c) => initStructField(c, CALL_CAUSES_POINTER, 1, 0));
    expect(struct.kind === "call" && struct.causes).toBeNull();
    const many = Array.from({ length: MAX_WIRE_CAUSES + 1 }, (_, i) => BigInt(i + 1));
    const over = withList((c) => writeList(c, CALL_CAUSES_POINTER, LIST_UINT64, many, noCaps));
    expect(over.kind === "call" && over.causes).toBe(MAX_WIRE_CAUSES + 1);
    expect(() => pokeCall(1, 0, many)).toThrow(/at most 64 causes/);
  });

  it("a peer's Call with too many causes fails with a clear error; the connection carries on", async () => {
    const listener = await listen(address(), { bootstrap: Probe.server(new ProbeImpl(), { sequential: true }) });
    open.push(listener);
    const peer = await RawPeer.connect(listener.address.replace(/^unix:/, ""));
    try {
      const id = await peer.bootstrap(0);
      const message = pokeCall(1, id, [1n]);
      writeList(callOf(message), CALL_CAUSES_POINTER, LIST_UINT64, Array.from({ length: 65 }, (_, i) => BigInt(i + 1)), noCaps);
      peer.write(frameBytes(message));
      const refused = await peer.returnFor(1);
      expect(refused._isException && refused.exception.reason).toBe(
        "refused Probe.poke: the call carries 65 causes (turn tokens of the sequential calls it was made on behalf of), over the 64 " +
          "a capmesh vat takes; a chain of sequential calls that deep through other vats is refused (the caller is not capmesh, or it is broken)",
      );
      peer.finish(1);
      // 64 causes that name no running call: an ordinary call.
      peer.write(frameBytes(pokeCall(2, id, Array.from({ length: 64 }, (_, i) => BigInt(i + 1)))));
      const ok = await peer.returnFor(2);
      expect(ok._isResults).toBe(true);
      peer.finish(2);
    } finally {
      peer.socket.destroy();
      await peer.closed;
    }
  });
});

describe("re-entry through another vat", () => {
  const REENTERED =
    "Probe.poke re-entered sequential capability Probe from inside its own running call Probe.via, through another vat";

  it("a sequential call that calls a closure in another vat, which calls it back, fails at once; the capability carries on", async () => {
    const impl = new ProbeImpl();
    const listener = await listen(address(), { bootstrap: Probe.server(impl), sequential: true });
    open.push(listener);
    const session = await connect(listener.address);
    open.push(session);
    const probe = session.bootstrap(Probe);
    // The closure lives on the other side of the connection: its call back
    // carries the causes of the call that called it.
    let caught = "";
    const closure = Callback.server({
      run: async () => {
        try {
          await probe.poke({ id: 1 });
        } catch (err) {
          caught = (err as Error).message;
        }
        // An unrelated capability of the same vat takes a call with causes as any other.
        const other = await (async () => (await session2()).bootstrap(Probe).poke({ id: 2 }))();
        return { text: `caught; other saw ${other.seen}` };
      },
    });
    const { text } = await within(probe.via({ callback: closure }), 10_000, "via to return instead of deadlocking");
    expect(text).toBe("caught; other saw 1");
    expect(caught).toMatch(new RegExp(`^${REENTERED.replace(/[.()]/g, "\\$&")}: it would wait .* \\(a deadlock\\); make the capability parallel`));
    // Not stuck: the next call runs, and calls made outside any chain are ordinary.
    expect((await probe.poke({ id: 3 })).seen).toBe(2);
    expect(impl.order).toEqual([3]);
  });

  it("through a vat that forwards calls both ways (a proxy, as the hub is), and on a promise that resolves later", async () => {
    const impl = new ProbeImpl();
    const listener = await listen(address(), { bootstrap: Probe.server(impl), sequential: true });
    open.push(listener);
    // The proxy vat: its bootstrap is its import of the sequential Probe.
    const upstream = await connect(listener.address);
    open.push(upstream);
    const proxy = await listen(address(), { bootstrap: upstream.bootstrap(Probe) });
    open.push(proxy);
    const session = await connect(proxy.address);
    open.push(session);
    const probe = session.bootstrap(Probe);
    // A promise made outside the chain and resolved from outside it: a call
    // queued on it goes out later, still on behalf of the call that made it.
    let resolveLater!: (p: Probe) => void;
    const later = Probe.fromPromise(new Promise<Probe>((resolve) => (resolveLater = resolve)));
    let queued!: () => void;
    const wasQueued = new Promise<void>((resolve) => (queued = resolve));
    const errors: string[] = [];
    const closure = Callback.server({
      run: async () => {
        await probe.poke({ id: 1 }).catch((err: Error) => errors.push(err.message));
        const pending = later.poke({ id: 2 }, { timeout: 10_000 });
        queued();
        await pending.catch((err: Error) => errors.push(err.message));
        return { text: "done" };
      },
    });
    const via = probe.via({ callback: closure });
    await within(wasQueued, 10_000, "the call on the promise queued");
    resolveLater(probe.dup());
    expect((await within(via, 15_000, "via to return instead of deadlocking")).text).toBe("done");
    expect(errors).toHaveLength(2);
    for (const e of errors) expect(e).toMatch(/^Probe\.poke re-entered sequential capability Probe from inside its own running call Probe\.via, through another vat/);
    expect((await probe.poke({ id: 3 })).seen).toBe(2);
    expect(impl.order).toEqual([3]);
    later.release();
  });

  it("a local call made on behalf of causes from another vat is checked too", async () => {
    // The sequential S and a parallel front in one vat; the front's closure calls S locally.
    const s = Probe.server(new ProbeImpl(), { sequential: true });
    const front = new ProbeImpl();
    front.localCallback = Callback.server({ run: async () => ({ text: `seen ${(await s.poke({ id: 1 })).seen}` }) });
    const [l1, l2] = [await listen(address(), { bootstrap: s.dup() }), await listen(address(), { bootstrap: Probe.server(front) })];
    open.push(l1, l2);
    const [s1, s2] = [await connect(l1.address), await connect(l2.address)];
    open.push(s1, s2);
    const [seq, par] = [s1.bootstrap(Probe), s2.bootstrap(Probe)];
    // S's call → a closure here → the front (parallel, runs at once) → S, locally.
    const closure = Callback.server({ run: async () => ({ text: (await par.via({})).text }) });
    const { text } = await within(seq.via({ callback: closure }), 10_000, "via to return instead of deadlocking");
    expect(text).toMatch(/^error: Probe\.poke re-entered sequential capability Probe from inside its own running call Probe\.via, through another vat/);
    // Outside the chain, the same local call is an ordinary one.
    expect((await par.via({})).text).toBe("seen 2"); // S entered via, then this poke
    s.release();
  });

  /** A second, parallel Probe in its own listener. */
  async function session2(): Promise<Session> {
    const listener = await listen(address(), { bootstrap: Probe.server(new ProbeImpl()) });
    open.push(listener);
    const s = await connect(listener.address);
    open.push(s);
    return s;
  }
});

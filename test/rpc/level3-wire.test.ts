// The Level 3 (three-party handoff) wire codecs in src/rpc/wire.ts, pinned
// to the v2 rpc.capnp layout word by word, read back, checked against what
// capnp-es's 0.9-era classes read for the Level 1 parts, and decoded by the
// reference `capnp` tool with a test-local schema (level3-wire.capnp).
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Message, Pointer } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { describe, expect, it } from "vitest";
import { noCaps, readPointer, writePointer } from "../../src/codec/runtime.js";
import { newMessage } from "../../src/codec/message.js";
import {
  ThirdPartyCompletion$codec,
  ThirdPartyToAwait$codec,
  ThirdPartyToContact$codec,
  type ThirdPartyCompletion,
  type ThirdPartyToAwait,
  type ThirdPartyToContact,
} from "../../src/gen/network.js";
import {
  MAX_CONTACT_BYTES,
  MAX_EMBARGO_ID_BYTES,
  descriptorFrom,
  descriptorInto,
  newAccept,
  newCall,
  newFinish,
  newProvide,
  newThirdPartyDisembargo,
  readIncoming,
  targetFrom,
  type WireDescriptor,
} from "../../src/rpc/wire.js";
import { Words } from "./helpers/words.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const hasCapnp = spawnSync("capnp", ["--version"]).status === 0;
if (!hasCapnp && process.env.CI === "true") {
  throw new Error("the capnp tool is missing under CI (the capnp decode checks need it): apt-get install -y capnproto");
}

// Message union tags (the same in 0.9.2 and v2).
const PROVIDE = 10;
const ACCEPT = 11;
const DISEMBARGO = 13;
const CALL = 2;
const RESOLVE = 5;

/** `n` bytes counting up from `first` (distinct per field, easy to spot in a dump). */
function bytes(first: number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (first + i) & 0xff);
}

function put(w: Words, word: number, value: Uint8Array): Words {
  w.bytes.set(value, word * 8);
  return w;
}

function u64(w: Words, word: number, value: bigint): Words {
  w.view.setBigUint64(word * 8, value, true);
  return w;
}

function framed(message: Message): Uint8Array {
  return new Uint8Array(message.toArrayBuffer());
}

function received(frame: Uint8Array): Message {
  return new Message(frame, false);
}

const RECIPIENT = bytes(0x01, 32);
const HOST = bytes(0x21, 32);
const INTRODUCER = bytes(0x41, 32);
const NONCE = bytes(0x81, 32);
const EMBARGO = bytes(0xe1, 16);
const EXPIRES = 1_700_000_123_456n;
const PROVIDE_ID = 0x80000005; // introducers draw Provide IDs with bit 31 set

const toAwait: ThirdPartyToAwait = { recipient: RECIPIENT, nonce: NONCE, expiresAt: EXPIRES };
const completion: ThirdPartyCompletion = { introducer: INTRODUCER, host: HOST, nonce: NONCE, addresses: ["unix:/run/b.sock"] };
const contact: ThirdPartyToContact = { host: HOST, addresses: ["unix:/run/b.sock", "tcp://10.0.0.2:7000"], nonce: NONCE, expiresAt: EXPIRES };

/** A contact in a message of its own, as the network hands it to the engine. */
function contactPointer(value: Partial<ThirdPartyToContact> = contact): Pointer {
  const m = newMessage(512);
  const slot = new Pointer(m.getSegment(0), 0);
  writePointer(ThirdPartyToContact$codec, value, slot, noCaps);
  return slot;
}

function provideMessage(recipient: ThirdPartyToAwait = toAwait): Message {
  return newProvide(PROVIDE_ID, { importedCap: 7 }, (slot) => writePointer(ThirdPartyToAwait$codec, recipient, slot, noCaps));
}

function acceptMessage(embargo: Uint8Array | null, provision: ThirdPartyCompletion = completion): Message {
  return newAccept(3, (slot) => writePointer(ThirdPartyCompletion$codec, provision, slot, noCaps), embargo);
}

describe("Level 3 messages, word by word (v2 layout)", () => {
  it("Provide: tag 10; questionId at bits [0,32); target ptr 0; recipient (ThirdPartyToAwait) ptr 1", () => {
    const w = new Words(19);
    w.struct(0, 1, 1, 1).u16(1, 0, PROVIDE);
    w.struct(2, 3, 1, 2).u32(3, 0, PROVIDE_ID);
    w.struct(4, 6, 1, 1).u32(6, 0, 7); // MessageTarget{importedCap 7}; word 7: no promisedAnswer
    // ThirdPartyToAwait: expiresAt in its data word; recipient and nonce as Data.
    w.struct(5, 8, 1, 2);
    u64(w, 8, EXPIRES);
    w.list(9, 11, 2, 32);
    put(w, 11, RECIPIENT);
    w.list(10, 15, 2, 32);
    put(w, 15, NONCE);
    expect(framed(provideMessage())).toEqual(w.frame());
  });

  it("Accept: tag 11; two pointers: provision (ThirdPartyCompletion) ptr 0, embargo Data ptr 1", () => {
    const w = new Words(28);
    w.struct(0, 1, 1, 1).u16(1, 0, ACCEPT);
    w.struct(2, 3, 1, 2).u32(3, 0, 3);
    // ThirdPartyCompletion: no data, four pointers (introducer, host, nonce, addresses).
    w.struct(4, 6, 0, 4);
    w.list(6, 10, 2, 32);
    put(w, 10, INTRODUCER);
    w.list(7, 14, 2, 32);
    put(w, 14, HOST);
    w.list(8, 18, 2, 32);
    put(w, 18, NONCE);
    w.list(9, 22, 6, 1); // List(Text): one pointer
    w.list(22, 23, 2, 17); // "unix:/run/b.sock" and its NUL
    put(w, 23, new TextEncoder().encode("unix:/run/b.sock"));
    w.list(5, 26, 2, 16); // embargo: 16 bytes at ptr 1
    put(w, 26, EMBARGO);
    expect(framed(acceptMessage(EMBARGO))).toEqual(w.frame());
  });

  it("Accept without an embargo leaves ptr 1 null and bit 32 (0.9.2's Bool) clear", () => {
    const frame = framed(acceptMessage(null));
    const w = new Words(26);
    w.struct(0, 1, 1, 1).u16(1, 0, ACCEPT);
    w.struct(2, 3, 1, 2).u32(3, 0, 3);
    expect(frame.length).toBe(w.frame().length);
    // Words 0–5 (root, Message, Accept with its two pointers) except the provision pointer.
    const words = new DataView(frame.buffer, 8);
    expect(words.getBigUint64(3 * 8, true)).toBe(3n); // questionId only: bits 32.. zero
    expect(words.getBigUint64(5 * 8, true)).toBe(0n); // embargo null
    expect(frame.subarray(8, 8 + 4 * 8)).toEqual(w.frame().subarray(8, 8 + 4 * 8));
  });

  it("Disembargo to the vine: tag 13; target ptr 0 = importedCap; context tag 2 at bits [32,48); accept Data ptr 1", () => {
    const w = new Words(10);
    w.struct(0, 1, 1, 1).u16(1, 0, DISEMBARGO);
    w.struct(2, 3, 1, 2).u16(3, 4, 2);
    w.struct(4, 6, 1, 1).u32(6, 0, 9);
    w.list(5, 8, 2, 16);
    put(w, 8, EMBARGO);
    expect(framed(newThirdPartyDisembargo({ importedCap: 9 }, EMBARGO))).toEqual(w.frame());
  });

  it("Disembargo forwarded to the host: target promisedAnswer{the Provide's question, no transform}", () => {
    const w = new Words(12);
    w.struct(0, 1, 1, 1).u16(1, 0, DISEMBARGO);
    w.struct(2, 3, 1, 2).u16(3, 4, 2);
    w.struct(4, 6, 1, 1).u16(6, 4, 1); // MessageTarget tag 1: promisedAnswer
    w.struct(7, 8, 1, 1).u32(8, 0, PROVIDE_ID); // PromisedAnswer, transform null
    w.list(5, 10, 2, 16);
    put(w, 10, EMBARGO);
    const message = newThirdPartyDisembargo({ promisedAnswer: { questionId: PROVIDE_ID, transform: [] } }, EMBARGO);
    expect(framed(message)).toEqual(w.frame());
  });

  it("CapDescriptor.thirdPartyHosted in a payload: tag 5, ThirdPartyCapDescriptor{vineId bits [0,32), contact ptr 0}", () => {
    const out = newCall({ importedCap: 1 }, 0x1234n, 2);
    out.setQuestion(4, false);
    out.setCapTable([{ kind: "thirdPartyHosted", vineId: 6, contact: contactPointer({ host: HOST, expiresAt: EXPIRES }) }]);
    const w = new Words(26);
    w.struct(0, 1, 1, 1).u16(1, 0, CALL);
    w.struct(2, 3, 3, 3).u32(3, 0, 4).u16(3, 4, 2);
    u64(w, 4, 0x1234n);
    w.struct(6, 9, 1, 1).u32(9, 0, 1);
    w.struct(7, 11, 0, 2); // Payload: content null, capTable →
    w.list(12, 13, 7, 2).tag(13, 1, 1, 1); // one CapDescriptor (1 data word, 1 pointer)
    w.u16(14, 0, 5); // thirdPartyHosted; attachedFd 255 is stored as 0
    w.struct(15, 16, 1, 1).u32(16, 0, 6);
    w.struct(17, 18, 1, 3); // the copied ThirdPartyToContact
    u64(w, 18, EXPIRES);
    w.list(19, 22, 2, 32);
    put(w, 22, HOST);
    expect(framed(out.message)).toEqual(w.frame());
  });

  it("CapDescriptor.thirdPartyHosted through capnp-es (a Resolve): the same placement", () => {
    const message = newMessage(256);
    const resolve = message.initRoot(rpc.Message)._initResolve();
    resolve.promiseId = 12;
    descriptorInto({ kind: "thirdPartyHosted", vineId: 6, contact: contactPointer({ host: HOST, expiresAt: EXPIRES }) }, resolve._initCap());
    const w = new Words(17);
    w.struct(0, 1, 1, 1).u16(1, 0, RESOLVE);
    w.struct(2, 3, 1, 1).u32(3, 0, 12); // union tag 0: cap
    w.struct(4, 5, 1, 1).u16(5, 0, 5);
    w.struct(6, 7, 1, 1).u32(7, 0, 6);
    w.struct(8, 9, 1, 3);
    u64(w, 9, EXPIRES);
    w.list(10, 13, 2, 32);
    put(w, 13, HOST);
    expect(framed(message)).toEqual(w.frame());
  });
});

describe("reading Level 3 messages back", () => {
  it("Provide", () => {
    const incoming = readIncoming(received(framed(provideMessage())), undefined, true);
    expect(incoming.kind).toBe("provide");
    if (incoming.kind !== "provide") return;
    expect(incoming.questionId).toBe(PROVIDE_ID);
    expect(incoming.target).toEqual({ importedCap: 7 });
    expect(readPointer(ThirdPartyToAwait$codec, incoming.recipient!, noCaps)).toEqual(toAwait);
  });

  it("Accept, with and without an embargo", () => {
    const withEmbargo = readIncoming(received(framed(acceptMessage(EMBARGO))), undefined, true);
    expect(withEmbargo).toMatchObject({ kind: "accept", questionId: 3, embargo: EMBARGO });
    if (withEmbargo.kind !== "accept") return;
    expect(readPointer(ThirdPartyCompletion$codec, withEmbargo.provision!, noCaps)).toEqual(completion);

    expect(readIncoming(received(framed(acceptMessage(null))), undefined, true)).toMatchObject({ kind: "accept", embargo: null });
    // An empty embargo ID is still an embargo (only a null pointer means none).
    expect(readIncoming(received(framed(acceptMessage(new Uint8Array(0)))), undefined, true)).toMatchObject({
      kind: "accept",
      embargo: new Uint8Array(0),
    });
  });

  it("the 3PH Disembargo, to the vine and forwarded", () => {
    expect(readIncoming(received(framed(newThirdPartyDisembargo({ importedCap: 9 }, EMBARGO))), undefined, true)).toEqual({
      kind: "disembargo-accept",
      target: { importedCap: 9 },
      embargoId: EMBARGO,
    });
    const forwarded = newThirdPartyDisembargo({ promisedAnswer: { questionId: PROVIDE_ID, transform: [] } }, EMBARGO);
    expect(readIncoming(received(framed(forwarded)), undefined, true)).toEqual({
      kind: "disembargo-accept",
      target: { promisedAnswer: { questionId: PROVIDE_ID, transform: [] } },
      embargoId: EMBARGO,
    });
  });

  it("embargo IDs are copied out of the message, not views into it", () => {
    const frame = framed(acceptMessage(EMBARGO));
    const incoming = readIncoming(received(frame), undefined, true);
    frame.fill(0);
    expect(incoming).toMatchObject({ embargo: EMBARGO });
  });

  it("a thirdPartyHosted descriptor, on the hot path and through capnp-es", () => {
    const out = newCall({ importedCap: 1 }, 0x1234n, 2);
    out.setQuestion(4, false);
    out.setCapTable([{ kind: "thirdPartyHosted", vineId: 6, contact: contactPointer() }]);
    const call = readIncoming(received(framed(out.message)));
    if (call.kind !== "call") throw new Error("expected a call");
    const [d] = call.params.capTable;
    expect(d).toMatchObject({ kind: "thirdPartyHosted", vineId: 6 });
    if (d?.kind !== "thirdPartyHosted") return;
    expect(readPointer(ThirdPartyToContact$codec, d.contact!, noCaps)).toEqual(contact);

    // capnp-es reads the same descriptor (its placement is unchanged since 0.9.2).
    const viaEs = descriptorFrom(received(framed(out.message)).getRoot(rpc.Message).call.params.capTable.get(0));
    expect(viaEs).toMatchObject({ kind: "thirdPartyHosted", vineId: 6 });
    if (viaEs.kind !== "thirdPartyHosted") return;
    expect(readPointer(ThirdPartyToContact$codec, viaEs.contact!, noCaps)).toEqual(contact);

    // Without a contact the pointer stays null and reads as null both ways.
    const bare = newCall({ importedCap: 1 }, 0x1234n, 2);
    bare.setCapTable([{ kind: "thirdPartyHosted", vineId: 8, contact: null }]);
    const bareCall = readIncoming(received(framed(bare.message)));
    if (bareCall.kind !== "call") throw new Error("expected a call");
    expect(bareCall.params.capTable).toEqual([{ kind: "thirdPartyHosted", vineId: 8, contact: null }]);
  });

  it("without level3, Provide, Accept and the 3PH Disembargo read as 'other' (the engine echoes them Unimplemented)", () => {
    expect(readIncoming(received(framed(provideMessage())))).toEqual({ kind: "other", which: PROVIDE });
    expect(readIncoming(received(framed(acceptMessage(EMBARGO))))).toEqual({ kind: "other", which: ACCEPT });
    expect(readIncoming(received(framed(newThirdPartyDisembargo({ importedCap: 9 }, EMBARGO))))).toEqual({
      kind: "other",
      which: DISEMBARGO,
    });
  });

  it("a malformed Level 3 body is an error only when Level 3 is read", () => {
    // A Provide whose target has an unknown MessageTarget kind.
    const w = new Words(8);
    w.struct(0, 1, 1, 1).u16(1, 0, PROVIDE);
    w.struct(2, 3, 1, 2).u32(3, 0, 1);
    w.struct(4, 6, 1, 1).u16(6, 4, 9);
    expect(readIncoming(received(w.frame()))).toEqual({ kind: "other", which: PROVIDE });
    expect(() => readIncoming(received(w.frame()), undefined, true)).toThrow(/unknown MessageTarget kind 9/);
  });

  it("writers refuse oversized embargo IDs and contacts, naming the limit", () => {
    const long = new Uint8Array(MAX_EMBARGO_ID_BYTES + 1);
    expect(() => newThirdPartyDisembargo({ importedCap: 1 }, long)).toThrow(`at most ${MAX_EMBARGO_ID_BYTES} bytes`);
    expect(() => newAccept(1, () => {}, long)).toThrow(`at most ${MAX_EMBARGO_ID_BYTES} bytes`);
    const huge = contactPointer({ host: new Uint8Array(MAX_CONTACT_BYTES) });
    const out = newCall({ importedCap: 1 }, 1n, 0);
    expect(() => out.setCapTable([{ kind: "thirdPartyHosted", vineId: 1, contact: huge }])).toThrow(
      `ThirdPartyToContact to send is larger than ${MAX_CONTACT_BYTES} bytes`,
    );
  });
});

describe("the Level 1 parts, as the 0.9-era capnp-es classes read them", () => {
  it("Provide's questionId and target, Accept's questionId, the Disembargo's target and context tag", () => {
    const provide = received(framed(provideMessage())).getRoot(rpc.Message);
    expect(provide.which()).toBe(rpc.Message.PROVIDE);
    expect(provide.provide.questionId).toBe(PROVIDE_ID);
    expect(targetFrom(provide.provide.target)).toEqual({ importedCap: 7 });

    const accept = received(framed(acceptMessage(EMBARGO))).getRoot(rpc.Message);
    expect(accept.which()).toBe(rpc.Message.ACCEPT);
    expect(accept.accept.questionId).toBe(3);
    // A 0.9.2 reader sees Accept.embargo (its Bool at bit 32) as false: the v2 ID is in a pointer it does not know.
    expect(accept.accept.embargo).toBe(false);

    const d = received(framed(newThirdPartyDisembargo({ importedCap: 9 }, EMBARGO))).getRoot(rpc.Message);
    expect(d.which()).toBe(rpc.Message.DISEMBARGO);
    expect(targetFrom(d.disembargo.target)).toEqual({ importedCap: 9 });
    expect(d.disembargo.context.which()).toBe(rpc.Disembargo_Context.ACCEPT);
  });

  it("Level 1 messages read the same with and without level3", () => {
    const senderLoopback = newMessage(128);
    const root = senderLoopback.initRoot(rpc.Message);
    const d = root._initDisembargo();
    d._initTarget().importedCap = 4;
    d.context.senderLoopback = 77;
    const finish = new Uint8Array(newFinish(5, true));
    const call = newCall({ importedCap: 1 }, 0x99n, 3);
    call.setQuestion(8, true);
    call.setCapTable([{ kind: "senderHosted", id: 2 }]);
    for (const frame of [framed(senderLoopback), finish, framed(call.message)]) {
      const plain = readIncoming(received(frame));
      const withLevel3 = readIncoming(received(frame), undefined, true);
      expect(JSON.stringify(withLevel3, (_k, v) => (typeof v === "bigint" ? String(v) : v instanceof Pointer ? "ptr" : v))).toBe(
        JSON.stringify(plain, (_k, v) => (typeof v === "bigint" ? String(v) : v instanceof Pointer ? "ptr" : v)),
      );
    }
    expect(readIncoming(received(framed(senderLoopback)), undefined, true)).toEqual({ kind: "other", which: DISEMBARGO });
  });

  it("Level 1 descriptors written by the hot path read back unchanged through capnp-es", () => {
    const descriptors: WireDescriptor[] = [
      { kind: "none" },
      { kind: "senderHosted", id: 3 },
      { kind: "senderPromise", id: 4 },
      { kind: "receiverHosted", id: 5 },
      { kind: "receiverAnswer", answer: { questionId: 6, transform: [0, 2] } },
    ];
    const out = newCall({ importedCap: 1 }, 1n, 0);
    out.setCapTable(descriptors);
    const table = received(framed(out.message)).getRoot(rpc.Message).call.params.capTable;
    expect(Array.from({ length: table.length }, (_, i) => descriptorFrom(table.get(i)))).toEqual(descriptors);
  });
});

describe.skipIf(!hasCapnp)("capnp decode of what we write (test-local v2 layout schema; skipped without the capnp tool)", () => {
  function decode(message: Message): string {
    return execFileSync("capnp", ["decode", "--short", "test/rpc/level3-wire.capnp", "Message"], {
      cwd: REPO_ROOT,
      input: framed(message),
    })
      .toString("utf8")
      .trim();
  }
  // Printable bytes, so that the tool's text form of Data is the text itself.
  const text = (s: string) => new TextEncoder().encode(s);
  const R = "recipient-key-0123456789abcdefgh";
  const H = "host-key-0123456789abcdefghijklm";
  const I = "introducer-key-0123456789abcdefg";
  const N = "nonce-0123456789abcdefghijklmnop";
  const E = "embargo-id-01234";

  it("Provide", () => {
    const message = provideMessage({ recipient: text(R), nonce: text(N), expiresAt: EXPIRES });
    expect(decode(message)).toBe(
      `(provide = (questionId = ${PROVIDE_ID}, target = (importedCap = 7), ` +
        `recipient = (recipient = "${R}", nonce = "${N}", expiresAt = ${EXPIRES})))`,
    );
  });

  it("Accept, with and without an embargo", () => {
    const provision = { introducer: text(I), host: text(H), nonce: text(N), addresses: ["unix:/run/b.sock"] };
    const decoded = `provision = (introducer = "${I}", host = "${H}", nonce = "${N}", addresses = ["unix:/run/b.sock"])`;
    expect(decode(acceptMessage(text(E), provision))).toBe(`(accept = (questionId = 3, ${decoded}, embargo = "${E}"))`);
    expect(decode(acceptMessage(null, provision))).toBe(`(accept = (questionId = 3, ${decoded}))`);
  });

  it("the 3PH Disembargo, to the vine and forwarded to the host", () => {
    expect(decode(newThirdPartyDisembargo({ importedCap: 9 }, text(E)))).toBe(
      `(disembargo = (target = (importedCap = 9), context = (accept = "${E}")))`,
    );
    expect(decode(newThirdPartyDisembargo({ promisedAnswer: { questionId: PROVIDE_ID, transform: [] } }, text(E)))).toBe(
      `(disembargo = (target = (promisedAnswer = (questionId = ${PROVIDE_ID})), context = (accept = "${E}")))`,
    );
  });

  it("thirdPartyHosted in a Call's cap table and in a Resolve", () => {
    const c = { host: text(H), addresses: ["unix:/run/b.sock", "tcp://10.0.0.2:7000"], nonce: text(N), expiresAt: EXPIRES };
    const decoded =
      `thirdPartyHosted = (id = (host = "${H}", addresses = ["unix:/run/b.sock", "tcp://10.0.0.2:7000"], ` +
      `nonce = "${N}", expiresAt = ${EXPIRES}), vineId = 6), attachedFd = 255`;
    const out = newCall({ importedCap: 1 }, 0x1234n, 2);
    out.setQuestion(4, false);
    out.setCapTable([{ kind: "thirdPartyHosted", vineId: 6, contact: contactPointer(c) }]);
    expect(decode(out.message)).toBe(
      `(call = (questionId = 4, target = (importedCap = 1), interfaceId = 4660, methodId = 2, ` +
        `params = (capTable = [(${decoded})]), sendResultsTo = (caller = void), allowThirdPartyTailCall = false))`,
    );
    const message = newMessage(256);
    const resolve = message.initRoot(rpc.Message)._initResolve();
    resolve.promiseId = 12;
    descriptorInto({ kind: "thirdPartyHosted", vineId: 6, contact: contactPointer(c) }, resolve._initCap());
    expect(decode(message)).toBe(`(resolve = (promiseId = 12, cap = (${decoded})))`);
  });
});

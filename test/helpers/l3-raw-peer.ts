// A hand-driven Level 3 peer for the host-side tests: a real connection
// (our SocketNetwork: the secret handshake with its own identity, or plain
// Cap'n Proto) whose rpc messages the test writes one by one with the wire
// writers (Provide, Accept, the 3PH Disembargo, Call, Finish), and whose
// received messages it reads back. It plays an introducer or a recipient
// and follows no protocol rules on its own.
import { Message, ObjectSize, Pointer, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import type { Identity } from "../../src/auth/identity.js";
import { initStructField, noCaps, StructView, writeData, writePointer, writeUint16, writeUint32 } from "../../src/codec/runtime.js";
import { newMessage } from "../../src/codec/message.js";
import { ThirdPartyCompletion$codec, ThirdPartyToAwait$codec, type ThirdPartyCompletion, type ThirdPartyToAwait } from "../../src/gen/network.js";
import { SocketNetwork } from "../../src/network/socket-network.js";
import { readException, type RpcError } from "../../src/rpc/errors.js";
import { initStructIn, readStructIn } from "../../src/rpc/payload.js";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { MessageInbox } from "../rpc/helpers/raw-peer.js";
import { newAccept, newCall, newFinish, newProvide, newThirdPartyDisembargo, type WireTarget } from "../../src/rpc/wire.js";

export const COUNTER_ID = 0xd7e3f1a0b2c4e6f8n;
const ADD = 0;

// The message descriptions of the plain raw peer, for the Level 3 tests too.
export { describeMessage } from "../rpc/helpers/raw-peer.js";

/** What a Return says, for assertions. */
export type ReturnOutcome =
  | { kind: "results"; ret: rpc.Return }
  | { kind: "exception"; error: RpcError }
  | { kind: "other"; which: number };

export function outcomeOf(ret: rpc.Return): ReturnOutcome {
  if (ret._isResults) return { kind: "results", ret };
  if (ret._isException) return { kind: "exception", error: readException(ret.exception) };
  return { kind: "other", which: ret.which() };
}

export interface L3PeerOptions {
  /** Authenticate as this vat (the secret handshake); without it the connection is plain Cap'n Proto. */
  identity?: Identity;
  /** The host's key, required with an identity. */
  remoteKey?: Uint8Array | string;
  /** The network key of the handshake (a mesh's; default the library's). */
  networkKey?: Uint8Array;
}

export class L3RawPeer extends MessageInbox {
  /** Resolves once the connection has ended, with its error if any. */
  readonly closed: Promise<Error | undefined>;

  private constructor(readonly net: NetworkConnection) {
    super();
    let done!: (e: Error | undefined) => void;
    this.closed = new Promise((resolve) => (done = resolve));
    net.stream.onMessage = (message) => this.deliver(message.getRoot(rpc.Message));
    net.stream.onClose = (err) => {
      this.ended("the connection closed");
      done(err);
    };
  }

  /** Dials `address` (a real socket) and runs the security layer. */
  static async dial(address: string, options: L3PeerOptions = {}): Promise<L3RawPeer> {
    const network = new SocketNetwork(
      options.identity ? { identity: options.identity, ...(options.networkKey ? { networkKey: options.networkKey } : {}) } : {},
    );
    const net = await network.connect(address, options.remoteKey !== undefined ? { remoteKey: options.remoteKey } : {});
    return new L3RawPeer(net);
  }

  send(message: Message): void {
    this.net.stream.send(message);
  }

  sendFrame(frame: Uint8Array): void {
    this.net.stream.sendFrame(frame);
  }

  /** True if a Return for `questionId` has arrived (taken or not). */
  sawReturnFor(questionId: number): boolean {
    return this.received.some((m) => m._isReturn && m.return.answerId === questionId);
  }

  /** Bootstrap: the export ID of the host's bootstrap capability. */
  async bootstrap(questionId: number): Promise<number> {
    const message = new Message();
    message.initRoot(rpc.Message)._initBootstrap().questionId = questionId;
    this.send(message);
    const ret = await this.returnFor(questionId);
    if (!ret._isResults) throw new Error(`bootstrap failed: ${ret._isException ? ret.exception.reason : ret.which()}`);
    return senderHostedAt(ret, 0);
  }

  /** Introducer: Provide `target` for the recipient `toAwait` names (toAwait null: the field left null). */
  provide(questionId: number, target: WireTarget, toAwait: ThirdPartyToAwait | null): void {
    this.send(newProvide(questionId, target, (slot) => toAwait && writePointer(ThirdPartyToAwait$codec, toAwait, slot, noCaps)));
  }

  /** Recipient: Accept with `completion` (null: the field left null) and an embargo ID. */
  accept(questionId: number, completion: ThirdPartyCompletion | null, embargo: Uint8Array | null): void {
    const write = (slot: Pointer) => completion && writePointer(ThirdPartyCompletion$codec, completion, slot, noCaps);
    if (embargo === null || embargo.byteLength <= 64) {
      this.send(newAccept(questionId, write, embargo));
      return;
    }
    // Past what our writer allows: laid out by hand (v2 Accept: questionId
    // bits[0,32), provision ptr[0], embargo Data ptr[1]).
    const message = newMessage(256);
    const root = initStructField(new StructView(message.getSegment(0), 0, 0, 0, 1, 64), 0, 1, 1);
    writeUint16(root, 0, rpc.Message.ACCEPT);
    const a = initStructField(root, 0, 1, 2);
    writeUint32(a, 0, questionId);
    write(new Pointer(a.seg, a.ptrs));
    writeData(a, 1, embargo);
    this.send(message);
  }

  /** The 3PH Disembargo (context.accept = `embargoId`) to `target`. */
  disembargo(target: WireTarget, embargoId: Uint8Array): void {
    if (embargoId.byteLength <= 64) {
      this.send(newThirdPartyDisembargo(target, embargoId));
      return;
    }
    const message = newThirdPartyDisembargo(target, new Uint8Array(0));
    // Past what our writer allows: the id (Disembargo ptr[1]) rewritten in place.
    writeData(disembargoBody(message), 1, embargoId);
    this.send(message);
  }

  /** Sends Counter.add(delta) to `target` as question `questionId` (no wait). */
  callAdd(questionId: number, target: WireTarget, delta: bigint): void {
    const call = newCall(target, COUNTER_ID, ADD);
    const s = initStructIn(call.content, new ObjectSize(8, 0));
    utils.setInt64(0, delta, s);
    call.setQuestion(questionId, false);
    this.send(call.message);
  }

  /** Counter.add(delta) on `target`: the value, then Finish. */
  async add(questionId: number, target: WireTarget, delta: bigint): Promise<bigint> {
    this.callAdd(questionId, target, delta);
    const ret = await this.returnFor(questionId);
    this.finish(questionId);
    if (!ret._isResults) throw new Error(`add failed: ${ret._isException ? ret.exception.reason : ret.which()}`);
    return utils.getInt64(0, readStructIn(ret.results.content));
  }

  finish(questionId: number, releaseResultCaps = true): void {
    this.sendFrame(newFinish(questionId, releaseResultCaps).slice());
  }

  close(): Promise<Error | undefined> {
    this.net.stream.close();
    return this.closed;
  }

}

/** The export ID a Return's cap table gives at `index` (senderHosted). */
export function senderHostedAt(ret: rpc.Return, index: number): number {
  const descriptor = ret.results.capTable.get(index);
  if (!descriptor._isSenderHosted) throw new Error(`cap ${index} is not senderHosted (${descriptor.which()})`);
  return descriptor.senderHosted;
}

/**
 * The Disembargo body of a message newThirdPartyDisembargo built: one
 * segment, the root pointer (word 0) to Message (word 1 its union tag, word 2
 * its pointer to the body: 1 data word, 2 pointers).
 */
function disembargoBody(message: Message): StructView {
  const seg = message.getSegment(0);
  const bodyPointer = 16;
  const offsetWords = (seg.getUint32(bodyPointer) | 0) >> 2;
  const data = bodyPointer + 8 + offsetWords * 8;
  return new StructView(seg, data, 8, data + 8, 2, 64);
}

// One RPC connection to one peer vat: the message loop of rpc.capnp and the
// glue between its four tables (questions, answers, imports, exports) and
// the embargoes. Semantics follow rpc.capnp's comments and the C++
// reference's rpc.c++ (0.9.2) wherever the spec leaves room.
import { Message, Pointer, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { logger } from "../log.js";
import { frameBytes, releaseInboundMessage } from "../transport/framing.js";
import type { MessageStream } from "../transport/message-stream.js";
import { Answer, AnswerTable } from "./answers.js";
import { EmbargoTable, type LiftEmbargo } from "./embargoes.js";
import { ProtocolError, RpcError, canceledBy, exceptionFromWire, readException, toRpcError, writeException } from "./errors.js";
import { methodLabel } from "./registry.js";
import { ExportTable } from "./exports.js";
import {
  BrokenHook,
  innermost,
  type CallHints,
  type CallResult,
  type CapHook,
  type OutgoingCall,
  type Payload,
  type Response,
  type TailCallRequest,
  timedOut,
} from "./hook.js";
import { IdTable } from "./id-table.js";
import { ImportHook, ImportTable } from "./imports.js";
import { OwnedResponse, ResponsePipeline } from "./local.js";
import { copyPointer } from "../codec/copy.js";
import { newMessage } from "../codec/message.js";
import { capTableOf, newPayloadMessage, releaseCapTable, setCapTable, takeCopiedOut, type CapTable } from "./payload.js";
import { Question } from "./questions.js";
import { causeOf, causeTokens, RemoteCauses, type CauseScope } from "./sequential.js";
import {
  descriptorFrom,
  descriptorInto,
  newCall,
  newBootstrap,
  newAccept,
  newFinish,
  newProvide,
  newRelease,
  newResultsReturn,
  newThirdPartyDisembargo,
  newUnimplemented,
  readIncoming,
  DEFAULT_MAX_CAPS_PER_MESSAGE,
  MAX_CONTACT_BYTES,
  MAX_EMBARGO_ID_BYTES,
  MAX_WIRE_CAUSES,
  targetFrom,
  targetInto,
  type WireDescriptor,
  type WireIncoming,
  type WireTarget,
} from "./wire.js";

type WireCall = Extract<WireIncoming, { kind: "call" }>;
type OutgoingWireCall = ReturnType<typeof newCall>;
type WireReturn = Extract<WireIncoming, { kind: "return" }>;
type WireFinish = Extract<WireIncoming, { kind: "finish" }>;
type WireProvide = Extract<WireIncoming, { kind: "provide" }>;
type WireAccept = Extract<WireIncoming, { kind: "accept" }>;
type WireThirdPartyDisembargo = Extract<WireIncoming, { kind: "disembargo-accept" }>;
import { isRemoteHookOf, type RemoteHook } from "./remote-hook.js";
import type { NetworkConnection, ProcessHold, ThirdPartyNetwork, VatContext } from "./vat-network.js";
import { ReflectedHook, RemotePromiseHook } from "./remote-promise.js";
import { ProvideQuestion, Provision, type ProvideHost } from "./third-party.js";
import { ThirdPartyHook } from "./third-party-hook.js";

const log = logger("capmesh:rpc");
const handoffLog = logger("capmesh:handoff");

export interface ConnectionOptions {
  /** The capability a Bootstrap message gets (a new reference); called per request. */
  bootstrap?: (() => CapHook | null) | null;
  /** Who the peer is (its authenticated identity), passed to servers as ctx.peer. */
  peer?: unknown;
  /** A name for logs and error messages. */
  name?: string;
  /** Inbound flow control: how much of the peer's work may be in progress at once. */
  inbound?: InboundLimits;
  /**
   * Cancels every call made over this connection that has not returned
   * after this many milliseconds (a call's own `timeout` overrides it).
   * Default: none.
   */
  callTimeoutMs?: number;
  /**
   * Lets go of the process (unref) while the connection is idle: no call in
   * flight and nothing exported to the peer. Set for dialled client sessions.
   */
  processHold?: ProcessHold;
  /** The vat this connection belongs to (Level 3 reaches other connections through it). */
  vat?: VatContext;
  /** The network connection underneath, as the vat knows it. */
  net?: NetworkConnection;
}

export interface InboundLimits {
  /** Calls from the peer that may run at once (default 16384). */
  maxCalls?: number;
  /** Bytes of the peer's call messages held while their calls run (default 64 MiB). */
  maxBytes?: number;
  /**
   * Capabilities one message may carry (default 16384): each costs table
   * entries and a Release, so a larger cap table aborts the connection.
   */
  maxCapsPerMessage?: number;
}


export class RpcConnection implements ProvideHost {
  /** Set once the connection is gone; every later operation fails with it. */
  error: RpcError | null = null;
  readonly questions = new IdTable<Question>();
  readonly answers = new AnswerTable();
  readonly imports = new ImportTable();
  readonly exports = new ExportTable();
  readonly embargoes = new EmbargoTable();
  readonly name: string;
  private readonly closeListeners = new Set<(error: RpcError) => void>();
  /**
   * Calls sent over this connection on behalf of a call that came in over
   * another one: this vat passing calls between two peers (the vine).
   */
  forwardedCalls = 0;
  /** Calls from the peer in progress, and the bytes of their messages (C++'s flowLimit). */
  private inboundCalls = 0;
  private inboundBytes = 0;
  private readingPaused = false;
  private readonly maxInboundCalls: number;
  private readonly maxInboundBytes: number;
  private readonly maxCapsPerMessage: number;
  /**
   * Level 3 (three-party handoff) on this connection: its vat has a
   * ThirdPartyNetwork. Without it Provide, Accept and the 3PH Disembargo are
   * echoed as Unimplemented (Level 1).
   */
  private readonly level3: { readonly thirdParty: ThirdPartyNetwork; readonly net: NetworkConnection } | null;
  /** Accepts from the peer not answered yet (waiting for their Provide or embargo), with their pipelines. */
  private readonly acceptsWaiting = new Map<Answer, ResponsePipeline>();
  /**
   * Level 3 introducer: Provides we sent the peer (the host) and have not
   * finished, by question ID. Their IDs have bit 31 set, apart from the
   * question table's (C++ nextHigh): a Provide never gets a Return.
   */
  private readonly provides = new Map<number, ProvideQuestion>();
  /** The next Provide ID's low 31 bits (round robin, skipping IDs in use). */
  private nextProvideId = 0;
  /** Whether processHold is ref'd now (sockets start ref'd). */
  private holdingProcess = true;
  private readonly closedPromise: Promise<RpcError>;
  private resolveClosed!: (e: RpcError) => void;
  private readonly transportClosedPromise: Promise<void>;
  private resolveTransportClosed!: () => void;

  constructor(
    private readonly stream: MessageStream,
    private readonly options: ConnectionOptions = {},
  ) {
    this.name = options.name ?? stream.remoteAddress ?? "peer";
    this.maxInboundCalls = options.inbound?.maxCalls ?? 16384;
    this.maxInboundBytes = options.inbound?.maxBytes ?? 64 * 1024 * 1024;
    this.maxCapsPerMessage = options.inbound?.maxCapsPerMessage ?? DEFAULT_MAX_CAPS_PER_MESSAGE;
    const thirdParty = options.vat?.thirdParty ?? null;
    this.level3 = thirdParty && options.net ? { thirdParty, net: options.net } : null;
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    this.transportClosedPromise = new Promise((resolve) => (this.resolveTransportClosed = resolve));
    this.refreshProcessHold();
    stream.onMessage = (message) => this.handleMessage(message);
    stream.onFrameError = (err) => {
      const { message, root } = newRpcMessage();
      writeException(new ProtocolError(`bad frame: ${err.message}`), root._initAbort());
      return message;
    };
    stream.onClose = (err) => {
      this.resolveTransportClosed();
      // After close() or an Abort the reason is already set: no error to make.
      if (this.error) return;
      this.disconnect(
        err
          ? RpcError.disconnected(`connection to ${this.name} failed: ${err.message}`)
          : RpcError.disconnected(`${this.name} disconnected`),
      );
    };
  }

  get peer(): unknown {
    return this.options.peer;
  }

  /** What a Bootstrap message gets; may be set after construction. */
  bootstrapFactory: (() => CapHook | null) | null = null;

  /** Resolves (never rejects) with the reason once the connection is closed. */
  get closed(): Promise<RpcError> {
    return this.closedPromise;
  }

  /**
   * Resolves once the transport underneath has finished too: our last
   * messages flushed, the peer's end (and box-stream's goodbyes) exchanged,
   * or the stream's close timeout passed.
   */
  get transportClosed(): Promise<void> {
    return this.transportClosedPromise;
  }

  onClose(listener: (error: RpcError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Refs the process hold while calls are in flight or capabilities exported, unrefs it otherwise. */
  private refreshProcessHold(): void {
    const hold = this.options.processHold;
    if (!hold || this.error) return;
    const busy = this.error === null && (this.questions.size > 0 || this.exports.size > 0);
    if (busy === this.holdingProcess) return;
    this.holdingProcess = busy;
    if (busy) hold.ref();
    else hold.unref();
  }

  // ---------------------------------------------------------------------
  // Outgoing

  /** Asks the peer for its bootstrap capability (rpc.capnp Bootstrap). */
  bootstrap(): CapHook {
    if (this.error) return new BrokenHook(this.error);
    const question = new Question(this);
    question.id = this.questions.add(question);
    this.refreshProcessHold();
    this.sendFrame(newBootstrap(question.id));
    const cap = question.getPipelinedCap([]);
    // No one else consumes a Bootstrap's Return: `cap` has taken its own
    // reference from the results, so they go at once, and the import is
    // Released when `cap` is.
    question.promise.then(
      (response) => {
        question.forgetResponse();
        response.release();
      },
      () => {},
    );
    return cap;
  }

  /**
   * Starts a call to `target`, building params directly in the Call message.
   * `hints`: the call's, when known now (otherwise it is made in the current
   * context); they say what it is made on behalf of (its causes).
   */
  newRemoteCall(target: RemoteHook, interfaceId: bigint, methodId: number, hints?: CallHints): OutgoingCall {
    const address = target.target();
    if (!address) return innermost(target).newCall(interfaceId, methodId);
    return new RemoteOutgoingCall(this, newCall(address, interfaceId, methodId, 512, causeTokens(causeOf(hints))));
  }

  /** Sends a Call built by newRemoteCall or tailCall. */
  sendCall(call: OutgoingWireCall, hints: CallHints | undefined, tailFor?: Answer): CallResult {
    const message = call.message;
    if (this.error) {
      releaseCapTable(message);
      return new BrokenHook(this.error).call(0n, 0, { message, content: call.content });
    }
    let described: { descriptors: WireDescriptor[]; exports: number[] };
    try {
      described = this.describeAll(capTableOf(message));
    } catch (err) {
      releaseCapTable(message);
      throw err;
    }
    const question = new Question(this);
    question.id = this.questions.add(question);
    this.refreshProcessHold();
    if (hints?.origin !== undefined && hints.origin !== this) this.forwardedCalls++;
    if (tailFor) question.isTailCall = true;
    call.setQuestion(question.id, tailFor !== undefined);
    question.paramExports = described.exports;
    call.setCapTable(described.descriptors);
    // The export table now holds what the params referenced.
    releaseCapTable(message);
    this.send(message);
    if (tailFor && !tailFor.returnSent && !tailFor.finishReceived) {
      // rpc.capnp Return.takeFromOtherQuestion: the caller collects our
      // answer from the tail call it is itself answering.
      this.sendSimpleReturn(tailFor, (ret) => (ret.takeFromOtherQuestion = question.id));
    }
    const signal = hints?.signal;
    if (signal) {
      const onAbort = () => this.cancelQuestion(question, canceledBy(signal));
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        question.promise.then(
          () => signal.removeEventListener("abort", onAbort),
          () => signal.removeEventListener("abort", onAbort),
        );
      }
    }
    const timeout = hints?.timeout ?? this.options.callTimeoutMs;
    if (timeout !== undefined && timeout > 0) this.armTimeout(question, call, timeout);
    if (log.enabled) this.logCall("call", question.id, call.interfaceId, call.methodId, question.promise);
    return { promise: question.promise, pipeline: question, canceler: question };
  }

  /** DEBUG=capmesh:rpc: one line per call made or answered, once it settles. */
  private logCall(event: "call" | "answer", id: number, interfaceId: bigint, methodId: number, done: Promise<unknown>): void {
    const started = performance.now();
    const line = (outcome: string) =>
      log.debug(event, {
        conn: this.name,
        [event === "call" ? "question" : "answer"]: id,
        method: methodLabel(interfaceId, methodId),
        ms: Math.round((performance.now() - started) * 1000) / 1000,
        outcome,
      });
    done.then(
      () => line("results"),
      (err: unknown) => line(`exception: ${describe(err)}`),
    );
  }

  private armTimeout(question: Question, call: OutgoingWireCall, ms: number): void {
    const label = methodLabel(call.interfaceId, call.methodId);
    const timer = setTimeout(() => this.cancelQuestion(question, timedOut(label, ms)), ms);
    // A pending call keeps nothing alive that its connection does not already.
    timer.unref();
    const clear = () => clearTimeout(timer);
    question.promise.then(clear, clear);
  }

  /** Copies a payload built elsewhere into an outgoing message, moving its caps. */
  copyPayload(from: Payload, to: Pointer, toMessage: Message): void {
    const table = capTableOf(toMessage);
    const before = table.length;
    try {
      copyPointer(from.content, to);
    } catch (err) {
      table.length = before; // entries of a partial copy hold no references
      releaseCapTable(from.message);
      throw err;
    }
    for (let i = before; i < table.length; i++) table[i]?.addRef();
    releaseCapTable(from.message);
  }

  /** The caller gave up on `question`: it rejects with `reason`, and Finish goes out once nothing pipelines on it. */
  cancelQuestion(question: Question, reason: RpcError = canceledBy(undefined)): void {
    if (!question.awaitingReturn || question.canceled) return;
    question.canceled = true;
    question.reject(reason);
    this.maybeFinish(question);
  }

  /**
   * Sends Finish once nothing can target the question any more: the Return
   * is in (or the call was canceled) and no pipelined reference remains.
   */
  maybeFinish(question: Question): void {
    if (question.finishSent || question.pipelineRefs > 0) return;
    if (question.awaitingReturn && !question.canceled) return;
    question.finishSent = true;
    if (!question.awaitingReturn && !this.error) {
      // The Return is in. Its Finish goes out at the end of this turn's
      // microtasks, in the same write as the calls the caller makes on the
      // results: one write and one wake-up of the peer per round trip
      // instead of two. The question keeps its ID until then.
      if (this.finishing.push(question) === 1) queueMicrotask(this.sendFinishes);
      return;
    }
    if (!this.error) {
      // Still awaiting the Return: we will ignore its caps, so the callee
      // must release them itself (as C++ does).
      this.sendFrame(newFinish(question.id, question.awaitingReturn));
    }
    if (!question.awaitingReturn) {
      this.questions.delete(question.id);
      this.refreshProcessHold();
    }
  }

  /** Questions whose Return is in and whose Finish waits for the end of the turn (maybeFinish). */
  private finishing: Question[] = [];

  private sendFinishes = (): void => {
    const finishing = this.finishing;
    this.finishing = [];
    for (const question of finishing) {
      if (this.questions.get(question.id) !== question) continue; // the connection failed meanwhile
      this.sendFrame(newFinish(question.id, false));
      this.questions.delete(question.id);
    }
    this.refreshProcessHold();
  };

  /** Describes `hook` to the peer, exporting it if needed (exportId: the export used). */
  describe(hook: CapHook): { descriptor: WireDescriptor; exportId: number | null } {
    const inner = innermost(hook);
    if (isRemoteHookOf(inner, this)) return { descriptor: inner.descriptor(), exportId: null };
    if (inner instanceof ThirdPartyHook && inner.pending && inner.via === this) {
      // Still being picked up, and going back to its introducer: name the
      // vine, which stands there for the host's capability (C++ writes the
      // vine's own descriptor too). Elsewhere a pending one is exported as a
      // promise below, its Resolve describing whatever it settles to.
      return { descriptor: { kind: "receiverHosted", id: inner.vineId }, exportId: null };
    }
    if (this.level3 !== null && inner.brand instanceof RpcConnection && inner.brand !== this) {
      // Hosted by the peer of another connection of this vat: introduce the
      // two instead of proxying, when the network allows it.
      const introduced = this.introduce(inner as RemoteHook, inner.brand);
      if (introduced) return introduced;
    }
    const existing = this.exports.idOf(inner);
    if (existing !== undefined) {
      const entry = this.exports.get(existing)!;
      entry.refcount++;
      return { descriptor: { kind: entry.isPromise ? "senderPromise" : "senderHosted", id: existing }, exportId: existing };
    }
    // A broken capability goes out as a promise that is broken at once
    // (Resolve.exception): the peer's whenResolved() then reports why, where
    // C++ sends it as senderHosted and only a call would tell.
    const more = inner.whenMoreResolved() ?? (inner.brokenReason ? Promise.resolve(inner) : null);
    const id = this.exports.add(inner.addRef(), more !== null);
    this.refreshProcessHold();
    if (more) {
      this.resolveExportedPromise(id, inner, more);
      return { descriptor: { kind: "senderPromise", id }, exportId: id };
    }
    return { descriptor: { kind: "senderHosted", id }, exportId: id };
  }

  /**
   * rpc.capnp Level 3, the introducer (docs/design/level3.md 2.1 step 1):
   * `inner` is reached over `host`, so the host is sent a Provide for our
   * peer (question ID from the high range), our peer gets a new vine export
   * (for this handoff only, never a promise) and a thirdPartyHosted
   * descriptor carrying the network's contact. Null when the two may not be
   * introduced: the capability is then exported (proxied) as before.
   */
  private introduce(inner: RemoteHook, host: RpcConnection): { descriptor: WireDescriptor; exportId: number } | null {
    const mine = this.level3!;
    const theirs = host.level3;
    if (theirs === null || host.options.vat !== this.options.vat || host.error || this.error) return null;
    const why = mine.thirdParty.whyNotIntroduce(mine.net, theirs.net);
    if (why !== null) {
      if (handoffLog.enabled) handoffLog.debug("not introduced", { recipient: this.name, host: host.name, reason: why });
      return null;
    }
    const target = inner.target();
    if (!target) return null;
    const contactMessage = newMessage(256);
    const contact = new Pointer(contactMessage.getSegment(0), 0);
    const id = host.allocateProvideId();
    let label = "";
    let provide: Message;
    try {
      provide = newProvide(id, target, (toAwait) => {
        label = mine.thirdParty.introduce(mine.net, theirs.net, contact, toAwait).label;
      });
    } catch (err) {
      handoffLog.debug("not introduced", { recipient: this.name, host: host.name, reason: describe(err) });
      return null;
    }
    let contactBytes = -8; // the root pointer is not copied
    for (const segment of contactMessage._capnp.segments) contactBytes += segment.byteLength;
    if (contactBytes > MAX_CONTACT_BYTES) {
      handoffLog.debug("not introduced", {
        recipient: this.name,
        host: host.name,
        reason: `the contact is ${contactBytes} bytes, over the ${MAX_CONTACT_BYTES} a descriptor carries (too many or too long host addresses)`,
      });
      return null;
    }
    const question = new ProvideQuestion(id, host, label);
    host.provides.set(id, question);
    host.send(provide);
    const vineId = this.exports.addVine(inner.addRef(), question);
    this.refreshProcessHold();
    this.options.vat!.handoffs.introductions++;
    if (handoffLog.enabled) {
      handoffLog.debug("introduced", { recipient: mine.net.peer.id, host: theirs.net.peer.id, nonce: label, provide: id, vine: vineId });
    }
    return { descriptor: { kind: "thirdPartyHosted", vineId, contact }, exportId: vineId };
  }

  /**
   * Level 3 recipient (2.1 step 4): an Accept to the host on this
   * connection, presenting the completion the network writes. Its Return
   * carries the capability; the Finish goes out when it arrives (or the
   * caller cancels the question). With `embargo`, the host holds the Return
   * until the matching 3PH Disembargo reaches it through the introducer.
   */
  sendAccept(writeCompletion: (into: Pointer) => void, embargo: Uint8Array | null = null): Question {
    if (this.error) throw this.error;
    const question = new Question(this);
    question.id = this.questions.add(question);
    let message: Message;
    try {
      message = newAccept(question.id, writeCompletion, embargo);
    } catch (err) {
      this.questions.delete(question.id);
      throw err;
    }
    this.refreshProcessHold();
    this.send(message);
    return question;
  }

  /**
   * Level 3 recipient (2.1 step 4, 2.6.1): the 3PH Disembargo to the vine
   * `vineId` we import from this introducer, sent behind every call we made
   * on the promise the vine replaced; the introducer passes it on to the host.
   */
  sendThirdPartyDisembargo(vineId: number, embargoId: Uint8Array): void {
    if (this.error) throw this.error;
    this.send(newThirdPartyDisembargo({ importedCap: vineId }, embargoId));
  }

  /** A free Provide question ID: bit 31 set, round robin over the rest (C++ ExportTable::nextHigh). */
  private allocateProvideId(): number {
    for (;;) {
      const id = (0x80000000 | this.nextProvideId) >>> 0;
      this.nextProvideId = (this.nextProvideId + 1) & 0x7fffffff;
      if (!this.provides.has(id)) return id;
    }
  }

  /** ProvideHost: the vine of `provide` was released; Finish tells the host (2.1 step 9). */
  finishProvide(provide: ProvideQuestion): void {
    if (this.provides.get(provide.id) !== provide) return;
    this.provides.delete(provide.id);
    // A Provide has no results to release (C++ sends false too).
    this.sendFrame(newFinish(provide.id, false));
  }

  /**
   * ProvideHost: the recipient's 3PH Disembargo reached the vine; it goes on
   * to the host naming the Provide (2.1 step 7), behind every call we
   * forwarded there before it. Dropped when the Provide or this link is gone.
   */
  forwardThirdPartyDisembargo(provide: ProvideQuestion, embargoId: Uint8Array): boolean {
    if (this.error || this.provides.get(provide.id) !== provide) return false;
    this.send(newThirdPartyDisembargo({ promisedAnswer: { questionId: provide.id, transform: [] } }, embargoId));
    return true;
  }

  /** Describes a payload's cap table; `exports` lists every export it counted. */
  private describeAll(table: CapTable): { descriptors: WireDescriptor[]; exports: number[] } {
    const descriptors: WireDescriptor[] = new Array(table.length);
    const exports: number[] = [];
    try {
      for (let i = 0; i < table.length; i++) {
        const hook = table[i];
        if (!hook) {
          descriptors[i] = { kind: "none" };
          continue;
        }
        const { descriptor, exportId } = this.describe(hook);
        descriptors[i] = descriptor;
        if (exportId !== null) exports.push(exportId);
      }
    } catch (err) {
      // Nothing goes out: take back the references counted so far.
      for (const id of exports) this.exports.release(id, 1);
      throw err;
    }
    return { descriptors, exports };
  }

  /** How to address `hook` over this connection; null if it is not reached through it. */
  targetOf(hook: CapHook): WireTarget | null {
    return isRemoteHookOf(hook, this) ? hook.target() : null;
  }

  /** The hook to put in the export table in place of `hook` (borrowed). */
  innermostForExport(hook: CapHook): CapHook {
    const inner = innermost(hook);
    if (inner instanceof RemotePromiseHook && inner.conn === this) return inner.innermost();
    return inner;
  }

  /** rpc.capnp Resolve: tells the peer what an exported promise became. */
  private resolveExportedPromise(id: number, original: CapHook, more: Promise<CapHook>): void {
    const settle = (next: CapHook) => {
      const entry = this.exports.get(id);
      if (this.error || !entry || entry.hook !== original) return;
      const resolution = this.innermostForExport(next).addRef();
      // As C++ resolveExportedPromise: the entry goes on standing for the
      // resolution only if that is itself a local promise not exported under
      // another ID (no Resolve is due yet). Anything else is described on its
      // own (a new export if needed), never as senderHosted <this promise's ID>.
      const further = resolution.brand !== this ? resolution.whenMoreResolved() : null;
      const { claimed } = this.exports.retarget(id, resolution, further !== null);
      if (further && claimed) {
        this.resolveExportedPromise(id, resolution, further);
        return;
      }
      entry.isPromise = false;
      const { message, root } = newRpcMessage();
      const resolve = root._initResolve();
      resolve.promiseId = id;
      // rpc.capnp Resolve.exception: the promise was broken.
      if (resolution.brokenReason) writeException(resolution.brokenReason, resolve._initException());
      else descriptorInto(this.describe(resolution).descriptor, resolve._initCap());
      this.send(message);
    };
    more.then(settle, (err: unknown) => settle(new BrokenHook(toRpcError(err))));
  }

  /** Starts an embargo on `target`; `lift` runs when the Disembargo echoes back. */
  startEmbargo(target: CapHook, lift: LiftEmbargo): void {
    const { message, root } = newRpcMessage();
    const disembargo = root._initDisembargo();
    const address = this.targetOf(target);
    if (!address) throw new Error("capmesh internal: embargo target is not on this connection");
    targetInto(address, disembargo._initTarget());
    disembargo.context.senderLoopback = this.embargoes.start(lift);
    this.send(message);
  }

  /** Our last reference to an import went: pay back every reference the peer gave. */
  releaseImport(hook: ImportHook): void {
    const entry = this.imports.get(hook.importId);
    if (!entry || entry.hook !== hook) return;
    this.imports.delete(hook.importId);
    if (this.error) return;
    this.sendFrame(newRelease(hook.importId, entry.remoteRefcount));
  }

  forgetPromiseImport(id: number, hook: RemotePromiseHook): void {
    const entry = this.imports.get(id);
    if (entry && entry.promise === hook) entry.promise = null;
  }

  send(message: Message): void {
    if (this.error) return;
    this.stream.send(message);
  }

  private sendFrame(frame: Uint8Array): void {
    if (this.error) return;
    this.stream.sendFrame(frame);
  }

  /** Closes the connection: everything imported breaks, everything exported is dropped. */
  close(reason = "connection closed locally"): void {
    // Whoever awaits the close (Session.close) keeps the process alive until
    // the transport has finished, even if the connection was idle.
    if (!this.error && !this.holdingProcess) this.options.processHold?.ref();
    this.disconnect(RpcError.disconnected(reason));
  }

  // ---------------------------------------------------------------------
  // Incoming

  private handleMessage(message: Message): void {
    if (this.error) return;
    try {
      const incoming = readIncoming(message, this.maxCapsPerMessage, this.level3 !== null);
      switch (incoming.kind) {
        case "call":
          return this.handleCall(message, incoming);
        case "return":
          return this.handleReturn(message, incoming);
        case "finish":
          return this.handleFinish(incoming);
        case "release":
          return this.releaseExportOrThrow(incoming.id, incoming.referenceCount);
        case "provide":
          return this.handleProvide(incoming);
        case "accept":
          return this.handleAccept(incoming);
        case "disembargo-accept":
          return this.handleThirdPartyDisembargo(incoming);
      }
      const root = message.getRoot(rpc.Message);
      const which = root.which();
      switch (which) {
        case rpc.Message.RESOLVE:
          return this.handleResolve(root.resolve);
        case rpc.Message.DISEMBARGO:
          return this.handleDisembargo(root.disembargo);
        case rpc.Message.BOOTSTRAP:
          return this.handleBootstrap(root.bootstrap);
        case rpc.Message.ABORT:
          return this.handleAbort(root.abort);
        case rpc.Message.UNIMPLEMENTED:
          return this.handleUnimplemented(root.unimplemented);
        default:
          // Provide and Accept without Level 3, Join (Level 4), obsolete
          // and unknown messages: echo back as Unimplemented, keep the connection.
          log.debug("unimplemented message", { conn: this.name, which });
          return this.send(newUnimplemented(message));
      }
    } catch (err) {
      const protocolError =
        err instanceof ProtocolError
          ? err
          : new ProtocolError(`malformed message: ${describe(err).replace(/^capmesh: malformed message: /, "")}`);
      this.abort(protocolError);
    }
  }

  private handleBootstrap(bootstrap: rpc.Bootstrap): void {
    const id = bootstrap.questionId;
    if (this.answers.has(id)) throw new ProtocolError(`Bootstrap uses question ID ${id}, which is still in use`);
    const answer = new Answer(id);
    answer.kind = "bootstrap";
    this.answers.add(answer);
    let hook: CapHook | null;
    try {
      const factory = this.bootstrapFactory ?? this.options.bootstrap;
      hook = factory ? factory() : null;
    } catch (err) {
      this.sendExceptionReturn(answer, err);
      return;
    }
    if (!hook) {
      this.sendExceptionReturn(answer, RpcError.failed("this vat offers no bootstrap capability"));
      return;
    }
    // Built like any call's results (a connection's first message goes
    // through no code that a busy connection has not already warmed up).
    const envelope = newResultsReturn(id, 128);
    utils.setInterfacePointer(0, envelope.content);
    const { descriptor, exportId } = this.describe(hook);
    envelope.setCapTable([descriptor]);
    if (exportId !== null) answer.resultExports.push(exportId);
    const cap = hook;
    answer.pipeline = {
      getPipelinedCap: (ops) =>
        ops.length === 0 ? cap.addRef() : new BrokenHook(RpcError.failed("invalid pipeline transform on bootstrap")),
    };
    answer.response = { message: envelope.message, content: envelope.content, release: () => cap.release() };
    answer.returnSent = true;
    this.send(envelope.message);
  }

  // ---------------------------------------------------------------------
  // Level 3, host side (docs/design/level3.md 2.1 steps 5-9)

  /**
   * rpc.capnp Provide: the peer (the introducer) asks us to hold `target`
   * for the recipient its ThirdPartyToAwait names. No Return ever goes back
   * (v2); the entry lives until the introducer's Finish. The network records
   * the provision, or a refusal that the recipient's Accept will be told.
   */
  private handleProvide(provide: WireProvide): void {
    const { thirdParty, net } = this.level3!;
    const id = provide.questionId;
    if (this.answers.has(id)) throw new ProtocolError(`Provide uses question ID ${id}, which is still in use`);
    const hook = this.getMessageTarget(provide.target, "Provide");
    const answer = new Answer(id);
    answer.kind = "provide";
    answer.settled = true; // no call runs: nothing to cancel
    answer.pipeline = PROVIDE_PIPELINE;
    const provision = new Provision(hook);
    answer.provision = provision;
    this.answers.add(answer);
    provision.registration = thirdParty.awaitThirdParty(net, provide.recipient ?? emptyPayload().content, provision);
  }

  /**
   * rpc.capnp Accept: the peer (the recipient) collects a provided
   * capability. Waits for the matching Provide (it may come later, over
   * another connection) and, with Accept.embargo, for the Disembargo with
   * the same id that the introducer forwards; then the Return carries the
   * capability as results.content. Calls pipelined on the Accept queue
   * until then. A refusal is a Return exception naming the reason.
   */
  private handleAccept(accept: WireAccept): void {
    const { thirdParty, net } = this.level3!;
    const id = accept.questionId;
    if (this.answers.has(id)) throw new ProtocolError(`Accept uses question ID ${id}, which is still in use`);
    const started = performance.now();
    const recipient = net.peer.id;
    const answer = new Answer(id);
    answer.kind = "accept";
    const pipeline = new ResponsePipeline();
    answer.pipeline = pipeline;
    this.answers.add(answer);
    const embargo = accept.embargo;
    if (embargo !== null && embargo.byteLength > MAX_EMBARGO_ID_BYTES) {
      const error = RpcError.failed(
        `refused Accept: its embargo ID is ${embargo.byteLength} bytes, over the ${MAX_EMBARGO_ID_BYTES} this vat takes (ids are random bytes, 16 from capmesh)`,
      );
      pipeline.fail(error);
      handoffLog.debug("refused accept", { recipient, answer: id, reason: error.message });
      this.sendExceptionReturn(answer, error);
      return;
    }
    this.acceptsWaiting.set(answer, pipeline);
    const completed = thirdParty
      .completeThirdParty<unknown>(net, accept.provision ?? emptyPayload().content)
      .then((value) => {
        if (!(value instanceof Provision)) throw RpcError.failed("refused Accept: its provision holds no capability of this vat");
        if (embargo === null) return value;
        const lifted = value.awaitEmbargo(embargo);
        if (value.isWaiting(embargo)) {
          handoffLog.debug("embargo waiting", { recipient, answer: id });
          return lifted.then(() => {
            handoffLog.debug("embargo lifted", { recipient, answer: id });
            return value;
          });
        }
        return lifted.then(() => value);
      });
    completed.then(
      (provision) => {
        if (!this.acceptsWaiting.delete(answer) || this.error || answer.finishReceived) return;
        let hook: CapHook;
        try {
          hook = provision.take();
        } catch (err) {
          const error = toRpcError(err);
          pipeline.fail(error);
          handoffLog.debug("refused accept", { recipient, answer: id, reason: error.message });
          this.sendExceptionReturn(answer, error);
          return;
        }
        // rpc.capnp Accept: the Return's results.content is the capability.
        const { message, content } = newPayloadMessage(64);
        capTableOf(message).push(hook);
        utils.setInterfacePointer(0, content);
        const response = new OwnedResponse(message, content);
        // Calls pipelined on the Accept go ahead of anything sent after the Return.
        pipeline.settle(response);
        this.sendResultsReturn(answer, response);
        handoffLog.debug("accepted", { recipient, answer: id, ms: Math.round(performance.now() - started) });
      },
      (err: unknown) => {
        if (!this.acceptsWaiting.delete(answer) || this.error) return;
        const error = toRpcError(err);
        pipeline.fail(error);
        handoffLog.debug("refused accept", { recipient, answer: id, reason: error.message });
        this.sendExceptionReturn(answer, error);
      },
    );
  }

  /**
   * The 3PH Disembargo (context.accept). From the introducer, targeting
   * promisedAnswer{a Provide's question ID}: lifts that provision's embargo
   * with this id (before or after the Accept carrying it). From a recipient,
   * targeting the vine (importedCap): forwarded to the host as introducer.
   */
  private handleThirdPartyDisembargo(disembargo: WireThirdPartyDisembargo): void {
    const promised = disembargo.target.promisedAnswer;
    if (!promised) {
      this.forwardToHost(disembargo.target.importedCap!, disembargo.embargoId);
      return;
    }
    const { questionId, transform } = promised;
    const answer = this.answers.get(questionId);
    if (!answer || answer.finishReceived) {
      throw new ProtocolError(`Disembargo accept targets answer ${questionId}, which is not in the answer table`);
    }
    if (answer.kind !== "provide" || !answer.provision) {
      throw new ProtocolError(`Disembargo accept targets answer ${questionId}, which is not a Provide`);
    }
    if (transform.length > 0) {
      throw new ProtocolError(`Disembargo accept targets a field of Provide ${questionId}; it must name the Provide itself (no transform)`);
    }
    const embargoId = disembargo.embargoId;
    // The id's bytes come from the recipient through the introducer: a bad
    // one is dropped rather than blamed on the introducer's connection. No
    // Accept can wait on it (an Accept with an oversized id is refused).
    if (embargoId.byteLength > MAX_EMBARGO_ID_BYTES || !answer.provision.lift(embargoId)) {
      handoffLog.debug("disembargo dropped", {
        conn: this.name,
        provide: questionId,
        reason: embargoId.byteLength > MAX_EMBARGO_ID_BYTES ? `embargo ID of ${embargoId.byteLength} bytes` : "too many embargo IDs for one provision",
      });
    }
  }

  /**
   * The introducer's part of the 3PH embargo (2.1 step 7, C++
   * handleDisembargo accept): the recipient's Disembargo must name a vine;
   * it goes on to the host with the same id. Calls the recipient made on
   * the vine before it were forwarded synchronously, so it travels behind them.
   */
  private forwardToHost(exportId: number, embargoId: Uint8Array): void {
    const entry = this.exports.get(exportId);
    if (!entry) throw new ProtocolError(`Disembargo accept targets export ${exportId}, which is not in the export table`);
    if (!entry.vine) {
      throw new ProtocolError(
        `Disembargo accept targets export ${exportId}, which is not a vine (it must name the vine of a thirdPartyHosted capability)`,
      );
    }
    if (embargoId.byteLength > MAX_EMBARGO_ID_BYTES) {
      throw new ProtocolError(
        `Disembargo accept carries an embargo ID of ${embargoId.byteLength} bytes, over the ${MAX_EMBARGO_ID_BYTES} this vat forwards (capmesh sends 16)`,
      );
    }
    if (!entry.vine.forwardDisembargo(embargoId)) {
      // The host link is gone (or the host refused the Provide): nothing to
      // forward to; the recipient's Accept fails at the host and it keeps the vine.
      handoffLog.debug("disembargo dropped", { conn: this.name, vine: exportId, reason: "the Provide or the host's connection is gone" });
    }
  }

  private handleCall(message: Message, call: WireCall): void {
    const id = call.questionId;
    if (this.answers.has(id)) throw new ProtocolError(`Call uses question ID ${id}, which is still in use`);
    const target = this.getMessageTarget(call.target, "Call");
    const sendResultsTo = call.sendResultsTo;
    const answer = new Answer(id);
    this.answers.add(answer);
    setCapTable(message, this.receiveCaps(call.params.capTable), this);
    const payload: Payload = { message, content: call.params.content };
    if (sendResultsTo === rpc.Call_SendResultsTo.THIRD_PARTY) {
      releaseCapTable(message);
      target.release();
      this.sendExceptionReturn(
        answer,
        RpcError.unimplemented("sendResultsTo.thirdParty (Level 3 three-party handoff) is not supported on this connection"),
      );
      return;
    }
    // capmesh's causes (sequential.ts): the target runs, or the call goes
    // on, on their behalf. Too many fails this call, not the connection.
    const causes = call.causes;
    if (typeof causes === "number") {
      releaseCapTable(message);
      target.release();
      this.sendExceptionReturn(
        answer,
        RpcError.failed(
          `refused ${methodLabel(call.interfaceId, call.methodId)}: the call carries ${causes} causes (turn tokens of the sequential calls ` +
            `it was made on behalf of), over the ${MAX_WIRE_CAUSES} a capmesh vat takes; a chain of sequential calls that deep ` +
            `through other vats is refused (the caller is not capmesh, or it is broken)`,
        ),
      );
      return;
    }
    let result: CallResult;
    try {
      const hints = new AnswerHints(this, answer, causes === null ? undefined : new RemoteCauses(causes));
      result = target.call(call.interfaceId, call.methodId, payload, hints);
    } finally {
      target.release();
    }
    answer.pipeline = result.pipeline;
    this.holdInbound(message, result.promise);
    // Forwarded by copying (a hub relaying a stream chunk): the params are done with.
    if (takeCopiedOut(message)) releaseInboundMessage(message);
    if (log.enabled) this.logCall("answer", id, call.interfaceId, call.methodId, result.promise);
    if (sendResultsTo === rpc.Call_SendResultsTo.YOURSELF) {
      // A tail call from the peer: the results stay here for the peer's
      // other question to take (Return.takeFromOtherQuestion).
      answer.redirected = result.promise;
      result.promise.then(
        (response) => {
          if (answer.finishReceived || this.error) {
            // Results a takeFromOtherQuestion took are its to release (handleReturn).
            if (!answer.resultsTaken) response.release();
            return;
          }
          answer.response = response;
          this.sendSimpleReturn(answer, (ret) => (ret.resultsSentElsewhere = true));
        },
        (err: unknown) => {
          if (answer.finishReceived || this.error) return;
          this.sendSimpleReturn(answer, (ret) => (ret.resultsSentElsewhere = true));
          log.debug("tail-called call failed", { error: describe(err) });
        },
      );
      return;
    }
    result.promise.then(
      (response) => this.sendResultsReturn(answer, response),
      (err: unknown) => this.sendExceptionReturn(answer, err),
    );
  }

  /**
   * Counts a peer's call until its work is done; past the limits, stops
   * reading from the peer (its writes back up in the socket) so a flood of
   * calls cannot grow our memory without bound.
   */
  private holdInbound(message: Message, done: Promise<unknown>): void {
    let bytes = 0;
    for (const segment of message._capnp.segments) bytes += segment.byteLength;
    this.inboundCalls++;
    this.inboundBytes += bytes;
    if (!this.readingPaused && (this.inboundCalls >= this.maxInboundCalls || this.inboundBytes >= this.maxInboundBytes)) {
      this.readingPaused = true;
      log.debug("pausing reads: too much inbound work", { conn: this.name, calls: this.inboundCalls, bytes: this.inboundBytes });
      this.stream.pauseReading();
    }
    // Inline arrows, not a named closure: under tsx (keepNames) every named
    // closure costs an Object.defineProperty, once per call here.
    done.then(
      () => this.endInbound(bytes),
      () => this.endInbound(bytes),
    );
  }

  private endInbound(bytes: number): void {
    this.inboundCalls--;
    this.inboundBytes -= bytes;
    if (this.readingPaused && this.inboundCalls < this.maxInboundCalls && this.inboundBytes < this.maxInboundBytes) {
      this.readingPaused = false;
      this.stream.resumeReading();
    }
  }

  /** Calls from the peer in progress (for tests and diagnostics). */
  get inboundInProgress(): { calls: number; bytes: number; paused: boolean } {
    return { calls: this.inboundCalls, bytes: this.inboundBytes, paused: this.readingPaused };
  }

  /**
   * A server answering `answer` tail-calls `request`. When the target lives
   * across this same connection, the peer gets the call with
   * sendResultsTo.yourself and our Return points at it, so the results never
   * travel back and forth (C++ RpcCallContext::directTailCall).
   */
  tailCall(answer: Answer, request: TailCallRequest, cause?: CauseScope): CallResult {
    const target = innermost(request.target);
    if (!isRemoteHookOf(target, this) || this.error || answer.returnSent || answer.finishReceived) {
      return request.target.call(request.interfaceId, request.methodId, request.params, {
        signal: answer.signal,
        cause,
      });
    }
    const address = target.target();
    if (!address) {
      return innermost(target).call(request.interfaceId, request.methodId, request.params, { signal: answer.signal, cause });
    }
    const call = newCall(address, request.interfaceId, request.methodId, 512, causeTokens(cause));
    this.copyPayload(request.params, call.content, call.message);
    return this.sendCall(call, undefined, answer);
  }

  /** A Return message for `answer` whose results the server fills in directly. */
  prepareReturn(answer: Answer): Payload {
    const envelope = newResultsReturn(answer.id);
    answer.prepared = envelope;
    return { message: envelope.message, content: envelope.content };
  }

  private sendResultsReturn(answer: Answer, response: Response): void {
    answer.settled = true;
    if (answer.finishReceived || answer.returnSent || this.error) {
      response.release();
      return;
    }
    let envelope = answer.prepared;
    answer.prepared = null;
    if (!envelope || envelope.message !== response.message) {
      // Results built elsewhere (a local promise, a forwarded call): copy
      // them in. The Return's cap table only borrows the response's caps.
      envelope = newResultsReturn(answer.id, responseBytes(response) + 128);
      try {
        copyPointer(response.content, envelope.content);
      } catch (err) {
        setCapTable(envelope.message, []);
        response.release();
        this.sendExceptionReturn(answer, RpcError.failed(`could not send results: ${describe(err)}`));
        return;
      }
    }
    // The response keeps its references for pipelining until Finish.
    let described: { descriptors: WireDescriptor[]; exports: number[] };
    try {
      described = this.describeAll(capTableOf(envelope.message));
    } catch (err) {
      // A capability that cannot be described (a cycle of promises the peer
      // closed through this very answer): the call fails, the rest goes on.
      if (envelope.message !== response.message) setCapTable(envelope.message, []);
      response.release();
      this.sendExceptionReturn(answer, RpcError.failed(`could not send results: ${describe(err)}`));
      return;
    }
    envelope.setCapTable(described.descriptors);
    answer.resultExports = described.exports;
    if (envelope.message !== response.message) setCapTable(envelope.message, []);
    answer.response = response;
    answer.returnSent = true;
    this.send(envelope.message);
  }

  private sendExceptionReturn(answer: Answer, err: unknown): void {
    if (answer.finishReceived || answer.returnSent || this.error) return;
    // Calls pipelined on a failed answer fail with its exception (a refused
    // Bootstrap has no other pipeline to say so).
    const error = toRpcError(err);
    answer.pipeline ??= { getPipelinedCap: () => new BrokenHook(error) };
    this.sendSimpleReturn(answer, (ret) => writeException(error, ret._initException()));
  }

  private sendSimpleReturn(answer: Answer, fill: (ret: rpc.Return) => void): void {
    const { message, root } = newRpcMessage();
    const ret = root._initReturn();
    ret.answerId = answer.id;
    ret.releaseParamCaps = false;
    fill(ret);
    answer.returnSent = true;
    answer.settled = true;
    this.send(message);
  }

  private getMessageTarget(target: WireTarget, what: string): CapHook {
    if (!target.promisedAnswer) {
      const id = target.importedCap;
      const entry = this.exports.get(id);
      if (!entry) throw new ProtocolError(`${what} targets export ${id}, which is not in the export table`);
      return entry.hook.addRef();
    }
    const { questionId: id, transform } = target.promisedAnswer;
    const answer = this.answers.get(id);
    if (!answer || answer.finishReceived) {
      throw new ProtocolError(`${what} targets answer ${id}, which is not in the answer table`);
    }
    if (!answer.pipeline) {
      return new BrokenHook(RpcError.failed("pipelined call on a result that has no capabilities"));
    }
    return answer.pipeline.getPipelinedCap(transform);
  }

  private handleReturn(message: Message, ret: WireReturn): void {
    const id = ret.answerId;
    const question = this.questions.get(id);
    if (!question) {
      if (this.provides.has(id)) throw new ProtocolError(`Return for Provide ${id}: a Provide never gets a Return (v2 rpc.capnp)`);
      throw new ProtocolError(`Return for question ${id}, which is not in the question table`);
    }
    if (!question.awaitingReturn) throw new ProtocolError(`second Return for question ${id}`);
    question.awaitingReturn = false;
    const paramExports = question.paramExports;
    question.paramExports = [];
    if (ret.releaseParamCaps) for (const e of paramExports) this.releaseExportOrThrow(e, 1);

    if (question.canceled) {
      // We already sent Finish with releaseResultCaps: ignore the results
      // (a takeFromOtherQuestion's stay with that answer until its Finish).
      if (question.finishSent) {
        this.questions.delete(id);
        this.refreshProcessHold();
      } else this.maybeFinish(question);
      return;
    }

    switch (ret.which) {
      case rpc.Return.RESULTS: {
        if (question.isTailCall) throw new ProtocolError(`Return for tail call ${id} must be resultsSentElsewhere`);
        const results = ret.results!;
        setCapTable(message, this.receiveCaps(results.capTable), this);
        question.fulfill(new OwnedResponse(message, results.content));
        break;
      }
      case rpc.Return.EXCEPTION:
        question.reject(exceptionFromWire(ret.exception!));
        break;
      case rpc.Return.CANCELED:
        throw new ProtocolError(`Return for question ${id} says canceled, but the call was not canceled`);
      case rpc.Return.RESULTS_SENT_ELSEWHERE: {
        if (!question.isTailCall) {
          throw new ProtocolError(`Return for question ${id} says resultsSentElsewhere, but it was not a tail call`);
        }
        const { message: empty, content } = emptyPayload();
        question.fulfill(new OwnedResponse(empty, content));
        break;
      }
      case rpc.Return.TAKE_FROM_OTHER_QUESTION: {
        const otherId = ret.takeFromOtherQuestion;
        const other = this.answers.get(otherId);
        if (!other || !other.redirected || other.resultsTaken) {
          throw new ProtocolError(
            `Return.takeFromOtherQuestion names answer ${otherId}, which did not use sendResultsTo.yourself`,
          );
        }
        other.resultsTaken = true;
        const take = (r: Response): Response => {
          // The other answer keeps its response for pipelining until its
          // Finish; this question's consumer gets its own copy and references.
          // If that Finish came first, the response is ours to release.
          const copy = emptyPayload();
          const table = capTableOf(copy.message);
          try {
            copyPointer(r.content, copy.content);
          } catch (err) {
            table.length = 0;
            if (r !== other.response) r.release();
            throw RpcError.failed(`could not take the results of question ${otherId}: ${describe(err)}`);
          }
          for (const hook of table) hook?.addRef();
          if (r !== other.response) r.release();
          return new OwnedResponse(copy.message, copy.content);
        };
        // Results already here are copied now, before a Finish can release them.
        let taken: Response | Promise<Response>;
        try {
          taken = other.response ? take(other.response) : other.redirected.then(take);
        } catch (err) {
          taken = Promise.reject(err);
        }
        question.fulfill(taken);
        break;
      }
      default:
        question.reject(
          RpcError.unimplemented(`Return variant ${ret.which} (Level 3 acceptFromThirdParty?) is not supported`),
        );
    }
    this.maybeFinish(question);
  }

  private handleFinish(finish: WireFinish): void {
    const id = finish.questionId;
    const answer = this.answers.get(id);
    if (!answer || answer.finishReceived) throw new ProtocolError(`Finish for question ${id}, which is not in the answer table`);
    answer.finishReceived = true;
    if (answer.kind === "provide") {
      // A Provide never gets a Return (v2 rpc.capnp): its Finish says the
      // recipient let go of the vine, so the provision ends here.
      this.answers.delete(id);
      answer.pipeline = null;
      answer.provision?.close();
      answer.provision = null;
      return;
    }
    if (answer.kind === "accept") {
      // Finished before the Return: the Accept is canceled (answered below).
      this.acceptsWaiting.get(answer)?.fail(new RpcError("failed", "the Accept was canceled by the recipient"));
      this.acceptsWaiting.delete(answer);
    }
    const exported = answer.resultExports;
    answer.resultExports = [];
    if (finish.releaseResultCaps) for (const e of exported) this.releaseExportOrThrow(e, 1);
    if (!answer.returnSent) {
      // Canceled by the caller: the server's signal fires, and the Return
      // says so now (C++ sends `canceled` too) instead of waiting.
      answer.cancel(new RpcError("failed", "call canceled by the caller"));
      const { message, root } = newRpcMessage();
      const ret = root._initReturn();
      ret.answerId = id;
      ret.releaseParamCaps = false;
      if (answer.redirected) ret.resultsSentElsewhere = true;
      else ret.canceled = true;
      answer.returnSent = true;
      this.send(message);
    }
    this.answers.delete(id);
    answer.pipeline = null;
    answer.response?.release();
    answer.response = null;
  }

  private handleResolve(resolve: rpc.Resolve): void {
    const id = resolve.promiseId;
    let replacement: CapHook;
    switch (resolve.which()) {
      case rpc.Resolve.CAP: {
        const cap = this.receiveCap(descriptorFrom(resolve.cap));
        if (!cap) throw new ProtocolError(`Resolve for promise ${id} contains CapDescriptor.none`);
        replacement = cap;
        break;
      }
      case rpc.Resolve.EXCEPTION:
        replacement = new BrokenHook(readException(resolve.exception));
        break;
      default:
        throw new ProtocolError(`Resolve for promise ${id} has an unknown kind`);
    }
    const entry = this.imports.get(id);
    if (!entry) {
      replacement.release();
      if (this.imports.wasResolved(id)) throw new ProtocolError(`second Resolve for promise ${id}`);
      // We released the promise before the Resolve crossed our Release.
      return;
    }
    if (!entry.isPromise) {
      replacement.release();
      throw new ProtocolError(`Resolve for import ${id}, which is not a promise`);
    }
    if (entry.resolved) {
      replacement.release();
      throw new ProtocolError(`second Resolve for promise ${id}`);
    }
    if (entry.promise && innermost(replacement, entry.promise) === entry.promise) {
      // rpc.capnp Resolve replaces the promise with `cap`: a cap that is (or
      // settles into) the promise itself would make a cycle with no end.
      replacement.release();
      throw new ProtocolError(`Resolve for promise ${id} resolves to itself`);
    }
    entry.resolved = true;
    this.imports.markResolved(id);
    if (entry.promise) entry.promise.resolve(replacement);
    else replacement.release();
  }

  private releaseExportOrThrow(id: number, count: number): void {
    const problem = this.exports.release(id, count);
    if (problem) throw new ProtocolError(problem);
    this.refreshProcessHold();
  }

  private handleDisembargo(disembargo: rpc.Disembargo): void {
    const context = disembargo.context;
    switch (context.which()) {
      case rpc.Disembargo_Context.SENDER_LOOPBACK: {
        let target = this.getMessageTarget(targetFrom(disembargo.target), "Disembargo");
        const resolvedTarget = innermost(target);
        if (!isRemoteHookOf(resolvedTarget, this)) {
          target.release();
          throw new ProtocolError("Disembargo senderLoopback targets an object that does not point back to the sender");
        }
        const embargoId = context.senderLoopback;
        // Every call toward this target that we received before the
        // Disembargo has already been forwarded (forwarding is synchronous),
        // so the echo can go out right behind them.
        const { message, root } = newRpcMessage();
        const echo = root._initDisembargo();
        const address = resolvedTarget.target();
        target.release();
        target = resolvedTarget;
        if (address) targetInto(address, echo._initTarget());
        else {
          throw new ProtocolError(
            "Disembargo senderLoopback targets a promise that was never the subject of a Resolve",
          );
        }
        echo.context.receiverLoopback = embargoId;
        this.send(message);
        return;
      }
      case rpc.Disembargo_Context.RECEIVER_LOOPBACK: {
        const id = context.receiverLoopback;
        if (!this.embargoes.lift(id)) {
          throw new ProtocolError(`Disembargo receiverLoopback names embargo ${id}, which we never started`);
        }
        return;
      }
      default: {
        // accept / provide belong to Level 3.
        this.send(newUnimplemented(disembargo.segment.message));
      }
    }
  }

  private handleAbort(exception: rpc.Exception): void {
    const e = readException(exception);
    this.disconnect(new RpcError("disconnected", `${this.name} aborted the connection: ${e.message}`, true));
  }

  private handleUnimplemented(echoed: rpc.Message): void {
    switch (echoed.which()) {
      case rpc.Message.RESOLVE: {
        // The peer cannot take promises: drop the reference the Resolve gave.
        const resolve = echoed.resolve;
        if (resolve._isCap) {
          const cap = resolve.cap;
          if (cap._isSenderHosted) this.releaseExportOrThrow(cap.senderHosted, 1);
          else if (cap._isSenderPromise) this.releaseExportOrThrow(cap.senderPromise, 1);
          // Nor will it hold the vine of a handoff (C++ releases it too).
          else if (cap._isThirdPartyHosted) this.releaseExportOrThrow(cap.thirdPartyHosted.vineId, 1);
        }
        return;
      }
      case rpc.Message.PROVIDE: {
        // The host does not do Level 3 after all: the Provide is closed here
        // (no Finish: it made no answer); the recipient keeps using the vine.
        const id = echoed.provide.questionId;
        if (this.provides.delete(id)) handoffLog.debug("provide refused", { conn: this.name, provide: id, reason: "the host echoed it as unimplemented" });
        return;
      }
      case rpc.Message.CALL:
      case rpc.Message.BOOTSTRAP:
      // An Accept to a vat that does not do Level 3 after all: the question
      // fails, and the recipient keeps using the vine.
      case rpc.Message.ACCEPT: {
        const which = echoed.which();
        const id =
          which === rpc.Message.CALL ? echoed.call.questionId : which === rpc.Message.BOOTSTRAP ? echoed.bootstrap.questionId : echoed.accept.questionId;
        const question = this.questions.get(id);
        if (!question || !question.awaitingReturn) return;
        question.awaitingReturn = false;
        question.finishSent = true; // the peer never made an answer to finish
        // The peer never took the capabilities in the params: drop them.
        const exported = question.paramExports;
        question.paramExports = [];
        for (const e of exported) this.releaseExportOrThrow(e, 1);
        this.questions.delete(id);
        this.refreshProcessHold();
        question.reject(
          RpcError.unimplemented(
            which === rpc.Message.ACCEPT
              ? `${this.name} does not implement Level 3 (it echoed the Accept as unimplemented)`
              : `${this.name} does not implement this request`,
          ),
        );
        return;
      }
      case rpc.Message.DISEMBARGO: {
        const d = echoed.disembargo;
        if (d.context._isSenderLoopback) this.embargoes.lift(d.context.senderLoopback);
        return;
      }
      default:
        log.debug("peer did not implement a message we sent", { conn: this.name, which: echoed.which() });
    }
  }

  // ---------------------------------------------------------------------
  // Capability descriptors

  private receiveCaps(descriptors: readonly WireDescriptor[]): CapTable {
    const table: CapTable = new Array(descriptors.length);
    for (let i = 0; i < descriptors.length; i++) table[i] = this.receiveCap(descriptors[i]!);
    return table;
  }

  private receiveCap(descriptor: WireDescriptor): CapHook | null {
    switch (descriptor.kind) {
      case "none":
        return null;
      case "senderHosted":
        return this.importCap(descriptor.id, false);
      case "senderPromise":
        return this.importCap(descriptor.id, true);
      case "receiverHosted": {
        const entry = this.exports.get(descriptor.id);
        if (!entry) return new BrokenHook(RpcError.failed(`receiverHosted names unknown export ${descriptor.id}`));
        return this.reflect(entry.hook.addRef());
      }
      case "receiverAnswer": {
        const answer = this.answers.get(descriptor.answer.questionId);
        if (!answer || !answer.pipeline) return new BrokenHook(RpcError.failed("receiverAnswer names an unknown answer"));
        return this.reflect(answer.pipeline.getPipelinedCap(descriptor.answer.transform));
      }
      case "thirdPartyHosted":
        return this.receiveThirdParty(descriptor.vineId, descriptor.contact ?? null);
    }
  }

  /**
   * A capability hosted by a third vat (2.1 step 2). The vine is imported
   * first, so it is released whatever happens. With Level 3 on this vat and
   * an authenticated introducer the capability is picked up from its host
   * (ThirdPartyHook); otherwise the vine is all there is (Level 1).
   */
  private receiveThirdParty(vineId: number, contact: Pointer | null): CapHook {
    const vine = this.importCap(vineId, false);
    const vat = this.options.vat;
    if (!this.level3 || !vat || !contact || !this.level3.net.peer.authenticated) return vine;
    const copy = newMessage(256);
    const slot = new Pointer(copy.getSegment(0), 0);
    try {
      copyPointer(contact, slot, { budgetWords: MAX_CONTACT_BYTES / 8 });
    } catch (err) {
      handoffLog.debug("fell back", { via: this.level3.net.peer.id, vine: vineId, reason: `the contact could not be copied: ${describe(err)}` });
      return vine;
    }
    return new ThirdPartyHook(this, vine, vineId, slot, { thirdParty: this.level3.thirdParty, net: this.level3.net, vat });
  }

  private reflect(hook: CapHook): CapHook {
    return hook.brand === this ? new ReflectedHook(hook) : hook;
  }

  private importCap(id: number, isPromise: boolean): CapHook {
    const entry = this.imports.receive(id);
    entry.isPromise ||= isPromise;
    let importHook: ImportHook;
    if (entry.hook) importHook = entry.hook.addRef();
    else importHook = entry.hook = new ImportHook(this, id);
    if (!isPromise) return importHook;
    if (entry.promise) {
      importHook.release();
      return entry.promise.addRef();
    }
    if (entry.resolved) return importHook;
    const promise = new RemotePromiseHook(this, importHook, id);
    entry.promise = promise;
    return promise;
  }

  // ---------------------------------------------------------------------
  // Shutdown

  /** Sends Abort naming the fault, then closes. The process carries on. */
  abort(error: RpcError): void {
    if (this.error) return;
    log.warn("aborting connection", { conn: this.name, reason: error.message });
    const { message, root } = newRpcMessage();
    writeException(error, root._initAbort());
    this.stream.send(message);
    this.disconnect(error);
  }

  private disconnect(error: RpcError): void {
    if (this.error) return;
    this.error = error;
    log.debug("disconnected", { conn: this.name, reason: error.message });
    const broken = error.type === "disconnected" ? error : new RpcError("disconnected", error.message, error.remote);
    const questions = [...this.questions.entries()];
    this.questions.clear();
    for (const [, q] of questions) {
      if (q.finishSent && !q.awaitingReturn) continue; // returned, its Finish queued (maybeFinish)
      q.awaitingReturn = false;
      q.finishSent = true;
      q.reject(broken);
    }
    const answers = [...this.answers.values()];
    this.answers.clear();
    for (const a of answers) {
      a.cancel(broken);
      a.pipeline = null;
      a.response?.release();
      a.response = null;
      // Provisions introduced over this connection end: an Accept waiting on
      // one's embargo fails with `disconnected`.
      a.provision?.close();
      a.provision = null;
    }
    // Accepts from the peer that were still waiting: nobody will take their Return.
    const waiting = [...this.acceptsWaiting.values()];
    this.acceptsWaiting.clear();
    for (const pipeline of waiting) pipeline.fail(broken);
    // Provides we sent end with the connection (their vines go on, broken).
    this.provides.clear();
    this.exports.clear();
    const imports = [...this.imports.values()];
    this.imports.clear();
    for (const entry of imports) entry.promise?.resolve(new BrokenHook(broken));
    this.embargoes.liftAll(broken);
    this.stream.close(error.type === "disconnected" ? undefined : error);
    this.resolveClosed(broken);
    for (const listener of this.closeListeners) listener(broken);
    this.closeListeners.clear();
  }

  /**
   * Buffer bytes the transport keeps for this connection between messages
   * (see connectionBuffers in introspect.ts); 0 where it does not say.
   */
  bufferBytes(): { send: number; receive: number } {
    return { send: this.stream.sendBufferBytes ?? 0, receive: this.stream.receiveBufferBytes ?? 0 };
  }

  /**
   * Counts for tests and diagnostics: everything must drain to zero. The
   * Level 3 counts (host and introducer) are there only on a connection with Level 3.
   */
  stats(): {
    questions: number;
    answers: number;
    imports: number;
    exports: number;
    embargoes: number;
    /** Level 3 host: Provides from the peer not yet finished (also counted in answers). */
    provisions?: number;
    /** Level 3 host: Accepts from the peer waiting for their Provide or embargo (also counted in answers). */
    acceptsWaiting?: number;
    /** Level 3 host: embargo ids held by the provisions of this connection's Provides. */
    thirdPartyEmbargoes?: number;
    /** Level 3 introducer: Provides sent to the peer (the host) and not yet finished. */
    provides?: number;
    /** Level 3 introducer: vines exported to the peer (the recipient) and not yet released (also counted in exports). */
    vines?: number;
  } {
    const counts = {
      questions: this.questions.size,
      answers: this.answers.size,
      imports: this.imports.size,
      exports: this.exports.size,
      embargoes: this.embargoes.size,
    };
    if (!this.level3) return counts;
    let provisions = 0;
    let thirdPartyEmbargoes = 0;
    for (const answer of this.answers.values()) {
      if (!answer.provision) continue;
      provisions++;
      thirdPartyEmbargoes += answer.provision.embargoCount;
    }
    return {
      ...counts,
      provisions,
      acceptsWaiting: this.acceptsWaiting.size,
      thirdPartyEmbargoes,
      provides: this.provides.size,
      vines: this.exports.vineCount,
    };
  }
}

/** A Call being built in its wire message (a class: no closure per call). */
class RemoteOutgoingCall implements OutgoingCall {
  constructor(
    private readonly conn: RpcConnection,
    private readonly call: OutgoingWireCall,
  ) {}
  get message(): Message {
    return this.call.message;
  }
  get content(): Pointer {
    return this.call.content;
  }
  send(hints?: CallHints): CallResult {
    return this.conn.sendCall(this.call, hints);
  }
}

/** How a server delivering `answer` reaches back into the connection. */
class AnswerHints implements CallHints {
  constructor(
    private readonly conn: RpcConnection,
    private readonly answer: Answer,
    /** The causes the Call carried (sequential.ts), if any. */
    readonly cause: RemoteCauses | undefined,
  ) {}
  get signal(): AbortSignal {
    return this.answer.signal;
  }
  get peer(): unknown {
    return this.conn.peer;
  }
  get answering(): boolean {
    return true;
  }
  get origin(): object {
    return this.conn;
  }
  tailCall(request: TailCallRequest): CallResult {
    return this.conn.tailCall(this.answer, request, this.cause);
  }
  allocResults(): Payload {
    return this.conn.prepareReturn(this.answer);
  }
}

/** A Provide has no results: a call pipelined on one fails (C++ says so too). */
const PROVIDE_PIPELINE = {
  getPipelinedCap: (): CapHook =>
    new BrokenHook(RpcError.failed("pipelined call on a Provide: a Provide has no results (rpc.capnp Provide never gets a Return)")),
};

/** A new rpc.capnp Message; `bytes` sizes its first segment (it grows if needed). */
function newRpcMessage(bytes = 128): { message: Message; root: rpc.Message } {
  const message = newMessage(bytes);
  const root = message.initRoot(rpc.Message);
  return { message, root };
}

/** A framed rpc Abort, for turning a peer away before any connection exists. */
export function abortFrame(error: RpcError): Uint8Array {
  const { message, root } = newRpcMessage();
  writeException(error, root._initAbort());
  return frameBytes(message);
}

function responseBytes(response: Response): number {
  let total = 0;
  for (const segment of response.message._capnp.segments) total += segment.byteLength;
  return total;
}

function emptyPayload(): { message: Message; content: Pointer } {
  const message = newMessage(64);
  setCapTable(message, []);
  return { message, content: new Pointer(message.getSegment(0), 0) };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}


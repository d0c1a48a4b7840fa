// rpc.capnp Level 3 (three-party handoff), the recipient's side
// (docs/design/level3.md 2.1 steps 2-4 and 9, 2.7): a capability received as
// thirdPartyHosted. It stands for the capability while this vat picks it up
// from its host: dial (or reuse) the host, send Accept, and on its Return
// switch to the host's export and release the vine. Calls made meanwhile
// wait here, so a failed pickup loses nothing: they go through the vine.
import type { Pointer } from "capnp-es";
import { RpcError, toRpcError } from "./errors.js";
import { RefCounted, type CallHints, type CallResult, type CapHook, type OutgoingCall, type Payload } from "./hook.js";
import { capFromResponse, QueuedHook } from "./local.js";
import type { RpcConnection } from "./connection.js";
import type { Question } from "./questions.js";
import type { NetworkConnection, ThirdPartyNetwork, VatContext } from "./vat-network.js";
import { logger } from "../log.js";

const handoffLog = logger("capmesh:handoff");

/** Where a handed-off capability's calls go: straight to its host, or through the introducer's vine. */
export type HandoffPath = "direct" | "vine";

/** What the recipient needs of the connection the descriptor came over. */
export interface RecipientContext {
  readonly thirdParty: ThirdPartyNetwork;
  /** The introducer's network connection (the contact was received over it). */
  readonly net: NetworkConnection;
  readonly vat: VatContext;
}

/**
 * The recipient's handle on a thirdPartyHosted capability (C++
 * DeferredThirdPartyClient, but accepting eagerly). Brand null: until it
 * settles it reads as a local promise everywhere; once settled, resolved()
 * is the host's import (direct) or the vine (fallback).
 */
export class ThirdPartyHook extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;
  state: "deferred" | "accepting" | "direct" | "fallback" = "deferred";
  /** Why the vine is used (fallback), for introspection and logs. */
  reason: string | null = null;
  /** A promise that had carried calls resolved to this: the Accept carries an embargo (2.3). */
  private needEmbargo = false;
  /** Calls made before the capability settles, in order. */
  private readonly queue = new QueuedHook();
  private final: CapHook | null = null;
  /** The vine import (ours until settled: then released, or it becomes `final`). */
  private vine: CapHook | null;
  private readonly dial = new AbortController();
  private accept: Question | null = null;
  private waiters: ((hook: CapHook) => void)[] = [];
  /** The host's id once its connection is found (for logs). */
  private host: string | null = null;
  /** Stops watching the introducer's connection (while accepting). */
  private unwatch: (() => void) | null = null;

  constructor(
    /** The introducer's connection: the vine and the contact came over it. */
    readonly via: RpcConnection,
    /** Takes ownership of the vine's import. */
    vine: CapHook,
    readonly vineId: number,
    /** ThirdPartyToContact, copied out of the message it came in. */
    private readonly contact: Pointer,
    private readonly context: RecipientContext,
  ) {
    super();
    this.vine = vine;
    context.vat.handoffs.pending++;
    // Eager accept (design 2.7), after the Return/Resolve that carried the
    // descriptor has run: needEmbargo is known by then.
    queueMicrotask(() => this.start());
  }

  /** The introducer's id (for logs). */
  private get introducer(): string {
    return this.context.net.peer.id;
  }

  /** True until the capability is settled (direct or through the vine). */
  get pending(): boolean {
    return this.final === null && !this.isReleased;
  }

  /** The path once settled; null while pending. */
  get path(): HandoffPath | null {
    if (this.state === "direct") return "direct";
    if (this.state === "fallback") return "vine";
    return null;
  }

  /**
   * A promise of ours resolved to this capability (C++
   * promiseResolvedToThis); `receivedCall`: it had carried calls, which are
   * still on their way to the host through the introducer.
   */
  noteResolvedFromPromise(receivedCall: boolean): void {
    if (receivedCall && this.state === "deferred") this.needEmbargo = true;
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    return (this.final ?? this.queue).call(interfaceId, methodId, params, hints);
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    return (this.final ?? this.queue).newCall(interfaceId, methodId);
  }

  resolved(): CapHook | null {
    return this.final;
  }

  whenMoreResolved(): Promise<CapHook> | null {
    if (this.final) return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private start(): void {
    if (!this.pending) return;
    if (this.via.error) {
      this.fallBack(`the introducer's connection closed before the handoff began: ${this.via.error.message}`);
      return;
    }
    // The 3PH embargo (2.3): calls made on the promise went to the
    // introducer, which passes them on to the host. The Disembargo goes to
    // the vine behind them, before we even dial; the host holds our Accept's
    // Return (and so every call queued here) until it arrives.
    let embargo: Uint8Array | null = null;
    if (this.needEmbargo && !this.context.vat._unsafeNoEmbargo) {
      embargo = this.context.thirdParty.generateEmbargoId();
      try {
        this.via.sendThirdPartyDisembargo(this.vineId, embargo);
      } catch (err) {
        this.fallBack(`could not send the Disembargo to the introducer: ${toRpcError(err).message}`);
        return;
      }
    }
    this.state = "accepting";
    // The introducer's connection closing before our Accept is out ends the
    // pickup at once: the host drops the provision with it, so the Accept
    // could only be refused, and the calls waiting here would wait for the
    // dial. (Once the Accept is out, its Return decides.)
    this.unwatch = this.via.onClose((error) => {
      if (this.pending && this.accept === null) this.fallBack(`the introducer's connection closed during the handoff: ${error.message}`);
    });
    const started = performance.now();
    this.context.thirdParty.connectToIntroduced(this.context.net, this.contact, this.dial.signal).then(
      (found) => {
        if (!this.pending) return;
        if (found === "self") {
          this.fallBack("the contact names this vat itself");
          return;
        }
        let host: RpcConnection;
        let question: Question;
        try {
          host = this.context.vat.connectionFor(found.connection);
          question = host.sendAccept(found.writeCompletion, embargo);
        } catch (err) {
          this.fallBack(`could not send the Accept to the host: ${toRpcError(err).message}`);
          return;
        }
        this.accept = question;
        this.host = found.connection.peer.id;
        if (handoffLog.enabled) handoffLog.debug("accepting", { host: this.host, via: this.introducer, vine: this.vineId, embargo: embargo !== null });
        question.promise.then(
          (response) => {
            this.accept = null;
            const cap = capFromResponse(response, []);
            question.forgetResponse();
            response.release();
            if (!this.pending) {
              cap.release();
              return;
            }
            if (cap.brokenReason) {
              const why = cap.brokenReason.message;
              cap.release();
              this.fallBack(`the Accept's Return held no capability: ${why}`);
              return;
            }
            if (handoffLog.enabled) {
              // ms: from the start of the pickup (dial included) to the Accept's Return.
              handoffLog.debug("accepted", { host: this.host, via: this.introducer, ms: Math.round(performance.now() - started) });
            }
            this.settle(cap, "direct", null);
          },
          (err: unknown) => {
            this.accept = null;
            if (this.pending) this.fallBack(`the host refused the Accept: ${toRpcError(err).message}`);
          },
        );
      },
      (err: unknown) => {
        if (this.pending) this.fallBack(`could not reach the host: ${toRpcError(err).message}`);
      },
    );
  }

  /** Uses the vine from now on (it stays held); queued calls go through it in order. */
  private fallBack(reason: string): void {
    const vine = this.vine!;
    this.vine = null;
    if (handoffLog.enabled) {
      handoffLog.debug("fell back", { via: this.introducer, ...(this.host ? { host: this.host } : {}), vine: this.vineId, reason });
    }
    this.settle(vine, "fallback", reason);
  }

  /** Takes ownership of `cap`. Queued calls go first, then waiters learn the final hook, then the vine goes. */
  private settle(cap: CapHook, state: "direct" | "fallback", reason: string | null): void {
    this.dial.abort();
    this.unwatch?.();
    this.unwatch = null;
    this.final = cap;
    this.state = state;
    this.reason = reason;
    const handoffs = this.context.vat.handoffs;
    handoffs.pending--;
    if (state === "direct") handoffs.accepted++;
    else handoffs.fellBack++;
    this.queue.resolve(cap.addRef());
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w(cap);
    // Released after the queued calls went out on the direct path: the
    // introducer then Finishes the Provide (2.1 step 9).
    const vine = this.vine;
    this.vine = null;
    vine?.release();
  }

  protected dispose(): void {
    if (this.final) {
      const final = this.final;
      this.final = null;
      this.queue.release();
      final.release();
      return;
    }
    // Released before settling: stop the dial, Finish the Accept if sent;
    // calls already made still reach the capability, through the vine.
    this.context.vat.handoffs.pending--;
    this.dial.abort();
    this.unwatch?.();
    this.unwatch = null;
    const accept = this.accept;
    this.accept = null;
    accept?.cancel(new RpcError("failed", "the handed-off capability was released before the Accept returned"));
    const vine = this.vine;
    this.vine = null;
    if (vine) this.queue.resolve(vine);
    this.queue.release();
    for (const w of this.waiters.splice(0)) w(vine ?? this.queue);
  }
}

// The question table: calls (and bootstraps) we sent, by our question ID.
// An entry lives until both the Return has arrived and we have sent Finish
// (rpc.capnp: only then may the ID be reused).
import { RpcError } from "./errors.js";
import {
  type Cancelable,
  BrokenHook,
  RefCounted,
  type CallHints,
  type CallResult,
  type CapHook,
  type OutgoingCall,
  type Payload,
  type PipelineSource,
  type Response,
} from "./hook.js";
import type { RpcConnection } from "./connection.js";
import { remoteCall, type RemoteHook } from "./remote-hook.js";
import { RemotePromiseHook } from "./remote-promise.js";
import type { WireDescriptor, WireTarget } from "./wire.js";
import { capFromResponse } from "./local.js";

export class Question implements PipelineSource, Cancelable {
  id = -1;
  awaitingReturn = true;
  finishSent = false;
  /** The caller gave up (AbortSignal): results will be ignored. */
  canceled = false;
  /** Set for `sendResultsTo.yourself` calls we made. */
  isTailCall = false;
  /** Live PipelineHooks naming this question: Finish waits for them (C++ QuestionRef). */
  pipelineRefs = 0;
  /** Exports written into the params: released if the Return says releaseParamCaps. */
  paramExports: number[] = [];
  /** Pipelined promise caps not yet resolved by the Return. */
  private pending: { ops: readonly number[]; hook: RemotePromiseHook }[] = [];
  private response: Response | null = null;
  private error: RpcError | null = null;
  readonly promise: Promise<Response>;
  private resolvePromise!: (r: Response | Promise<Response>) => void;
  private rejectPromise!: (e: RpcError) => void;

  constructor(readonly conn: RpcConnection) {
    this.promise = new Promise<Response>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    // A caller that never awaits must not produce an unhandled rejection.
    this.promise.catch(() => {});
  }

  /** The caller gave up on the call (disposed, timed out, aborted): Finish goes out. */
  cancel(reason: RpcError): void {
    this.conn.cancelQuestion(this, reason);
  }

  /**
   * The caller dropped the promise. If nothing else pipelines on the call
   * (every pipelined promise we hold is held by us alone), it is canceled
   * now; otherwise it runs on for those who do, and its results are released
   * when they arrive.
   */
  abandon(reason: RpcError): void {
    if (!this.awaitingReturn || this.canceled) return;
    const ours = this.pending.length;
    const external = this.pipelineRefs > ours || this.pending.some((p) => p.hook.refCount > 1);
    if (!external) this.conn.cancelQuestion(this, reason);
  }

  getPipelinedCap(ops: readonly number[]): CapHook {
    if (this.error) return new BrokenHook(this.error);
    if (this.response) return capFromResponse(this.response, ops);
    if (this.finishSent) return new BrokenHook(RpcError.failed("call was canceled"));
    const hook = new RemotePromiseHook(this.conn, new PipelineHook(this.conn, this, ops), null);
    this.pending.push({ ops, hook: hook.addRef() });
    return hook;
  }

  /** The Return brought results: resolve pipelines first (synchronously), then the caller. */
  fulfill(response: Response | Promise<Response>): void {
    if (this.isTailCall) {
      // The results went elsewhere: pipelined calls keep going to the
      // peer's answer until we Finish (C++ leaves tail pipelines unresolved).
      for (const p of this.pending) p.hook.release();
      this.pending = [];
    } else if (!(response instanceof Promise)) {
      this.response = response;
      const pending = this.pending;
      this.pending = [];
      for (const p of pending) {
        p.hook.resolve(capFromResponse(response, p.ops));
        p.hook.release();
      }
    } else {
      // takeFromOtherQuestion: results come from a local answer later.
      const pending = this.pending;
      this.pending = [];
      response.then(
        (r) => {
          for (const p of pending) {
            p.hook.resolve(capFromResponse(r, p.ops));
            p.hook.release();
          }
        },
        (e: unknown) => {
          for (const p of pending) {
            p.hook.resolve(new BrokenHook(e instanceof RpcError ? e : RpcError.failed(String(e))));
            p.hook.release();
          }
        },
      );
    }
    this.resolvePromise(response);
  }

  reject(error: RpcError): void {
    this.error = error;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      p.hook.resolve(new BrokenHook(error));
      p.hook.release();
    }
    this.rejectPromise(error);
  }

  /** Our consumer released the response: later pipelining must not touch it. */
  forgetResponse(): void {
    this.response = null;
  }
}

/** Calls on a promised answer, pipelined before it returns (C++'s PipelineClient). */
export class PipelineHook extends RefCounted implements RemoteHook {
  readonly brokenReason = null;
  constructor(
    readonly conn: RpcConnection,
    readonly question: Question,
    readonly ops: readonly number[],
  ) {
    super();
    question.pipelineRefs++;
  }

  get brand(): object {
    return this.conn;
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    if (this.conn.error) return new BrokenHook(this.conn.error).call(interfaceId, methodId, params);
    return remoteCall(this, interfaceId, methodId, params, hints);
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    if (this.conn.error) return new BrokenHook(this.conn.error).newCall(interfaceId, methodId);
    return this.conn.newRemoteCall(this, interfaceId, methodId);
  }

  target(): WireTarget {
    return { promisedAnswer: { questionId: this.question.id, transform: this.ops } };
  }

  descriptor(): WireDescriptor {
    return { kind: "receiverAnswer", answer: { questionId: this.question.id, transform: this.ops } };
  }

  resolved(): CapHook | null {
    return null;
  }
  whenMoreResolved(): Promise<CapHook> | null {
    return null;
  }
  protected dispose(): void {
    this.question.pipelineRefs--;
    this.conn.maybeFinish(this.question);
  }
}

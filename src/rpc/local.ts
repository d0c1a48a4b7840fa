// Hooks for capabilities that live in this vat: server objects, and local
// promises that queue calls until they know their target (C++'s
// LocalClient and QueuedClient).
import { RpcError, canceledBy, toRpcError } from "./errors.js";
import { methodLabel } from "./registry.js";
import {
  BrokenHook,
  localOutgoingCall,
  RefCounted,
  releasePayload,
  type CallHints,
  type CallResult,
  type CapHook,
  type OutgoingCall,
  type Payload,
  type PipelineSource,
  type Response,
  type TailCallRequest,
  type Cancelable,
  isTailCall,
  timedOut,
} from "./hook.js";
import { badCapIndex, capTableOf, releaseCapTable } from "./payload.js";
import { capIndexAt } from "../codec/runtime.js";
import { causeOf, inSequentialCall, outsideSequentialCalls, runInScope, type CallQueue } from "./sequential.js";

/** What a server object looks like to the engine (typed.ts adapts user classes). */
export interface ServerDispatch {
  /** Runs one call; resolves to the results, owned by the caller. */
  dispatch(interfaceId: bigint, methodId: number, params: Payload, ctx: ServerCallContext): Promise<Response | TailCallRequest>;
  /** The last reference to the capability was released. */
  released?(): void;
  /** For diagnostics. */
  readonly name: string;
}

/** What the engine tells a server about one call (the caller's hints). */
export type ServerCallContext = CallHints;

export const neverAborted: AbortSignal = new AbortController().signal;

/** A capability implemented by a server object in this vat. */
export class LocalServerHook extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;

  /**
   * Set for a sequential capability (an actor): its calls run one at a
   * time, in arrival order (sequential.ts). Several hooks may share one
   * queue (a plugin's `sequential: true`). Assigned in the constructor,
   * not as a field (see RefCounted.refs).
   */
  declare sequential: CallQueue | null;

  constructor(
    readonly server: ServerDispatch,
    sequential: CallQueue | null = null,
  ) {
    super();
    this.sequential = sequential;
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    const pipeline = new ResponsePipeline();
    // The call keeps the object alive until it completes, even if the
    // caller drops its reference right after calling.
    this.addRef();
    if (hints?.answering) {
      // A peer's call: its Finish cancels it, through hints.signal.
      return { promise: this.deliver(interfaceId, methodId, params, hints, hints, pipeline), pipeline };
    }
    const local = new LocalCall(hints, interfaceId, methodId);
    const promise = local.settleWith(this.deliver(interfaceId, methodId, params, local, hints, pipeline));
    return { promise, pipeline, canceler: local };
  }

  private async deliver(
    interfaceId: bigint,
    methodId: number,
    params: Payload,
    ctx: ServerCallContext,
    hints: CallHints | undefined,
    pipeline: ResponsePipeline,
  ): Promise<Response> {
    // A sequential capability admits the call now, in the order calls are
    // made, and checks it against what the call is made on behalf of (its
    // caller's context, or the causes a peer's call carried: sequential.ts).
    const cause = this.sequential === null && hints?.cause === undefined ? undefined : causeOf(hints);
    const turn = this.sequential?.admit(methodLabel(interfaceId, methodId), cause) ?? null;
    // Deliver on a later microtask: a call never runs inside its caller's
    // stack, and calls made in order are delivered in order (E-order).
    await undefined;
    try {
      let out: Response | TailCallRequest;
      if (turn === null) {
        // A call with a cause given (a peer's call that carried causes, one
        // queued on a promise) runs inside it: what its code calls carries it on.
        out = await (cause !== undefined
          ? runInScope(cause, () => this.server.dispatch(interfaceId, methodId, params, ctx))
          : hints?.answering && inSequentialCall()
            ? outsideSequentialCalls(() => this.server.dispatch(interfaceId, methodId, params, ctx))
            : this.server.dispatch(interfaceId, methodId, params, ctx));
      } else if (turn instanceof RpcError) {
        throw turn;
      } else {
        out = await turn.run(() => this.server.dispatch(interfaceId, methodId, params, ctx), hints?.answering ? undefined : ctx.signal);
      }
      if (!isTailCall(out)) {
        pipeline.settle(out);
        return out;
      }
      // A tail call: our results (and pipelining on them) are the other call's.
      const tail = hints?.tailCall
        ? hints.tailCall(out)
        : out.target.call(out.interfaceId, out.methodId, out.params, { signal: ctx.signal ?? neverAborted, cause: hints?.cause });
      out.target.release();
      pipeline.redirect(tail.pipeline);
      return await tail.promise;
    } catch (err) {
      const e = toRpcError(err);
      pipeline.fail(e);
      throw e;
    } finally {
      releasePayload(params);
      this.release();
    }
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    return localOutgoingCall(this, interfaceId, methodId);
  }
  resolved(): CapHook | null {
    return null;
  }
  whenMoreResolved(): Promise<CapHook> | null {
    return null;
  }
  protected dispose(): void {
    this.server.released?.();
  }
}

/** Takes a new reference to the capability at `ops` inside a response. */
export function capFromResponse(response: Response, ops: readonly number[]): CapHook {
  let index: number;
  try {
    index = capIndexAt(response.content, ops);
  } catch (err) {
    // The transform leads to something other than a capability: only the
    // pipelined call fails, never the call whose results these are.
    return new BrokenHook(RpcError.failed(`pipelined call on a field that is not a capability: ${toRpcError(err).message}`));
  }
  if (index < 0) return new BrokenHook(RpcError.failed("pipelined call on a null capability field"));
  const hook = capTableOf(response.message)[index];
  if (hook === undefined) return new BrokenHook(badCapIndex(response.message, index));
  if (hook === null) return new BrokenHook(RpcError.failed("pipelined call on a null capability"));
  return hook.addRef();
}

/**
 * Pipelining on a response that is not here yet. Pending pipelined caps are
 * resolved synchronously when it arrives, before the response's consumer
 * sees it (the consumer may release it right away).
 */
export class ResponsePipeline implements PipelineSource {
  private response: Response | null = null;
  private error: RpcError | null = null;
  private redirected: PipelineSource | null = null;
  private pending: { ops: readonly number[]; hook: QueuedHook }[] = [];

  getPipelinedCap(ops: readonly number[]): CapHook {
    if (this.redirected) return this.redirected.getPipelinedCap(ops);
    if (this.error) return new BrokenHook(this.error);
    if (this.response) return capFromResponse(this.response, ops);
    const hook = new QueuedHook();
    this.pending.push({ ops, hook });
    return hook;
  }

  /** A tail call: pipelining goes to the other call's results from now on. */
  redirect(other: PipelineSource): void {
    this.redirected = other;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.hook.resolve(other.getPipelinedCap(p.ops));
  }

  settle(response: Response): void {
    if (this.redirected) return;
    this.response = response;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.hook.resolve(capFromResponse(response, p.ops));
  }

  fail(error: RpcError): void {
    if (this.redirected) return;
    this.error = error;
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.hook.resolve(new BrokenHook(error));
  }
}

/**
 * A call from this vat to one of its own servers, as the server sees it
 * (ServerCallContext) and as the caller cancels it: the server's signal
 * fires, and the caller's promise rejects at once. The signal is made only
 * if the server asks for it.
 */
class LocalCall implements ServerCallContext, Cancelable {
  #controller: AbortController | null = null;
  #canceled: RpcError | null = null;
  #reject: ((reason: RpcError) => void) | null = null;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly hints: CallHints | undefined,
    private readonly interfaceId: bigint,
    private readonly methodId: number,
  ) {}

  get peer(): unknown {
    return this.hints?.peer;
  }

  get signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.#canceled) this.#controller.abort(this.#canceled);
    }
    return this.#controller.signal;
  }

  /** The caller's view of `delivered`: it rejects as soon as the call is canceled. */
  settleWith(delivered: Promise<Response>): Promise<Response> {
    const outer = this.hints?.signal;
    const timeout = this.hints?.timeout;
    return new Promise<Response>((resolve, reject) => {
      this.#reject = reject;
      const onAbort = () => this.cancel(canceledBy(outer));
      if (outer?.aborted) onAbort();
      else outer?.addEventListener("abort", onAbort, { once: true });
      if (timeout !== undefined && timeout > 0 && !this.#canceled) {
        this.#timer = setTimeout(() => this.cancel(timedOut(methodLabel(this.interfaceId, this.methodId), timeout)), timeout);
        this.#timer.unref();
      }
      const settled = () => {
        clearTimeout(this.#timer);
        outer?.removeEventListener("abort", onAbort);
      };
      delivered.then(
        (response) => {
          settled();
          // Results that come after the caller gave up are nobody's: release them.
          if (this.#canceled) response.release();
          else resolve(response);
        },
        (err: unknown) => {
          settled();
          reject(err);
        },
      );
    });
  }

  cancel(reason: RpcError): void {
    if (this.#canceled) return;
    this.#canceled = reason;
    clearTimeout(this.#timer);
    this.#controller?.abort(reason);
    this.#reject?.(reason);
  }
}

interface QueuedCall {
  interfaceId: bigint;
  methodId: number;
  params: Payload;
  hints: CallHints | undefined;
  settle(result: CallResult): void;
}

/**
 * A local promise for a capability: calls wait in order until the target is
 * known, then go to it in the order they were made.
 */
export class QueuedHook extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;
  private target: CapHook | null = null;
  private queue: QueuedCall[] = [];
  private waiters: ((hook: CapHook) => void)[] = [];

  constructor(source?: Promise<CapHook>) {
    super();
    source?.then(
      (hook) => this.resolve(hook),
      (err: unknown) => this.resolve(new BrokenHook(toRpcError(err))),
    );
  }

  /** Settles the promise; takes ownership of `hook`. Calls queued so far go first. */
  resolve(hook: CapHook): void {
    if (this.target) {
      hook.release();
      return;
    }
    const queue = this.queue;
    this.queue = [];
    if (hook instanceof QueuedHook && hook.target === null) {
      // Settled to another local promise: the calls wait there, behind the
      // ones it holds, each keeping its own settle. (Calling it would wrap
      // each in a new queued call per step, and a pipelined chain of n calls
      // was queued O(n²) times.)
      for (const q of queue) hook.queue.push(q);
    } else {
      for (const q of queue) q.settle(hook.call(q.interfaceId, q.methodId, q.params, q.hints));
    }
    this.target = hook;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w(hook);
    if (this.released) {
      this.target = null;
      hook.release();
    }
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    if (this.target) return this.target.call(interfaceId, methodId, params, hints);
    // Sent later, from whatever context resolves the promise: keep what the
    // call is made on behalf of now (sequential.ts).
    const cause = hints?.cause === undefined ? causeOf(hints) : undefined;
    if (cause !== undefined) hints = { ...hints, cause };
    return queuedCall((settle) => this.queue.push({ interfaceId, methodId, params, hints, settle }));
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    if (this.target) return this.target.newCall(interfaceId, methodId);
    return localOutgoingCall(this, interfaceId, methodId);
  }

  resolved(): CapHook | null {
    return this.target;
  }

  whenMoreResolved(): Promise<CapHook> | null {
    if (this.target) return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  protected dispose(): void {
    // Calls already queued still go out when the target is known; only our
    // own reference to the target is dropped.
    if (this.target) {
      const t = this.target;
      this.target = null;
      t.release();
    }
  }
}

/**
 * A call whose real CallResult is known later. Pipelined caps requested
 * before then are QueuedHooks resolved as soon as it is.
 */
function queuedCall(enqueue: (settle: (result: CallResult) => void) => void): CallResult {
  let real: CallResult | null = null;
  let canceled: RpcError | null = null;
  let pendingPipes: { ops: readonly number[]; hook: QueuedHook }[] = [];
  let resolvePromise!: (p: Promise<Response>) => void;
  let rejectPromise!: (reason: RpcError) => void;
  const promise = new Promise<Response>((resolve, reject) => {
    resolvePromise = resolve;
    rejectPromise = reject;
  });
  enqueue((result) => {
    real = result;
    if (canceled) {
      // Canceled while queued: the call went out anyway (E-order); cancel it there too.
      result.canceler?.cancel(canceled);
      result.promise.then((r) => r.release(), () => {});
    }
    resolvePromise(result.promise);
    const pipes = pendingPipes;
    pendingPipes = [];
    for (const p of pipes) p.hook.resolve(result.pipeline.getPipelinedCap(p.ops));
  });
  const pipeline: PipelineSource = {
    getPipelinedCap(ops) {
      if (real) return real.pipeline.getPipelinedCap(ops);
      const hook = new QueuedHook();
      pendingPipes.push({ ops, hook });
      return hook;
    },
  };
  const canceler: Cancelable = {
    cancel(reason) {
      if (real) return real.canceler?.cancel(reason);
      if (canceled) return;
      canceled = reason;
      rejectPromise(reason);
    },
    abandon(reason) {
      // Still queued, pipelines unknown: let it run; once sent, its own rule applies.
      real?.canceler?.abandon?.(reason);
    },
  };
  return { promise, pipeline, canceler };
}

/** A response whose caps are owned by it until release(). */
export class OwnedResponse implements Response {
  private refs = 1;
  constructor(
    readonly message: Payload["message"],
    readonly content: Payload["content"],
  ) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (this.refs > 0 && --this.refs === 0) releaseCapTable(this.message);
  }
}

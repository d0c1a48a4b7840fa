// Hooks for capabilities that live in this vat: server objects, and local
// promises that queue calls until they know their target (C++'s
// LocalClient and QueuedClient).
import { RpcError, toRpcError } from "./errors.js";
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
  isTailCall,
} from "./hook.js";
import { badCapIndex, capTableOf, releaseCapTable } from "./payload.js";
import { capIndexAt } from "../codec/runtime.js";

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
const NO_HINTS: CallHints = {};

/** A capability implemented by a server object in this vat. */
export class LocalServerHook extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;

  constructor(readonly server: ServerDispatch) {
    super();
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    const pipeline = new ResponsePipeline();
    const ctx: ServerCallContext = hints ?? NO_HINTS;
    // The call keeps the object alive until it completes, even if the
    // caller drops its reference right after calling.
    this.addRef();
    const promise = this.deliver(interfaceId, methodId, params, ctx, hints, pipeline);
    return { promise, pipeline };
  }

  private async deliver(
    interfaceId: bigint,
    methodId: number,
    params: Payload,
    ctx: ServerCallContext,
    hints: CallHints | undefined,
    pipeline: ResponsePipeline,
  ): Promise<Response> {
    // Deliver on a later microtask: a call never runs inside its caller's
    // stack, and calls made in order are delivered in order (E-order).
    await undefined;
    try {
      const out = await this.server.dispatch(interfaceId, methodId, params, ctx);
      if (!isTailCall(out)) {
        pipeline.settle(out);
        return out;
      }
      // A tail call: our results (and pipelining on them) are the other call's.
      const tail = hints?.tailCall
        ? hints.tailCall(out)
        : out.target.call(out.interfaceId, out.methodId, out.params, { signal: ctx.signal ?? neverAborted });
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
  const index = capIndexAt(response.content, ops);
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
    for (const q of queue) q.settle(hook.call(q.interfaceId, q.methodId, q.params, q.hints));
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
  let pendingPipes: { ops: readonly number[]; hook: QueuedHook }[] = [];
  let resolvePromise!: (p: Promise<Response>) => void;
  const promise = new Promise<Response>((resolve) => {
    resolvePromise = resolve;
  });
  enqueue((result) => {
    real = result;
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
  return { promise, pipeline };
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

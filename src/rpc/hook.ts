// CapHook: this engine's internal handle on a capability, modelled on the
// C++ reference's ClientHook. Every typed client holds one reference to a
// hook; hooks are reference counted so that the last release of an import
// sends rpc.capnp `Release`, and so that exports know when they are unused.
import type { Message, Pointer } from "capnp-es";
import { RpcError } from "./errors.js";
import type { CauseScope } from "./sequential.js";

/** Params of an outgoing call: the payload message owns the caps in its cap table. */
export interface Payload {
  readonly message: Message;
  /** The AnyPointer slot holding the params/results struct. */
  readonly content: Pointer;
}

/** A call's results, owned by whoever holds it until released. */
export interface Response extends Payload {
  release(): void;
}

export interface CallHints {
  signal?: AbortSignal | undefined;
  /** Identity of the vat the call came from, for servers (rpc-level context). */
  peer?: unknown;
  /**
   * Set by a connection delivering a call it received: lets a server's tail
   * call go back over that connection with `sendResultsTo.yourself`.
   */
  tailCall?: ((request: TailCallRequest) => CallResult) | undefined;
  /**
   * Set by a connection delivering a call it received: where the server
   * should write its results (the Return message itself, saving a copy).
   */
  allocResults?: (() => Payload) | undefined;
  /**
   * True when a connection delivers a call its peer made: the call is
   * canceled by the peer's Finish, never through CallResult.canceler.
   */
  readonly answering?: boolean;
  /** The connection a delivered call came in over (to count calls passed between peers). */
  readonly origin?: object;
  /** Cancel the call if it has not returned after this many milliseconds. */
  timeout?: number | undefined;
  /**
   * What the call is made on behalf of (sequential.ts), when that is not
   * the current async context: the causes a peer's call carried, or the
   * context a call queued on a promise was made in.
   */
  readonly cause?: CauseScope | undefined;
}

/** Cancels one call: a remote one sends Finish, a local one's server sees its signal fire. */
export interface Cancelable {
  cancel(reason: RpcError): void;
  /**
   * The caller dropped the call's promise after pipelining on it: cancel
   * unless capabilities pipelined on the call are still held elsewhere
   * (then the call runs on for them).
   */
  abandon?(reason: RpcError): void;
}

/** A server's answer "my results are whatever this other call returns". */
export interface TailCallRequest {
  readonly tail: true;
  /** Owned by the request. */
  readonly target: CapHook;
  readonly interfaceId: bigint;
  readonly methodId: number;
  readonly params: Payload;
}

export function isTailCall(value: unknown): value is TailCallRequest {
  return typeof value === "object" && value !== null && (value as { tail?: unknown }).tail === true;
}

/** What a call produces: the eventual response and a way to pipeline on it. */
export interface CallResult {
  readonly promise: Promise<Response>;
  readonly pipeline: PipelineSource;
  /** Cancels the call; the promise then rejects with the reason given. */
  readonly canceler?: Cancelable | undefined;
}

/** The error a call that ran out of time rejects with. */
export function timedOut(label: string, ms: number): RpcError {
  return new RpcError("failed", `${label} timed out after ${ms} ms (the caller's timeout); the call was canceled`);
}

export interface PipelineSource {
  /** A new reference to the capability at `ops` within the eventual results. */
  getPipelinedCap(ops: readonly number[]): CapHook;
}

/** A call being built directly in the message that will carry it. */
export interface OutgoingCall {
  readonly message: Message;
  /** The AnyPointer slot for the params struct. */
  readonly content: Pointer;
  send(hints?: CallHints): CallResult;
}

/** The connection a hook belongs to; compared by identity ("brand" in C++). */
export type Brand = object | null;

export interface CapHook {
  /** The connection this hook sends over, or null when it is not a remote reference. */
  readonly brand: Brand;
  /** Starts a call, taking ownership of `params` and the caps in it. */
  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult;
  /** Starts building a call (lets remote hooks encode straight into the wire message). */
  newCall(interfaceId: bigint, methodId: number): OutgoingCall;
  /** If this is a promise that has settled, what it settled to. */
  resolved(): CapHook | null;
  /** If this is an unsettled promise, when it settles (to the next hook). */
  whenMoreResolved(): Promise<CapHook> | null;
  addRef(): CapHook;
  release(): void;
  /** The error a broken capability fails calls with; null otherwise. */
  readonly brokenReason: RpcError | null;
}

/** Longer chains of settled promises are treated as cycles (see innermost). */
const MAX_RESOLUTION_CHAIN = 10_000;

/**
 * Follows settled promises to the innermost hook (no new reference), or
 * until `stopAt`. Bounded: connection.ts refuses a Resolve that would close
 * a cycle, and this keeps any cycle that slips through from spinning forever.
 */
export function innermost(hook: CapHook, stopAt?: CapHook): CapHook {
  let steps = 0;
  for (let r = hook.resolved(); r && hook !== stopAt; r = hook.resolved()) {
    if (++steps > MAX_RESOLUTION_CHAIN) throw new RpcError("failed", "a capability resolves through a cycle of promises");
    hook = r;
  }
  return hook;
}

/** Shared reference counting: subclasses implement `dispose`. */
export abstract class RefCounted {
  // Assigned in the constructor, not as a field initializer: the
  // initializer would be one define-property site shared by every subclass,
  // which V8 handles megamorphically (it showed as ~5% of a pipelined chain).
  private declare refs: number;

  /** References held now (the engine checks whether a promise's only holder is itself). */
  get refCount(): number {
    return this.refs;
  }

  constructor() {
    this.refs = 1;
  }

  addRef(): this {
    if (this.refs <= 0) throw new Error("capmesh internal: addRef on a released capability");
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) this.dispose();
  }

  protected get released(): boolean {
    return this.refs <= 0;
  }

  get isReleased(): boolean {
    return this.refs <= 0;
  }

  protected abstract dispose(): void;
}

/** A capability that fails every call: null caps, errors, dead connections. */
export class BrokenHook implements CapHook {
  readonly brand = null;
  constructor(readonly brokenReason: RpcError) {}

  call(_i: bigint, _m: number, params: Payload): CallResult {
    releasePayload(params);
    const promise = Promise.reject(this.brokenReason);
    promise.catch(() => {});
    return { promise, pipeline: { getPipelinedCap: () => new BrokenHook(this.brokenReason) } };
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
  addRef(): CapHook {
    return this;
  }
  release(): void {}
}

export const NULL_CAP_ERROR = new RpcError("failed", "called a null capability");

import { newPayloadMessage, releaseCapTable } from "./payload.js";

export function releasePayload(p: Payload): void {
  releaseCapTable(p.message);
}

/** The default newCall: build in a standalone message, then `call`. */
export function localOutgoingCall(hook: CapHook, interfaceId: bigint, methodId: number): OutgoingCall {
  const { message, content } = newPayloadMessage();
  return {
    message,
    content,
    send: (hints) => hook.call(interfaceId, methodId, { message, content }, hints),
  };
}

// Public types of the typed API: what generated code and plugin authors see.
import type { InterfaceDef } from "../codec/types.js";

/** Every capability client: a reference that must be released. */
export interface Capability extends Disposable {
  /** Drops this reference. Idempotent; calls made after it reject. */
  release(): void;
  /** A second, independent reference to the same capability. */
  dup(): this;
  /**
   * Resolves once this reference no longer points at an unresolved promise;
   * rejects with the promise's exception if it broke.
   */
  whenResolved(): Promise<void>;
}

/** Options for one outgoing call. */
export interface CallOptions {
  /**
   * Aborting cancels the call: Finish goes out, the server sees its own
   * signal fire, and the call rejects with an error saying why (a signal
   * from AbortSignal.timeout() says the call timed out).
   */
  signal?: AbortSignal;
  /**
   * Cancels the call, as `signal` would, if it has not returned after this
   * many milliseconds; it then rejects with an error saying it timed out.
   * Overrides the connection's `callTimeoutMs`.
   */
  timeout?: number;
}

/** What a server method receives beside its params. */
export interface CallContext {
  /** Fires when the caller cancels the call or the connection drops. */
  readonly signal: AbortSignal;
  /** The authenticated identity of the calling vat, when known. */
  readonly peer: unknown;
  /**
   * Answers this call with another call's results: `return ctx.tailCall(cap, "method", params)`.
   * When `cap` lives in the calling vat, the results never cross the wire twice
   * (rpc.capnp sendResultsTo.yourself).
   */
  tailCall<C extends Capability, M extends keyof C & string>(
    target: C,
    method: M,
    params?: C[M] extends (params: infer P, ...rest: never[]) => unknown ? P : never,
  ): TailCall;
}

/** What `ctx.tailCall` returns; a server method returns it as its results. */
export interface TailCall {
  readonly tail: true;
}

/** Pointer fields of a result that promise pipelining can reach. */
export type Pipelined<T> = {
  readonly [K in keyof T as PipelineKey<T, K>]-?: PipelineOf<NonNullable<T[K]>>;
};
type PipelineKey<T, K extends keyof T> = NonNullable<T[K]> extends Capability
  ? K
  : NonNullable<T[K]> extends readonly unknown[] | Uint8Array | string | number | bigint | boolean
    ? never
    : NonNullable<T[K]> extends object
      ? K
      : never;
type PipelineOf<V> = V extends Capability ? V : Pipelined<V>;

/**
 * The promise of a call's results, on which calls can be pipelined. Awaiting
 * it hands the results to the caller; a promise only pipelined on is
 * disposed (`using`) to release the capabilities in its results.
 */
export type RpcPromise<T> = Promise<T> & Pipelined<T> & Disposable;

/** The server side of interface `I` as generated code types it. */
export type ServerOf<Def> = Def extends { readonly __server?: infer S } ? S : never;

export type { InterfaceDef };

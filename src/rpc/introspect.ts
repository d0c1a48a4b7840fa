// Asking what a capability is, without reaching into the engine: still a
// promise, one of this vat's own server objects (C++'s
// CapabilityServerSet::getLocalServer), hosted by a peer, or broken.
import type { InterfaceDef } from "../codec/types.js";
import type { RpcError } from "./errors.js";
import { innermost, type CapHook } from "./hook.js";
import { LocalServerHook } from "./local.js";
import { ReflectedHook } from "./remote-promise.js";
import { ThirdPartyHook } from "./third-party-hook.js";
import { hookOf, isReleasedClient } from "./typed.js";
import type { Capability } from "./types.js";
import type { PeerInfo } from "./vat-network.js";
import type { Session } from "./system.js";

export type CapabilityState =
  /** Not known yet: calls wait (or are pipelined) until it resolves. */
  | { readonly kind: "promise" }
  /** Served by an object of this vat: `server` is that object, `interface` what it serves. */
  | { readonly kind: "local"; readonly server: object; readonly interface: InterfaceDef | null }
  /**
   * Hosted by a peer, reached over the connection to `peer`. `path`:
   * "direct" when that peer hosts it; "vine" when it is a third vat's
   * capability reached through the peer that handed it on (Level 3 fell
   * back, `reason` says why).
   */
  | { readonly kind: "remote"; readonly peer: PeerInfo; readonly path: "direct" | "vine"; readonly reason?: string }
  /** Every call fails with `error`. */
  | { readonly kind: "broken"; readonly error: RpcError }
  /** This reference was released. */
  | { readonly kind: "released" };

/** What `cap` is right now (see CapabilityState). */
export function capabilityState(cap: Capability): CapabilityState {
  if (isReleasedClient(cap)) return { kind: "released" };
  return stateOf(hookOf(cap));
}

/** Settled promises followed as innermost does, noting a Level 3 handoff on the way. */
function settledOf(hook: CapHook): { inner: CapHook; handoff: ThirdPartyHook | null } {
  let handoff: ThirdPartyHook | null = null;
  for (let steps = 0; steps < 10_000; steps++) {
    if (hook instanceof ThirdPartyHook) handoff = hook;
    const next = hook.resolved();
    if (!next) break;
    hook = next;
  }
  return { inner: innermost(hook), handoff };
}

function stateOf(hook: CapHook): CapabilityState {
  const settled = settledOf(hook);
  let inner = settled.inner;
  while (inner instanceof ReflectedHook) inner = innermost(inner.reflected);
  if (inner.brokenReason) return { kind: "broken", error: inner.brokenReason };
  if (inner instanceof LocalServerHook) {
    const dispatch = inner.server as { impl?: unknown; iface?: InterfaceDef };
    const server = typeof dispatch.impl === "object" && dispatch.impl !== null ? dispatch.impl : dispatch;
    return { kind: "local", server, interface: dispatch.iface ?? null };
  }
  if (isUnresolvedPromise(inner)) return { kind: "promise" };
  const conn = inner.brand as { peer?: unknown } | null;
  if (conn && typeof conn.peer === "object" && conn.peer !== null) {
    const peer = conn.peer as PeerInfo;
    const handoff = settled.handoff;
    if (handoff?.path === "vine") return { kind: "remote", peer, path: "vine", ...(handoff.reason ? { reason: handoff.reason } : {}) };
    return { kind: "remote", peer, path: "direct" };
  }
  return { kind: "promise" };
}

function isUnresolvedPromise(hook: CapHook): boolean {
  const more = hook.whenMoreResolved();
  if (more === null) return false;
  more.catch(() => {});
  return true;
}

/** True while `cap` is a promise that has not resolved. */
export function isPromise(cap: Capability): boolean {
  return capabilityState(cap).kind === "promise";
}

/**
 * Waits for `cap` to resolve, then returns the server object of this vat
 * that it stands for, or null if it is hosted elsewhere or broken. With
 * `iface`, only a server of that interface counts (as C++'s
 * CapabilityServerSet<T>::getLocalServer finds only its own servers).
 */
export async function getLocalServer<S extends object = object>(
  cap: Capability,
  iface?: InterfaceDef & { readonly __server?: S },
): Promise<S | null> {
  try {
    await cap.whenResolved();
  } catch {
    return null;
  }
  const state = capabilityState(cap);
  if (state.kind !== "local") return null;
  if (iface && !serves(state.interface, iface)) return null;
  return state.server as S;
}

function serves(def: InterfaceDef | null, wanted: InterfaceDef): boolean {
  if (!def) return false;
  if (def === wanted || def.id === wanted.id) return true;
  return def.superclasses.some((sup) => serves(sup, wanted));
}

/**
 * Buffer bytes the transport of `session` keeps between messages: `send`,
 * its send batches (a busy connection keeps one, 0 once it has been idle for
 * a sweep or two of 2 s); `receive`, bytes of an incomplete frame or a
 * throttled backlog. For diagnostics and tests: an idle connection keeps none.
 */
export function connectionBuffers(session: Session): { send: number; receive: number } {
  return session.connection.bufferBytes();
}

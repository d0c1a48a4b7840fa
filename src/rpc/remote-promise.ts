// A promise the peer holds for us: first an import or pipelined answer, later
// whatever it resolves to (C++'s PromiseClient). When it resolves to one of
// our own objects after we made calls through the peer, new calls must wait
// until those earlier calls have come back around: the embargo of rpc.capnp
// `Disembargo`, which keeps E-order.
import {
  BrokenHook,
  RefCounted,
  type CallHints,
  type CallResult,
  type CapHook,
  type OutgoingCall,
  type Payload,
} from "./hook.js";
import type { RpcConnection } from "./connection.js";
import type { RemoteHook } from "./remote-hook.js";
import type { WireDescriptor, WireTarget } from "./wire.js";
import { QueuedHook } from "./local.js";
import { ThirdPartyHook } from "./third-party-hook.js";

type Resolution = "unresolved" | "remote" | "reflected" | "merged" | "broken" | "thirdParty";

export class RemotePromiseHook extends RefCounted implements RemoteHook {
  readonly brokenReason = null;
  /** Before resolution: the remote promise; after: its resolution. */
  private cap: CapHook;
  /** Calls were made (or the cap was passed on) before resolution. */
  receivedCall = false;
  resolution: Resolution = "unresolved";
  private waiters: ((hook: CapHook) => void)[] = [];

  constructor(
    readonly conn: RpcConnection,
    initial: RemoteHook,
    /** The import ID when this is a senderPromise import. */
    readonly importId: number | null,
  ) {
    super();
    this.cap = initial;
  }

  get brand(): object {
    return this.conn;
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    this.receivedCall = true;
    return this.cap.call(interfaceId, methodId, params, hints);
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    this.receivedCall = true;
    return this.cap.newCall(interfaceId, methodId);
  }

  target(): WireTarget | null {
    this.receivedCall = true;
    return this.conn.targetOf(this.cap);
  }

  descriptor(): WireDescriptor {
    this.receivedCall = true;
    return this.conn.describe(this.cap).descriptor;
  }

  /** The hook to export in place of this one (C++ getInnermostClient). */
  innermost(): CapHook {
    this.receivedCall = true;
    return this.conn.innermostForExport(this.cap);
  }

  resolved(): CapHook | null {
    return this.resolution === "unresolved" ? null : this.cap;
  }

  whenMoreResolved(): Promise<CapHook> | null {
    if (this.resolution !== "unresolved") return null;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Settles the promise (takes ownership of `replacement`). Runs synchronously. */
  resolve(replacement: CapHook): void {
    if (this.resolution !== "unresolved") {
      replacement.release();
      return;
    }
    if (replacement instanceof ThirdPartyHook) {
      // Resolved to a capability of a third vat (Level 3): the handoff keeps
      // E-order itself (the 3PH embargo), so no senderLoopback embargo here
      // (C++ promiseResolvedToThis).
      replacement.noteResolvedFromPromise(this.receivedCall);
      this.resolution = "thirdParty";
    } else if (replacement.brand === this.conn) {
      // Resolved to something else the peer hosts: same path, no embargo,
      // unless it is itself a promise that may later reflect back to us.
      if (replacement instanceof RemotePromiseHook) {
        let other = replacement;
        while (other.resolution === "merged") {
          const next = other.cap as RemotePromiseHook;
          next.addRef();
          replacement.release();
          replacement = other = next;
        }
        if (other.resolution !== "unresolved") {
          this.resolution = other.resolution;
        } else {
          other.receivedCall ||= this.receivedCall;
          this.resolution = "merged";
        }
      } else {
        this.resolution = "remote";
      }
    } else if (replacement.brokenReason) {
      this.resolution = "broken";
    } else {
      this.resolution = "reflected";
    }

    if (this.resolution === "reflected" && this.receivedCall && !this.conn.error) {
      // rpc.capnp Disembargo: calls we sent toward the promise are still on
      // their way back to us through the peer. Queue new calls locally until
      // a Disembargo echoed through the peer says they have all arrived.
      const embargoed = new QueuedHook();
      const local = replacement;
      this.conn.startEmbargo(this.cap, (broken) => {
        // No echo if the connection died: the queued calls fail with it, as
        // in C++, rather than reach the object after the connection is gone.
        if (broken) local.release();
        embargoed.resolve(broken ? new BrokenHook(broken) : local);
      });
      replacement = embargoed;
    }

    const old = this.cap;
    this.cap = replacement;
    old.release();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w(replacement);
  }

  protected dispose(): void {
    if (this.importId !== null) this.conn.forgetPromiseImport(this.importId, this);
    this.cap.release();
  }
}

/**
 * An export that points back over the connection it was named on, seen
 * again in a receiverHosted/receiverAnswer descriptor. Reporting "not
 * remote" makes a promise resolving to it set up an embargo, as the
 * Tribble 4-way race in rpc.capnp requires (C++'s TribbleRaceBlocker).
 */
export class ReflectedHook extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;
  constructor(private readonly inner: CapHook) {
    super();
  }
  /** The local capability this stands for (for introspection). */
  get reflected(): CapHook {
    return this.inner;
  }
  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    return this.inner.call(interfaceId, methodId, params, hints);
  }
  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    return this.inner.newCall(interfaceId, methodId);
  }
  resolved(): CapHook | null {
    return null;
  }
  whenMoreResolved(): Promise<CapHook> | null {
    return null;
  }
  protected dispose(): void {
    this.inner.release();
  }
}

// The import table: capabilities the peer exported to us, by the peer's
// export ID. rpc.capnp: each time the peer sends a CapDescriptor naming an
// export, its reference count goes up by one; we pay those back with one
// `Release` carrying the total when our last local reference goes.
import { BrokenHook, RefCounted, type CallHints, type CallResult, type CapHook, type OutgoingCall, type Payload } from "./hook.js";
import type { RpcConnection } from "./connection.js";
import { remoteCall, type RemoteHook } from "./remote-hook.js";
import type { RemotePromiseHook } from "./remote-promise.js";
import type { WireDescriptor, WireTarget } from "./wire.js";

export interface ImportEntry {
  /** Live hook for this import, if any local reference remains. */
  hook: ImportHook | null;
  /** For a senderPromise import: the promise wrapper, while it lives. */
  promise: RemotePromiseHook | null;
  /** How many times the peer has sent us this ID: the count we Release. */
  remoteRefcount: number;
  /** Named as senderPromise: a Resolve will follow. */
  isPromise: boolean;
  /** The Resolve arrived. */
  resolved: boolean;
}

export class ImportTable {
  private readonly entries = new Map<number, ImportEntry>();
  /** Promise imports whose Resolve arrived; a second Resolve is a protocol error. */
  private readonly resolvedPromises = new Set<number>();

  get size(): number {
    return this.entries.size;
  }

  get(id: number): ImportEntry | undefined {
    return this.entries.get(id);
  }

  /** Records one more reference from the peer to export `id`. */
  receive(id: number): ImportEntry {
    let entry = this.entries.get(id);
    if (!entry) {
      entry = { hook: null, promise: null, remoteRefcount: 0, isPromise: false, resolved: false };
      this.entries.set(id, entry);
      this.resolvedPromises.delete(id);
    }
    entry.remoteRefcount++;
    return entry;
  }

  delete(id: number): void {
    this.entries.delete(id);
  }

  markResolved(id: number): void {
    this.resolvedPromises.add(id);
  }

  wasResolved(id: number): boolean {
    return this.resolvedPromises.has(id);
  }

  values(): IterableIterator<ImportEntry> {
    return this.entries.values();
  }

  clear(): void {
    this.entries.clear();
    this.resolvedPromises.clear();
  }
}

/** A reference to a capability the peer hosts (C++'s ImportClient). */
export class ImportHook extends RefCounted implements RemoteHook {
  brokenReason = null;

  constructor(
    readonly conn: RpcConnection,
    readonly importId: number,
  ) {
    super();
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
    return { importedCap: this.importId };
  }

  descriptor(): WireDescriptor {
    return { kind: "receiverHosted", id: this.importId };
  }

  resolved(): CapHook | null {
    return null;
  }
  whenMoreResolved(): Promise<CapHook> | null {
    return null;
  }

  protected dispose(): void {
    this.conn.releaseImport(this);
  }
}

// Embargoes we started (rpc.capnp Disembargo.context.senderLoopback): each
// waits for its receiverLoopback echo, then lets queued calls through.
import type { RpcError } from "./errors.js";
import { IdTable } from "./id-table.js";

/** Lifts an embargo: `broken` is null when the echo came back, else why it never will. */
export type LiftEmbargo = (broken: RpcError | null) => void;

export class EmbargoTable {
  private readonly table = new IdTable<LiftEmbargo>();

  get size(): number {
    return this.table.size;
  }

  /** Registers `lift`, to run when the echo comes back; returns the embargo ID. */
  start(lift: LiftEmbargo): number {
    return this.table.add(lift);
  }

  /** Runs and forgets embargo `id`; false if there is no such embargo. */
  lift(id: number): boolean {
    const lift = this.table.delete(id);
    if (!lift) return false;
    lift(null);
    return true;
  }

  /** On disconnect: no echo will come, so every embargo ends with `error`. */
  liftAll(error: RpcError): void {
    const all = [...this.table.entries()];
    this.table.clear();
    for (const [, lift] of all) lift(error);
  }
}

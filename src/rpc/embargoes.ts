// Embargoes we started (rpc.capnp Disembargo.context.senderLoopback): each
// waits for its receiverLoopback echo, then lets queued calls through.
import { IdTable } from "./id-table.js";

export class EmbargoTable {
  private readonly table = new IdTable<() => void>();

  get size(): number {
    return this.table.size;
  }

  /** Registers `lift`, to run when the echo comes back; returns the embargo ID. */
  start(lift: () => void): number {
    return this.table.add(lift);
  }

  /** Runs and forgets embargo `id`; false if there is no such embargo. */
  lift(id: number): boolean {
    const lift = this.table.delete(id);
    if (!lift) return false;
    lift();
    return true;
  }

  /** On disconnect: let every queue drain (into the now-broken targets). */
  liftAll(): void {
    const all = [...this.table.entries()];
    this.table.clear();
    for (const [, lift] of all) lift();
  }
}

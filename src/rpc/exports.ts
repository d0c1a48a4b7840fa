// The export table: capabilities we named to the peer, by our export ID,
// with the count of times we named each (the peer pays it back in Release).
import type { CapHook } from "./hook.js";
import { IdTable } from "./id-table.js";
import type { ProvideQuestion } from "./third-party.js";

export interface ExportEntry {
  hook: CapHook;
  refcount: number;
  /** Exported as senderPromise and not yet resolved. */
  isPromise: boolean;
  /**
   * Level 3: this export is the vine of a thirdPartyHosted capability (its
   * hook the capability as this vat reaches it); its Provide is finished
   * when the export goes.
   */
  vine: ProvideQuestion | null;
}

export class ExportTable {
  private readonly table = new IdTable<ExportEntry>();
  private readonly byHook = new Map<CapHook, number>();
  private vines = 0;

  get size(): number {
    return this.table.size;
  }

  /** Vine exports (Level 3 introductions whose vine the recipient still holds). */
  get vineCount(): number {
    return this.vines;
  }

  get(id: number): ExportEntry | undefined {
    return this.table.get(id);
  }

  idOf(hook: CapHook): number | undefined {
    return this.byHook.get(hook);
  }

  /** Adds a new export holding `hook` (a reference the table now owns). */
  add(hook: CapHook, isPromise: boolean): number {
    const id = this.table.add({ hook, refcount: 1, isPromise, vine: null });
    this.byHook.set(hook, id);
    return id;
  }

  /**
   * Adds the vine of a handoff (C++ vineInfo): a new export of `hook` (a
   * reference the table now owns) for this one handoff only, so never found
   * by idOf and never a promise; at refcount 0 `provide` is finished.
   */
  addVine(hook: CapHook, provide: ProvideQuestion): number {
    this.vines++;
    return this.table.add({ hook, refcount: 1, isPromise: false, vine: provide });
  }

  /**
   * Points export `id` at a new hook (a promise export that resolved). With
   * `claim`, `id` also becomes the name `hook` is exported under, unless it
   * has one already; otherwise the entry only serves calls already addressed to it.
   */
  retarget(id: number, hook: CapHook, claim: boolean): { claimed: boolean } {
    const entry = this.table.get(id)!;
    if (this.byHook.get(entry.hook) === id) this.byHook.delete(entry.hook);
    const old = entry.hook;
    entry.hook = hook;
    old.release();
    if (!claim || this.byHook.has(hook)) return { claimed: false };
    this.byHook.set(hook, id);
    return { claimed: true };
  }

  /**
   * Drops `count` references; returns an error text for a protocol violation,
   * or null.
   */
  release(id: number, count: number): string | null {
    const entry = this.table.get(id);
    if (!entry) return `Release names export ${id}, which is not in the export table`;
    if (count > entry.refcount) {
      return `Release of export ${id} by ${count} would drop its reference count (${entry.refcount}) below zero`;
    }
    entry.refcount -= count;
    if (entry.refcount === 0) {
      this.table.delete(id);
      if (this.byHook.get(entry.hook) === id) this.byHook.delete(entry.hook);
      if (entry.vine) {
        this.vines--;
        entry.vine.finish();
      }
      entry.hook.release();
    }
    return null;
  }

  /** On disconnect: drop every export (the Provides of vines are finished). */
  clear(): void {
    const entries = [...this.table.entries()];
    this.table.clear();
    this.byHook.clear();
    this.vines = 0;
    for (const [, e] of entries) {
      e.vine?.finish();
      e.hook.release();
    }
  }
}

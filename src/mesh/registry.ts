// The hub's table of registered names, its watchers, and callers waiting
// for a name to appear. Transport-free: it holds capabilities and tells
// watchers what changed, in order.
import { RpcError } from "../rpc/errors.js";
import type { Capability } from "../rpc/types.js";
import type { Entry, Event, Observer, PluginInfo, Provider } from "../gen/mesh.js";
import { logger } from "../log.js";
import type { Init } from "../codec/init.js";

const log = logger("capmesh:mesh");

/** Events a watcher may have in flight before it is dropped as too slow. */
export const MAX_WATCHER_BACKLOG = 1024;

export interface Registered {
  readonly name: string;
  /** The holder's proven identity. */
  readonly id: string;
  info: PluginInfo;
  readonly since: number;
  /** What connect() hands out: the same capability for everyone, or a provider asked per caller. */
  readonly target: { readonly cap: Capability } | { readonly provider: Provider };
  /** Settles with the reason once the registration ends (Registration.ended). */
  readonly ended: Promise<string>;
  /** Ends it (the first reason counts). */
  readonly end: (reason: string) => void;
}

export interface Watcher {
  readonly observer: Observer;
  /** The identity that watches (for quotas and stats). */
  readonly id: string;
  backlog: number;
  dropped: boolean;
  /** Told when the registry drops this watcher (too slow, failed, hub closing). */
  readonly onDrop: () => void;
}

export function entryOf(r: Registered): Entry {
  return { name: r.name, id: r.id, info: r.info, since: BigInt(r.since) };
}

export class MeshRegistry {
  readonly #entries = new Map<string, Registered>();
  readonly #watchers = new Set<Watcher>();
  readonly #waiting = new Map<string, Set<(r: Registered) => void>>();

  get size(): number {
    return this.#entries.size;
  }

  get watcherCount(): number {
    return this.#watchers.size;
  }

  get(name: string): Registered | undefined {
    return this.#entries.get(name);
  }

  /** Every registration, ordered by name. */
  list(): Entry[] {
    return [...this.#entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(entryOf);
  }

  /** Registrations held by `id` (for quotas and stats). */
  countHeldBy(id: string): number {
    let n = 0;
    for (const r of this.#entries.values()) if (r.id === id) n++;
    return n;
  }

  watchersOf(id: string): number {
    let n = 0;
    for (const w of this.#watchers) if (w.id === id) n++;
    return n;
  }

  /** Adds a registration whose name is free (the caller checked). Watchers see `joined`. */
  add(r: Registered): void {
    if (this.#entries.has(r.name)) throw new Error(`capmesh internal: ${r.name} is already registered`);
    this.#entries.set(r.name, r);
    log.debug("registered", { name: r.name, id: r.id });
    this.#broadcast({ joined: entryOf(r) });
    const waiting = this.#waiting.get(r.name);
    if (waiting) {
      this.#waiting.delete(r.name);
      for (const wake of waiting) wake(r);
    }
  }

  /**
   * Removes `r` if it is still the registration of its name; watchers see
   * `left` with `reason`, and what it held is released.
   */
  remove(r: Registered, reason: string): boolean {
    if (this.#entries.get(r.name) !== r) return false;
    this.#entries.delete(r.name);
    log.debug("unregistered", { name: r.name, id: r.id, reason });
    this.#broadcast({ left: { name: r.name, id: r.id, reason } });
    if ("cap" in r.target) r.target.cap.release();
    else r.target.provider.release();
    return true;
  }

  /** New info for a live registration: watchers see it leave and join again. */
  update(r: Registered, info: PluginInfo): boolean {
    if (this.#entries.get(r.name) !== r) return false;
    this.#broadcast({ left: { name: r.name, id: r.id, reason: "updated" } });
    r.info = info;
    this.#broadcast({ joined: entryOf(r) });
    return true;
  }

  /**
   * Resolves with the registration of `name` once there is one, or rejects
   * after `waitMs` (or when `signal` fires).
   */
  waitFor(name: string, waitMs: number, signal: AbortSignal): Promise<Registered> {
    const existing = this.#entries.get(name);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      let set = this.#waiting.get(name);
      if (!set) this.#waiting.set(name, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        set!.delete(wake);
        if (set!.size === 0 && this.#waiting.get(name) === set) this.#waiting.delete(name);
      };
      const wake = (r: Registered) => {
        done();
        resolve(r);
      };
      const onAbort = () => {
        done();
        reject(RpcError.failed(`stopped waiting for "${name}": the call was canceled`));
      };
      const timer = setTimeout(() => {
        done();
        reject(RpcError.failed(`no plugin named "${name}" registered within ${waitMs} ms`));
      }, waitMs);
      set.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Starts delivering events to `w`: a snapshot first. */
  watch(w: Watcher): void {
    this.#watchers.add(w);
    this.#deliver(w, { snapshot: this.list() });
  }

  unwatch(w: Watcher): void {
    if (!this.#watchers.delete(w)) return;
    w.dropped = true;
    w.observer.release();
  }

  /** Ends everything: registrations end with `reason`, watchers are dropped. */
  closeAll(reason: string): void {
    for (const r of [...this.#entries.values()]) {
      r.end(reason);
      this.remove(r, reason);
    }
    for (const w of [...this.#watchers]) {
      this.unwatch(w);
      w.onDrop();
    }
    for (const [name, set] of this.#waiting) {
      this.#waiting.delete(name);
      void set;
    }
  }

  #broadcast(event: Init<Event>): void {
    for (const w of this.#watchers) this.#deliver(w, event);
  }

  /**
   * Events go out as `-> stream` calls in order (E-order on one capability);
   * their flow control holds back a slow watcher, and one whose backlog
   * passes MAX_WATCHER_BACKLOG, or whose call fails, is dropped, so no
   * watcher can grow the hub's memory.
   */
  #deliver(w: Watcher, event: Init<Event>): void {
    if (w.dropped) return;
    if (w.backlog >= MAX_WATCHER_BACKLOG) {
      log.warn("dropping a watcher that stopped answering", { id: w.id, backlog: w.backlog });
      this.unwatch(w);
      w.onDrop();
      return;
    }
    w.backlog++;
    w.observer.event({ event }).then(
      () => {
        w.backlog--;
      },
      (err: unknown) => {
        if (w.dropped) return;
        log.debug("dropping a watcher whose observer failed", { id: w.id, error: err instanceof Error ? err.message : String(err) });
        this.unwatch(w);
        w.onDrop();
      },
    );
  }
}

// The hub's table of registered names, its watchers, and callers waiting
// for a name to appear. Transport-free: it holds capabilities and tells
// watchers what changed, in order.
import { setMaxListeners } from "node:events";
import { RpcError } from "../rpc/errors.js";
import type { Capability } from "../rpc/types.js";
import type { Entry, Event, Observer, PluginInfo, Provider } from "../gen/mesh.js";
import { logger } from "../log.js";
import type { Init } from "../codec/init.js";

const log = logger("capmesh:mesh");

/**
 * Events that may wait for a watcher (beyond the stream window it has in
 * flight) while it answers nothing for WATCHER_STALL_MS; past that it is
 * dropped as no longer answering.
 */
export const MAX_WATCHER_BACKLOG = 1024;
/** How long a watcher with a full backlog may go without answering. */
export const WATCHER_STALL_MS = 1000;
/**
 * Events that may wait for any watcher, even one that answers: a burst
 * longer than this drops whoever cannot keep up, so no watcher grows the
 * hub's memory without bound.
 */
export const MAX_WATCHER_QUEUE = 16 * MAX_WATCHER_BACKLOG;

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
  /** Events waiting to go out to it (beyond those in flight). */
  backlog: number;
  dropped: boolean;
  /** Told when the registry drops this watcher (too slow, failed, hub closing). */
  readonly onDrop: () => void;
}

/** The whole entry, with the plugin's schema (Hub.lookup). */
export function entryOf(r: Registered): Entry {
  return { name: r.name, id: r.id, info: r.info, since: BigInt(r.since) };
}

/**
 * The entry as list() and watch events carry it: without the schema, which
 * is kilobytes per plugin and wanted only by tools that call by it (they
 * ask Hub.lookup). A list of 1,000 plugins stays small, and so does every
 * watcher's snapshot.
 */
export function summaryOf(r: Registered): Entry {
  if (r.info.schema.byteLength === 0) return entryOf(r);
  return { name: r.name, id: r.id, info: { ...r.info, schema: new Uint8Array(0) }, since: BigInt(r.since) };
}

export class MeshRegistry {
  readonly #entries = new Map<string, Registered>();
  readonly #watchers = new Set<Watcher>();
  readonly #feeds = new Map<Watcher, Feed>();
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

  /** Every registration, ordered by name (without schemas: summaryOf). */
  list(): Entry[] {
    return [...this.#entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(summaryOf);
  }

  /** Registrations held by `id` (for quotas and stats). */
  countHeldBy(id: string): number {
    let n = 0;
    for (const r of this.#entries.values()) if (r.id === id) n++;
    return n;
  }

  /** The names `id` holds (for policy.direct). */
  namesHeldBy(id: string): string[] {
    const names: string[] = [];
    for (const r of this.#entries.values()) if (r.id === id) names.push(r.name);
    return names;
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
    this.#broadcast({ joined: summaryOf(r) });
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
    this.#broadcast({ joined: summaryOf(r) });
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
    const cancel = new AbortController();
    // One listener per event in flight (the window may hold thousands).
    setMaxListeners(0, cancel.signal);
    this.#feeds.set(w, { queue: [], head: 0, sending: false, scheduled: false, lastProgress: Date.now(), stallTimer: null, cancel });
    this.#deliver(w, { snapshot: this.list() });
  }

  /**
   * Stops `w`: events waiting are dropped, those in flight canceled (a
   * Finish each, unless `cancel` is false), its observer released.
   */
  unwatch(w: Watcher, cancel = true): void {
    if (!this.#watchers.delete(w)) return;
    w.dropped = true;
    w.backlog = 0;
    const feed = this.#feeds.get(w);
    this.#feeds.delete(w);
    if (feed) {
      if (feed.stallTimer) clearTimeout(feed.stallTimer);
      feed.queue = [];
      if (cancel) feed.cancel.abort(RpcError.failed("the hub dropped this watcher"));
    }
    w.observer.release();
  }

  /** Ends everything: registrations end with `reason`, watchers are dropped. */
  closeAll(reason: string): void {
    for (const r of [...this.#entries.values()]) {
      r.end(reason);
      this.remove(r, reason);
    }
    for (const w of [...this.#watchers]) {
      // The last events (who left) go out now, window or not: the connections close next.
      const feed = this.#feeds.get(w);
      for (let i = feed?.head ?? 0; feed && i < feed.queue.length; i++) {
        w.observer.event({ event: feed.queue[i]! }).catch(() => {});
      }
      this.unwatch(w, false);
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

  #drop(w: Watcher, why: string): void {
    log.warn("dropping a watcher", { id: w.id, why, backlog: w.backlog });
    this.unwatch(w);
    w.onDrop();
  }

  /**
   * Events go out as `-> stream` calls in order (E-order on one capability),
   * one after another as the stream's flow control lets them: what the
   * window holds back waits here. A watcher is dropped when its call fails,
   * when MAX_WATCHER_BACKLOG events wait and it has answered nothing for
   * WATCHER_STALL_MS, or when MAX_WATCHER_QUEUE events wait; so no watcher
   * can grow the hub's memory, and a burst does not drop one that answers.
   */
  #deliver(w: Watcher, event: Init<Event>): void {
    const feed = this.#feeds.get(w);
    if (w.dropped || !feed) return;
    const waiting = feed.queue.length - feed.head;
    if (waiting >= MAX_WATCHER_QUEUE) return this.#drop(w, `it fell ${waiting} events behind`);
    feed.queue.push(event);
    w.backlog = waiting + 1;
    if (w.backlog >= MAX_WATCHER_BACKLOG && !feed.stallTimer) this.#watchStall(w, feed, WATCHER_STALL_MS);
    if (!feed.sending && !feed.scheduled) {
      // Sent from the next turn of the event loop: the request that caused
      // the event (a register) is answered first, without waiting for the
      // event to be encoded and written to every watcher.
      feed.scheduled = true;
      setImmediate(() => {
        feed.scheduled = false;
        if (!feed.sending) void this.#pump(w, feed);
      });
    }
  }

  async #pump(w: Watcher, feed: Feed): Promise<void> {
    feed.sending = true;
    try {
      while (!w.dropped && feed.head < feed.queue.length) {
        const event = feed.queue[feed.head]!;
        feed.queue[feed.head++] = undefined as unknown as Init<Event>;
        if (feed.head >= 1024 && feed.head * 2 >= feed.queue.length) {
          feed.queue = feed.queue.slice(feed.head);
          feed.head = 0;
        }
        w.backlog = feed.queue.length - feed.head;
        // Resolves at once while the stream window has room, else once answers come back.
        await w.observer.event({ event }, { signal: feed.cancel.signal });
        feed.lastProgress = Date.now();
      }
    } catch (err) {
      if (!w.dropped) this.#drop(w, `its observer failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      feed.sending = false;
    }
  }

  #watchStall(w: Watcher, feed: Feed, ms: number): void {
    const check = () => {
      feed.stallTimer = null;
      if (w.dropped || w.backlog < MAX_WATCHER_BACKLOG) return;
      const quiet = Date.now() - feed.lastProgress;
      if (quiet >= WATCHER_STALL_MS) this.#drop(w, `it stopped answering: ${w.backlog} events wait, none answered for ${quiet} ms`);
      else this.#watchStall(w, feed, WATCHER_STALL_MS - quiet);
    };
    // Checked after the next poll for I/O: answers that arrived while the
    // hub itself was busy count (a blocked event loop is not a stalled watcher).
    feed.stallTimer = setTimeout(() => setImmediate(check), ms);
    feed.stallTimer.unref();
  }
}

/** What the registry keeps per watcher to feed it. */
interface Feed {
  /** Events not yet sent, from `head` on. */
  queue: Init<Event>[];
  head: number;
  /** A pump is running (at most one, so events go out in order). */
  sending: boolean;
  /** A pump is to start on the next turn of the event loop. */
  scheduled: boolean;
  /** When the stream last let an event go (its window had room, or answers came back). */
  lastProgress: number;
  stallTimer: NodeJS.Timeout | null;
  /** Cancels the event calls in flight when the watcher is dropped. */
  cancel: AbortController;
}

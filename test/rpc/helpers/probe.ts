// The sequential-delivery tests' server and gates (test/rpc/schema/actors.capnp):
// a Probe that counts the calls it runs at once and records the order they
// entered in, and Gates the test opens one by one (no timers: a call waits
// until the test says so).
import { CallQueue } from "../../../src/rpc/sequential.js";
import type { Callback, Gate, Probe, ProbeServer } from "../schema/actors.js";
import { Gate as GateIface } from "../schema/actors.js";

export class ProbeImpl implements ProbeServer {
  active = 0;
  maxActive = 0;
  entered = 0;
  order: number[] = [];
  /** What `via({})` calls when given no callback (a closure of this process). */
  localCallback: Callback | null = null;
  /** The queue whose length `stats` reports (for a sequential server). */
  queue: CallQueue | null = null;

  private enter(id: number | null): number {
    this.entered++;
    if (id !== null) this.order.push(id);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return this.active;
  }

  async work({ id, gate }: { id: number; gate: Gate | null }) {
    const active = this.enter(id);
    try {
      if (gate) await gate.wait({ id });
      return { id, active };
    } finally {
      this.active--;
    }
  }

  async push({ id, gate }: { id: number; gate: Gate | null }) {
    this.enter(id);
    try {
      if (gate) await gate.wait({ id });
    } finally {
      this.active--;
    }
  }

  poke({ id }: { id: number }) {
    this.enter(id);
    this.active--;
    return { seen: this.entered };
  }

  async via({ callback }: { callback: Callback | null }) {
    this.enter(null);
    try {
      const target = callback ?? this.localCallback;
      if (!target) return { text: "error: no callback" };
      return { text: (await target.run()).text };
    } catch (err) {
      return { text: `error: ${(err as Error).message}` };
    } finally {
      this.active--;
    }
  }

  stats() {
    return { maxActive: this.maxActive, order: this.order, entered: this.entered, queued: this.queue?.waiting ?? 0 };
  }
}

/** Gates a Probe's calls wait on: each `wait(id)` returns once the test opens `id`. */
export class Gates {
  readonly waiting = new Map<number, { open: () => void; fail: (err: Error) => void }>();
  private changed: (() => void)[] = [];
  readonly cap: Gate;

  constructor() {
    this.cap = GateIface.server({
      wait: ({ id }) =>
        new Promise<void>((resolve, reject) => {
          this.waiting.set(id, { open: resolve, fail: reject });
          const listeners = this.changed;
          this.changed = [];
          listeners.forEach((l) => l());
        }),
    });
  }

  /** Resolves once `condition` holds, checked at each wait() that arrives. */
  async until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise<void>((resolve) => this.changed.push(resolve));
  }

  open(id: number): void {
    const g = this.waiting.get(id);
    if (!g) throw new Error(`gate ${id} is not waiting (waiting: ${[...this.waiting.keys()].join(", ")})`);
    this.waiting.delete(id);
    g.open();
  }

  fail(id: number, err: Error): void {
    const g = this.waiting.get(id);
    if (!g) throw new Error(`gate ${id} is not waiting`);
    this.waiting.delete(id);
    g.fail(err);
  }
}

/** A Probe client's stats, with the order as a plain array. */
export async function statsOf(probe: Probe) {
  const s = await probe.stats();
  return { maxActive: s.maxActive, order: [...s.order], entered: s.entered, queued: s.queued };
}

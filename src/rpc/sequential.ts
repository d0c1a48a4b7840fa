// One call at a time: a capability served "sequentially" (an actor) runs its
// calls in the order they arrive, the next only once the previous one has
// settled (returned, threw, or its promise settled), so the server's state
// needs no locks.
//
// Re-entrancy. A call that a sequential call makes, directly or through a
// chain of other calls, back into the same capability would wait behind the
// call that waits for it: a deadlock. Inside this process the engine knows
// each call's chain: a sequential call runs inside an AsyncLocalStorage
// context naming it, which every call made from its code (at any depth of
// local calls, awaited or not) inherits. A call made in that context to a
// capability whose running call is in the chain fails at once with an error
// that says so; so does one that would close a cycle of sequential
// capabilities of this process waiting for each other (A's call waits in B's
// queue behind B's call, which calls A). The engine cannot tell a call its
// caller awaits from one it does not: both count.
//
// What is not detected: a chain that leaves this process and comes back
// (P's call calls a closure in another vat, which calls P). A Cap'n Proto
// Call carries no causal context, so such a call is indistinguishable from
// any other caller's, and it queues: failing it could fail an unrelated
// caller, and running it at once would break the one-at-a-time guarantee for
// everyone. If the running call awaits it, both wait until one is canceled
// (the caller's `timeout` or signal). Calls delivered by a connection
// (`hints.answering`) are therefore never checked, and never inherit a
// context: a socket created inside a sequential call would otherwise lend
// that call's context to every message read from it.
//
// AsyncLocalStorage is only entered when a sequential call runs, so a
// process that serves none pays nothing for it.
import { AsyncLocalStorage } from "node:async_hooks";
import { RpcError, toRpcError } from "./errors.js";

/** One call admitted to a queue: waiting for its turn, running, or done. */
export class Turn {
  state: "waiting" | "running" | "done" = "waiting";
  /** Waiting turns made inside this one (this call's chain), for cycle detection. */
  readonly madeWaiting = new Set<Turn>();
  /** The running sequential calls this one was made inside, innermost first. */
  readonly chain: readonly Turn[];
  #start: (() => void) | null = null;

  constructor(
    readonly queue: CallQueue,
    readonly label: string,
    chain: readonly Turn[],
  ) {
    this.chain = chain;
  }

  /**
   * Runs `fn` in this turn: once every call admitted before it has settled,
   * inside the context that names it; the next call starts when `fn`'s
   * promise settles. `signal`: a call of this vat canceled while it waited
   * is not started. (A peer's call is always delivered, as the engine
   * delivers every call, and its signal fires once it runs: old C++ peers
   * send Finish right after each streaming call and expect it to run.)
   */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.state === "waiting") await new Promise<void>((resolve) => (this.#start = resolve));
    try {
      if (signal?.aborted) throw toRpcError(signal.reason);
      return await storage.run(this, fn);
    } finally {
      this.queue.finish(this);
    }
  }

  /** Called by the queue: this turn may run now. */
  begin(): void {
    this.state = "running";
    for (const outer of this.chain) outer.madeWaiting.delete(this);
    const start = this.#start;
    this.#start = null;
    start?.();
  }
}

const storage = new AsyncLocalStorage<Turn>();

/** The running sequential calls the current code runs inside, innermost first. */
function currentChain(): Turn[] {
  const inner = storage.getStore();
  if (inner === undefined) return [];
  const chain: Turn[] = [];
  for (const t of [inner, ...inner.chain]) if (t.state === "running") chain.push(t);
  return chain;
}

/** True when the current code runs inside a sequential call's context. */
export function inSequentialCall(): boolean {
  return storage.getStore() !== undefined;
}

/**
 * Runs `fn` outside any sequential call's context: for calls a connection
 * delivers, whose cause lies in another vat (see the file comment).
 */
export function outsideSequentialCalls<T>(fn: () => T): T {
  return storage.exit(fn);
}

/**
 * The calls of one sequential capability (or of several that share it, as
 * a plugin's `sequential: true` does): one runs at a time, in the order
 * `admit` was called.
 */
export class CallQueue {
  #current: Turn | null = null;
  #waiting: (Turn | undefined)[] = [];
  #head = 0;

  /** The call running now (or about to run), if any. */
  get current(): Turn | null {
    return this.#current;
  }

  /** Calls waiting for their turn. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /**
   * (Engine use: LocalServerHook.) Admits a call made now. `traced`: the call was made in this process, so
   * the current async context is its chain (false for calls a connection
   * delivers). Returns the re-entrancy error instead when the call would
   * wait for a call that waits for it.
   */
  admit(label: string, traced: boolean): Turn | RpcError {
    const chain = traced ? currentChain() : [];
    if (chain.length > 0 && this.#current !== null) {
      const problem = this.#deadlock(label, chain, this.#current);
      if (problem) return problem;
    }
    const turn = new Turn(this, label, chain);
    if (this.#current === null) {
      this.#current = turn;
      turn.begin();
    } else {
      this.#waiting.push(turn);
      for (const outer of chain) outer.madeWaiting.add(turn);
    }
    return turn;
  }

  /** (Engine use: Turn.run.) `turn` settled: the next waiting call starts. */
  finish(turn: Turn): void {
    turn.state = "done";
    if (this.#current !== turn) return;
    const next = this.#waiting[this.#head];
    if (next === undefined) {
      this.#current = null;
      this.#waiting.length = 0;
      this.#head = 0;
      return;
    }
    this.#waiting[this.#head++] = undefined;
    // Compact now and then: shift() on a long queue is quadratic.
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#head);
      this.#head = 0;
    }
    this.#current = next;
    next.begin();
  }

  /**
   * Would a call made inside `chain` wait forever behind `running`? Yes if
   * `running` is in the chain (re-entry), or if `running` waits, through
   * calls it made that wait in other queues, for a call of the chain.
   */
  #deadlock(label: string, chain: readonly Turn[], running: Turn): RpcError | null {
    const inChain = new Set(chain);
    if (inChain.has(running)) {
      return new RpcError(
        "failed",
        `${label} re-entered a sequential capability while its call ${running.label} is still running: ` +
          `it would wait for itself forever; make the capability parallel, or do not call back into it from its own call`,
      );
    }
    // Depth-first through "waits for": a running call waits for the calls
    // queued inside it, each of which waits for its queue's running call.
    const seen = new Set<Turn>([running]);
    const path: string[] = [];
    const visit = (turn: Turn): Turn | null => {
      for (const queued of turn.madeWaiting) {
        const blocker = queued.queue.current;
        if (blocker === null || seen.has(blocker)) continue;
        path.push(`${queued.label} waits behind ${blocker.label}`);
        if (inChain.has(blocker)) return blocker;
        seen.add(blocker);
        const found = visit(blocker);
        if (found) return found;
        path.pop();
      }
      return null;
    };
    const closing = visit(running);
    if (!closing) return null;
    return new RpcError(
      "failed",
      `${label} would wait behind ${running.label} of a sequential capability, which waits for this call's own chain ` +
        `(${path.join(", ")}, inside which ${label} was called): they would wait for each other forever; ` +
        `make one of these capabilities parallel, or do not call back into a sequential capability from inside its own call`,
    );
  }
}

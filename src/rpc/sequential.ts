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
// Across vats. A call carries its causes: the turn tokens (random 64-bit
// values, made when a sequential call first sends a call out of its vat) of
// the running sequential calls it was made on behalf of. They travel in an
// extra pointer of the rpc.capnp Call (wire.ts; docs/design/call-causes.md),
// only when there are some. A vat that receives a call with causes runs its
// target inside a context holding them (RemoteCauses), so every call the
// target's code makes, at any depth, carries them on; a call it forwards
// without user code (to an import, through a promise, queued on a promise
// that resolves later) keeps the causes it was made with (CallHints.cause).
// A call arriving at a sequential capability whose running call's token is
// among its causes (P's call X calls a closure in vat Q, whose code calls P)
// fails at once, as does a local call made in such a context; and the
// in-process cycle check (above) counts a queue's running call as part of
// the caller's chain when its token is among the caller's causes.
//
// The rule is sound in one direction only: a call is failed only when it was
// made, through a chain of calls, from inside the running call it would wait
// behind (awaited or not, as inside one process). What is not detected:
// chains through a peer that does not carry causes (the C++ reference, any
// other Cap'n Proto implementation: it drops them when it calls on); cycles
// that close through another vat's queue (P's call waits in Q's queue behind
// Q's call, which calls P: only Q's token travels, and P does not know its
// call waits behind it); chains more than MAX_CAUSES sequential calls deep
// (the innermost are kept). Those wait until one call is canceled (the
// caller's `timeout` or signal), as before. A forged token can only make
// the forger's own call fail.
//
// Calls delivered by a connection (`hints.answering`) never inherit the
// receiving vat's context, only the causes on the wire: a socket created
// inside a sequential call would otherwise lend that call's context to every
// message read from it.
//
// AsyncLocalStorage is only entered when a sequential call runs or a call
// with causes arrives, so a process that does neither pays nothing for it.
import { AsyncLocalStorage } from "node:async_hooks";
import { RpcError, toRpcError } from "./errors.js";

/** Most turn tokens one call carries; wire.ts fails a call that arrives with more. */
export const MAX_CAUSES = 64;

/**
 * The causes a call arrived with from another vat (sequential.ts): the
 * tokens of the running sequential calls it was made on behalf of,
 * innermost first. Its target runs inside it (AsyncLocalStorage).
 */
export class RemoteCauses {
  constructor(readonly tokens: readonly bigint[]) {}
}

/**
 * What a call is made on behalf of: the sequential call whose code makes it
 * (a Turn, with its chain and remote causes), or the causes of a call that
 * arrived from another vat. CallHints.cause carries it where the call is
 * made in another context than the caller's (queued on a promise, forwarded).
 */
export type CauseScope = Turn | RemoteCauses;

/** One call admitted to a queue: waiting for its turn, running, or done. */
export class Turn {
  state: "waiting" | "running" | "done" = "waiting";
  /** Waiting turns made inside this one (this call's chain), for cycle detection. */
  readonly madeWaiting = new Set<Turn>();
  /** The running sequential calls this one was made inside, innermost first. */
  readonly chain: readonly Turn[];
  /** The causes from other vats this call was made on behalf of (its caller's). */
  readonly remote: readonly bigint[];
  #start: (() => void) | null = null;
  #token: bigint | undefined = undefined;

  constructor(
    readonly queue: CallQueue,
    readonly label: string,
    chain: readonly Turn[],
    remote: readonly bigint[],
  ) {
    this.chain = chain;
    this.remote = remote;
  }

  /** This call's turn token, made the first time a call leaves the vat on its behalf. */
  get token(): bigint {
    return (this.#token ??= newToken());
  }

  /** The token if one was made (a call that never left the vat cannot be named by a cause). */
  get tokenIfMade(): bigint | undefined {
    return this.#token;
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

const storage = new AsyncLocalStorage<CauseScope>();

// Tokens come from the system's CSPRNG, a batch at a time.
const tokenPool = new BigUint64Array(64);
let tokensLeft = 0;
function newToken(): bigint {
  if (tokensLeft === 0) {
    crypto.getRandomValues(tokenPool);
    tokensLeft = tokenPool.length;
  }
  return tokenPool[--tokensLeft]!;
}

/** The running sequential calls of this vat `scope` lies inside, innermost first. */
function chainOf(scope: CauseScope | undefined): Turn[] {
  if (!(scope instanceof Turn)) return [];
  const chain: Turn[] = [];
  if (scope.state === "running") chain.push(scope);
  for (const t of scope.chain) if (t.state === "running") chain.push(t);
  return chain;
}

/** The causes from other vats `scope` carries. */
function remoteOf(scope: CauseScope | undefined): readonly bigint[] {
  return scope === undefined ? NO_TOKENS : scope instanceof Turn ? scope.remote : scope.tokens;
}
const NO_TOKENS: readonly bigint[] = [];

/**
 * What a call made now is made on behalf of. `hints.cause` wins (a call
 * queued or forwarded); a call a connection delivers has no other; any
 * other call is made in the current context.
 */
export function causeOf(hints: { readonly cause?: CauseScope | undefined; readonly answering?: boolean } | undefined): CauseScope | undefined {
  if (hints === undefined) return storage.getStore();
  return hints.cause ?? (hints.answering ? undefined : storage.getStore());
}

/**
 * The turn tokens a call leaving the vat carries for `scope` (running
 * sequential calls innermost first, then the remote causes), at most
 * MAX_CAUSES (the innermost); null when there are none.
 */
export function causeTokens(scope: CauseScope | undefined): readonly bigint[] | null {
  if (scope === undefined) return null;
  if (scope instanceof RemoteCauses) return scope.tokens.length > 0 ? scope.tokens : null;
  const tokens: bigint[] = [];
  for (const t of chainOf(scope)) tokens.push(t.token);
  for (const r of scope.remote) if (!tokens.includes(r)) tokens.push(r);
  if (tokens.length > MAX_CAUSES) tokens.length = MAX_CAUSES;
  return tokens.length > 0 ? tokens : null;
}

/** Runs `fn` inside `scope` (the target of a call made on its behalf). */
export function runInScope<T>(scope: CauseScope, fn: () => T): T {
  return storage.getStore() === scope ? fn() : storage.run(scope, fn);
}

/** True when the current code runs inside a sequential call's context, or a call's causes. */
export function inSequentialCall(): boolean {
  return storage.getStore() !== undefined;
}

/**
 * Runs `fn` outside any sequential call's context: for calls a connection
 * delivers without causes (see the file comment).
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
   * (Engine use: LocalServerHook.) Admits a call made now on behalf of
   * `scope` (causeOf: the caller's context, or the causes a peer's call
   * carried). Returns the re-entrancy error instead when the call would
   * wait for a call that waits for it.
   */
  admit(label: string, scope: CauseScope | undefined): Turn | RpcError {
    const chain = chainOf(scope);
    const remote = remoteOf(scope);
    if ((chain.length > 0 || remote.length > 0) && this.#current !== null) {
      const problem = this.#deadlock(label, chain, remote, this.#current);
      if (problem) return problem;
    }
    const turn = new Turn(this, label, chain, remote);
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
  #deadlock(label: string, chain: readonly Turn[], remote: readonly bigint[], running: Turn): RpcError | null {
    const local = new Set(chain);
    // A turn is in the caller's chain here, or (named by its token) through other vats.
    const inChain = { has: (t: Turn) => local.has(t) || (t.tokenIfMade !== undefined && remote.includes(t.tokenIfMade)) };
    if (local.has(running)) {
      return new RpcError(
        "failed",
        `${label} re-entered a sequential capability while its call ${running.label} is still running: ` +
          `it would wait for itself forever; make the capability parallel, or do not call back into it from its own call`,
      );
    }
    if (inChain.has(running)) {
      return new RpcError(
        "failed",
        `${label} re-entered sequential capability ${running.label.replace(/\.[^.]*$/, "")} from inside its own running call ` +
          `${running.label}, through another vat: it would wait behind that call, which waits for it, forever (a deadlock); ` +
          `make the capability parallel, or do not call back into it from what that call calls (a closure in another vat): ` +
          `give callbacks a parallel capability`,
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

// The process-wide budget for inbound bytes held before they form a message.
//
// A frame header announces its size before the body arrives. Allocating that
// size at once would let a peer that sends 16 bytes claim 64 MiB; so a large
// frame's body is kept only as it arrives (framing.ts), and every byte held
// that way is charged here, across all connections of the process. Each
// connection may hold FREE_BYTES_PER_CONNECTION on its own (small frames, the
// common case, never wait on anyone); past that, a connection that finds the
// budget spent stops reading from its socket (the peer's writes back up in
// the kernel and then in the peer) until other frames complete and give bytes
// back. Nothing is refused: large messages are delayed, not lost.
//
// Waiting alone could deadlock: frames that each hold part of the budget
// would all wait for one another to finish. So one connection at a time may
// overdraw the spent budget (the first to find it spent): its frame always
// completes, and hands the overdraft on. The memory held is thus at most the
// budget, plus one frame of at most maxMessageBytes, plus each connection's
// free allowance and one socket read.

/** Bytes a connection may hold in incomplete frames without drawing on the budget. */
export const FREE_BYTES_PER_CONNECTION = 64 * 1024;

/** Default process-wide total of buffered inbound bytes: 256 MiB. */
export const DEFAULT_INBOUND_BUDGET_BYTES = 256 * 1024 * 1024;

export interface InboundBudgetStats {
  /** Bytes held now, across all connections, in incomplete frames and read backlogs. */
  readonly usedBytes: number;
  /** The configured bound. */
  readonly maxBytes: number;
  /** Connections that stopped reading until bytes are given back. */
  readonly waiting: number;
}

export class InboundBudget {
  #maxBytes: number;
  #used = 0;
  readonly #waiters = new Set<() => void>();
  /** The one reader allowed past a spent budget (see above). */
  #overdraft: object | null = null;

  constructor(maxBytes = DEFAULT_INBOUND_BUDGET_BYTES) {
    this.#maxBytes = checkBudget(maxBytes);
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  set maxBytes(value: number) {
    this.#maxBytes = checkBudget(value);
    this.#wake();
  }

  /** True when no more bytes should be taken in beyond the free allowances. */
  get exhausted(): boolean {
    return this.#used >= this.#maxBytes;
  }

  charge(bytes: number): void {
    this.#used += bytes;
  }

  /**
   * Whether `reader` may go on reading although the budget is spent: true
   * for the one reader that holds (or now takes) the overdraft.
   */
  mayOverdraw(reader: object): boolean {
    if (this.#overdraft === null) this.#overdraft = reader;
    return this.#overdraft === reader;
  }

  /** `reader` no longer needs the overdraft (its frame is complete, or it closed). */
  endOverdraft(reader: object): void {
    if (this.#overdraft !== reader) return;
    this.#overdraft = null;
    this.#wake();
  }

  release(bytes: number): void {
    this.#used -= bytes;
    this.#wake();
  }

  /**
   * Calls `resume` once the budget has room again. Returns a function that
   * cancels the wait (for a connection that closes while waiting).
   */
  waitForRoom(resume: () => void): () => void {
    this.#waiters.add(resume);
    return () => this.#waiters.delete(resume);
  }

  stats(): InboundBudgetStats {
    return { usedBytes: this.#used, maxBytes: this.#maxBytes, waiting: this.#waiters.size };
  }

  #wake(): void {
    if ((this.exhausted && this.#overdraft !== null) || this.#waiters.size === 0) return;
    // Every waiter resumes; each may overshoot by at most one socket read
    // before it sees the budget spent again (or takes the free overdraft)
    // and waits once more.
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const resume of waiters) resume();
  }
}

function checkBudget(value: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < FREE_BYTES_PER_CONNECTION) {
    throw new RangeError(
      `the inbound budget must be an integer number of bytes of at least ${FREE_BYTES_PER_CONNECTION}, got ${String(value)}`,
    );
  }
  return value;
}

/** The budget every connection of this process shares unless given its own. */
export const processInboundBudget = new InboundBudget();

/**
 * Sets the process-wide bound on inbound bytes held in incomplete frames and
 * read backlogs (default 256 MiB), and returns the current figures.
 */
export function setInboundBudget(options: { maxBytes: number }): InboundBudgetStats {
  processInboundBudget.maxBytes = options.maxBytes;
  return processInboundBudget.stats();
}

/** The process-wide inbound budget's current figures. */
export function inboundBudgetStats(): InboundBudgetStats {
  return processInboundBudget.stats();
}

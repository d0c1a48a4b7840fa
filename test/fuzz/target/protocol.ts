// The IPC protocol between the fuzzer (parent) and the server under fuzz
// (child.ts). Requests carry an id; the child answers each exactly once.

export type ListenerName = "plain" | "secure";

export interface MemorySample {
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
  external: number;
}

export interface ChildError {
  kind: "uncaughtException" | "unhandledRejection" | "warning";
  message: string;
}

export interface ReadyInfo {
  pid: number;
  plainPath: string;
  securePath: string;
  /** The secure listener's identity, "@...ed25519". */
  serverId: string;
}

/** One hostile connection as the parent sees it: the n-th it opened to `listener` this batch. */
export interface SettleExpectation {
  listener: ListenerName;
  index: number;
  bytes: number;
}

export interface BeginResult {
  memory: MemorySample;
}

export interface SettleResult {
  settled: boolean;
  /** Connections whose bytes the server had not all read (and that were still open). */
  pending: { listener: ListenerName; index: number; read: number; expected: number }[];
}

export interface StatsResult {
  /**
   * monitorEventLoopDelay since `begin`, in ms; `cpuBlockMs` is the longest
   * delay counting only CPU time the process used (child.ts explains).
   */
  eventLoop: { maxMs: number; meanMs: number; p99Ms: number; cpuBlockMs: number };
  memory: { atBegin: MemorySample; peak: MemorySample; now: MemorySample };
  /** Errors and warnings since the last stats request (drained). */
  errors: ChildError[];
  /** Sessions alive per listener. */
  sessions: Record<ListenerName, number>;
  /** TestService.tracked() counters not yet released. */
  liveTracked: number;
  /** Sockets accepted since `begin` that are still open, per listener. */
  openSockets: Record<ListenerName, number>;
}

export interface QuiesceResult {
  quiet: boolean;
  sessions: Record<ListenerName, number>;
  liveTracked: number;
  openSockets: Record<ListenerName, number>;
  /** Table sizes of the sessions still open beyond the expected ones. */
  leftovers: { listener: ListenerName; stats: Record<string, number>; error: string | null }[];
}

export type Request =
  | { op: "begin" }
  | { op: "settle"; expect: SettleExpectation[]; timeoutMs: number }
  | { op: "stats" }
  | { op: "quiesce"; sessions: Record<ListenerName, number>; timeoutMs: number }
  | { op: "gc" };

export type RequestMessage = Request & { id: number };
export type ResponseMessage = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
export type ChildEvent = { event: "ready"; info: ReadyInfo };

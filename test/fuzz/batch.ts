// One batch: a few hostile connections at once against the server under
// fuzz, then the checks. Shared by the fuzz loop, the minimizer and the
// regression tests, so a finding is judged the same way everywhere.
//
// The checks, after every batch:
//   - the server process is alive and answers;
//   - a good client gets correct answers within the deadline (long-lived
//     session, fresh plain session, and now and then a fresh secure one);
//   - no uncaught exception, unhandled rejection or process warning;
//   - the event loop was never blocked past the rule: 100 ms per 8 MiB of
//     the largest message in the batch, with a floor for CI noise (measured
//     with monitorEventLoopDelay, and confirmed in CPU time so that a child
//     starved of a core by other test files does not count);
//   - memory while the hostile connections were open stayed within a
//     constant factor of what they sent (plus slack);
//   - every hostile connection is closed by the server once we half-close
//     it, and nothing it held (sessions, exports) outlives it;
//   - what the server sent back always decodes.
// (Memory after GC over the whole run is checked by the runner.)
import { CLOSE_DEADLINE_MS, SocketIO } from "./attacks/socket-io.js";
import { caseBytes, describeCase, listenerOf, playCase, type Case, type Played } from "./cases.js";
import type { GoodClient } from "./good-client.js";
import { DEFAULT_RULES, judgeQuiesce, judgeRetained, judgeStats, type Failure, type Rules, type Sent } from "./checks.js";
import type { BeginResult, ListenerName, MemorySample, QuiesceResult, SettleResult, StatsResult } from "./target/protocol.js";
import type { Target } from "./target/target.js";
import { errorText, within } from "./util.js";

export interface BatchResult {
  failures: Failure[];
  connections: number;
  bytes: number;
  /** Abort reasons the server sent on plain connections (coverage, for the summary). */
  aborts: string[];
  eventLoopMaxMs: number;
  /** The child died or stopped answering: start a fresh one. */
  needRestart: boolean;
  /** Memory after the batch and a full GC (for the run's growth check). */
  afterGc: MemorySample | null;
  notes: string[];
}

interface Conn {
  c: Case;
  io: SocketIO;
  listener: ListenerName;
  index: number;
}

export async function runBatch(
  target: Target,
  good: GoodClient,
  cases: readonly Case[],
  token: number,
  rules: Rules = DEFAULT_RULES,
): Promise<BatchResult> {
  const failures: Failure[] = [];
  const notes: string[] = [];
  const conns: Conn[] = [];
  let played: (Played | null)[] = [];
  const result = (extra: Partial<BatchResult> = {}): BatchResult => ({
    failures,
    connections: conns.length,
    bytes: conns.reduce((n, x) => n + x.io.written, 0),
    aborts: played.flatMap((p) => p?.heard?.aborts ?? []),
    eventLoopMaxMs: 0,
    needRestart: false,
    afterGc: null,
    notes,
    ...extra,
  });

  /** The child died or went silent: report it as such and stop the batch. */
  const lost = async (during: string, e: unknown): Promise<BatchResult> => {
    for (const x of conns) x.io.destroy();
    const exit = target.alive ? null : (target.exitInfo ?? (await target.exited));
    if (exit) {
      failures.push({
        kind: "crash",
        signature: `crash: ${exit.signal ?? `exit ${exit.code}`}`,
        detail: `the server process died during ${during} (${exit.signal ?? `exit code ${exit.code}`}); stderr:\n${target.stderrTail()}`,
      });
    } else {
      failures.push({ kind: "hang", signature: "hang", detail: `the server stopped answering during ${during}: ${errorText(e)}` });
    }
    return result({ needRestart: true });
  };

  let begin: BeginResult;
  try {
    begin = await target.request<BeginResult>({ op: "begin" });
  } catch (e) {
    return lost("begin", e);
  }

  // Connect one after the other, so the server accepts them in our order.
  const counts: Record<ListenerName, number> = { plain: 0, secure: 0 };
  for (const c of cases) {
    const listener = listenerOf(c);
    const path = listener === "plain" ? target.info.plainPath : target.info.securePath;
    try {
      const io = await within(SocketIO.connect(path), 5000, `a connection to ${listener}`);
      conns.push({ c, io, listener, index: counts[listener]++ });
    } catch (e) {
      if (!target.alive) return lost("connecting", e);
      failures.push({ kind: "unresponsive", signature: "unresponsive: connect", detail: `could not connect to ${listener}: ${errorText(e)}` });
    }
  }

  played = await Promise.all(
    conns.map((x) =>
      playCase(x.io, x.c, target.serverKey).catch((e: unknown) => {
        notes.push(`playing failed: ${errorText(e)}`);
        return null;
      }),
    ),
  );
  for (const p of played) if (p?.handshakeError) notes.push(`a real handshake failed: ${p.handshakeError}`);

  // Wait until the server has read what we sent (or dropped the connection).
  try {
    const settle = await target.request<SettleResult>({
      op: "settle",
      expect: conns.map((x) => ({ listener: x.listener, index: x.index, bytes: x.io.written })),
      timeoutMs: 5000,
    });
    if (!settle.settled) notes.push(`unsettled: ${JSON.stringify(settle.pending)}`);
  } catch (e) {
    return lost("settle", e);
  }

  // Half-close every hostile connection: the server must close each.
  const closed = await Promise.all(conns.map((x) => x.io.end()));
  closed.forEach((ok, i) => {
    if (ok) return;
    const x = conns[i]!;
    x.io.destroy();
    failures.push({
      kind: "conn-not-closed",
      signature: `conn-not-closed: ${x.c.kind}`,
      detail: `the server did not close a ${x.c.kind} connection (quiet for ${CLOSE_DEADLINE_MS} ms after our half-close): ${describeCase(x.c)}`,
    });
  });
  for (const p of played) {
    if (p?.heard?.undecodable) {
      failures.push({ kind: "undecodable-output", signature: "undecodable-output", detail: `the server sent bytes that do not decode: ${p.heard.undecodable}` });
    }
  }

  let quiesce: QuiesceResult;
  try {
    quiesce = await target.request<QuiesceResult>({ op: "quiesce", sessions: good.openSessions, timeoutMs: 3000 });
  } catch (e) {
    return lost("quiesce", e);
  }
  const leak = judgeQuiesce(quiesce);
  if (leak) failures.push(leak);

  const problem = await good.check(token, token % 4 === 0);
  if (problem) failures.push({ kind: "unresponsive", signature: "unresponsive", detail: problem });

  let stats: StatsResult;
  try {
    stats = await target.request<StatsResult>({ op: "stats" });
  } catch (e) {
    return lost("stats", e);
  }
  const sent: Sent = {
    connections: conns.length,
    bytes: conns.reduce((n, x) => n + x.io.written, 0),
    largest: Math.max(0, ...conns.map((x) => Math.max(x.io.written, caseBytes(x.c)))),
  };
  const judged = judgeStats(stats, sent, rules);
  failures.push(...judged.failures);
  notes.push(...judged.notes);

  // What the batch left behind once everything of it is gone.
  let after: MemorySample;
  try {
    after = await target.request<MemorySample>({ op: "gc" });
  } catch (e) {
    return lost("gc", e);
  }
  const retained = judgeRetained(begin.memory, after, rules);
  if (retained) failures.push(retained);

  return result({
    eventLoopMaxMs: stats.eventLoop.maxMs,
    afterGc: after,
    needRestart: failures.some((f) => f.kind === "unresponsive" || f.kind === "leak"),
  });
}

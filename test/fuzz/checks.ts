// The rules a batch is judged by, and the judging itself: pure functions of
// what the server under fuzz reported (target/protocol.ts) and what the
// hostile connections sent.
import type { MemorySample, QuiesceResult, StatsResult } from "./target/protocol.js";
import { MiB, mib } from "./util.js";

export interface Rules {
  /** Event-loop delay always allowed (CI noise on a 2-core machine, GC). */
  eventLoopFloorMs: number;
  /** Event-loop delay allowed per 8 MiB of the largest message. */
  eventLoopPer8MiBMs: number;
  /** ArrayBuffer growth allowed while connections are open: slack + per connection + factor × bytes sent. */
  arrayBuffersSlack: number;
  arrayBuffersPerConnection: number;
  arrayBuffersPerByte: number;
  /** Heap growth allowed while connections are open: slack + factor × bytes sent. */
  heapSlack: number;
  heapPerByte: number;
  /** Heap and ArrayBuffers a batch may leave behind after its connections closed and a full GC. */
  retainedSlack: number;
}

export const DEFAULT_RULES: Rules = {
  eventLoopFloorMs: 250,
  eventLoopPer8MiBMs: 100,
  arrayBuffersSlack: 16 * MiB,
  arrayBuffersPerConnection: 1 * MiB,
  arrayBuffersPerByte: 4,
  heapSlack: 96 * MiB,
  heapPerByte: 32,
  retainedSlack: 16 * MiB,
};

export type FailureKind =
  | "crash"
  | "hang"
  | "uncaught"
  | "warning"
  | "unresponsive"
  | "event-loop"
  | "memory"
  | "conn-not-closed"
  | "leak"
  | "undecodable-output";

export interface Failure {
  kind: FailureKind;
  /** Stable across runs for the same fault: findings are deduplicated on it. */
  signature: string;
  detail: string;
}

/** What the hostile connections of a batch sent. */
export interface Sent {
  connections: number;
  /** All bytes, every connection. */
  bytes: number;
  /** The most one connection sent: no message of the batch was larger. */
  largest: number;
}

/** An error message without what changes between runs (ids, sizes). */
function normalize(text: string): string {
  return text
    .split("\n")[0]!
    .replace(/0x[0-9a-f]+/gi, "X")
    .replace(/\d+/g, "N")
    .slice(0, 100);
}

/** Uncaught errors, the event-loop rule and memory while the connections were open. */
export function judgeStats(stats: StatsResult, sent: Sent, rules: Rules): { failures: Failure[]; notes: string[] } {
  const failures: Failure[] = [];
  const notes: string[] = [];
  for (const err of stats.errors) {
    failures.push({
      kind: err.kind === "warning" ? "warning" : "uncaught",
      signature: `${err.kind}: ${normalize(err.message)}`,
      detail: err.message,
    });
  }

  // Over the rule by monitorEventLoopDelay, and by CPU time too (not a
  // process starved of a core by whatever else runs on the machine).
  const allowedMs = Math.max(rules.eventLoopFloorMs, (rules.eventLoopPer8MiBMs * sent.largest) / (8 * MiB));
  const { maxMs, cpuBlockMs } = stats.eventLoop;
  if (maxMs > allowedMs && cpuBlockMs > allowedMs) {
    failures.push({
      kind: "event-loop",
      signature: "event-loop",
      detail: `the event loop was blocked for ${maxMs.toFixed(0)} ms (${cpuBlockMs.toFixed(0)} ms of it on the CPU); allowed ${allowedMs.toFixed(0)} ms (largest message ≤ ${mib(sent.largest)})`,
    });
  } else if (maxMs > allowedMs) {
    notes.push(`event loop late by ${maxMs.toFixed(0)} ms but only ${cpuBlockMs.toFixed(0)} ms on the CPU: starved, not blocked`);
  }

  const { atBegin, peak } = stats.memory;
  const abAllowed = rules.arrayBuffersSlack + rules.arrayBuffersPerConnection * sent.connections + rules.arrayBuffersPerByte * sent.bytes;
  if (peak.arrayBuffers - atBegin.arrayBuffers > abAllowed) {
    failures.push({
      kind: "memory",
      signature: "memory: arrayBuffers",
      detail: `ArrayBuffer memory grew by ${mib(peak.arrayBuffers - atBegin.arrayBuffers)} while ${sent.connections} hostile connections had sent ${sent.bytes} bytes (allowed ${mib(abAllowed)})`,
    });
  }
  const heapAllowed = rules.heapSlack + rules.heapPerByte * sent.bytes;
  if (peak.heapUsed - atBegin.heapUsed > heapAllowed) {
    failures.push({
      kind: "memory",
      signature: "memory: heap",
      detail: `the JS heap grew by ${mib(peak.heapUsed - atBegin.heapUsed)} while ${sent.connections} hostile connections had sent ${sent.bytes} bytes (allowed ${mib(heapAllowed)})`,
    });
  }
  return { failures, notes };
}

/** What the batch left behind once all of it was gone, after a full GC. */
export function judgeRetained(before: MemorySample, after: MemorySample, rules: Rules): Failure | null {
  const retained = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
  if (retained <= rules.retainedSlack) return null;
  return {
    kind: "memory",
    signature: "memory: retained",
    detail: `${mib(retained)} of heap and ArrayBuffers were still held after the batch's connections had all closed and a full GC (allowed ${mib(rules.retainedSlack)})`,
  };
}

/** Sessions, sockets or capabilities that outlived the hostile connections. */
export function judgeQuiesce(q: QuiesceResult): Failure | null {
  if (q.quiet) return null;
  const what = q.liveTracked > 0 ? "tracked capabilities" : q.openSockets.plain + q.openSockets.secure > 0 ? "sockets" : "sessions";
  return { kind: "leak", signature: `leak: ${what}`, detail: `after every hostile connection closed, the server still holds: ${JSON.stringify(q)}` };
}

// Shrinks a failing batch to a small input that still fails the same way
// (same failure signature), each attempt on a fresh server: first the
// connections (one alone if one suffices), then each connection's frames
// (delta debugging: halves, quarters, … single frames), then bytes (the
// tail of the stream, then the largest frame), and the case's extras (write
// splits, responder, box ops, handshake edits).
import { concat, frameUnits } from "./frames.js";
import type { Case } from "./cases.js";
import { replay } from "./server.js";

export interface MinimizeOptions {
  maxAttempts: number;
  maxMs: number;
  log: (line: string) => void;
}

export const DEFAULT_MINIMIZE: MinimizeOptions = { maxAttempts: 60, maxMs: 180_000, log: () => {} };

export async function minimize(cases: readonly Case[], signature: string, options = DEFAULT_MINIMIZE): Promise<Case[]> {
  const started = Date.now();
  let attempts = 0;
  const budgetLeft = () => attempts < options.maxAttempts && Date.now() - started < options.maxMs;
  const fails = async (candidate: readonly Case[]): Promise<boolean> => {
    if (candidate.length === 0 || !budgetLeft()) return false;
    attempts++;
    try {
      const r = await replay(candidate);
      return r.failures.some((f) => f.signature === signature);
    } catch {
      return false;
    }
  };

  let best = [...cases];
  // 1. Connections: one alone, else drop them one at a time.
  if (best.length > 1) {
    const alone = [...best].sort((a, b) => size(b) - size(a));
    let found = false;
    for (const c of alone) {
      if (await fails([c])) {
        best = [c];
        found = true;
        break;
      }
    }
    for (let i = best.length - 1; !found && i >= 0 && best.length > 1; i--) {
      const without = best.filter((_, j) => j !== i);
      if (await fails(without)) best = without;
    }
  }
  // 2. Within each connection.
  for (let i = 0; i < best.length; i++) {
    const shrunk = await shrinkCase(best[i]!, async (c) => fails(best.map((x, j) => (j === i ? c : x))));
    best = best.map((x, j) => (j === i ? shrunk : x));
  }
  options.log(`minimized in ${attempts} attempts, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return best;
}

function size(c: Case): number {
  return c.kind === "handshake" ? 0 : c.writes.reduce((n, w) => n + w.length, 0);
}

type StreamCase = Exclude<Case, { kind: "handshake" }>;

async function shrinkCase(c: Case, fails: (c: Case) => Promise<boolean>): Promise<Case> {
  if (c.kind === "handshake") return shrinkHandshake(c, fails);
  let best: StreamCase = c;
  // Extras first: they make the rest faster to judge.
  if (best.kind === "plain" && best.responder && (await fails({ ...best, responder: null }))) best = { ...best, responder: null };
  if (best.kind === "box" && best.ops.length > 0 && (await fails({ ...best, ops: [] }))) best = { ...best, ops: [] };
  const whole = concat(best.writes);
  if (best.writes.length > 1 && (await fails({ ...best, writes: [whole] }))) best = { ...best, writes: [whole] };

  // Frames: delta debugging over the stream's frames (and trailing bytes).
  if (best.writes.length === 1) {
    let units = frameUnits(best.writes[0]!);
    const withUnits = (u: Uint8Array[]): StreamCase => ({ ...best, writes: [concat(u)] });
    for (let chunk = Math.max(1, units.length >> 1); chunk >= 1; chunk >>= 1) {
      for (let at = 0; at < units.length && units.length > 1; ) {
        const candidate = [...units.slice(0, at), ...units.slice(at + chunk)];
        if (candidate.length > 0 && (await fails(withUnits(candidate)))) units = candidate;
        else at += chunk;
      }
    }
    best = withUnits(units);
    // Bytes: cut the tail of the stream shorter while it still fails.
    let bytes = best.writes[0]!;
    for (let cut = bytes.length >> 1; cut >= 8; cut >>= 1) {
      const shorter = bytes.subarray(0, bytes.length - cut);
      if (await fails({ ...best, writes: [shorter] })) bytes = shorter;
    }
    best = { ...best, writes: [bytes] };
  }
  return best;
}

async function shrinkHandshake(c: Extract<Case, { kind: "handshake" }>, fails: (c: Case) => Promise<boolean>): Promise<Case> {
  let best = c;
  const tryAttack = async (attack: typeof c.attack) => {
    const candidate = { ...best, attack };
    if (await fails(candidate)) best = candidate;
  };
  const a = best.attack;
  if (a.piece > 0) await tryAttack({ ...best.attack, piece: 0 } as typeof a);
  if (best.attack.step !== "raw" && best.attack.extra.length > 0) await tryAttack({ ...best.attack, extra: new Uint8Array(0) });
  if (best.attack.step !== "raw" && best.attack.edits.length > 0) await tryAttack({ ...best.attack, edits: [] });
  if (best.attack.step === "raw" && best.attack.bytes.length > 8) await tryAttack({ ...best.attack, bytes: best.attack.bytes.subarray(0, 8) });
  return best;
}

// Child processes of the bench runners: servers that print a `listening`
// line, clients that print one JSON line, a scratch directory for unix
// sockets, and cleanup of all of them when the runner exits.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the working directory of every child. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const live = new Set<ChildProcess>();
let scratch: string | undefined;

function cleanup(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  live.clear();
  if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

/** Kills what is left and removes the scratch directory (also done at exit). */
export function cleanupAll(): void {
  cleanup();
}

/** A temporary directory for socket files, removed by cleanup. */
export function scratchDir(): string {
  scratch ??= fs.mkdtempSync(path.join(os.tmpdir(), "capmesh-bench-"));
  return scratch;
}

/** Removes scratch and repository paths from text that goes into the results. */
export function scrub(text: string): string {
  let t = text;
  if (scratch !== undefined) t = t.split(scratch).join("<tmp>");
  t = t.split(ROOT.replace(/\/$/, "")).join(".");
  return t.split(os.homedir()).join("~").replace(/\s+/g, " ").trim();
}

export function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** argv run on CPU 0 only when `pin`. */
export function pinned(argv: readonly string[], pin: boolean): string[] {
  return pin ? ["taskset", "-c", "0", ...argv] : [...argv];
}

export function tail(chunks: string[], max = 400): string {
  const text = chunks.join("");
  return text.length > max ? text.slice(-max) : text;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningServer {
  child: ChildProcess;
  address: string;
  stderr: string[];
}

/** Starts `argv` (the address appended) and resolves once it prints `listening <address>`. */
export async function startServer(argv: readonly string[], address: string, pin: boolean): Promise<RunningServer> {
  const full = pinned([...argv, address], pin);
  // stdin stays open while the server should run: closing it is a stop request
  // that the C++ peer honours.
  const child = spawn(full[0]!, full.slice(1), { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  live.add(child);
  child.stdin!.on("error", () => undefined);
  const stderr: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr.push(d);
    if (stderr.length > 50) stderr.splice(0, stderr.length - 50);
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      void stopServer({ child, address, stderr });
      reject(new Error(`server did not print "listening" within 60 s ${tail(stderr)}`));
    }, 60_000);
    const onData = (d: string): void => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("listening "));
      if (line !== undefined) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        resolve({ child, address: line.slice("listening ".length).trim() || address, stderr });
      }
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      live.delete(child);
      clearTimeout(timer);
      reject(new Error(`server exited (${signal ?? code}) before listening: ${tail(stderr)}`));
    });
  });
}

export function serverAlive(server: RunningServer): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

/** Stops a server: stdin closed, then SIGTERM, then SIGKILL after 2 s. */
export function stopServer(server: RunningServer): Promise<void> {
  const { child } = server;
  if (!serverAlive(server)) {
    live.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 2000);
    child.once("exit", () => {
      clearTimeout(kill);
      live.delete(child);
      resolve();
    });
    child.stdin!.end();
    child.kill("SIGTERM");
  });
}

export type Metrics = Record<string, number | null>;
export type Outcome = { ok: true; metrics: Metrics; note?: string } | { ok: false; reason: string };

/**
 * Runs a client to completion and takes the last JSON line it printed:
 * its numbers, or its `{"error"}`, or `{"unsupported"}` (an empty result with a note).
 */
export async function runClientProcess(argv: readonly string[], limitMs: number, pin: boolean): Promise<Outcome> {
  const full = pinned(argv, pin);
  const child = spawn(full[0]!, full.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout!.setEncoding("utf8").on("data", (d: string) => stdout.push(d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limitMs);
  const code = await new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(-1));
    child.once("close", (c) => resolve(c));
  });
  clearTimeout(timer);
  live.delete(child);
  if (timedOut) return { ok: false, reason: `timed out after ${Math.round(limitMs / 1000)} s` };
  const lines = stdout.join("").split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{"));
  let parsed: Record<string, unknown> | undefined;
  for (const line of lines.reverse()) {
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
      break;
    } catch {
      // not the JSON line
    }
  }
  if (parsed === undefined) {
    const why = tail(stderr, 300) || `exit code ${code}, no output`;
    return { ok: false, reason: scrub(why) };
  }
  if (typeof parsed.error === "string") return { ok: false, reason: scrub(parsed.error) };
  if (typeof parsed.unsupported === "string") return { ok: true, metrics: {}, note: parsed.unsupported };
  if (code !== 0) return { ok: false, reason: `exit code ${code}: ${scrub(tail(stderr, 200))}` };
  const metrics: Metrics = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === "number" || v === null) metrics[k] = v;
  }
  return { ok: true, metrics, note: typeof parsed.note === "string" ? parsed.note : undefined };
}

/** A client failure, with the server's last words if the server died. */
export function explainFailure(outcome: Outcome, server: RunningServer): Outcome {
  if (outcome.ok || serverAlive(server)) return outcome;
  const why = scrub(tail(server.stderr, 200));
  return { ok: false, reason: `${outcome.reason} (server died${why ? ": " + why : ""})` };
}

// The runner side of the mesh bench's long-lived child processes: start one,
// wait for a JSON line, send a command and wait for its reply, stop it
// (stdin closed, then SIGTERM, then SIGKILL). Every child still running when
// the runner exits is killed.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { ROOT, scrub, tail } from "../lib/processes.js";

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

export type Line = Record<string, unknown>;

interface Waiter {
  match: (line: Line) => boolean;
  resolve: (line: Line) => void;
  reject: (err: Error) => void;
}

export class Worker {
  readonly #child: ChildProcess;
  readonly #lines: Line[] = [];
  readonly #waiters = new Set<Waiter>();
  readonly #stderr: string[] = [];
  readonly #exited: Promise<void>;
  #exitReason: string | null = null;
  /** What its `{"ready"}` line said. */
  readyLine: Line = {};

  private constructor(
    readonly name: string,
    argv: readonly string[],
    env: NodeJS.ProcessEnv,
  ) {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    this.#child = child;
    live.add(child);
    child.stdin!.on("error", () => undefined);
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.#stderr.push(d);
      if (this.#stderr.length > 50) this.#stderr.splice(0, this.#stderr.length - 50);
    });
    createInterface({ input: child.stdout! }).on("line", (text) => {
      if (!text.startsWith("{")) return;
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        return;
      }
      for (const w of this.#waiters) {
        if (w.match(line)) {
          this.#waiters.delete(w);
          w.resolve(line);
          return;
        }
      }
      this.#lines.push(line);
    });
    this.#exited = new Promise((resolve) => {
      const done = (why: string): void => {
        live.delete(child);
        this.#exitReason ??= why;
        const err = new Error(`${this.name} ${this.#exitReason}${this.#stderrTail()}`);
        for (const w of this.#waiters) w.reject(err);
        this.#waiters.clear();
        resolve();
      };
      child.once("error", (err) => done(`could not start: ${err.message}`));
      child.once("exit", (code, signal) => done(`exited (${signal ?? code})`));
    });
  }

  /** Starts `argv` and waits for its `{"ready"}` line (or its `{"error"}`). */
  static async start(name: string, argv: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<Worker> {
    const worker = new Worker(name, argv, env);
    try {
      const line = await worker.next((l) => "ready" in l || "error" in l, timeoutMs, "its ready line");
      if (typeof line.error === "string") throw new Error(`${name}: ${line.error}`);
      worker.readyLine = line;
      return worker;
    } catch (err) {
      await worker.stop();
      throw err;
    }
  }

  #stderrTail(): string {
    const t = scrub(tail(this.#stderr, 300));
    return t ? `: ${t}` : "";
  }

  /** The first line (already received or still to come) that `match` accepts. */
  next(match: (line: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    const i = this.#lines.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#lines.splice(i, 1)[0]!);
    if (this.#exitReason !== null) return Promise.reject(new Error(`${this.name} ${this.#exitReason}${this.#stderrTail()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`${this.name}: no ${what} within ${Math.round(timeoutMs / 1000)} s${this.#stderrTail()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** Sends `{"cmd", ...args}` and resolves with the reply; a reply with `error` rejects. */
  async request(cmd: string, args: Line = {}, timeoutMs = 120_000): Promise<Line> {
    this.send(cmd, args);
    const reply = await this.next((l) => l.re === cmd, timeoutMs, `reply to "${cmd}"`);
    if (typeof reply.error === "string") throw new Error(`${this.name} ${cmd}: ${reply.error}`);
    return reply;
  }

  send(cmd: string, args: Line = {}): void {
    this.#child.stdin!.write(JSON.stringify({ cmd, ...args }) + "\n");
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** Stops it: stdin closed (a graceful stop), SIGTERM after `graceMs`, SIGKILL 2 s later. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.#child;
    if (this.#exitReason === null) {
      this.#exitReason = "was stopped";
      child.stdin!.end();
      const term = setTimeout(() => child.kill("SIGTERM"), graceMs);
      const kill = setTimeout(() => child.kill("SIGKILL"), graceMs + 2000);
      await this.#exited;
      clearTimeout(term);
      clearTimeout(kill);
    }
    await this.#exited;
  }
}

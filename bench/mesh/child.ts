// The child side of the mesh bench's long-lived processes (hub, plugin,
// probe, crowd): JSON commands on stdin, one JSON line per reply or report on
// stdout. A child stops when its stdin closes (after `onStop`), when it is
// signalled, or when its parent goes away, so it never outlives the runner.
import { createInterface } from "node:readline";

/** Microseconds on CLOCK_MONOTONIC, which every process on the machine shares. */
export function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

/** Writes one JSON line on stdout. */
export function emit(message: object): void {
  process.stdout.write(JSON.stringify(message) + "\n");
}

export type Handler = (args: Record<string, unknown>) => Promise<object> | object;

/** The CPU time (user + system, µs) this process has used so far. */
export function cpuUs(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * Answers commands `{"cmd": name, ...args}` with `{"re": name, ...result}`, or
 * `{"re": name, "error": "…"}`. Commands run one at a time, in order. Every
 * child answers `cpu` with `{"cpuUs"}` (see cpuUs) unless it has its own.
 */
export function serveCommands(handlers: Record<string, Handler>, onStop: () => Promise<void>): void {
  handlers = { cpu: () => ({ cpuUs: cpuUs() }), ...handlers };
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    // Give a graceful stop a few seconds; the runner kills what is left anyway.
    setTimeout(() => process.exit(code), 5000).unref();
    void onStop()
      .catch((err: unknown) => process.stderr.write(`stopping: ${String(err)}\n`))
      .finally(() => process.exit(code));
  };
  process.on("SIGTERM", () => stop(0));
  process.on("SIGINT", () => stop(0));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop(1);
  }, 500).unref();

  let queue = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line.trim() === "") return;
    queue = queue.then(async () => {
      let cmd = "?";
      try {
        const message = JSON.parse(line) as Record<string, unknown>;
        cmd = String(message.cmd);
        const handler = handlers[cmd];
        if (handler === undefined) throw new Error(`unknown command "${cmd}"`);
        emit({ re: cmd, ...(await handler(message)) });
      } catch (err) {
        emit({ re: cmd, error: err instanceof Error ? err.message : String(err) });
      }
    });
  });
  lines.on("close", () => stop(0));
}

/** Runs `body` and reports a failure as `{"error"}` with a non-zero exit. */
export async function childMain(body: () => Promise<void>): Promise<void> {
  const fail = (err: unknown): never => {
    emit({ error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  };
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  try {
    await body();
  } catch (err) {
    fail(err);
  }
}

/** Runs `task(i)` for i in [0, count) with at most `limit` running at once. */
export async function pool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
}

// The frame of every client program: one JSON line on stdout, `{"error":"…"}`
// (and a non-zero exit) on any failure, and a watchdog so that a client never
// outlives its measurement by much, whatever the system under test does.

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stdout.write(JSON.stringify({ error: message.split("\n")[0]!.slice(0, 300) }) + "\n");
  process.exit(1);
}

/**
 * Runs `body`, prints the result it returns as the JSON line and exits.
 * `body` may call `watchdog` once it knows how long it should take.
 */
export async function clientMain(body: (watchdog: (seconds: number) => void) => Promise<object>): Promise<never> {
  process.on("uncaughtException", fail);
  // A rejection nobody handles inside a library ends the run too, but a
  // moment later, so that the error the client itself catches is the one shown.
  process.on("unhandledRejection", (reason) => {
    setTimeout(() => fail(reason), 100);
  });
  const watchdog = (seconds: number): void => {
    setTimeout(() => fail(new Error("timed out")), seconds * 1000).unref();
  };
  try {
    const result = await body(watchdog);
    process.stdout.write(JSON.stringify(result) + "\n");
  } catch (err) {
    return fail(err);
  }
  process.exit(0);
}

export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

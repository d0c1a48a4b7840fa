// The client side of every TypeScript system: a system supplies a
// `BenchConnection` and `runClient` runs the figure named on the command line.
//
//   <client> <address> <figure> <seconds>
//
// prints exactly one JSON line on stdout:
//   seq      {"rps":…,"p50us":…,"p99us":…}
//   inflight {"cps":…}
//   stream   {"mbps":…}                       (MB = 10^6 bytes)
//   chain    {"pipelinedUs":…|null,"awaitedUs":…}   (seconds/2 each)
// and may add "note":"…". A failure prints {"error":"…"} and exits non-zero.
import { performance } from "node:perf_hooks";
import { parseAddress, type Address } from "./address.js";
import { clientMain, withTimeout } from "./program.js";
import { median, quantile, round } from "./stats.js";

export const FIGURES = ["seq", "inflight", "stream", "chain"] as const;
export type Figure = (typeof FIGURES)[number];

/** Bytes per chunk in the stream figure. */
export const CHUNK_BYTES = 64 * 1024;
/** Calls kept in flight in the inflight figure. */
export const INFLIGHT = 100;
/** `next` steps per chain, before the final ping. */
export const CHAIN_LENGTH = 10;
/**
 * Chunks a client keeps unacknowledged when its system has no flow control of
 * its own (1 MiB): the raw floor, JSON-RPC, and the Cap'n Proto
 * implementations that treat `-> stream` as an ordinary call.
 */
export const STREAM_WINDOW = 16;

export interface BenchConnection {
  /** ping(n) on the root Bench; resolves to the n it returns. */
  ping(n: number): Promise<number>;
  /**
   * Gets a sink, writes `chunk` over and over while `more()` is true (with
   * the system's flow control, or a window of STREAM_WINDOW unacknowledged
   * chunks), then calls done() and resolves to the byte count the server saw.
   */
  stream?(chunk: Uint8Array, more: () => boolean): Promise<number>;
  /**
   * next(depth: 1), next(depth: 2), … next(depth: CHAIN_LENGTH), each on the
   * previous result, then ping(n) on the last; no awaits between the steps.
   * Resolves to ping's result. n is always CHAIN_LENGTH and so must be the
   * result (the object at depth d answers ping with d; the root with n).
   * Leave it out when the system cannot pipeline (the figure then reports null).
   */
  chainPipelined?(n: number): Promise<number>;
  /** The same chain, awaiting each step before making the next call. */
  chainAwaited(n: number): Promise<number>;
  /**
   * Why a figure or half of one is n/a or differs, for the results notes;
   * `all` is added to every figure.
   */
  readonly notes?: Partial<Record<Figure | "pipelined" | "all", string>>;
  /** More numbers for the JSON line, asked for once the figure is done (e.g. the client's CPU time). */
  extra?(): Record<string, number>;
  close(): Promise<void> | void;
}

export type FigureResult = Record<string, number | string | null>;

const now = (): number => performance.now();

/** Warm-up before each measurement, to let the JIT settle. */
export function warmupSeconds(seconds: number): number {
  return Math.min(0.5, seconds * 0.25);
}

async function seq(c: BenchConnection, seconds: number): Promise<FigureResult> {
  const warmEnd = now() + warmupSeconds(seconds) * 1000;
  let n = 1;
  while (now() < warmEnd) await expectPing(c, n++);
  const latencies: number[] = [];
  const t0 = now();
  const end = t0 + seconds * 1000;
  let t = t0;
  while (t < end) {
    const start = t;
    await expectPing(c, n);
    n = (n + 1) % 1_000_000_000;
    t = now();
    latencies.push((t - start) * 1000);
  }
  return {
    rps: round(latencies.length / ((t - t0) / 1000)),
    p50us: round(quantile(latencies, 0.5)),
    p99us: round(quantile(latencies, 0.99)),
  };
}

async function inflight(c: BenchConnection, seconds: number): Promise<FigureResult> {
  const run = async (durationMs: number): Promise<number> => {
    const end = now() + durationMs;
    let completed = 0;
    const worker = async (first: number): Promise<void> => {
      let n = first;
      while (now() < end) {
        await expectPing(c, n);
        if (now() <= end) completed++;
        n = (n + INFLIGHT) % 1_000_000_000;
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, (_, i) => worker(i)));
    return completed;
  };
  await run(warmupSeconds(seconds) * 1000);
  const completed = await run(seconds * 1000);
  return { cps: round(completed / seconds) };
}

async function stream(c: BenchConnection, seconds: number): Promise<FigureResult> {
  if (c.stream === undefined) return { mbps: null, note: c.notes?.stream ?? "not implemented" };
  const chunk = new Uint8Array(CHUNK_BYTES);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
  const warmEnd = now() + warmupSeconds(seconds) * 1000;
  await c.stream(chunk, () => now() < warmEnd);
  const t0 = now();
  const end = t0 + seconds * 1000;
  const bytes = await c.stream(chunk, () => now() < end);
  const t1 = now();
  if (!(bytes > 0)) throw new Error(`stream: server counted ${bytes} bytes`);
  return { mbps: round(bytes / ((t1 - t0) / 1000) / 1e6) };
}

async function chain(c: BenchConnection, seconds: number): Promise<FigureResult> {
  // Like the C++ peer: half the time pipelined, half awaited.
  const measure = async (step: (n: number) => Promise<number>): Promise<number> => {
    const warmEnd = now() + (warmupSeconds(seconds) / 2) * 1000;
    while (now() < warmEnd) await expectChain(step);
    const times: number[] = [];
    const end = now() + (seconds / 2) * 1000;
    for (let t = now(); t < end || times.length < 5; ) {
      const start = t;
      await expectChain(step);
      t = now();
      times.push((t - start) * 1000);
    }
    return round(median(times));
  };
  const result: FigureResult = {};
  if (c.chainPipelined !== undefined) {
    result.pipelinedUs = await measure((n) => c.chainPipelined!(n));
  } else {
    result.pipelinedUs = null;
    result.note = c.notes?.pipelined ?? "no promise pipelining";
  }
  result.awaitedUs = await measure((n) => c.chainAwaited(n));
  return result;
}

async function expectPing(c: BenchConnection, n: number): Promise<void> {
  const r = await c.ping(n);
  if (r !== n) throw new Error(`ping(${n}) returned ${r}`);
}

async function expectChain(step: (n: number) => Promise<number>): Promise<void> {
  const r = await step(CHAIN_LENGTH);
  if (r !== CHAIN_LENGTH) throw new Error(`ping(${CHAIN_LENGTH}) at the end of the chain returned ${r}`);
}

const runners: Record<Figure, (c: BenchConnection, seconds: number) => Promise<FigureResult>> = {
  seq,
  inflight,
  stream,
  chain,
};

export interface ClientArgs {
  address: Address;
  addressText: string;
  figure: Figure;
  seconds: number;
}

export function parseClientArgs(argv: readonly string[] = process.argv.slice(2)): ClientArgs {
  const [addressText, figure, secondsText] = argv;
  if (addressText === undefined || figure === undefined || secondsText === undefined) {
    throw new Error("usage: <client> <address> <figure> <seconds>");
  }
  if (!(FIGURES as readonly string[]).includes(figure)) {
    throw new Error(`unknown figure "${figure}" (want ${FIGURES.join(", ")})`);
  }
  const seconds = Number(secondsText);
  if (!(seconds > 0)) throw new Error(`bad seconds "${secondsText}"`);
  return { address: parseAddress(addressText), addressText, figure: figure as Figure, seconds };
}

/**
 * The whole client program: parse the command line, connect, run the figure,
 * print its JSON line, exit.
 */
export function runClient(connectTo: (address: Address, args: ClientArgs) => Promise<BenchConnection>): Promise<never> {
  return clientMain(async (watchdog) => {
    const args = parseClientArgs();
    watchdog(args.seconds * 3 + 30);
    const connection = await connectTo(args.address, args);
    // One ping first, so that a system that cannot even bootstrap fails fast
    // and says why, rather than hanging until the watchdog fires.
    await withTimeout(expectPing(connection, 0), 10_000, "first ping (bootstrap) got no answer in 10 s");
    const result = await runners[args.figure](connection, args.seconds);
    Object.assign(result, connection.extra?.());
    const notes = [result.note, connection.notes?.[args.figure], connection.notes?.all];
    const note = [...new Set(notes.filter((n): n is string => typeof n === "string"))].join("; ");
    if (note !== "") result.note = note;
    await Promise.race([Promise.resolve(connection.close()), new Promise((r) => setTimeout(r, 1000))]);
    return result;
  });
}

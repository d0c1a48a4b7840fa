// The client side of every system in the auth bench:
//
//   <client> [arguments of its own] <address> connect <seconds>
//   <client> [arguments of its own] <address> box <MiB>
//
// prints one JSON line:
//   connect  {"p50us","p99us","cps"}  one new connection at a time: dial,
//            handshake, first round trip (timed), then close (in cps only)
//   box      {"mbps"}                  MiB in 64 KiB writes, one way, until the
//            server reports the byte count back (MB = 10^6 bytes)
// or {"unsupported":"why"}, or {"error":"…"} with a non-zero exit.
import { performance } from "node:perf_hooks";
import { parseAddress, type Address } from "../lib/address.js";
import { clientMain, withTimeout } from "../lib/program.js";
import { quantile, round } from "../lib/stats.js";

export const AUTH_FIGURES = ["connect", "box"] as const;
export type AuthFigure = (typeof AUTH_FIGURES)[number];

/**
 * Warm-up of the connect figure. Connection set-up code runs once per
 * connection, so after the usual half second (a few hundred connections) V8
 * still runs most of it unoptimised, and every system's figure then says more
 * about how fast V8 tiers its code up than about the steady state of a
 * server taking connections. So: 3 s, or a quarter of the measured time in
 * runs under a second (`--quick` smoke tests).
 */
export function connectWarmupSeconds(seconds: number): number {
  return seconds >= 1 ? 3 : seconds * 0.25;
}

/** Bytes per write in the box figure. */
export const BOX_CHUNK = 64 * 1024;

/** A connection that is up and has had its first reply; resolves once it is closed. */
export type Close = () => Promise<void>;

export interface AuthClient {
  /** Dials, runs the handshake and the first round trip. */
  connect?(address: Address): Promise<Close>;
  /**
   * Dials, writes `chunk` `count` times with the stream's backpressure, ends,
   * and resolves with the byte count the server reports having received.
   */
  push?(address: Address, chunk: Uint8Array, count: number): Promise<number>;
  /** Said under the table for a figure. */
  notes?: Partial<Record<AuthFigure, string>>;
}

interface Args {
  /** What came before the address. */
  options: string[];
  address: Address;
  figure: AuthFigure;
  amount: number;
}

export function parseArgs(argv: readonly string[] = process.argv.slice(2)): Args {
  if (argv.length < 3) throw new Error("usage: <client> [options] <address> connect <seconds> | <address> box <MiB>");
  const [addressText, figure, amountText] = argv.slice(-3) as [string, string, string];
  if (!(AUTH_FIGURES as readonly string[]).includes(figure)) throw new Error(`unknown figure "${figure}" (want ${AUTH_FIGURES.join(", ")})`);
  const amount = Number(amountText);
  if (!(amount > 0)) throw new Error(`bad amount "${amountText}"`);
  return { options: argv.slice(0, -3), address: parseAddress(addressText), figure: figure as AuthFigure, amount };
}

const now = (): number => performance.now();

async function connectFigure(connect: NonNullable<AuthClient["connect"]>, address: Address, seconds: number): Promise<Record<string, number>> {
  // The first connection is allowed longer: it also loads and compiles everything.
  const close = await withTimeout(connect(address), 10_000, "the first connection took over 10 s");
  await close();
  const warmEnd = now() + connectWarmupSeconds(seconds) * 1000;
  while (now() < warmEnd) await (await connect(address))();
  const latencies: number[] = [];
  const t0 = now();
  const end = t0 + seconds * 1000;
  let t = t0;
  while (t < end) {
    const start = now();
    const closeIt = await connect(address);
    latencies.push((now() - start) * 1000);
    await closeIt();
    t = now();
  }
  return {
    p50us: round(quantile(latencies, 0.5)),
    p99us: round(quantile(latencies, 0.99)),
    cps: round(latencies.length / ((t - t0) / 1000)),
  };
}

async function boxFigure(push: NonNullable<AuthClient["push"]>, address: Address, mib: number): Promise<Record<string, number>> {
  const chunk = new Uint8Array(BOX_CHUNK);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
  const count = Math.max(1, Math.round((mib * 2 ** 20) / BOX_CHUNK));
  const expect = async (n: number): Promise<void> => {
    const got = await push(address, chunk, n);
    if (got !== n * BOX_CHUNK) throw new Error(`the server counted ${got} bytes, not ${n * BOX_CHUNK}`);
  };
  // Warm-up: an eighth of the amount, on its own connection.
  await expect(Math.max(16, count >> 3));
  const t0 = now();
  await expect(count);
  return { mbps: round((count * BOX_CHUNK) / ((now() - t0) / 1000) / 1e6) };
}

/** The whole client program for one system. */
export function runAuthClient(make: (options: string[]) => AuthClient): Promise<never> {
  return clientMain(async (watchdog) => {
    const args = parseArgs();
    const client = make(args.options);
    // At least 10 MB/s for box; three times the time for connect.
    watchdog(args.figure === "connect" ? args.amount * 3 + 30 : args.amount / 10 + 30);
    const note = client.notes?.[args.figure];
    let result: Record<string, number | string>;
    if (args.figure === "connect") {
      if (client.connect === undefined) return { unsupported: note ?? "not measured" };
      result = await connectFigure(client.connect, args.address, args.amount);
    } else {
      if (client.push === undefined) return { unsupported: note ?? "not measured" };
      result = await boxFigure(client.push, args.address, args.amount);
    }
    return note === undefined ? result : { ...result, note };
  });
}

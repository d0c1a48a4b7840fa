// The load figures of the memory bench: a server and a client of the main
// bench (bench/systems/<system>), each its own process, running figure (b)
// (100 calls in flight) or (c) (64 KiB `-> stream` chunks) for `seconds`.
// The runner samples both processes' RSS from /proc every 100 ms; a capmesh
// process also counts what it allocates on the JS heap (probe.ts). Figures are
// taken over the client's last `seconds` (its start-up and most of its
// warm-up left out), from the measured rate:
//   - heap bytes allocated per 100k calls or per GiB (capmesh only: the C++
//     processes have RSS only);
//   - RSS: the server's rise over its idle RSS before the client came, and each
//     side's RSS at the end of the run;
//   - growth: the mean RSS of the last tenth of the run minus that of the
//     first tenth (and the same for the JS heap, from its lowest point in each
//     tenth, i.e. after a collection), which must be about 0.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { warmupSeconds } from "../lib/client.js";
import { ROOT, freePort, scratchDir, startServer, stopServer, tail } from "../lib/processes.js";
import { prepareSystem, tsxCommand } from "../lib/systems.js";

export type LoadSystem = "capmesh" | "cpp";
export type LoadFigure = "calls" | "stream";

export interface Side {
  /** RSS at the end of the window. */
  rss: number;
  /** Rise over the idle RSS before the client connected (server only). */
  rise: number | null;
  /** Mean RSS of the window's last tenth minus its first tenth. */
  rssGrowth: number;
  /** JS heap bytes allocated in the window (capmesh only). */
  heapAllocated: number | null;
  /** Lowest heapUsed of the last tenth minus that of the first (capmesh only). */
  heapGrowth: number | null;
}

export interface LoadResult {
  system: LoadSystem;
  figure: LoadFigure;
  transport: "unix" | "tcp";
  /** Calls, or bytes, done in the window. */
  work: number;
  rate: number;
  windowS: number;
  server: Side;
  client: Side;
}

type Sample = [ms: number, rss: number, heapUsed?: number, allocated?: number];

function rssOf(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function probeSamples(file: string): Sample[] {
  try {
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { samples: Sample[] }).samples;
  } catch {
    return [];
  }
}

function within(samples: Sample[], from: number, to: number): Sample[] {
  return samples.filter((s) => s[0] >= from && s[0] <= to);
}

function side(rss: Sample[], probe: Sample[], from: number, to: number, idle: number | null): Side {
  const w = within(rss, from, to);
  if (w.length < 10) throw new Error(`only ${w.length} RSS samples in the window`);
  // A tenth of the samples (at least 3) at either end.
  const ends = (xs: Sample[]): [Sample[], Sample[]] => {
    const n = Math.max(3, Math.round(xs.length / 10));
    return [xs.slice(0, n), xs.slice(-n)];
  };
  const mean = (xs: Sample[]): number => xs.reduce((a, s) => a + s[1], 0) / xs.length;
  const [first, last] = ends(w);
  const end = w[w.length - 1]![1];
  const p = within(probe, from, to);
  let heapAllocated: number | null = null;
  let heapGrowth: number | null = null;
  if (p.length >= 10) {
    heapAllocated = p[p.length - 1]![3]! - p[0]![3]!;
    const low = (xs: Sample[]): number => Math.min(...xs.map((s) => s[2]!));
    const [pf, pl] = ends(p);
    heapGrowth = low(pl) - low(pf);
  }
  return { rss: end, rise: idle === null ? null : end - idle, rssGrowth: mean(last) - mean(first), heapAllocated, heapGrowth };
}

export async function measureLoad(
  system: LoadSystem,
  figure: LoadFigure,
  transport: "unix" | "tcp",
  seconds: number,
  log: (line: string) => void,
): Promise<LoadResult> {
  const dir = scratchDir();
  const tag = `${system}-${figure}-${transport}`;
  let serverArgv: string[];
  let clientArgv: string[];
  const probe = path.join(ROOT, "bench", "memory", "probe.ts");
  if (system === "capmesh") {
    const withProbe = (file: string): string[] => {
      const [node, ...rest] = tsxCommand(path.join(ROOT, "bench", "systems", "capmesh", file));
      return [node!, "--import", probe, ...rest];
    };
    // tsx goes first: the probe is TypeScript.
    serverArgv = withProbe("server.ts");
    clientArgv = withProbe("client.ts");
    for (const argv of [serverArgv, clientArgv]) argv.splice(1, 2, argv[3]!, argv[4]!, argv[1]!, argv[2]!);
  } else {
    const launch = await prepareSystem("cpp");
    if ("unavailable" in launch) throw new Error(`C++ reference ${launch.unavailable}`);
    serverArgv = [...launch.server];
    clientArgv = [...launch.client];
  }
  const serverReport = path.join(dir, `${tag}-server.json`);
  const clientReport = path.join(dir, `${tag}-client.json`);
  const address = transport === "unix" ? `unix:${path.join(dir, `${tag}.sock`)}` : `127.0.0.1:${await freePort()}`;
  process.env.BENCH_MEMORY_REPORT = serverReport;
  const server = await startServer(serverArgv, address, false);
  delete process.env.BENCH_MEMORY_REPORT;
  const serverRss: Sample[] = [];
  const clientRss: Sample[] = [];
  try {
    // The server's idle RSS: after it has been listening for a moment.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = rssOf(server.child.pid!) ?? 0;
    const child = spawn(clientArgv[0]!, [...clientArgv.slice(1), server.address, figure === "calls" ? "inflight" : "stream", String(seconds)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BENCH_MEMORY_REPORT: clientReport },
    });
    const stdout: string[] = [];
    const stderr: string[] = [];
    child.stdout.setEncoding("utf8").on("data", (d: string) => stdout.push(d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
    const sampler = setInterval(() => {
      const now = Date.now();
      const s = rssOf(server.child.pid!);
      const c = rssOf(child.pid!);
      if (s !== null) serverRss.push([now, s]);
      if (c !== null) clientRss.push([now, c]);
    }, 100);
    const limit = setTimeout(() => child.kill("SIGKILL"), (seconds + 60) * 1000);
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    clearTimeout(limit);
    clearInterval(sampler);
    const ended = Date.now();
    const line = stdout.join("").split("\n").filter((l) => l.startsWith("{")).pop();
    const metrics = line === undefined ? {} : (JSON.parse(line) as Record<string, unknown>);
    if (code !== 0 || typeof metrics.error === "string") {
      throw new Error(`${tag} client failed (${code}): ${String(metrics.error ?? tail(stderr, 300))}`);
    }
    const rate = figure === "calls" ? Number(metrics.cps) : Number(metrics.mbps) * 1e6;
    if (!(rate > 0)) throw new Error(`${tag}: the client reported no rate: ${line}`);
    // The window: the client's last `seconds`, less a little at either end
    // (the warm-up's end, the client closing).
    const to = ended - 300;
    const from = Math.max(ended - seconds * 1000 - warmupSeconds(seconds) * 500, to - seconds * 1000);
    await stopServer(server);
    const windowS = (to - from) / 1000;
    const result: LoadResult = {
      system,
      figure,
      transport,
      work: rate * windowS,
      rate,
      windowS,
      server: side(serverRss, probeSamples(serverReport), from, to, idle),
      client: side(clientRss, probeSamples(clientReport), from, to, null),
    };
    log(
      `  ${tag}: ${figure === "calls" ? `${Math.round(rate).toLocaleString("en-US")} calls/s` : `${(rate / 1e6).toFixed(0)} MB/s`}, ` +
        `server rss ${(result.server.rss / 2 ** 20).toFixed(1)} MiB (growth ${(result.server.rssGrowth / 2 ** 10).toFixed(0)} KiB), ` +
        `client rss ${(result.client.rss / 2 ** 20).toFixed(1)} MiB (growth ${(result.client.rssGrowth / 2 ** 10).toFixed(0)} KiB)`,
    );
    return result;
  } finally {
    await stopServer(server);
  }
}

// Test helpers for the C++ reference peers in peers/cpp: toolchain
// detection, a cached and concurrency-safe build, and process management
// for `serve` / `client` runs.
//
// Build products go to build/cpp/<hash>/ at the repository root, where
// <hash> covers the peer sources, the schemas, this file (the build recipe),
// the compiler flags and the tool versions; an unchanged tree reuses the existing binaries.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, promises as fsp, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CPP_BUILD_ROOT = path.join(REPO_ROOT, "build", "cpp");
/** Every client scenario of peers/cpp/interop-peer.c++ (besides `all`). */
export const INTEROP_SCENARIOS = [
  "echo",
  "pipeline",
  "callback",
  "echo-cap",
  "later",
  "exceptions",
  "cancel",
  "release",
  "stream",
  "payload",
  "caps-in-lists",
  "nested",
  "call-many",
] as const;

export const CPP_INSTALL_HINT = "apt-get install -y capnproto libcapnp-dev libsodium-dev g++ pkg-config";

const PEER_DIR = path.join(REPO_ROOT, "peers", "cpp");
/**
 * The schemas the peers are built with, relative to REPO_ROOT. Each compiles
 * to <file name>.h and .c++ in the build directory (peers include
 * "interop.capnp.h"), so their file names must differ.
 */
const SCHEMAS = [
  "test/interop/schema/interop.capnp",
  "bench/schema/bench.capnp",
  "schema/mesh.capnp",
  "schema/demo.capnp",
] as const;
type Schema = (typeof SCHEMAS)[number];
const CXXFLAGS = ["-std=c++17", "-O2", "-pthread"];
const BINARY_MARKER = ".complete";

export type Availability = { ok: true } | { ok: false; reason: string };

// ---------------------------------------------------------------------------
// Toolchain detection

function probe(cmd: string, args: string[]): { ok: boolean; out: string } {
  try {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 15_000 });
    if (r.error) return { ok: false, out: r.error.message };
    return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
  } catch (e) {
    return { ok: false, out: String(e) };
  }
}

let availability: Availability | undefined;
let toolVersions = "";

/** Whether `capnp`, `g++` and the capnp-rpc and libsodium (mesh-peer) development files are present. */
export function cppPeerAvailable(): Availability {
  if (availability) return availability;
  const missing: string[] = [];
  const capnp = probe("capnp", ["--version"]);
  if (!capnp.ok) missing.push("`capnp` (package capnproto) not runnable");
  const gxx = probe("g++", ["--version"]);
  if (!gxx.ok) missing.push("`g++` not runnable");
  const pc = probe("pkg-config", ["--modversion", "capnp-rpc"]);
  if (!pc.ok) {
    const hasPkgConfig = probe("pkg-config", ["--version"]).ok;
    missing.push(
      hasPkgConfig
        ? "`pkg-config capnp-rpc` failed (package libcapnp-dev missing?)"
        : "`pkg-config` not runnable",
    );
  }
  const sodium = probe("pkg-config", ["--modversion", "libsodium"]);
  if (pc.ok && !sodium.ok) missing.push("`pkg-config libsodium` failed (package libsodium-dev missing?)");
  if (missing.length > 0) {
    availability = { ok: false, reason: missing.join("; ") };
  } else {
    toolVersions = [capnp.out, gxx.out.split("\n")[0], `capnp-rpc ${pc.out}`, `libsodium ${sodium.out}`].join("\n");
    availability = { ok: true };
  }
  return availability;
}

export type CppGate = { skip: false } | { skip: true; reason: string };

/**
 * For test files: `const gate = requireCppOrSkip(); describe.skipIf(gate.skip)(...)`.
 * Without the toolchain, tests skip with a message saying what to install;
 * when CI=true a missing toolchain throws instead, failing the run loudly.
 */
export function requireCppOrSkip(): CppGate {
  const a = cppPeerAvailable();
  if (a.ok) return { skip: false };
  const reason = `C++ reference peer unavailable: ${a.reason}. Install with: ${CPP_INSTALL_HINT}`;
  if (process.env.CI === "true") {
    throw new Error(`${reason}\n(CI=true: the C++ interop tests are mandatory in CI.)`);
  }
  console.warn(`[capmesh] skipping C++ interop tests. ${reason}`);
  return { skip: true, reason };
}

// ---------------------------------------------------------------------------
// Build

export interface CppPeers {
  interopPeer: string;
  benchPeer: string;
  /** peers/cpp/mesh-peer.c++: a mesh peer (shs1 on libsodium, then plain RPC). */
  meshPeer: string;
}

function sourceFiles(): string[] {
  const peerFiles = readdirSync(PEER_DIR)
    .filter((f) => /\.(c\+\+|h)$/.test(f))
    .sort()
    .map((f) => path.join(PEER_DIR, f));
  // This file too: it holds the build recipe.
  const self = fileURLToPath(import.meta.url);
  return [...peerFiles, ...SCHEMAS.map((s) => path.join(REPO_ROOT, s)), self];
}

function pkgConfigArgs(): string[] {
  // libsodium is for mesh-peer; on the other peers' link lines it does no harm.
  const r = spawnSync("pkg-config", ["--cflags", "--libs", "capnp-rpc", "libsodium"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`pkg-config capnp-rpc libsodium failed: ${r.stderr}`);
  return r.stdout.trim().split(/\s+/).filter(Boolean);
}

function buildHash(pcArgs: string[]): string {
  const h = createHash("sha256");
  for (const f of sourceFiles()) {
    h.update(path.relative(REPO_ROOT, f));
    h.update("\0");
    h.update(readFileSync(f));
    h.update("\0");
  }
  h.update(CXXFLAGS.join(" "));
  h.update(pcArgs.join(" "));
  h.update(toolVersions);
  return h.digest("hex").slice(0, 16);
}

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      const tail = output.length > 8000 ? `…${output.slice(-8000)}` : output;
      reject(new Error(`${cmd} ${args.join(" ")} failed (${code ?? signal}):\n${tail}`));
    });
  });
}

function isComplete(dir: string): boolean {
  return (
    existsSync(path.join(dir, BINARY_MARKER)) &&
    existsSync(path.join(dir, "interop-peer")) &&
    existsSync(path.join(dir, "bench-peer")) &&
    existsSync(path.join(dir, "mesh-peer"))
  );
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Cross-process lock so that parallel test workers compile once. Stale locks
// (owner dead, or older than 10 minutes) are broken.
async function withBuildLock<T>(lockPath: string, done: () => boolean, fn: () => Promise<T>): Promise<T | undefined> {
  for (;;) {
    let acquired = false;
    try {
      const fh = await fsp.open(lockPath, "wx");
      acquired = true;
      try {
        await fh.writeFile(String(process.pid));
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (acquired || (e as NodeJS.ErrnoException).code !== "EEXIST") {
        if (acquired) await fsp.rm(lockPath, { force: true });
        throw e;
      }
    }
    if (acquired) {
      try {
        return await fn();
      } finally {
        await fsp.rm(lockPath, { force: true });
      }
    }
    // Somebody else is building.
    if (done()) return undefined;
    try {
      const owner = Number(await fsp.readFile(lockPath, "utf8"));
      const age = Date.now() - statSync(lockPath).mtimeMs;
      if ((owner > 0 && !pidAlive(owner)) || age > 10 * 60_000) {
        await fsp.rm(lockPath, { force: true });
        continue;
      }
    } catch {
      continue; // lock vanished between calls: retry
    }
    await sleep(200);
    if (done()) return undefined;
  }
}

async function compileInto(dir: string, pcArgs: string[]): Promise<void> {
  // One run per schema, each dropping its own directory from the output names.
  await Promise.all(
    SCHEMAS.map((s) => run("capnp", ["compile", `-oc++:${dir}`, `--src-prefix=${path.posix.dirname(s)}`, s], REPO_ROOT)),
  );
  const build = (name: string, ...schemas: Schema[]) =>
    run(
      "g++",
      [
        ...CXXFLAGS,
        `-I${dir}`,
        "-Ipeers/cpp",
        "-o",
        path.join(dir, name),
        // relative to REPO_ROOT, so that __FILE__ in error reports is short
        `peers/cpp/${name}.c++`,
        ...schemas.map((schema) => path.join(dir, `${path.posix.basename(schema)}.c++`)),
        ...pcArgs,
      ],
      REPO_ROOT,
    );
  await Promise.all([
    build("interop-peer", "test/interop/schema/interop.capnp"),
    build("bench-peer", "bench/schema/bench.capnp"),
    build("mesh-peer", "schema/mesh.capnp", "schema/demo.capnp"),
  ]);
  await fsp.writeFile(path.join(dir, BINARY_MARKER), new Date().toISOString() + "\n");
}

async function pruneOldBuilds(keep: string): Promise<void> {
  const cutoff = Date.now() - 10 * 60_000;
  for (const entry of await fsp.readdir(CPP_BUILD_ROOT).catch(() => [] as string[])) {
    const full = path.join(CPP_BUILD_ROOT, entry);
    if (full === keep || entry.endsWith(".lock")) continue;
    try {
      if (statSync(full).mtimeMs < cutoff) await fsp.rm(full, { recursive: true, force: true });
    } catch {
      // raced with another process: fine
    }
  }
}

async function buildOnce(): Promise<CppPeers> {
  const a = cppPeerAvailable();
  if (!a.ok) throw new Error(`cannot build C++ peers: ${a.reason}. Install with: ${CPP_INSTALL_HINT}`);
  const pcArgs = pkgConfigArgs();
  const hash = buildHash(pcArgs);
  const outDir = path.join(CPP_BUILD_ROOT, hash);
  const result: CppPeers = {
    interopPeer: path.join(outDir, "interop-peer"),
    benchPeer: path.join(outDir, "bench-peer"),
    meshPeer: path.join(outDir, "mesh-peer"),
  };
  if (isComplete(outDir)) return result;

  await fsp.mkdir(CPP_BUILD_ROOT, { recursive: true });
  await withBuildLock(path.join(CPP_BUILD_ROOT, `${hash}.lock`), () => isComplete(outDir), async () => {
    if (isComplete(outDir)) return;
    // Build in a private directory, then publish it with one rename: readers
    // never see a half-written binary, even without the lock.
    const tmp = path.join(CPP_BUILD_ROOT, `.tmp-${hash}-${process.pid}-${randomBytes(4).toString("hex")}`);
    await fsp.mkdir(tmp, { recursive: true });
    try {
      await compileInto(tmp, pcArgs);
      try {
        await fsp.rename(tmp, outDir);
      } catch {
        if (!isComplete(outDir)) {
          // A leftover incomplete directory: replace it.
          await fsp.rm(outDir, { recursive: true, force: true });
          await fsp.rename(tmp, outDir);
        }
      }
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    await pruneOldBuilds(outDir);
  });
  if (!isComplete(outDir)) throw new Error(`C++ peer build did not produce ${outDir}`);
  return result;
}

let building: Promise<CppPeers> | undefined;

/** Compiles interop-peer and bench-peer (if sources changed) and returns their paths. */
export function buildCppPeers(): Promise<CppPeers> {
  if (!building) {
    building = buildOnce();
    building.catch(() => {
      building = undefined;
    });
  }
  return building;
}

// ---------------------------------------------------------------------------
// Processes

export interface CppServer {
  /** The address the server really listens on (port 0 replaced). */
  address: string;
  pid: number;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Closes the server's stdin, which asks it to exit. */
  closeStdin(): void;
  /** Closes stdin, then SIGTERM, then SIGKILL; removes a unix socket file. */
  stop(): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

function track(child: ChildProcess): void {
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
}

function unixPath(address: string): string | undefined {
  return address.startsWith("unix:") ? address.slice("unix:".length) : undefined;
}

/** Spawns `<binary> serve <address>` and waits for its `listening` line. */
export function startCppServer(binary: string, address: string, startTimeoutMs = 15_000): Promise<CppServer> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["serve", address], { stdio: ["pipe", "pipe", "pipe"] });
    track(child);
    let stdout = "";
    let stderr = "";
    let settled = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once("exit", (code, signal) => res({ code, signal }));
    });
    // stdin closing is a stop request; ignore EPIPE if the child is gone.
    child.stdin!.on("error", () => {});

    const socketFile = unixPath(address);
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        const graceful = await Promise.race([exited.then(() => true), sleep(1000).then(() => false)]);
        if (!graceful) {
          child.kill("SIGTERM");
          const termed = await Promise.race([exited.then(() => true), sleep(2000).then(() => false)]);
          if (!termed) {
            child.kill("SIGKILL");
            await exited;
          }
        }
      }
      if (socketFile) await fsp.rm(socketFile, { force: true });
    };

    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`${binary} serve ${address}: no 'listening' line within ${startTimeoutMs} ms\n${stderr}`));
    }, startTimeoutMs);

    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      const line = stdout.split("\n").find((l) => l.startsWith("listening"));
      if (!line || settled || !stdout.includes("\n")) return;
      settled = true;
      clearTimeout(timer);
      const real = line.slice("listening".length).trim() || address;
      resolve({
        address: real,
        pid: child.pid!,
        exited,
        stderr: () => stderr,
        closeStdin: () => child.stdin!.end(),
        stop,
      });
    });
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${binary} serve ${address} exited (${code ?? signal}) before listening:\n${stderr}`));
    });
  });
}

export interface CppClientResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs `<binary> client <address> <args...>` to completion (SIGKILL after
 * timeoutMs). For interop-peer, args is the scenario; for bench-peer,
 * `[figure, seconds]`.
 */
export function runCppClient(
  binary: string,
  address: string,
  args: string | readonly string[],
  timeoutMs = 60_000,
): Promise<CppClientResult> {
  const extra = typeof args === "string" ? [args] : [...args];
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["client", address, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    track(child);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

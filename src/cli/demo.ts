// `npm start` (`capmesh demo`): a mesh on this machine's defaults. A hub in
// this process, and the demo peers of peers/demo/, each its own process:
// two plugins (greeter, counter), a client that watches, lists, connects by
// name and passes a callback, and a visitor plugin that joins and leaves
// (plus the C++ mesh peer, when it has been built). Then it keeps running,
// for `capmesh ls`/`watch`/`call` from another terminal, until SIGINT or
// SIGTERM: the peers leave, then the hub closes (socket and hub.json removed).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ENV } from "../mesh/defaults.js";
import { startHub, type MeshHub } from "../mesh/hub.js";

/** How long a peer may take to leave after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5000;
/** How long a peer may take to reach its next step. */
const STEP_TIMEOUT_MS = 60_000;

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

class Stopped extends Error {}

/** The directory holding peers/demo/ (the repository's root), or null outside a checkout. */
function repoRoot(): string | null {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "peers", "demo", "greeter.ts"))) return dir;
    if (dirname(dir) === dir) return null;
  }
}

/**
 * The C++ mesh peer (peers/cpp/mesh-peer.c++) if it has been built (by the
 * interop tests, into build/cpp/<hash>/): the newest complete build.
 */
export function builtCppMeshPeer(root: string): string | null {
  const builds = join(root, "build", "cpp");
  let found: { path: string; mtime: number } | null = null;
  for (const entry of existsSync(builds) ? readdirSync(builds) : []) {
    const binary = join(builds, entry, "mesh-peer");
    if (!existsSync(join(builds, entry, ".complete")) || !existsSync(binary)) continue;
    const mtime = statSync(binary).mtimeMs;
    if (!found || mtime > found.mtime) found = { path: binary, mtime };
  }
  return found?.path ?? null;
}

interface Peer {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  /** Resolves with the first line matching `pattern`; rejects if the peer exits first. */
  waitFor(pattern: RegExp, what: string): Promise<string>;
}

const USAGE = `usage: capmesh demo

Runs the mesh demo (what npm start runs, from a checkout of the capmesh
repository): a hub on embedded defaults and the peers in peers/demo/, each its
own process; prints what runs and what to try from another terminal. Ctrl-C
stops everything.`;

export async function demo(args: string[] = []): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  if (args.length > 0) {
    console.error(`capmesh demo: takes no arguments, got ${args.join(" ")}\n\n${USAGE}`);
    return 2;
  }
  const root = repoRoot();
  if (root === null) {
    console.error("capmesh demo: the demo runs from a checkout of the capmesh repository (`npm start`): its peers live in peers/demo/");
    return 1;
  }

  // From the first signal on, every step gives up and everything stops.
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const peers: Peer[] = [];
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals === 1) stop(signal);
    else for (const peer of peers) kill(peer, "SIGKILL"); // asked twice: no more waiting
  };
  // SIGHUP too: a closed terminal would not reach the peers (their own sessions).
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  // Whatever happens to this process, its peers go with it.
  const onExit = () => peers.forEach((peer) => kill(peer, "SIGKILL"));
  process.on("exit", onExit);
  const step = <T>(promise: Promise<T>): Promise<T> =>
    Promise.race([promise, stopped.then((signal) => Promise.reject(new Stopped(signal)))]);

  let hub: MeshHub | null = null;
  let code = 0;
  try {
    try {
      hub = await startHub();
    } catch (error) {
      console.error(`capmesh demo: cannot start the hub: ${(error as Error).message}`);
      return 1;
    }
    console.log(`capmesh demo: a hub and its peers, each peer its own process`);
    console.log(`hub ${hub.id} listening on ${hub.address} (pid ${process.pid})`);

    // The peers find the hub through the environment (else hub.json), as any would.
    const env = { ...process.env, ...hub.env };
    const start = (name: string, command: string, args: string[]) => {
      const peer = startPeer(name, command, args, env, root);
      peers.push(peer);
      return peer;
    };
    const tsPeer = (name: string) => start(name, process.execPath, [...tsLoaderArgs(), join(root, "peers", "demo", `${name}.ts`)]);

    const plugins = [tsPeer("greeter"), tsPeer("counter")];
    const cpp = builtCppMeshPeer(root);
    if (cpp) plugins.push(start("greeter-cpp", cpp, ["register", "greeter-cpp"]));
    await step(Promise.all(plugins.map((p) => p.waitFor(/^registered /, "register"))));

    const client = tsPeer("client");
    await step(client.waitFor(/^ready:/, "watch, list, connect by name and join #lobby"));
    const visitor = tsPeer("visitor");
    const visitorLeft = client.waitFor(/^watch: visitor left/, "see the visitor leave");
    visitorLeft.catch(() => {}); // awaited below, unless a signal comes first
    await step(visitor.waitFor(/^left$/, "say hi in #lobby and leave"));
    await step(Promise.all([visitor.exited, visitorLeft]));
    peers.splice(peers.indexOf(visitor), 1);

    console.log("");
    console.log("running:");
    const width = Math.max(...peers.map((peer) => peer.name.length)) + 1;
    console.log(`  ${"hub".padEnd(width)} pid ${process.pid}  ${hub.address}`);
    for (const peer of peers) console.log(`  ${peer.name.padEnd(width)} pid ${peer.child.pid}`);
    if (!cpp) console.log("  (and the C++ mesh peer, once `npm test` has built it)");
    console.log("");
    console.log("try from another terminal (in this directory):");
    if (process.env[ENV.hub] !== undefined || process.env[ENV.hubId] !== undefined) {
      // The CLI would follow these to another hub: point it at this one.
      for (const [key, value] of Object.entries(hub.env)) console.log(`  export ${key}='${value}'`);
    }
    console.log("  npx capmesh ls");
    console.log("  npx capmesh watch");
    console.log(`  npx capmesh call greeter greet '{"name": "you"}'`);
    console.log(`  npx capmesh call counter add '{"by": 2}'`);
    console.log("Ctrl-C stops everything.");

    // Until a signal, or until a peer dies (then the demo is broken: stop).
    const died = Promise.race(peers.map((peer) => peer.exited.then(() => peer)));
    const outcome = await Promise.race([stopped, died]);
    if (typeof outcome !== "string") {
      console.error(`capmesh demo: ${outcome.name} exited (${exitStatus(outcome.child)}); stopping`);
      code = 1;
    }
  } catch (error) {
    if (!(error instanceof Stopped)) {
      console.error(`capmesh demo: ${(error as Error).message}; stopping`);
      code = 1;
    }
  } finally {
    if (hub) {
      console.log("stopping: the peers leave, then the hub closes");
      // The plugins first, so that the client's watch shows them leave.
      const client = peers.find((peer) => peer.name === "client");
      await Promise.all(peers.filter((peer) => peer !== client).map((peer) => stopPeer(peer)));
      if (client) await stopPeer(client);
      await hub.close();
      console.log("stopped");
    }
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    process.off("exit", onExit);
  }
  return code;
}

/** The loader flags this process runs TypeScript with (tsx), for the TypeScript peers. */
function tsLoaderArgs(): string[] {
  // Debugger flags would make every child fight for the same port.
  const inherited = process.execArgv.filter((arg) => !arg.startsWith("--inspect"));
  return inherited.some((arg) => arg.includes("tsx")) ? inherited : ["--import", "tsx", ...inherited];
}

function startPeer(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Peer {
  // Its own process group (and session): a terminal's Ctrl-C reaches this
  // process alone, which stops each peer once, in order.
  // stdin a pipe that stays open: the C++ peer exits when it closes (this process gone).
  const child = spawn(command, args, { env, cwd, detached: true, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.on("error", () => {}); // EPIPE once it has exited
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on("line", (line) => {
    console.log(`[${name}] ${line}`);
    lines.push(line);
    for (const check of waiters) check();
  });
  createInterface({ input: child.stderr! }).on("line", (line) => console.error(`[${name}] ${line}`));
  child.once("error", (error) => console.error(`[${name}] cannot start ${command}: ${error.message}`));
  const waitFor = (pattern: RegExp, what: string) =>
    new Promise<string>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        waiters.delete(check);
        clearTimeout(timer);
      };
      const check = () => {
        const line = lines.find((l) => pattern.test(l));
        if (line === undefined) return;
        done();
        resolve(line);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`${name} did not ${what} within ${STEP_TIMEOUT_MS / 1000} s`));
      }, STEP_TIMEOUT_MS);
      waiters.add(check);
      check();
      // "close" comes after the last line of output has been read.
      void closed.then(() => {
        if (!waiters.has(check)) return;
        done();
        reject(new Error(`${name} exited (${exitStatus(child)}) before it could ${what}`));
      });
    });
  return { name, child, exited, waitFor };
}

function exitStatus(child: ChildProcess): string {
  return child.signalCode ? `signal ${child.signalCode}` : `code ${child.exitCode}`;
}

function running(peer: Peer): boolean {
  return peer.child.exitCode === null && peer.child.signalCode === null && peer.child.pid !== undefined;
}

function kill(peer: Peer, signal: NodeJS.Signals): void {
  if (!running(peer)) return;
  try {
    process.kill(-peer.child.pid!, signal); // its process group: anything it started goes too
  } catch {
    peer.child.kill(signal);
  }
}

/** SIGTERM (the SDK unregisters and disconnects), then SIGKILL if it takes too long. */
async function stopPeer(peer: Peer): Promise<void> {
  if (!running(peer)) return;
  kill(peer, "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_GRACE_MS)));
  if (await Promise.race([peer.exited.then(() => false), late])) {
    console.error(`[${peer.name}] did not leave within ${STOP_GRACE_MS / 1000} s of SIGTERM: killing it`);
    kill(peer, "SIGKILL");
    await peer.exited;
  }
  clearTimeout(timer);
}

// Child processes for the mesh tests: start one and wait for a line it
// prints (a plugin's "registered <name> as <id>"), run a command to its end,
// and run a `capmesh` command function in this process. Every wait has a
// deadline, and its failure says what was awaited and what was printed.
import { spawn, type ChildProcess } from "node:child_process";
import { vi } from "vitest";
import { within } from "../../rpc/helpers/raw-peer.js";

/** Node's arguments to run a TypeScript file. */
export const TSX = ["--import", "tsx"];
/** Node's arguments to run `capmesh` from source. */
export const CLI = [...TSX, "src/cli/main.ts"];
/** A plugin serving demo.capnp's Greeter as argv[2] (argv[3] "grants": per caller). */
export const PLUGIN_CHILD = "test/mesh/plugin-child.ts";

/** A finished command: its exit code (null when a signal ended it) and what it printed. */
export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartOptions {
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** "pipe" to write to or close the child's stdin later; default "ignore". */
  stdin?: "pipe" | "ignore";
  /** The test's list of processes to kill in cleanup (see killLeft). */
  children?: ChildProcess[];
  /** How long waitFor waits, unless told otherwise; default 20 s. */
  deadlineMs?: number;
}

/** A running process, its output collected as it comes. */
export interface Started {
  child: ChildProcess;
  /** Resolves once the process has exited. */
  exited: Promise<Exit>;
  /** What it printed on stdout so far. */
  output(): string;
  /** What it printed on stderr so far. */
  errors(): string;
  /** The first match of `pattern` in stdout; fails if the process ends, or the deadline passes, first. */
  waitFor(pattern: RegExp, what: string, deadlineMs?: number): Promise<RegExpExecArray>;
}

export function start(command: string, args: string[], options: StartOptions = {}): Started {
  const child = spawn(command, args, { env: options.env ?? process.env, stdio: [options.stdin ?? "ignore", "pipe", "pipe"] });
  options.children?.push(child);
  // Writing to a child that has gone fails with EPIPE; its exit tells the test.
  child.stdin?.on("error", () => {});
  let out = "";
  let err = "";
  let ended: string | undefined;
  const waiters = new Set<() => void>();
  const changed = () => waiters.forEach((check) => check());
  child.stdout!.on("data", (d: Buffer) => ((out += d.toString()), changed()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  // "close" comes after the last output: nothing printed is missed.
  child.once("close", (code, signal) => ((ended = `exited (${code ?? signal})`), changed()));
  child.once("error", (error) => ((ended = `could not run ${command}: ${error.message}`), changed()));
  const exited = new Promise<Exit>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const waitFor = (pattern: RegExp, what: string, deadlineMs = options.deadlineMs ?? 20_000) => {
    let check = () => {};
    const found = new Promise<RegExpExecArray>((resolve, reject) => {
      check = () => {
        const m = pattern.exec(out);
        if (m) resolve(m);
        else if (ended !== undefined) reject(new Error(`${what}: ${ended} first; output: ${out}${err}`));
      };
      waiters.add(check);
      check();
    });
    return within(found, deadlineMs, () => `${what}; exit ${child.exitCode ?? child.signalCode}; output so far: ${out}${err}`).finally(
      () => waiters.delete(check),
    );
  };
  return { child, exited, output: () => out, errors: () => err, waitFor };
}

/** The line a mesh test peer prints once it has registered `name`. */
export function registeredLine(name: string): RegExp {
  return new RegExp(`^registered ${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} as (\\S+)$`, "m");
}

/** A process that registered a name on the hub, and the id it registered as. */
export interface Registered extends Started {
  id: string;
}

export interface RegisterOptions extends StartOptions {
  /** The ready line, its first group the id; default registeredLine(name). */
  ready?: RegExp;
  /** What is awaited, for the failure message; default `<name> to register`. */
  what?: string;
}

/** Starts `command` and resolves once it printed its ready line. */
export async function startRegistered(name: string, command: string, args: string[], options: RegisterOptions = {}): Promise<Registered> {
  const started = start(command, args, options);
  const ready = await started.waitFor(options.ready ?? registeredLine(name), options.what ?? `${name} to register`);
  return { ...started, id: ready[1]! };
}

/** A TypeScript plugin process (`script`, default PLUGIN_CHILD, given `name` and `args`), once registered. */
export function startTsPlugin(name: string, options: RegisterOptions & { script?: string; args?: string[] } = {}): Promise<Registered> {
  const { script = PLUGIN_CHILD, args = [], ...rest } = options;
  return startRegistered(name, process.execPath, [...TSX, script, name, ...args], { what: `plugin ${name} to register`, ...rest });
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed; without it stdin is /dev/null. */
  input?: string;
  /** The test's list of processes to kill in cleanup (see killLeft). */
  children?: ChildProcess[];
  /** Default 20 s. */
  deadlineMs?: number;
  /** The command as the timeout message names it; default the command line. */
  what?: string;
}

/** Runs `command` to its end (several may run at once). */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<Result> {
  const { child, output, errors } = start(command, args, {
    env: options.env,
    stdin: options.input === undefined ? "ignore" : "pipe",
    children: options.children,
  });
  if (options.input !== undefined) child.stdin!.end(options.input);
  const done = new Promise<Result>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout: output(), stderr: errors() }));
  });
  const what = options.what ?? [command, ...args].join(" ");
  return within(done, options.deadlineMs ?? 20_000, () => `${what}: ${output()}${errors()}`);
}

/** `capmesh <args>` as a running process. */
export function startCapmesh(args: string[], options: StartOptions = {}): Started {
  return start(process.execPath, [...CLI, ...args], options);
}

/** `capmesh <args>` as a process, to its end; default deadline 60 s. */
export function runCapmesh(args: string[], options: RunOptions = {}): Promise<Result> {
  return run(process.execPath, [...CLI, ...args], { deadlineMs: 60_000, what: `capmesh ${args.join(" ")}`, ...options });
}

/**
 * A `capmesh` command function (the one the binary runs for it) run in this
 * process: its exit code and what it printed through console.log and
 * console.error, with `env` set in process.env meanwhile.
 */
export async function runHere(
  command: (args: string[]) => Promise<number>,
  args: string[],
  env: Readonly<Record<string, string>> = {},
): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const saved: Record<string, string | undefined> = {};
  for (const key of Object.keys(env)) saved[key] = process.env[key];
  Object.assign(process.env, env);
  const log = vi.spyOn(console, "log").mockImplementation((...x: unknown[]) => void out.push(x.join(" ")));
  const error = vi.spyOn(console, "error").mockImplementation((...x: unknown[]) => void err.push(x.join(" ")));
  try {
    const status = await command(args);
    return { status, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    log.mockRestore();
    error.mockRestore();
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** Kills (SIGKILL) those of `children` still running, and empties the list. */
export function killLeft(children: ChildProcess[]): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

/** As killLeft, and resolves once every one of them has exited (its sockets closed by the kernel). */
export async function killLeftAndWait(children: ChildProcess[]): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = running.map((c) => new Promise<void>((resolve) => c.once("exit", () => resolve())));
  killLeft(children);
  await Promise.all(exited);
}

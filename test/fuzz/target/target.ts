// The fuzzer's handle on the server under fuzz: spawns child.ts in a temp
// dir, talks to it over IPC, notices when it dies, and cleans up after it
// (process killed, directory removed) however the run ends.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseId } from "../../../src/auth/identity.js";
import type { ChildEvent, ReadyInfo, Request, ResponseMessage } from "./protocol.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, "..", "..", "..");
const CHILD = path.join(HERE, "child.ts");

/** The secure listener's identity (fixed, so findings replay against the same key). */
export const SERVER_SEED_HEX = "5eed".padEnd(64, "0");

/** Heap ceiling of the child: a runaway allocation ends in a crash we report, not a swapping machine. */
const CHILD_HEAP_MB = 1024;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// Children still running and their directories, cleaned up however the
// fuzzer's process exits.
const live = new Map<ChildProcess, string>();
process.once("exit", () => {
  for (const [c, dir] of live) {
    c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

export class Target {
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #stderr = "";
  #exit: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;
  info!: ReadyInfo;

  private constructor(child: ChildProcess, dir: string) {
    this.#child = child;
    this.#dir = dir;
    live.set(child, dir);
    child.stderr!.on("data", (d: Buffer) => {
      this.#stderr += d.toString();
      if (this.#stderr.length > 64 * 1024) this.#stderr = this.#stderr.slice(-32 * 1024);
    });
    child.stdout!.on("data", () => {});
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        this.#exit = { code, signal };
        const error = new Error(`the server under fuzz exited (${code ?? signal}); stderr:\n${this.stderrTail()}`);
        for (const p of this.#pending.values()) p.reject(error);
        this.#pending.clear();
        resolve(this.#exit);
      });
    });
    child.on("message", (m: ResponseMessage | ChildEvent) => {
      if ("event" in m) return;
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`child: ${m.error}`));
    });
  }

  /** Spawns a fresh server and waits until it listens. */
  static async start(timeoutMs = 30_000): Promise<Target> {
    const dir = mkdtempSync(path.join(tmpdir(), "capmesh-fuzz-"));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--expose-gc", `--max-old-space-size=${CHILD_HEAP_MB}`, CHILD, dir, SERVER_SEED_HEX],
      // Its own process group: a Ctrl-C meant for the fuzzer must not look like a crash of the
      // server. It exits (and removes its directory) if the fuzzer goes away.
      { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe", "ipc"], env: { ...process.env, NODE_OPTIONS: "" }, detached: true },
    );
    const target = new Target(child, dir);
    try {
      target.info = await new Promise<ReadyInfo>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server under fuzz did not start within ${timeoutMs} ms`)), timeoutMs);
        child.on("message", (m: ChildEvent | ResponseMessage) => {
          if ("event" in m && m.event === "ready") {
            clearTimeout(timer);
            resolve(m.info);
          }
        });
        void target.exited.then((e) => {
          clearTimeout(timer);
          reject(new Error(`the server under fuzz exited (${e.code ?? e.signal}) while starting:\n${target.stderrTail()}`));
        });
      });
    } catch (e) {
      await target.stop();
      throw e;
    }
    return target;
  }

  get alive(): boolean {
    return this.#exit === null;
  }

  get exitInfo(): ExitInfo | null {
    return this.#exit;
  }

  get plainAddress(): string {
    return `unix:${this.info.plainPath}`;
  }

  get secureAddress(): string {
    return `unix:${this.info.securePath}`;
  }

  get serverKey(): Uint8Array {
    return parseId(this.info.serverId);
  }

  stderrTail(chars = 4000): string {
    return this.#stderr.slice(-chars);
  }

  /** Sends a request; rejects if the child dies or does not answer within `timeoutMs`. */
  request<T>(req: Request, timeoutMs = 15_000): Promise<T> {
    if (!this.alive) return Promise.reject(new Error("the server under fuzz is not running"));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the server under fuzz did not answer "${req.op}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      try {
        this.#child.send({ ...req, id });
      } catch (e) {
        this.#pending.get(id)?.reject(e instanceof Error ? e : new Error(String(e)));
        this.#pending.delete(id);
      }
    });
  }

  /** Stops the child (it exits when its IPC channel closes; killed if it does not) and removes its directory. */
  async stop(): Promise<void> {
    if (this.alive) {
      if (this.#child.connected) this.#child.disconnect();
      let timer: NodeJS.Timeout | undefined;
      const exitedInTime = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 2000))),
      ]);
      clearTimeout(timer);
      if (!exitedInTime) {
        this.#child.kill("SIGKILL");
        await this.exited;
      }
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

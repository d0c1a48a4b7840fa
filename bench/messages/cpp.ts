// Builds the C++ side of the message benchmark, peers/cpp/message-bench.c++,
// the way test/helpers/cpp.ts builds the other C++ peers: `capnp compile
// -oc++` on the schema, g++ with the flags of pkg-config, products under
// build/<dir>/<hash>/ where <hash> covers the sources, the schema, this file
// (the recipe), the flags and the tool versions, so an unchanged tree reuses
// the binary. Each build happens in a private directory published with one
// rename. (The helper's own build covers a fixed list of peers and prunes
// build/cpp/, hence a directory of our own.)
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, promises as fsp, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CPP_INSTALL_HINT, cppPeerAvailable } from "../../test/helpers/cpp.js";
import { ROOT } from "../lib/processes.js";

const BUILD_ROOT = path.join(ROOT, "build", "cpp-messages");
const SOURCE = "peers/cpp/message-bench.c++";
const SCHEMA_DIR = "bench/messages";
const SCHEMA = "shapes.capnp";
const CXXFLAGS = ["-std=c++17", "-O2", "-pthread"];
const BINARY = "message-bench";
const MARKER = ".complete";

function output(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 15_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`);
  return r.stdout.trim();
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout!.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (text += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${code ?? signal}):\n${text.slice(-4000)}`));
    });
  });
}

/** The binary's path, building it if the sources changed; or why there is none. */
export async function buildMessageBench(): Promise<{ binary: string } | { unavailable: string }> {
  const available = cppPeerAvailable();
  if (!available.ok) return { unavailable: `skipped: ${available.reason}. Install with: ${CPP_INSTALL_HINT}` };
  try {
    const pcArgs = output("pkg-config", ["--cflags", "--libs", "capnp"]).split(/\s+/).filter(Boolean);
    const hash = createHash("sha256");
    for (const file of [SOURCE, `${SCHEMA_DIR}/${SCHEMA}`, path.relative(ROOT, fileURLToPath(import.meta.url))]) {
      hash.update(file).update("\0").update(readFileSync(path.join(ROOT, file))).update("\0");
    }
    hash.update(CXXFLAGS.join(" ")).update("\0").update(pcArgs.join(" ")).update("\0");
    hash.update(output("capnp", ["--version"])).update(output("g++", ["--version"]).split("\n")[0]!);
    const dir = path.join(BUILD_ROOT, hash.digest("hex").slice(0, 16));
    const binary = path.join(dir, BINARY);
    if (existsSync(path.join(dir, MARKER))) return { binary };

    await fsp.mkdir(BUILD_ROOT, { recursive: true });
    const tmp = path.join(BUILD_ROOT, `.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    await fsp.mkdir(tmp);
    try {
      await run("capnp", ["compile", `-oc++:${tmp}`, `--src-prefix=${SCHEMA_DIR}`, `${SCHEMA_DIR}/${SCHEMA}`]);
      // Source paths relative to the root, so that __FILE__ in errors stays short.
      await run("g++", [...CXXFLAGS, `-I${tmp}`, "-o", path.join(tmp, BINARY), SOURCE, path.join(tmp, `${SCHEMA}.c++`), ...pcArgs]);
      await fsp.writeFile(path.join(tmp, MARKER), new Date().toISOString() + "\n");
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.rename(tmp, dir);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    await pruneOthers(dir);
    return { binary };
  } catch (err) {
    return { unavailable: `C++ build failed: ${(err instanceof Error ? err.message : String(err)).split("\n").slice(0, 3).join(" ")}` };
  }
}

/** Removes builds of older sources (untouched for 10 minutes). */
async function pruneOthers(keep: string): Promise<void> {
  const cutoff = Date.now() - 10 * 60_000;
  for (const entry of await fsp.readdir(BUILD_ROOT).catch(() => [] as string[])) {
    const full = path.join(BUILD_ROOT, entry);
    if (full === keep) continue;
    try {
      if (statSync(full).mtimeMs < cutoff) await fsp.rm(full, { recursive: true, force: true });
    } catch {
      // gone already
    }
  }
}

// How the runner finds and launches systems.
//
// A system is a directory bench/systems/<name>/ holding either
//   server.ts + client.ts   run as `node --import tsx <file> <args>`, or
//   system.ts               exporting `prepare(): Promise<Launch>`, for
//                           systems that need a build step or are not
//                           TypeScript (see cpp/system.ts).
// Dropping a new directory in is all it takes; KNOWN_ORDER only fixes the
// order of the table (and lists systems that may not exist yet).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const SYSTEMS_DIR = fileURLToPath(new URL("../systems/", import.meta.url));

/** Table order; the raw floor comes first, ours last. */
export const KNOWN_ORDER = ["raw", "capnweb", "grpc", "vscode-jsonrpc", "capnp-es", "capnp-es-to-cpp", "capnp-ts", "cpp", "capmesh", "capmesh-tuned"];

export interface Commands {
  /** argv prefix of the server; the address is appended. */
  readonly server: readonly string[];
  /** argv prefix of the client; `<address> <figure> <seconds>` are appended. */
  readonly client: readonly string[];
  /** Said once under the tables, for every figure this system ran. */
  readonly note?: string;
}
export type Launch = Commands | { readonly unavailable: string };

export interface SystemModule {
  prepare(): Promise<Launch>;
}

/** argv that runs a TypeScript file under tsx in a fresh node. */
export function tsxCommand(file: string): string[] {
  return [process.execPath, "--import", import.meta.resolve("tsx"), file];
}

export function listSystems(): string[] {
  const found = fs.existsSync(SYSTEMS_DIR)
    ? fs
        .readdirSync(SYSTEMS_DIR, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
    : [];
  const extra = found.filter((n) => !KNOWN_ORDER.includes(n)).sort();
  return [...KNOWN_ORDER, ...extra];
}

/** The default launch: server.ts and client.ts in the system's directory. */
export function defaultLaunch(name: string): Launch {
  const dir = path.join(SYSTEMS_DIR, name);
  const server = path.join(dir, "server.ts");
  const client = path.join(dir, "client.ts");
  const missing = [server, client].filter((f) => !fs.existsSync(f)).map((f) => path.basename(f));
  if (missing.length === 2) return { unavailable: "not yet built" };
  if (missing.length > 0) return { unavailable: `not yet built (${missing.join(", ")} missing)` };
  return { server: tsxCommand(server), client: tsxCommand(client) };
}

export async function prepareSystem(name: string): Promise<Launch> {
  const custom = path.join(SYSTEMS_DIR, name, "system.ts");
  if (!fs.existsSync(custom)) return defaultLaunch(name);
  try {
    const mod = (await import(pathToFileURL(custom).href)) as SystemModule;
    return await mod.prepare();
  } catch (err) {
    return { unavailable: `prepare failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

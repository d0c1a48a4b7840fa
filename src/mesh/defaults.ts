// Where a mesh lives on this machine when nothing is configured, shared by
// `capmesh serve`/startHub and the SDK (joinMesh) so that they find each
// other: the hub's socket and discovery file in the user's runtime dir, its
// identity and network key in $CAPMESH_HOME.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { homedir, tmpdir, userInfo } from "node:os";
import { join } from "node:path";

/** Environment variables the SDK and the CLI read, and `capmesh serve` prints. */
export const ENV = {
  /** The hub's address, e.g. unix:/run/user/1000/capmesh/hub.sock or tcp://host:7400. */
  hub: "CAPMESH_HUB",
  /** The hub's identity ("@…ed25519"), which the handshake checks. */
  hubId: "CAPMESH_HUB_ID",
  /** The mesh's network key (base64). */
  networkKey: "CAPMESH_NETWORK_KEY",
  /** Where identities and the network key are kept (default ~/.capmesh). */
  home: "CAPMESH_HOME",
  /** "0" (or "false", "off") turns direct peer paths off where no option says otherwise. */
  directPaths: "CAPMESH_DIRECT_PATHS",
} as const;

/** $CAPMESH_HOME, else ~/.capmesh. */
export function meshHome(env: NodeJS.ProcessEnv = process.env): string {
  return env[ENV.home] || join(homedir(), ".capmesh");
}

/** $XDG_RUNTIME_DIR/capmesh, else <tmp>/capmesh-<user>: created with mode 0700. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, "capmesh") : join(tmpdir(), `capmesh-${safeUser()}`);
}

function safeUser(): string {
  try {
    return userInfo().username.replace(/[^A-Za-z0-9_.-]/g, "_") || String(process.getuid?.() ?? "user");
  } catch {
    return String(process.getuid?.() ?? "user");
  }
}

export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** The discovery file a running hub writes in the runtime dir. */
export interface HubDiscovery {
  address: string;
  hubId: string;
  pid: number;
}

export function discoveryFile(dir = runtimeDir()): string {
  return join(dir, "hub.json");
}

export async function readDiscovery(dir = runtimeDir()): Promise<HubDiscovery | null> {
  try {
    const parsed = JSON.parse(await readFile(discoveryFile(dir), "utf8")) as Partial<HubDiscovery>;
    if (typeof parsed.address !== "string" || typeof parsed.hubId !== "string") return null;
    return { address: parsed.address, hubId: parsed.hubId, pid: Number(parsed.pid) };
  } catch {
    return null;
  }
}

/**
 * The mesh's network key kept in `home`/netkey (base64): made on first use,
 * mode 0600, so that the hub and every local peer share it.
 */
export async function loadOrCreateNetworkKey(home = meshHome()): Promise<Uint8Array> {
  const file = join(home, "netkey");
  try {
    return decodeNetworkKey((await readFile(file, "utf8")).trim(), file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await ensurePrivateDir(home);
  const key = randomBytes(32);
  try {
    await writeFile(file, `${key.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    return new Uint8Array(key);
  } catch (error) {
    // Another process made it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return decodeNetworkKey((await readFile(file, "utf8")).trim(), file);
    throw error;
  }
}

export function decodeNetworkKey(text: string, where: string): Uint8Array {
  const key = Buffer.from(text, "base64");
  if (key.length !== 32 || key.toString("base64") !== text) {
    throw new Error(`${where}: a network key is 32 bytes in base64 (44 characters); make one with \`capmesh netkey\``);
  }
  return new Uint8Array(key);
}

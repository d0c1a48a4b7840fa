// A hub's home for the mesh benches (bench/mesh, bench/direct): made here
// with its identity and network key, so that the environment its peers
// need is known before the hub process starts.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { generateIdentity, saveIdentity } from "../../src/auth/identity.js";
import { scratchDir } from "./processes.js";

export interface HubSetup {
  home: string;
  socket: string;
  /** What the hub and every peer of it run with (CAPMESH_HUB, _HUB_ID, _NETWORK_KEY, _HOME, _DIRECT_PATHS). */
  env: Record<string, string>;
}

/**
 * A home under the scratch directory, and the hub's socket beside it.
 * `directPaths` sets CAPMESH_DIRECT_PATHS for the hub and its peers (a peer
 * may still override it in its own environment).
 */
export async function prepareHub(name: string, { directPaths }: { directPaths: boolean }): Promise<HubSetup> {
  const home = path.join(scratchDir(), name);
  await mkdir(home, { recursive: true, mode: 0o700 });
  const identity = generateIdentity();
  await saveIdentity(path.join(home, "secret"), identity);
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
  await writeFile(path.join(home, "netkey"), `${key}\n`, { mode: 0o600 });
  const socket = path.join(scratchDir(), `${name}.sock`);
  return {
    home,
    socket,
    env: {
      CAPMESH_HUB: `unix:${socket}`,
      CAPMESH_HUB_ID: identity.id,
      CAPMESH_NETWORK_KEY: key,
      // Nothing reads or writes the user's own ~/.capmesh.
      CAPMESH_HOME: home,
      CAPMESH_DIRECT_PATHS: directPaths ? "1" : "0",
      DEBUG: "",
    },
  };
}

// Direct peer paths for mesh vats (rpc.capnp Level 3, three-party handoff):
// the options a hub and a peer take, the environment switch, and where a
// peer listens for direct connections by default. The handoff itself is the
// engine's (src/rpc/third-party*.ts) over the socket network's Level 3
// (src/network/third-party.ts); see docs/design/level3.md.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ThirdPartyLimits } from "../network/third-party.js";
import { toAddress } from "../transport/address.js";
import { ENV, ensurePrivateDir, runtimeDir } from "./defaults.js";

/** The Hello feature that says a side takes part in direct paths. */
export const DIRECT_PATHS_FEATURE = "direct-paths";

/**
 * Direct paths, on by default: when a capability hosted by one peer reaches
 * another, the two connect and talk directly instead of through the hub.
 * The limits are the handoff's (how long a contact stays valid, dial
 * timeouts, bounds on open provisions).
 */
export interface DirectPathOptions extends ThirdPartyLimits {
  /**
   * Peer only: where to listen for direct connections. Default: a unix
   * socket beside the hub's (or in the user's runtime dir), plus TCP on the
   * local address used to reach the hub when the hub is reached over TCP.
   */
  listen?: readonly string[];
  /** Peer only: the addresses other peers are told to dial, instead of the bound ones (NAT, relays). */
  advertise?: readonly string[];
  /**
   * Peer only: who may connect to the direct listener (default: any peer of
   * the mesh's network key: a connection alone gives nothing; only a
   * capability the hub introduced can be picked up over it).
   */
  authorize?: (peerId: string) => boolean;
  /**
   * Two peers that dial each other at once end with two connections; both
   * keep the one dialled by the smaller key, and the other's dialler closes
   * it once it has been idle this long (default 2000 ms).
   */
  retireAfterIdleMs?: number;
  /** @internal Test-only: pick capabilities up without the 3PH embargo (shows that calls then reorder). */
  _unsafeNoEmbargo?: boolean;
}

/** Every limit a config file may set under `directPaths` (all positive numbers). */
export const DIRECT_PATH_LIMITS = [
  "provisionTtlMs",
  "clockSkewMs",
  "maxProvisionTtlMs",
  "acceptWaitMs",
  "dialTimeoutMs",
  "dialBudgetMs",
  "maxConcurrentDials",
  "maxProvisionsPerIntroducer",
  "maxProvisionsPerRecipient",
  "maxWaitingAccepts",
  "recentNonces",
] as const satisfies readonly (keyof ThirdPartyLimits)[];

/** The options in force: null when direct paths are off (by option, else by $CAPMESH_DIRECT_PATHS). */
export function directPathsIn(option: boolean | DirectPathOptions | undefined, env: NodeJS.ProcessEnv = process.env): DirectPathOptions | null {
  if (option === false) return null;
  if (option === true) return {};
  if (option !== undefined) return option;
  const text = env[ENV.directPaths];
  if (text === undefined || text === "") return {};
  const switched = text.trim().toLowerCase();
  if (["0", "false", "off", "no"].includes(switched)) return null;
  if (["1", "true", "on", "yes"].includes(switched)) return {};
  throw new Error(`${ENV.directPaths}=${text}: expected 0 or 1 (off or on)`);
}

/** The limits part of the options (what SocketThirdParty takes). */
export function limitsOf(options: DirectPathOptions): ThirdPartyLimits {
  const { listen: _listen, advertise: _advertise, authorize: _authorize, _unsafeNoEmbargo: _unsafe, retireAfterIdleMs: _retire, ...limits } = options;
  return limits;
}

/**
 * Where a peer listens by default: a unix socket in the hub socket's
 * directory when that is writable (it goes with the hub's), else in the
 * user's runtime dir; and TCP on `tcpHost` (port chosen by the system)
 * when the hub was reached over TCP, so that peers on other machines can dial.
 */
export async function defaultListenAddresses(hubAddress: string, peerId: string, tcpHost: string | undefined): Promise<string[]> {
  const hub = toAddress(hubAddress);
  // Unique per peer: one process may join the mesh many times, even as one identity.
  const file = `peer-${peerId.slice(1, 7).replace(/[^A-Za-z0-9]/g, "_")}-${process.pid}-${randomBytes(3).toString("hex")}.sock`;
  let dir: string | null = null;
  if (hub.kind === "unix") {
    const hubDir = dirname(hub.path);
    if (await access(hubDir, constants.W_OK).then(() => true, () => false)) dir = hubDir;
  }
  if (dir === null) {
    dir = runtimeDir();
    await ensurePrivateDir(dir);
  }
  const addresses = [`unix:${join(dir, file)}`];
  if (hub.kind === "tcp" && tcpHost !== undefined) addresses.push(`tcp://${tcpHost.includes(":") ? `[${tcpHost}]` : tcpHost}:0`);
  return addresses;
}

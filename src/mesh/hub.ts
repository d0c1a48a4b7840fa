// startHub: a mesh hub on embedded defaults, embeddable in any Node service.
// It listens on a unix socket in the user's runtime dir (and on any TCP
// addresses configured), with an identity and a network key kept in
// $CAPMESH_HOME, and hands every peer that passes the handshake a `Hub`
// bound to its identity.
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { basename, dirname, join } from "node:path";
import { loadOrCreateIdentity, type Identity } from "../auth/identity.js";
import { toNetworkKey } from "../auth/channel.js";
import { listen, type Listener } from "../network/endpoints.js";
import { SocketNetwork } from "../network/socket-network.js";
import { SocketThirdParty } from "../network/third-party.js";
import { RpcSystem, type Session } from "../rpc/system.js";
import type { PeerInfo } from "../rpc/vat-network.js";
import type { TransportLimits } from "../transport/limits.js";
import { formatAddress, toAddress } from "../transport/address.js";
import { logger } from "../log.js";
import { RpcError } from "../rpc/errors.js";
import type { HubStats, PeerStats } from "../gen/mesh.js";
import { ENV, discoveryFile, ensurePrivateDir, loadOrCreateNetworkKey, meshHome, runtimeDir } from "./defaults.js";
import { Policy, type PolicyRules, type Quotas, type Via } from "./policy.js";
import { MeshRegistry } from "./registry.js";
import { hubFor, type HubCore } from "./service.js";
import { printPluginLine, type EngineFactory, type PluginLogLine } from "../engine/service.js";
import { DIRECT_PATHS_FEATURE, directPathsIn, limitsOf, type DirectPathOptions } from "./direct.js";

const log = logger("capmesh:mesh");

export interface HubOptions {
  /** Where the identity and network key are kept (default $CAPMESH_HOME, else ~/.capmesh). */
  home?: string;
  /** The unix socket to listen on (default <runtime dir>/hub.sock); false for none. */
  socket?: string | false;
  /** More addresses to listen on, e.g. "tcp://0.0.0.0:7400" (handshake and box-stream). */
  listen?: string[];
  /** The hub's identity (default: <home>/secret, made on first run). */
  identity?: Identity;
  /** The mesh's network key, 32 bytes or base64 (default: <home>/netkey, made on first run). */
  networkKey?: Uint8Array | string;
  /** Who may do what (see Policy). */
  policy?: PolicyRules;
  /** Per-identity quotas (registrations, watchers, connections). */
  quotas?: Partial<Quotas>;
  /** Limits on what a peer may send (see TransportLimits). */
  limits?: Partial<TransportLimits>;
  /**
   * Direct paths between peers (rpc.capnp Level 3): on by default, unless
   * $CAPMESH_DIRECT_PATHS=0. When a capability one peer hosts reaches
   * another that also has them on, the hub introduces the two, and their
   * calls stop going through the hub. `false`: everything is proxied by
   * the hub. `policy.direct` decides per peer.
   */
  directPaths?: boolean | DirectPathOptions;
  /**
   * Configuration sections by plugin name: a plugin reads its own (any JSON
   * value) with `Engine.config`.
   */
  plugins?: Record<string, unknown>;
  /**
   * Where plugins' log and progress lines (Engine.log, Engine.progress) go,
   * tagged with the plugin's name: by default a JSON line on stderr
   * (`capmesh:plugin`; debug lines only with DEBUG=capmesh:plugin). `false`
   * drops them.
   */
  pluginLog?: false | ((line: PluginLogLine) => void);
  /**
   * The extension point for a service that embeds the hub: makes the
   * capability `Hub.engine` hands each peer, typically of its own interface
   * that extends Engine, from the hub's Engine methods (`base`, bound).
   */
  engine?: EngineFactory;
}

export interface MeshHub extends AsyncDisposable {
  /** The hub's identity, "@…ed25519". */
  readonly id: string;
  /** The address local peers use (the unix socket), or the first listener's. */
  readonly address: string;
  /** Every address the hub listens on. */
  readonly addresses: readonly string[];
  /** The network key, base64. */
  readonly networkKey: string;
  /** The environment a peer needs to join this hub (what `capmesh serve` prints). */
  readonly env: Readonly<Record<string, string>>;
  /** The hub's tables per peer (the Admin capability's stats). */
  stats(): HubStats;
  /** Tells every peer (registrations end, watchers hear who left), then closes. */
  close(): Promise<void>;
}

const SOFTWARE = "capmesh/0.1.0";

export async function startHub(options: HubOptions = {}): Promise<MeshHub> {
  const home = options.home ?? meshHome();
  if (options.identity === undefined || options.networkKey === undefined) await ensurePrivateDir(home);
  const identity = options.identity ?? (await loadOrCreateIdentity(join(home, "secret")));
  const networkKey = options.networkKey !== undefined ? toNetworkKey(options.networkKey) : await loadOrCreateNetworkKey(home);
  const policy = new Policy(options.policy ?? {}, options.quotas ?? {});
  const registry = new MeshRegistry();
  const listeners: { listener: Listener; via: Via }[] = [];

  // One vat for every listener: the hub introduces a peer to another
  // whichever listeners they came in by. Its own network only dials (as the
  // recipient of a capability a peer hands it, which is rare).
  const direct = directPathsIn(options.directPaths);
  const dialler = new SocketNetwork({ identity, networkKey, ...(options.limits ? { limits: options.limits } : {}) });
  const viaOf = new Map<string, Via>();
  const thirdParty = direct
    ? new SocketThirdParty({
        ...limitsOf(direct),
        publicKey: identity.publicKey,
        network: dialler,
        allowIntroduction: (recipient, host) => policy.explainDirect(recipient, viaOf.get(recipient) ?? "tcp", registry.namesHeldBy(host)) === null,
      })
    : undefined;
  const system = new RpcSystem(dialler, null, { thirdParty });

  // A peer killed before it could remove its direct-path socket leaves the
  // file behind; those it made where joinMesh puts them by default (beside
  // the hub's socket, or in the runtime dir) go when it leaves.
  const peerSocketDirs = new Set([runtimeDir(), ...(options.socket === false ? [] : [dirname(options.socket ?? join(runtimeDir(), "hub.sock"))])]);
  const ownPeerSockets = (addresses: readonly string[]) =>
    addresses.flatMap((a) => {
      const path = a.startsWith("unix:") ? a.slice("unix:".length) : null;
      return path !== null && peerSocketDirs.has(dirname(path)) && /^peer-[\w-]+\.sock$/.test(basename(path)) ? [path] : [];
    });
  const sweeps = new Set<Promise<void>>();
  const sweep = (paths: string[]) => {
    const done: Promise<void> = Promise.all(paths.map((p) => removeIfStale(p))).then(
      () => void sweeps.delete(done),
      () => void sweeps.delete(done),
    );
    sweeps.add(done);
  };

  const allSessions = (): Session[] => listeners.flatMap(({ listener }) => [...listener.sessions]);
  const core: HubCore = {
    registry,
    policy,
    hubId: identity.id,
    software: SOFTWARE,
    stats: () => statsOf(system, thirdParty, registry, core.engine.contexts.size),
    features: thirdParty ? [DIRECT_PATHS_FEATURE] : [],
    addresses: () => thirdParty?.addresses ?? [],
    engine: {
      policy,
      plugins: options.plugins ?? {},
      log: options.pluginLog === false ? () => {} : (options.pluginLog ?? printPluginLine),
      contexts: new Set(),
      environment: process.env,
    },
    ...(options.engine ? { engineFactory: options.engine } : {}),
    greeted: (session, hello) => {
      if (!hello.features.includes(DIRECT_PATHS_FEATURE)) return;
      const own = ownPeerSockets(hello.addresses);
      if (own.length > 0) session.connection.onClose(() => sweep(own));
      if (thirdParty) system.advertise(session, { addresses: hello.addresses });
    },
  };
  // policy.join and quotas.connections are checked once the handshake has
  // proved who the peer is, and a refusal goes to the peer as an rpc Abort
  // with the reason (a refusal inside the handshake could only hang up).
  // The new session is already in its listener's set, so the count is exact
  // however many handshakes finish at once.
  const admit = (session: Session, via: Via) => {
    const id = session.peer.authenticated ? session.peer.id : "anonymous";
    let refusal = policy.explainRefusal("join", id, via);
    if (refusal === null && allSessions().filter((s) => s.peer.id === session.peer.id).length > policy.quotas.connections) {
      refusal = policy.quotaRefusal("connections", id);
    }
    if (refusal === null) {
      const id = session.peer.id;
      if (session.peer.authenticated) {
        viaOf.set(id, via);
        session.connection.onClose(() => {
          if (!allSessions().some((s) => s !== session && s.peer.id === id)) viaOf.delete(id);
        });
      }
      return;
    }
    log.warn("refusing a connection", { id, reason: refusal });
    session.connection.abort(RpcError.failed(refusal));
  };

  const usesDefaultSocket = options.socket === undefined;
  const dir = runtimeDir();
  const socketPath = options.socket === false ? null : (options.socket ?? join(dir, "hub.sock"));
  const common = { identity, networkKey, system, ...(options.limits ? { limits: options.limits } : {}) };
  try {
    if (socketPath !== null) {
      if (usesDefaultSocket) await ensurePrivateDir(dir);
      await clearStaleSocket(socketPath);
      const listener = await listen(`unix:${socketPath}`, {
        ...common,
        bootstrap: (peer: PeerInfo, session: Session) => hubFor(core, peer, session, "unix"),
        onSession: (session) => admit(session, "unix"),
      });
      listeners.push({ listener, via: "unix" });
    }
    for (const address of options.listen ?? []) {
      const addr = toAddress(address);
      const via: Via = addr.kind === "unix" ? "unix" : "tcp";
      const listener = await listen(formatAddress(addr), {
        ...common,
        bootstrap: (peer: PeerInfo, session: Session) => hubFor(core, peer, session, via),
        onSession: (session) => admit(session, via),
      });
      listeners.push({ listener, via });
    }
  } catch (error) {
    await Promise.all(listeners.map(({ listener }) => listener.close()));
    await system.close();
    throw error;
  }
  if (listeners.length === 0) {
    await system.close();
    throw new Error("startHub: no listener: give a socket, or addresses in listen");
  }

  const addresses = listeners.map(({ listener }) => listener.address);
  // What the hub advertises as a host: where peers already reach it.
  if (thirdParty) thirdParty.addresses = addresses.filter((a) => !/^tcp:\/\/(0\.0\.0\.0|\[::\]):/.test(a));
  const address = addresses[0]!;
  const networkKeyText = Buffer.from(networkKey).toString("base64");
  if (usesDefaultSocket && socketPath !== null) {
    await writeFile(discoveryFile(dir), JSON.stringify({ address, hubId: identity.id, pid: process.pid }), { mode: 0o600 });
  }
  log.debug("hub up", { id: identity.id, addresses, directPaths: thirdParty !== undefined });

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      registry.closeAll("the hub is shutting down");
      // Let the Returns of `ended` and the watchers' `left` events go out first.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all(listeners.map(({ listener }) => listener.close()));
      await system.close();
      await Promise.all([...sweeps]);
      if (usesDefaultSocket && socketPath !== null) await rm(discoveryFile(dir), { force: true });
      log.debug("hub closed", { id: identity.id });
    })());

  return {
    id: identity.id,
    address,
    addresses,
    networkKey: networkKeyText,
    env: { [ENV.hub]: address, [ENV.hubId]: identity.id, [ENV.networkKey]: networkKeyText },
    stats: core.stats,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function statsOf(system: RpcSystem, thirdParty: SocketThirdParty | undefined, registry: MeshRegistry, contexts: number): HubStats {
  const sessions = system.sessions;
  const peers: PeerStats[] = sessions.map((s) => {
    const tables = s.connection.stats();
    const net = system.networkConnectionOf(s);
    return {
      id: s.peer.id,
      address: s.peer.address,
      registrations: registry.countHeldBy(s.peer.id),
      watchers: registry.watchersOf(s.peer.id),
      questions: tables.questions,
      answers: tables.answers,
      imports: tables.imports,
      exports: tables.exports,
      directPaths: (net && thirdParty?.lookup(net)?.level3) ?? false,
      provisions: tables.provisions ?? 0,
      vines: tables.vines ?? 0,
    };
  });
  let forwarded = 0n;
  for (const s of sessions) forwarded += BigInt(s.connection.forwardedCalls);
  return {
    connections: sessions.length,
    registrations: registry.size,
    watchers: registry.watcherCount,
    peers,
    forwardedCalls: forwarded,
    introductions: BigInt(system.handoffs.introductions),
    directPaths: thirdParty !== undefined,
    contexts,
  };
}

/** Removes a unix socket file nobody listens on any more (a peer that died without cleaning up). */
async function removeIfStale(path: string): Promise<void> {
  if (!existsSync(path) || (await socketIsLive(path))) return;
  await rm(path, { force: true });
}

function socketIsLive(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const probe = netConnect({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/**
 * A socket file left by a hub that died is removed; one a live hub answers
 * on is an error (two hubs cannot share an address).
 */
async function clearStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (await socketIsLive(path)) throw new Error(`a hub is already listening on unix:${path}; stop it first, or give this one another socket`);
  await rm(path, { force: true });
}

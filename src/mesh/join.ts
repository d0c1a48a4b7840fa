// joinMesh: the plugin SDK. A plugin in a few lines: find the hub (on the
// same defaults as `capmesh serve`), connect with the handshake, register a
// name, reach other plugins by name, watch who comes and goes; reconnect and
// register again when the hub restarts; leave cleanly on close(), `await
// using`, SIGTERM and SIGINT.
import { join } from "node:path";
import { generateIdentity, loadOrCreateIdentity, type Identity } from "../auth/identity.js";
import { toNetworkKey } from "../auth/channel.js";
import { SocketNetwork } from "../network/socket-network.js";
import { SocketThirdParty } from "../network/third-party.js";
import { RpcError } from "../rpc/errors.js";
import type { InterfaceDef } from "../codec/types.js";
import { RpcSystem, type Session } from "../rpc/system.js";
import type { Capability } from "../rpc/types.js";
import { hookOf, wrapHook } from "../rpc/typed.js";
import { capabilityState } from "../rpc/introspect.js";
import type { Init } from "../codec/init.js";
import { logger } from "../log.js";
import {
  Hub,
  Observer,
  Provider,
  protocolVersion,
  type Entry,
  type Event,
  type PluginInfo,
  type Registration,
  type Watch,
} from "../gen/mesh.js";
import { Engine } from "../gen/engine.js";
import { ENV, decodeNetworkKey, loadOrCreateNetworkKey, meshHome, readDiscovery } from "./defaults.js";
import { nameProblem } from "./names.js";
import { describeProvided } from "./describe.js";
import { DIRECT_PATHS_FEATURE, defaultListenAddresses, directPathsIn, limitsOf, type DirectPathOptions } from "./direct.js";
import { CallQueue } from "../rpc/sequential.js";
import { sequentialOffer } from "../network/endpoints.js";
import { ChannelAcceptor } from "../gen/channel.js";
import { CHANNELS_FEATURE, openChannelOn, provideWithChannels, type ChannelHandler, type OpenChannelOptions } from "./channels.js";
import type { Duplex } from "node:stream";

const log = logger("capmesh:mesh");

export interface JoinOptions {
  /** The hub's address; default $CAPMESH_HUB, else the hub running on this machine's defaults. */
  hub?: string;
  /** The hub's identity; default $CAPMESH_HUB_ID, else the local hub's discovery file. */
  hubId?: string;
  /** The mesh's network key; default $CAPMESH_NETWORK_KEY, else $CAPMESH_HOME/netkey. */
  networkKey?: Uint8Array | string;
  /**
   * This peer's identity: an Identity, or a key file (made if missing).
   * Default: a new one for this process (policy rules keyed by identity
   * need a lasting one: `capmesh keygen plugin.key`).
   */
  identity?: Identity | string;
  /** Register under this name (a plugin). Without it the peer is a client. */
  name?: string;
  /**
   * What callers of `name` get: one capability for all, or a function of
   * the caller's proven identity (the hub vouches for it) for per-caller grants.
   */
  provide?: Capability | ((caller: string) => Capability);
  /**
   * Metadata registered with the name. `interfaces` and `schema` default to
   * those of `interfaces` below (what `capmesh ls` shows and `capmesh call`
   * calls by).
   */
  info?: Init<PluginInfo>;
  /**
   * The generated interfaces `provide` implements, published with the name
   * (ids, names, and the compiled schema their generated code embeds).
   * Default: the interface `provide` is typed as, when it is a capability
   * (e.g. made with `Foo.server(...)`); give it for a per-caller `provide`.
   */
  interfaces?: readonly InterfaceDef[];
  /** Take the name over if it is taken (where the hub's policy allows it). */
  replace?: boolean;
  /**
   * One call at a time for this plugin (an actor): what `provide` gives
   * (every per-caller capability too) shares one queue, so calls run in
   * arrival order, the next once the previous has settled, and the
   * plugin's state needs no locks. Capabilities already made sequential
   * (`Foo.server(impl, { sequential: true })`) keep their own queue; those
   * its methods return are not covered unless made so. A call back into it
   * from inside its own running call fails (README, "Many calls at
   * once, or one at a time"). Default: calls run in parallel.
   */
  sequential?: boolean;
  /**
   * Accept byte channels that peers open by this plugin's name
   * (`peer.openChannel(name)`): called once per channel with the caller's
   * identity (the hub vouches for it) and the protocol asked for. Return
   * the plugin's end as a Duplex to accept (a PassThrough echoes), or throw
   * to refuse with that reason. The plugin then registers per caller, and
   * says the feature "channels" (README, "Channels by name").
   */
  channels?: ChannelHandler;
  /** Reconnect and register again when the hub goes away (default true). */
  reconnect?: boolean;
  /** Close on SIGTERM/SIGINT, then let the signal take its course (default true). */
  handleSignals?: boolean;
  /**
   * Direct paths to other peers (rpc.capnp Level 3), on by default unless
   * $CAPMESH_DIRECT_PATHS=0: a capability of another peer that reaches this
   * one through the hub is picked up from that peer over a direct
   * connection, and this peer's capabilities are picked up from it the same
   * way, when the hub and the other peer have them on too. Otherwise (or
   * when the other peer cannot be reached) calls go through the hub.
   * `false`: everything goes through the hub; no listener is opened.
   */
  directPaths?: boolean | DirectPathOptions;
}

/** How calls on a capability travel, as `MeshPeer.pathOf` tells. */
export interface CapabilityPath {
  /**
   * "direct": over a direct connection to the peer that hosts it; "hub":
   * through the hub (the hub's own, or another peer's that the hub proxies:
   * direct paths off somewhere, or the handoff fell back — `reason` says
   * why); "local": this peer's own object; "pending": not resolved yet (or
   * being picked up from its host); "broken": every call fails (`reason`).
   */
  readonly path: "direct" | "hub" | "local" | "pending" | "broken";
  /** The peer the calls go to (direct) or through (hub). */
  readonly peer?: string;
  readonly reason?: string;
}

/** One connection of a mesh peer, as `MeshPeer.stats` shows it. */
export interface PeerConnectionStats {
  /** The other end's identity. */
  readonly peer: string;
  readonly kind: "hub" | "direct";
  /** True when this peer dialled it. */
  readonly dialled: boolean;
  /** Bytes through the socket so far. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly questions: number;
  readonly answers: number;
  readonly imports: number;
  readonly exports: number;
  /** Calls this peer forwarded from one connection to another (it proxied a capability). */
  readonly forwardedCalls: number;
  /** As host: Provides from this connection's peer still open (capabilities it introduced, not yet picked up or released). */
  readonly provisions: number;
  /** As introducer: capabilities handed to this connection's peer as thirdPartyHosted whose vine it still holds. */
  readonly vines: number;
}

/** What `MeshPeer.stats` returns. */
export interface MeshPeerStats {
  readonly directPaths: {
    readonly enabled: boolean;
    /** The direct listener's bound addresses. */
    readonly listening: readonly string[];
    /** As host: provisions waiting for their recipient's Accept. */
    readonly provisions: number;
    /** As host: Accepts waiting for their Provide. */
    readonly acceptsWaiting: number;
    /** As recipient: dials to hosts in progress. */
    readonly dials: number;
  };
  readonly connections: readonly PeerConnectionStats[];
  /**
   * Handoffs: capabilities this peer handed on directly (introductions),
   * and, as recipient, being picked up (pending), picked up over a direct
   * path (accepted), and kept on the hub's path (fellBack).
   */
  readonly handoffs: { readonly introductions: number; readonly pending: number; readonly accepted: number; readonly fellBack: number };
}

export interface MeshPeer extends AsyncDisposable {
  /** This peer's identity. */
  readonly id: string;
  /** The hub's identity. */
  readonly hubId: string;
  /** The hub's Hub capability on the current connection. */
  readonly hub: Hub;
  /**
   * The engine (schema/engine.capnp) for this plugin's name (a client's:
   * for no name), on the current connection: its configuration section,
   * the environment the policy exposes, closures, log lines the hub prints
   * tagged with the name. Asked for on first use, usable at once
   * (pipelined), again after a reconnection. For a hub whose
   * engine extends Engine: `engineAs(MyEngine)`.
   */
  readonly engine: Engine;
  /** A reference of the caller's own to the engine, typed as `iface` (an interface that extends Engine); release it when done. */
  engineAs<C extends Capability>(iface: InterfaceDef & { readonly __client?: C }): C;
  /**
   * The capability registered as `name`, usable at once (calls are
   * pipelined until it arrives). `wait` waits up to that many ms for the
   * name to appear; otherwise an unknown name fails the calls made on it.
   */
  connect<C extends Capability>(name: string, iface: InterfaceDef & { readonly __client?: C }, options?: { wait?: number }): C;
  /**
   * Opens a byte channel to the plugin `name` (it joined with `channels`):
   * this peer's end as a Node Duplex (`Duplex.toWeb()` gives a pair of Web
   * streams). Rejects with the plugin's reason when it refuses. The channel
   * goes over a direct path when there is one, like any capability.
   */
  openChannel(name: string, options?: OpenChannelOptions): Promise<Duplex>;
  /** Every registered plugin. */
  list(): Promise<Entry[]>;
  /** Calls `onEvent` with a snapshot, then each joined/left, until the returned handle is disposed. */
  watch(onEvent: (event: Event) => void): Promise<Disposable>;
  /** Resolves once connected (and registered, for a plugin), again after each reconnection. */
  ready(): Promise<void>;
  /** How calls on `cap` travel right now: directly to its host, or through the hub (and why). */
  pathOf(cap: Capability): CapabilityPath;
  /** This peer's connections (the hub's and direct ones) and its handoffs. */
  stats(): MeshPeerStats;
  /** Resolves when the hub connection is lost for good (with `reconnect: false`), with the reason. */
  readonly lost: Promise<Error>;
  /** Unregisters and disconnects. */
  close(): Promise<void>;
}

/** Joins the mesh; resolves once connected (and registered). */
export async function joinMesh(options: JoinOptions = {}): Promise<MeshPeer> {
  if (options.name !== undefined) {
    const problem = nameProblem(options.name);
    if (problem) throw new TypeError(`joinMesh: ${problem}`);
    if (options.provide === undefined && options.channels === undefined) {
      throw new TypeError("joinMesh: a plugin that registers a name needs `provide` (or `channels`)");
    }
  }
  if (options.sequential) {
    if (options.provide === undefined) throw new TypeError("joinMesh: `sequential` applies to what `provide` serves, and this peer provides nothing");
    options = { ...options, provide: sequentialOffer(options.provide, new CallQueue(), "joinMesh") };
  }
  const target = await findHub(options);
  const identity = await identityOf(options.identity);
  const peer = new Peer(options, target, identity);
  await peer.start();
  return peer;
}

interface HubTarget {
  address: string;
  hubId: string;
  networkKey: Uint8Array;
}

async function findHub(options: JoinOptions): Promise<HubTarget> {
  const env = process.env;
  let address = options.hub ?? env[ENV.hub];
  let hubId = options.hubId ?? env[ENV.hubId];
  if (address === undefined || hubId === undefined) {
    const found = await readDiscovery();
    address ??= found?.address;
    hubId ??= found?.hubId;
  }
  if (address === undefined || hubId === undefined) {
    throw new Error(
      `joinMesh: no hub found: set ${ENV.hub} and ${ENV.hubId} (capmesh serve prints them), pass { hub, hubId }, or start a hub on this machine's defaults with \`capmesh serve\``,
    );
  }
  const keyText = env[ENV.networkKey];
  const networkKey =
    options.networkKey !== undefined
      ? toNetworkKey(options.networkKey)
      : keyText
        ? decodeNetworkKey(keyText, ENV.networkKey)
        : await loadOrCreateNetworkKey(meshHome());
  return { address, hubId, networkKey };
}

async function identityOf(given: Identity | string | undefined): Promise<Identity> {
  if (given === undefined) return generateIdentity();
  if (typeof given === "string") return loadOrCreateIdentity(given.includes("/") ? given : join(meshHome(), given));
  return given;
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5000;

class Peer implements MeshPeer {
  /** This peer as a vat: the hub session and any direct ones. */
  readonly #system: RpcSystem;
  readonly #direct: DirectPathOptions | null;
  #thirdParty: SocketThirdParty | null = null;
  /** Accepts direct connections from other peers (with direct paths on). */
  #listener: SocketNetwork | null = null;
  #session: Session | null = null;
  #hub: Hub | null = null;
  #engine: Engine | null = null;
  #registration: Registration | null = null;
  #watches = new Set<{ onEvent: (event: Event) => void; watch: Watch | null }>();
  #closed = false;
  #ready: Promise<void> = Promise.resolve();
  #signalHandlers: (() => void) | null = null;
  #markLost!: (reason: Error) => void;
  readonly lost: Promise<Error> = new Promise((resolve) => (this.#markLost = resolve));
  /** PluginInfo's interfaces and schema, from what the plugin provides. */
  readonly #described: ReturnType<typeof describeProvided>;

  constructor(
    private readonly options: JoinOptions,
    private readonly target: HubTarget,
    private readonly identity: Identity,
  ) {
    this.#described = describeProvided(options.provide, options.interfaces);
    this.#direct = directPathsIn(options.directPaths);
    const dialler = new SocketNetwork({ identity, networkKey: target.networkKey });
    if (this.#direct) {
      this.#thirdParty = new SocketThirdParty({ ...limitsOf(this.#direct), publicKey: identity.publicKey, network: dialler });
    }
    this.#system = new RpcSystem(dialler, null, {
      thirdParty: this.#thirdParty ?? undefined,
      // A plugin serves calls through the hub: its sessions must hold the process.
      holdProcess: options.name !== undefined,
      _unsafeNoEmbargo: this.#direct?._unsafeNoEmbargo === true,
      retireAfterIdleMs: this.#direct?.retireAfterIdleMs,
    });
  }

  get id(): string {
    return this.identity.id;
  }

  get hubId(): string {
    return this.target.hubId;
  }

  get engine(): Engine {
    if (!this.#engine) {
      // Asked on first use, once per connection (pipelined): a peer that never uses it costs the hub nothing.
      using pending = this.hub.engine({ name: this.options.name ?? "" });
      this.#engine = wrapHook(hookOf(pending.engine).addRef(), Engine) as unknown as Engine;
    }
    return this.#engine;
  }

  engineAs<C extends Capability>(iface: InterfaceDef & { readonly __client?: C }): C {
    return wrapHook(hookOf(this.engine).addRef(), iface) as unknown as C;
  }

  get hub(): Hub {
    if (!this.#hub) throw RpcError.disconnected("not connected to the hub (reconnecting, or closed)");
    return this.#hub;
  }

  async start(): Promise<void> {
    try {
      await this.#connect();
    } catch (error) {
      await this.#listener?.close();
      await this.#system.close();
      throw error;
    }
    if (this.options.handleSignals !== false) this.#installSignalHandlers();
  }

  async #connect(): Promise<void> {
    const session = await this.#system.connect(this.target.address, { remoteKey: this.target.hubId });
    const hub = session.bootstrap(Hub);
    try {
      const addresses = await this.#listenDirect(session);
      const features = ["watch", "provider", ...(addresses ? [DIRECT_PATHS_FEATURE] : [])];
      const { hub: hubHello } = await hub.hello({
        hello: { protocolVersion, features, software: "capmesh/0.1.0", addresses: addresses ?? [] },
      });
      if (addresses && hubHello.features.includes(DIRECT_PATHS_FEATURE)) {
        this.#system.advertise(session, { addresses: hubHello.addresses });
      }
      if (this.options.name !== undefined) {
        const { registration } = await hub.register({
          name: this.options.name,
          ...this.#offer(),
          info: this.#info(),
          replace: this.options.replace ?? false,
        });
        this.#registration = registration;
      }
    } catch (error) {
      hub.release();
      await session.close();
      throw error;
    }
    this.#session = session;
    this.#hub = hub;
    for (const w of this.#watches) await this.#startWatch(w);
    void session.closed.then((reason) => this.#lost(session, reason));
    log.debug("joined the mesh", { hub: this.target.address, id: this.id, name: this.options.name });
  }

  /**
   * Opens the direct listener the first time (its addresses depend on how
   * the hub is reached) and returns the addresses to advertise; null with
   * direct paths off.
   */
  async #listenDirect(hubSession: Session): Promise<readonly string[] | null> {
    const direct = this.#direct;
    const thirdParty = this.#thirdParty;
    if (!direct || !thirdParty) return null;
    if (this.#listener) return thirdParty.addresses;
    const net = this.#system.networkConnectionOf(hubSession);
    const wanted = direct.listen ?? (await defaultListenAddresses(this.target.address, this.id, net?.localHost));
    const listener = new SocketNetwork(
      { identity: this.identity, networkKey: this.target.networkKey },
      {
        address: wanted,
        // Only a plugin's listener keeps the process alive; a client that is done exits.
        holdProcess: this.options.name !== undefined,
        ...(direct.authorize ? { authorize: ({ id }: { id: string }) => direct.authorize!(id) } : {}),
      },
    );
    await listener.accept((connection) => this.#system.adopt(connection));
    this.#listener = listener;
    thirdParty.addresses = direct.advertise ?? listener.addresses;
    log.debug("direct paths: listening", { addresses: listener.addresses });
    return thirdParty.addresses;
  }

  #info(): Init<PluginInfo> {
    const info: Init<PluginInfo> = { protocolVersion, ...this.#described, ...this.options.info };
    if (this.options.channels === undefined) return info;
    const features = [...(this.options.info?.features ?? [])];
    if (!features.includes(CHANNELS_FEATURE)) features.push(CHANNELS_FEATURE);
    return { ...info, features };
  }

  #offer(): { cap: Capability } | { provider: Provider } {
    const { name, channels } = this.options;
    if (channels !== undefined) {
      // Per caller, so that each channel knows who opened it (the hub vouches for `caller`).
      return {
        provider: Provider.server({ provide: ({ caller }) => ({ cap: provideWithChannels(name!, this.options.provide, channels, caller) }) }),
      };
    }
    const provide = this.options.provide!;
    if (typeof provide !== "function") return { cap: provide };
    return {
      provider: Provider.server({ provide: ({ caller }) => ({ cap: provide(caller) }) }),
    };
  }

  #lost(session: Session, reason: Error): void {
    if (this.#closed || this.#session !== session) return;
    log.debug("lost the hub", { hub: this.target.address, reason: reason.message });
    this.#registration?.release();
    this.#registration = null;
    this.#engine?.release();
    this.#engine = null;
    this.#hub?.release();
    this.#hub = null;
    this.#session = null;
    if (this.options.reconnect === false) {
      this.#markLost(reason);
      return;
    }
    this.#ready = this.#reconnect();
    this.#ready.catch(() => {});
  }

  async #reconnect(): Promise<void> {
    let delay = RECONNECT_MIN_MS;
    while (!this.#closed) {
      try {
        await this.#connect();
        return;
      } catch (error) {
        log.debug("reconnect failed", { hub: this.target.address, error: (error as Error).message, retryInMs: delay });
        // Not unref'd: a plugin waiting for its hub to come back stays alive.
        await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() / 2)));
        delay = Math.min(RECONNECT_MAX_MS, delay * 2);
      }
    }
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  pathOf(cap: Capability): CapabilityPath {
    const state = capabilityState(cap);
    switch (state.kind) {
      case "local":
        return { path: "local" };
      case "promise":
        return { path: "pending" };
      case "released":
        return { path: "broken", reason: "this reference was released" };
      case "broken":
        return { path: "broken", reason: state.error.message };
      case "remote": {
        const peer = state.peer.id;
        const reason = state.reason ? { reason: state.reason } : {};
        if (peer === this.target.hubId) return { path: "hub", peer, ...reason };
        if (state.path === "vine") return { path: "hub", peer, ...reason };
        return { path: "direct", peer };
      }
    }
  }

  stats(): MeshPeerStats {
    const connections = this.#system.sessions.map((session): PeerConnectionStats => {
      const net = this.#system.networkConnectionOf(session);
      const tables = session.connection.stats();
      const traffic = net?.traffic?.() ?? { bytesIn: 0, bytesOut: 0 };
      return {
        peer: session.peer.id,
        kind: session.peer.id === this.target.hubId ? "hub" : "direct",
        dialled: net?.dialled ?? false,
        bytesIn: traffic.bytesIn,
        bytesOut: traffic.bytesOut,
        questions: tables.questions,
        answers: tables.answers,
        imports: tables.imports,
        exports: tables.exports,
        forwardedCalls: session.connection.forwardedCalls,
        provisions: tables.provisions ?? 0,
        vines: tables.vines ?? 0,
      };
    });
    const network = this.#thirdParty?.stats() ?? { provisions: 0, acceptsWaiting: 0, dials: 0 };
    return {
      directPaths: {
        enabled: this.#thirdParty !== null,
        listening: this.#listener?.addresses ?? [],
        provisions: network.provisions,
        acceptsWaiting: network.acceptsWaiting,
        dials: network.dials,
      },
      connections,
      handoffs: { ...this.#system.handoffs },
    };
  }

  connect<C extends Capability>(name: string, iface: InterfaceDef & { readonly __client?: C }, options: { wait?: number } = {}): C {
    using pending = this.hub.connect({ name, waitMs: options.wait ?? 0 });
    // A reference of our own, typed: it keeps the call going (and pipelined
    // on) after the promise and its field client are disposed.
    return wrapHook(hookOf(pending.cap).addRef(), iface) as unknown as C;
  }

  async openChannel(name: string, options: OpenChannelOptions = {}): Promise<Duplex> {
    const acceptor = this.connect(name, ChannelAcceptor, options.wait !== undefined ? { wait: options.wait } : {});
    try {
      return await openChannelOn(acceptor, name, options.protocol ?? "");
    } finally {
      acceptor.release();
    }
  }

  async list(): Promise<Entry[]> {
    return (await this.hub.list()).plugins;
  }

  async watch(onEvent: (event: Event) => void): Promise<Disposable> {
    const entry = { onEvent, watch: null as Watch | null };
    this.#watches.add(entry);
    await this.#startWatch(entry);
    const stop = () => {
      this.#watches.delete(entry);
      entry.watch?.release();
      entry.watch = null;
    };
    return { [Symbol.dispose]: stop };
  }

  async #startWatch(entry: { onEvent: (event: Event) => void; watch: Watch | null }): Promise<void> {
    const session = this.#session;
    let established = false;
    const observer = Observer.server({
      event: ({ event }) => {
        entry.onEvent(event);
      },
      // The hub let go of the observer while this watch is still wanted and
      // the connection still up: it dropped a watcher that fell too far
      // behind. Watch again; the new snapshot covers the events missed.
      // (After a disconnect, the reconnection watches again instead.)
      [Symbol.dispose]: () => {
        if (!established || this.#closed || !this.#watches.has(entry) || this.#session !== session || session === null) return;
        log.debug("the hub dropped our watcher; watching again");
        entry.watch?.release();
        entry.watch = null;
        this.#startWatch(entry).catch((error: unknown) => log.debug("watching again failed", { error: (error as Error).message }));
      },
    });
    try {
      entry.watch = (await this.hub.watch({ observer })).watch;
      established = true;
    } finally {
      observer.release();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#signalHandlers?.();
    for (const w of this.#watches) w.watch?.release();
    this.#watches.clear();
    this.#registration?.release();
    this.#registration = null;
    this.#engine?.release();
    this.#engine = null;
    this.#hub?.release();
    this.#hub = null;
    const session = this.#session;
    this.#session = null;
    await session?.close();
    await this.#listener?.close();
    await this.#system.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #installSignalHandlers(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      this.#signalHandlers?.();
      void this.close().finally(() => {
        // Let the signal take its course (exit by it), unless someone else handles it.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    this.#signalHandlers = () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      this.#signalHandlers = null;
    };
  }
}

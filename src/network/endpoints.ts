// `listen` and `connect`: a socket, the security layer and an RPC session in
// one call each.
import { startSession, type BootstrapOffer, type RpcSystem, type Session } from "../rpc/system.js";
import { formatId, toPublicKey } from "../auth/identity.js";
import { SocketNetwork, type AcceptOptions, type SocketNetworkOptions } from "./socket-network.js";
import { CallQueue } from "../rpc/sequential.js";
import { makeSequential } from "../rpc/typed.js";
import type { Capability } from "../rpc/types.js";

export interface ListenOptions extends SocketNetworkOptions, Omit<AcceptOptions, "address"> {
  /**
   * What each connecting peer gets as bootstrap: a capability, or a function
   * of the authenticated peer (`(peer) => capabilityFor(peer.id)`).
   */
  bootstrap?: BootstrapOffer;
  /** Called for every accepted session. */
  onSession?: (session: Session) => void;
  /**
   * One call at a time for what `bootstrap` offers (an actor): every peer's
   * bootstrap capability shares one queue, so calls run in arrival order,
   * the next once the previous has settled. Capabilities served elsewhere
   * (or made sequential already) are left as they are. Default: parallel.
   */
  sequential?: boolean;
  /**
   * The vat accepted sessions join (one preferred connection per remote
   * vat, Level 3 when it has it). Without it each session stands alone.
   */
  system?: RpcSystem;
}

export interface Listener extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: string;
  /** Sessions currently open. */
  readonly sessions: ReadonlySet<Session>;
  /** Stops accepting and closes every session. */
  close(): Promise<void>;
}

/**
 * Serves a bootstrap capability on `address` (`unix:/path` or
 * `tcp://host:port`). With an `identity`, every peer must pass the secret
 * handshake; `plain: true` also lets anonymous plain Cap'n Proto peers in
 * (the default, and the only way, for a unix listener without an identity).
 */
export async function listen(address: string, options: ListenOptions = {}): Promise<Listener> {
  const sessions = new Set<Session>();
  const network = new SocketNetwork(options, { ...options, address });
  const system = options.system;
  const bootstrap = options.sequential ? sequentialOffer(options.bootstrap, new CallQueue(), "listen") : options.bootstrap;
  await network.accept((net) => {
    const session = system ? system.adopt(net, bootstrap ?? undefined, options) : startSession(net, bootstrap, options);
    sessions.add(session);
    session.connection.onClose(() => sessions.delete(session));
    options.onSession?.(session);
  });
  const close = async () => {
    await network.close();
    await Promise.all([...sessions].map((s) => s.close()));
  };
  return { address: network.address!, sessions, close, [Symbol.asyncDispose]: close };
}

export interface ConnectOptions extends SocketNetworkOptions {
  /**
   * The listener's public key (32 bytes or its `@<base64>.ed25519` id): runs
   * the secret handshake, which fails unless the listener holds that key.
   * Without it the connection is plain Cap'n Proto (what the C++ tools speak).
   */
  remoteKey?: Uint8Array | string;
  /** What this side offers if the peer asks for bootstrap. */
  bootstrap?: BootstrapOffer;
  signal?: AbortSignal;
  /**
   * Keep the process alive while the session is open, even when idle. By
   * default an idle session (no call in flight, nothing exported to the
   * peer, no bootstrap offered) does not: a program that is done exits
   * even if it never called session.close().
   */
  holdProcess?: boolean;
  /**
   * The vat the session joins. With a `remoteKey`, a live preferred session
   * of it to that vat is returned instead of dialling again, and after a
   * dial the session the vat prefers (RpcSystem.connect also shares dials
   * that run at once).
   */
  system?: RpcSystem;
}

/** Connects to a vat listening on `address`. */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Session> {
  const { system } = options;
  if (system && options.remoteKey !== undefined) {
    const live = system.preferred(formatId(toPublicKey(options.remoteKey)));
    if (live) return live;
  }
  const network = new SocketNetwork(options);
  const net = await network.connect(address, {
    ...(options.remoteKey !== undefined ? { remoteKey: options.remoteKey } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (!system) return startSession(net, options.bootstrap, options);
  const session = system.adopt(net, options.bootstrap ?? undefined, options);
  return (net.peer.authenticated ? system.preferred(net.peer.id) : null) ?? session;
}

/** `offer`, its capabilities made sequential on `queue` (listen's and joinMesh's `sequential: true`). */
export function sequentialOffer<O extends Capability | ((...args: never[]) => Capability | null) | null | undefined>(
  offer: O,
  queue: CallQueue,
  where: string,
): O {
  if (typeof offer !== "function") {
    if (offer) makeSequential(offer, queue, where);
    return offer;
  }
  const make = offer as (...args: unknown[]) => Capability | null;
  return ((...args: unknown[]) => {
    const cap = make(...args);
    if (cap) makeSequential(cap, queue, where);
    return cap;
  }) as unknown as O;
}

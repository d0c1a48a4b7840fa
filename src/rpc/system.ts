// The RPC system: one RpcConnection per remote vat over a VatNetwork, and
// the bootstrap capability this vat offers to each peer.
import { logger } from "../log.js";
import { RpcConnection, type InboundLimits } from "./connection.js";
import type { RpcError } from "./errors.js";
import type { InterfaceDef } from "../codec/types.js";
import { hookOf, wrapHook } from "./typed.js";
import type { Capability } from "./types.js";
import { formatId, toPublicKey } from "../auth/identity.js";
import type { ThirdPartyVat } from "../network/third-party.js";
import type { HandoffCounters, NetworkConnection, PeerInfo, ThirdPartyNetwork, VatContext, VatNetwork } from "./vat-network.js";

const log = logger("capmesh:rpc");

/** What this vat offers a peer that asks for bootstrap. */
export type BootstrapOffer = Capability | ((peer: PeerInfo, session: Session) => Capability | null) | null | undefined;

/** An RPC connection with the typed API on top. */
export class Session implements AsyncDisposable {
  private offered: Capability | null = null;

  constructor(
    readonly connection: RpcConnection,
    readonly peer: PeerInfo,
    offer: BootstrapOffer,
  ) {
    if (typeof offer === "function") {
      let made = false;
      connection.onClose(() => this.offered?.release());
      connection.bootstrapFactory = () => {
        if (!made) {
          made = true;
          this.offered = offer(peer, this);
        }
        return this.offered ? hookOf(this.offered).addRef() : null;
      };
    } else if (offer) {
      connection.bootstrapFactory = () => hookOf(offer).addRef();
    }
  }

  /** The peer's proven identity (`@<base64>.ed25519`), or null for an anonymous peer. */
  get remoteId(): string | null {
    return this.peer.authenticated ? this.peer.id : null;
  }

  /** The peer's bootstrap capability, usable (pipelined) before it arrives. */
  bootstrap<C>(iface: InterfaceDef & { readonly __client?: C }): C {
    return wrapHook(this.connection.bootstrap(), iface) as C;
  }

  /** Resolves with the reason when the connection ends. */
  get closed(): Promise<RpcError> {
    return this.connection.closed;
  }

  /**
   * Closes the connection: everything imported breaks, everything exported
   * is dropped at once. Resolves once the transport has closed too (the
   * peer's end of stream arrived, or the stream's close timeout passed).
   */
  async close(): Promise<void> {
    this.connection.close();
    await this.connection.transportClosed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Per-connection options of a session (see ConnectionOptions). */
export interface SessionOptions {
  inbound?: InboundLimits | undefined;
  callTimeoutMs?: number | undefined;
  /**
   * Keep the process alive for as long as the session is open, even while
   * it is idle. By default a dialled session holds the process only while
   * it has calls in flight or capabilities exported to the peer (or offers
   * a bootstrap capability), so a program that forgets close() still exits.
   */
  holdProcess?: boolean | undefined;
}

export function startSession(
  net: NetworkConnection,
  offer: BootstrapOffer,
  options: SessionOptions = {},
  vat?: VatContext,
): Session {
  const connection = new RpcConnection(net.stream, {
    peer: net.peer,
    name: net.peer.address,
    ...(options.inbound ? { inbound: options.inbound } : {}),
    ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: checkTimeout(options.callTimeoutMs) } : {}),
    ...(net.processHold && !offer && !options.holdProcess ? { processHold: net.processHold } : {}),
    ...(vat ? { vat, net } : {}),
  });
  log.debug("connection up", { peer: net.peer.id, address: net.peer.address });
  return new Session(connection, net.peer, offer);
}

function checkTimeout(ms: number): number {
  if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`callTimeoutMs must be a positive number of milliseconds, got ${String(ms)}`);
  }
  return ms;
}

/** A Level 3 network a vat can own (SocketThirdParty). */
export interface VatThirdParty extends ThirdPartyNetwork {
  /** This vat's key (decides which of two connections to a vat is kept). */
  readonly publicKey?: Uint8Array;
  /** Called once by the vat that owns it. */
  attach(vat: ThirdPartyVat): void;
  /** The vat saw `net` close. */
  connectionClosed?(net: NetworkConnection): void;
  /** Records that `net`'s peer takes part in Level 3 and where it listens. */
  advertise?(net: NetworkConnection, entry: { level3: boolean; addresses: readonly string[] }): void;
}

export interface RpcSystemOptions extends SessionOptions {
  /**
   * Level 3 (direct paths between vats that meet through this one, or
   * through which this one meets others): the vat's SocketThirdParty.
   * Without it the vat is Level 1 (capabilities of third vats are proxied).
   */
  thirdParty?: VatThirdParty | undefined;
  /**
   * This vat's public key, which decides which of two connections to the
   * same vat is kept (the one dialled by the smaller key). Taken from
   * thirdParty when that is given.
   */
  publicKey?: Uint8Array | undefined;
  /**
   * A superseded connection this vat dialled is closed once it has been
   * idle this long while the preferred one is up (default 2000 ms).
   */
  retireAfterIdleMs?: number | undefined;
  /** @internal Test-only: accept handoffs without the 3PH embargo, to show that calls then reorder. */
  _unsafeNoEmbargo?: boolean | undefined;
}

/** A session of the system with what the vat knows about it. */
interface Entry {
  readonly session: Session;
  readonly net: NetworkConnection;
  /** Order of adoption, to break ties the preference rule leaves open. */
  readonly seq: number;
  retire: ReturnType<typeof setInterval> | null;
}

/**
 * A vat: connections to many vats over one network, one preferred
 * connection per remote vat (keyed by its authenticated id), and the Level 3
 * network when direct paths are on.
 *
 * Two vats that dial each other at once end with two connections. Both ends
 * prefer the one dialled by the smaller key (bytewise), without talking; the
 * other is superseded: no new connect() or handoff uses it, what already
 * lives on it keeps working, and its dialler closes it once it is idle.
 */
export class RpcSystem implements VatContext, ThirdPartyVat {
  /** Sessions by remote vat id (authenticated peers; anonymous ones have unique ids). */
  private readonly byPeer = new Map<string, Entry[]>();
  private readonly byNet = new Map<NetworkConnection, Entry>();
  /** Dials in flight, by the remote key's id or, without a key, by address. */
  private readonly dialling = new Map<string, Promise<Session>>();
  /** Sessions dialled without a key, by the address given (the pre-Level-3 behaviour). */
  private readonly byAddress = new Map<string, Session>();
  private readonly offer: BootstrapOffer;
  private readonly options: RpcSystemOptions;
  private readonly publicKey: Uint8Array | null;
  private seq = 0;
  private closing = false;
  /** Level 3 counters: capabilities this vat introduced (handed on as thirdPartyHosted), and picked up as recipient. */
  readonly handoffs: HandoffCounters = { introductions: 0, pending: 0, accepted: 0, fellBack: 0 };

  constructor(
    readonly network: VatNetwork,
    offer: BootstrapOffer = null,
    options: RpcSystemOptions = {},
  ) {
    this.offer = offer;
    this.options = options;
    this.publicKey = options.publicKey ?? options.thirdParty?.publicKey ?? null;
    options.thirdParty?.attach(this);
  }

  /** @internal See RpcSystemOptions._unsafeNoEmbargo. */
  get _unsafeNoEmbargo(): boolean {
    return this.options._unsafeNoEmbargo === true;
  }

  /** Level 3, when this vat has it. */
  get thirdParty(): ThirdPartyNetwork | null {
    return this.options.thirdParty ?? null;
  }

  /** Starts accepting connections from other vats. */
  async accept(onSession?: (session: Session) => void): Promise<void> {
    if (!this.network.accept) throw new Error("this VatNetwork cannot accept connections");
    await this.network.accept((net) => {
      const session = this.adopt(net);
      onSession?.(session);
    });
  }

  /**
   * The session to a vat, dialling if there is none alive. With `remoteKey`
   * the vat is that key: a live preferred session to it is reused whichever
   * side dialled, and concurrent calls share one dial. Without it sessions
   * are keyed by `vat` (the address) as given.
   */
  async connect(vat: string, options: { remoteKey?: Uint8Array | string; signal?: AbortSignal } = {}): Promise<Session> {
    const key = options.remoteKey === undefined ? null : peerIdOf(options.remoteKey);
    if (key !== null) {
      const live = this.preferred(key);
      if (live) return live;
    } else {
      const existing = this.byAddress.get(vat) ?? this.preferred(vat);
      if (existing && !existing.connection.error) return existing;
    }
    const dialKey = key ?? `address:${vat}`;
    let pending = this.dialling.get(dialKey);
    if (!pending) {
      pending = this.network.connect(vat, options).then((net) => {
        const session = this.adopt(net);
        if (key === null) {
          this.byAddress.set(vat, session);
          session.connection.onClose(() => {
            if (this.byAddress.get(vat) === session) this.byAddress.delete(vat);
          });
          return session;
        }
        return this.preferred(key) ?? session;
      });
      this.dialling.set(dialKey, pending);
      const forget = () => {
        if (this.dialling.get(dialKey) === pending) this.dialling.delete(dialKey);
      };
      pending.then(forget, forget);
    }
    return pending;
  }

  /**
   * Takes a connection made elsewhere (a listener's, a dial's) into this
   * vat, with its own bootstrap offer and session options if given.
   */
  adopt(net: NetworkConnection, offer: BootstrapOffer = this.offer, options: SessionOptions = this.options): Session {
    const known = this.byNet.get(net);
    if (known) return known.session;
    const session = startSession(net, offer, options, this);
    const entry: Entry = { session, net, seq: ++this.seq, retire: null };
    this.byNet.set(net, entry);
    const id = net.peer.id;
    let list = this.byPeer.get(id);
    if (!list) this.byPeer.set(id, (list = []));
    list.push(entry);
    session.connection.onClose(() => this.dropped(entry));
    if (list.length > 1) this.rearrange(id);
    if (this.closing) session.connection.close("the vat is closing");
    return session;
  }

  /**
   * Tells this vat's Level 3 network that `session`'s peer takes part in
   * direct paths and listens at `addresses` (what the mesh's Hello says;
   * for users of RpcSystem without the mesh).
   */
  advertise(session: Session, entry: { addresses: readonly string[] }): void {
    const tp = this.options.thirdParty;
    if (!tp?.advertise) throw new Error("this vat has no Level 3 network (pass { thirdParty } to new RpcSystem)");
    const net = this.networkConnectionOf(session);
    if (!net) throw new Error("advertise: that session does not belong to this vat");
    tp.advertise(net, { level3: true, addresses: entry.addresses });
  }

  /** The network connection under one of this vat's sessions (null if it is not one). */
  networkConnectionOf(session: Session): NetworkConnection | null {
    for (const entry of this.byNet.values()) if (entry.session === session) return entry.net;
    return null;
  }

  /** The RpcConnection over `net`, adopting it if new (C++ getConnectionState). */
  connectionFor(net: NetworkConnection): RpcConnection {
    return (this.byNet.get(net)?.session ?? this.adopt(net)).connection;
  }

  /** The session new work to `peerId` goes over, or null if none is open. */
  preferred(peerId: string): Session | null {
    const best = this.best(peerId);
    return best ? best.session : null;
  }

  /** Open sessions to `peerId`, the preferred one first. */
  sessionsTo(peerId: string): Session[] {
    const best = this.best(peerId);
    const all = (this.byPeer.get(peerId) ?? []).filter((e) => !e.session.connection.error);
    return all.sort((a, b) => (a === best ? -1 : b === best ? 1 : a.seq - b.seq)).map((e) => e.session);
  }

  /** True while `net` is open and the preferred connection to its vat. */
  isPreferred(net: NetworkConnection): boolean {
    const entry = this.byNet.get(net);
    return entry !== undefined && !entry.session.connection.error && this.best(net.peer.id) === entry;
  }

  /** ThirdPartyVat: Provides this vat sent over `net` still open. */
  openProvides(net: NetworkConnection): number {
    return this.byNet.get(net)?.session.connection.stats().provides ?? 0;
  }

  /** ThirdPartyVat: the preferred live connection to `peerId`. */
  liveConnection(peerId: string): NetworkConnection | null {
    return this.best(peerId)?.net ?? null;
  }

  private best(peerId: string): Entry | null {
    let best: Entry | null = null;
    for (const entry of this.byPeer.get(peerId) ?? []) {
      if (entry.session.connection.error) continue;
      if (!best || this.beats(entry, best)) best = entry;
    }
    return best;
  }

  /** The preference rule: dialled by the smaller key wins; else the older stays. */
  private beats(a: Entry, b: Entry): boolean {
    const ka = this.diallerKey(a);
    const kb = this.diallerKey(b);
    if (ka && kb) {
      const c = Buffer.compare(ka, kb);
      if (c !== 0) return c < 0;
    }
    return a.seq < b.seq;
  }

  private diallerKey(entry: Entry): Uint8Array | null {
    return entry.net.dialled ? this.publicKey : (entry.net.peer.publicKey ?? null);
  }

  /** After a second connection to `peerId` came or one went: retire the losers this vat dialled. */
  private rearrange(peerId: string): void {
    const best = this.best(peerId);
    for (const entry of this.byPeer.get(peerId) ?? []) {
      const loser = entry !== best && !entry.session.connection.error;
      if (loser && entry.net.dialled && !entry.retire) this.watchForRetirement(entry, peerId);
      if (!loser && entry.retire) {
        clearInterval(entry.retire);
        entry.retire = null;
      }
      if (loser) log.debug("superseded", { peer: peerId, address: entry.net.peer.address });
    }
  }

  /** Closes a superseded connection this vat dialled once it stays idle (polled: idleness spans all tables). */
  private watchForRetirement(entry: Entry, peerId: string): void {
    const after = this.options.retireAfterIdleMs ?? 2000;
    let idleSince: number | null = null;
    const check = () => {
      const best = this.best(peerId);
      if (best === entry || entry.session.connection.error) return;
      if (!isIdle(entry.session.connection)) {
        idleSince = null;
        return;
      }
      const now = Date.now();
      idleSince ??= now;
      if (now - idleSince >= after) {
        log.debug("retired", { peer: peerId, address: entry.net.peer.address });
        entry.session.connection.close("superseded by another connection to the same vat");
      }
    };
    entry.retire = setInterval(check, Math.max(1, Math.floor(after / 4)));
    entry.retire.unref?.();
  }

  private dropped(entry: Entry): void {
    if (entry.retire) clearInterval(entry.retire);
    entry.retire = null;
    this.byNet.delete(entry.net);
    const id = entry.net.peer.id;
    const list = this.byPeer.get(id);
    if (list) {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byPeer.delete(id);
      else this.rearrange(id);
    }
    this.options.thirdParty?.connectionClosed?.(entry.net);
  }

  /** Every open session of this vat. */
  get sessions(): Session[] {
    return [...this.byNet.values()].map((e) => e.session);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.dialling.values()]);
    await this.network.close();
    await Promise.all([...this.byNet.values()].map((e) => e.session.close()));
  }
}

/** True when nothing lives on the connection: every table (stats()) is empty. */
function isIdle(connection: RpcConnection): boolean {
  for (const n of Object.values(connection.stats())) if (typeof n === "number" && n !== 0) return false;
  return true;
}

function peerIdOf(key: Uint8Array | string): string {
  return formatId(toPublicKey(key));
}

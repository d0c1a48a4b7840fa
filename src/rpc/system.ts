// The RPC system: one RpcConnection per remote vat over a VatNetwork, and
// the bootstrap capability this vat offers to each peer.
import { logger } from "../log.js";
import { RpcConnection, type InboundLimits } from "./connection.js";
import type { RpcError } from "./errors.js";
import type { InterfaceDef } from "../codec/types.js";
import { hookOf, wrapHook } from "./typed.js";
import type { Capability } from "./types.js";
import type { NetworkConnection, PeerInfo, VatNetwork } from "./vat-network.js";

const log = logger("capmesh:rpc");

/** What this vat offers a peer that asks for bootstrap. */
export type BootstrapOffer = Capability | ((peer: PeerInfo) => Capability | null) | null | undefined;

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
          this.offered = offer(peer);
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

export function startSession(net: NetworkConnection, offer: BootstrapOffer, options: SessionOptions = {}): Session {
  const connection = new RpcConnection(net.stream, {
    peer: net.peer,
    name: net.peer.address,
    ...(options.inbound ? { inbound: options.inbound } : {}),
    ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: checkTimeout(options.callTimeoutMs) } : {}),
    ...(net.processHold && !offer && !options.holdProcess ? { processHold: net.processHold } : {}),
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

/** Connections to many vats over one network, one connection per vat. */
export class RpcSystem {
  private readonly sessions = new Map<string, Session | Promise<Session>>();

  constructor(
    readonly network: VatNetwork,
    private readonly offer: BootstrapOffer = null,
  ) {}

  /** Starts accepting connections from other vats. */
  async accept(onSession?: (session: Session) => void): Promise<void> {
    if (!this.network.accept) throw new Error("this VatNetwork cannot accept connections");
    await this.network.accept((net) => {
      const session = this.adopt(net);
      onSession?.(session);
    });
  }

  /** The session to `vat`, dialing if there is none alive. */
  async connect(vat: string): Promise<Session> {
    const existing = this.sessions.get(vat);
    if (existing) {
      const session = await existing;
      if (!session.connection.error) return session;
    }
    const pending = this.network.connect(vat).then((net) => this.adopt(net, vat));
    this.sessions.set(vat, pending);
    try {
      return await pending;
    } catch (err) {
      if (this.sessions.get(vat) === pending) this.sessions.delete(vat);
      throw err;
    }
  }

  private adopt(net: NetworkConnection, key = net.peer.id): Session {
    const session = startSession(net, this.offer);
    this.sessions.set(key, session);
    session.connection.onClose(() => {
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    });
    return session;
  }

  async close(): Promise<void> {
    const all = await Promise.allSettled([...this.sessions.values()]);
    this.sessions.clear();
    await this.network.close();
    await Promise.all(all.map((r) => (r.status === "fulfilled" ? r.value.close() : undefined)));
  }
}

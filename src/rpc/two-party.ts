// Plain two-party Cap'n Proto over unix sockets and TCP (what the C++ tools'
// EzRpc speaks): a VatNetwork whose vats are addresses, and the
// `listen`/`connect` entry points on top of it.
import type { Socket } from "node:net";
import { formatAddress, toAddress } from "../transport/address.js";
import type { TransportLimits } from "../transport/limits.js";
import { streamFromDuplex } from "../transport/message-stream.js";
import { dialSocket, listenSocket, type SocketListener } from "../transport/socket.js";
import { startSession, type BootstrapOffer, type Session } from "./system.js";
import type { InboundLimits } from "./connection.js";
import type { NetworkConnection, PeerInfo, VatNetwork } from "./vat-network.js";

export interface TwoPartyOptions {
  /** Frame and traversal limits for incoming messages. */
  limits?: Partial<TransportLimits>;
  /** How much of a peer's work may be in progress before we stop reading from it. */
  inbound?: InboundLimits;
}

let anonymousCounter = 0;

function connectionFromSocket(socket: Socket, address: string | null, limits: Partial<TransportLimits> | undefined): NetworkConnection {
  const stream = streamFromDuplex(socket, limits, address ? { remoteAddress: address } : {});
  const peer: PeerInfo = { id: `anonymous#${++anonymousCounter}`, authenticated: false, address: stream.remoteAddress };
  return { stream, peer };
}

/** Vats named by socket address; peers are anonymous. */
export class TwoPartyNetwork implements VatNetwork {
  private listener: SocketListener | null = null;

  constructor(
    private readonly listenAddress: string | null,
    private readonly options: TwoPartyOptions = {},
  ) {}

  get address(): string | null {
    return this.listener?.address ?? null;
  }

  async connect(vat: string, options?: { signal?: AbortSignal }): Promise<NetworkConnection> {
    const socket = await dialSocket(vat, options?.signal ? { signal: options.signal } : {});
    return connectionFromSocket(socket, formatAddress(toAddress(vat)), this.options.limits);
  }

  async accept(onConnection: (connection: NetworkConnection) => void): Promise<void> {
    if (!this.listenAddress) throw new Error("this network was not given an address to listen on");
    this.listener = await listenSocket(this.listenAddress, (socket) => {
      onConnection(connectionFromSocket(socket, null, this.options.limits));
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
  }
}

export interface ListenOptions extends TwoPartyOptions {
  /** What each connecting peer gets as bootstrap: a capability, or a function of the peer. */
  bootstrap?: BootstrapOffer;
  /** Called for every accepted session. */
  onSession?: (session: Session) => void;
}

export interface Listener extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: string;
  /** Sessions currently open. */
  readonly sessions: ReadonlySet<Session>;
  /** Stops accepting and closes every session. */
  close(): Promise<void>;
}

/** Serves a bootstrap capability on `address` (`unix:/path` or `tcp://host:port`). */
export async function listen(address: string, options: ListenOptions = {}): Promise<Listener> {
  const sessions = new Set<Session>();
  const network = new TwoPartyNetwork(address, options);
  await network.accept((net) => {
    const session = startSession(net, options.bootstrap, options.inbound);
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

export interface ConnectOptions extends TwoPartyOptions {
  /** What this side offers if the peer asks for bootstrap. */
  bootstrap?: BootstrapOffer;
  signal?: AbortSignal;
}

/** Connects to a vat listening on `address`. */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Session> {
  const network = new TwoPartyNetwork(null, options);
  const net = await network.connect(address, options.signal ? { signal: options.signal } : undefined);
  return startSession(net, options.bootstrap, options.inbound);
}

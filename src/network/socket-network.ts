// The VatNetwork over unix sockets and TCP: each connection runs the
// security layer (shs1 handshake, then box-stream or the bare socket; or
// plain Cap'n Proto where a listener allows it) before the RPC stream starts.
// Authenticated peers are keyed by their public id, so the RPC system keeps
// one connection per remote vat whichever side dialled.
import type { Socket } from "node:net";
import {
  PlainPeerRefusedError,
  acceptChannel,
  anonymousChannel,
  dialChannel,
  toNetworkKey,
  type Channel,
  type NetworkKeyInput,
} from "../auth/channel.js";
import type { HandshakeIdentity } from "../auth/handshake.js";
import { generateIdentity, toPublicKey } from "../auth/identity.js";
import { logger } from "../log.js";
import { abortFrame, type InboundLimits } from "../rpc/connection.js";
import { RpcError } from "../rpc/errors.js";
import type { NetworkConnection, PeerInfo, ProcessHold, VatNetwork } from "../rpc/vat-network.js";
import { formatAddress, toAddress, type Address } from "../transport/address.js";
import type { TransportLimits } from "../transport/limits.js";
import { streamFromDuplex } from "../transport/message-stream.js";
import { SocketError, dialSocket, listenSocket, type SocketListener } from "../transport/socket.js";

const log = logger("capmesh:net");

/** Options every connection has, dialled or accepted. */
export interface ConnectionSecurityOptions {
  /** Our long-term identity (see generateIdentity, loadIdentity). */
  identity?: HandshakeIdentity;
  /** The mesh's network key: 32 bytes or their base64. Default DEFAULT_NETWORK_KEY. */
  networkKey?: NetworkKeyInput;
  /**
   * Encrypt with box-stream after the handshake. Default: yes over TCP,
   * no over unix sockets (same machine: authentication only). Both ends
   * must choose the same.
   */
  encrypt?: boolean;
  /** Time limit for the handshake, in ms (default 5000; 0 for none). */
  handshakeTimeoutMs?: number;
}

export interface SocketNetworkOptions extends ConnectionSecurityOptions {
  /** Frame and traversal limits for incoming messages. */
  limits?: Partial<TransportLimits>;
  /** How much of a peer's work may be in progress before we stop reading from it. */
  inbound?: InboundLimits;
  /**
   * Cancels calls over these connections that have not returned after this
   * many milliseconds (a call's own `timeout` option overrides it). Default: none.
   */
  callTimeoutMs?: number;
}

/** How a network that accepts connections listens. */
export interface AcceptOptions {
  /**
   * Where to listen: `unix:/path` or `tcp://host:port`, or several of them
   * (one vat reachable over a unix socket and TCP, say).
   */
  address: string | readonly string[];
  /** Also accept plain Cap'n Proto (no handshake) from anonymous peers. */
  plain?: boolean;
  /** Decides, after the handshake proved who a client is, whether it may connect. */
  authorize?: (peer: { id: string; publicKey: Uint8Array }) => boolean | Promise<boolean>;
  /** Connections still in their handshake at once; more are dropped at once (default 256). */
  maxPendingHandshakes?: number;
  /** Hears about every connection refused during the handshake (they are also logged). */
  onRefused?: (error: Error, address: string) => void;
  /**
   * Whether listening, and the connections accepted, keep the process alive
   * (default true). With false the listener never does, and an accepted
   * connection holds the process only while it is busy, as a dialled one.
   */
  holdProcess?: boolean;
}

let anonymousCounter = 0;

/** The PeerInfo the RPC layer gets for a channel. */
function peerOf(channel: Channel, address: string): PeerInfo {
  if (channel.remoteId === null) return { id: `anonymous#${++anonymousCounter}`, authenticated: false, address, encrypted: false };
  return { id: channel.remoteId, authenticated: true, address, encrypted: channel.encrypted, publicKey: channel.remoteKey! };
}

function defaultEncrypt(address: Address): boolean {
  return address.kind === "tcp";
}

export class SocketNetwork implements VatNetwork {
  private listeners: SocketListener[] = [];
  private readonly networkKey: Uint8Array;

  constructor(
    private readonly options: SocketNetworkOptions = {},
    /** Where and how to accept connections, for a network that does. */
    private readonly accepting?: AcceptOptions,
  ) {
    this.networkKey = toNetworkKey(options.networkKey);
  }

  /** The (first) bound address once accepting (the real port when 0 was asked for). */
  get address(): string | null {
    return this.listeners[0]?.address ?? null;
  }

  /** Every bound address once accepting, in the order given. */
  get addresses(): string[] {
    return this.listeners.map((l) => l.address);
  }

  /**
   * Dials a vat: `address` alone for a plain Cap'n Proto peer, or with the
   * listener's public key (bytes or id) for an authenticated connection.
   */
  async connect(
    address: string,
    options: { remoteKey?: Uint8Array | string; signal?: AbortSignal } = {},
  ): Promise<NetworkConnection> {
    const addr = toAddress(address);
    const shown = formatAddress(addr);
    const remoteKey = options.remoteKey === undefined ? undefined : toPublicKey(options.remoteKey);
    if (remoteKey === undefined && this.options.identity !== undefined) {
      throw new TypeError(
        `connect ${shown}: an identity was given but no remoteKey; the secret handshake needs the listener's public key (pass remoteKey, e.g. its "@...ed25519" id)`,
      );
    }
    const signal = options.signal ? { signal: options.signal } : {};
    if (remoteKey === undefined) {
      return this.connectionOf(anonymousChannel(await dialSocket(addr, signal)), shown, true);
    }
    // The handshake starts on the socket while it connects: our hello leaves
    // the moment the connection is up.
    let handshake: Promise<Channel> | undefined;
    const dialling = dialSocket(addr, {
      ...signal,
      onSocket: (socket) => {
        handshake = dialChannel(socket, {
          // A dialler without an identity of its own still authenticates the
          // listener; it shows a throwaway key.
          identity: this.options.identity ?? generateIdentity(),
          networkKey: this.networkKey,
          remoteKey,
          encrypt: this.options.encrypt ?? defaultEncrypt(addr),
          ...(this.options.handshakeTimeoutMs !== undefined ? { timeoutMs: this.options.handshakeTimeoutMs } : {}),
          ...signal,
        });
        handshake.catch(() => {}); // awaited below, or superseded by the dial's error
      },
    });
    try {
      await dialling;
    } catch (dialError) {
      // The dial's error says why, unless the handshake gave up on it first
      // (its time limit ran out while connecting) and abandoned it.
      const abandoned = dialError instanceof SocketError && dialError.code === "ECONNABORTED";
      if (abandoned && handshake) await handshake;
      throw dialError;
    }
    const channel = await handshake!;
    log.debug("connected", { address: shown, peer: channel.remoteId, encrypted: channel.encrypted });
    return this.connectionOf(channel, shown, true);
  }

  /** Starts accepting on the address(es); each connection that passes the security layer is handed over. */
  async accept(onConnection: (connection: NetworkConnection) => void): Promise<void> {
    const options = this.accepting;
    if (options === undefined) throw new Error("this network was not given an address to listen on");
    const all = typeof options.address === "string" ? [options.address] : options.address;
    if (all.length === 0) throw new TypeError("listen: no address given");
    try {
      for (const address of all) this.listeners.push(await this.listenOn(address, options, onConnection));
    } catch (err) {
      // All or nothing: a vat half-listening would advertise addresses it does not serve.
      await Promise.all(this.listeners.splice(0).map((l) => l.close()));
      throw err;
    }
  }

  private async listenOn(address: string, options: AcceptOptions, onConnection: (connection: NetworkConnection) => void): Promise<SocketListener> {
    const addr = toAddress(address);
    // The requested address until the socket is bound; then the real one
    // (a TCP port 0 becomes the port given), for what peers are told.
    let shown = formatAddress(addr);
    const { identity } = this.options;
    const plain = options.plain ?? (identity === undefined && addr.kind === "unix");
    if (identity === undefined && !plain) {
      throw new TypeError(
        `listen ${shown}: no identity given, so only plain (unauthenticated) Cap'n Proto could be accepted, and over TCP that takes an explicit plain: true; pass { identity } (see generateIdentity/loadIdentity) to require the secret handshake`,
      );
    }
    const encrypt = this.options.encrypt ?? defaultEncrypt(addr);
    const maxPending = options.maxPendingHandshakes ?? 256;
    const authorize = options.authorize;
    let pending = 0;
    const refused = (error: Error, from: string) => {
      log.debug("connection refused", { address: shown, from, error: error.message });
      options.onRefused?.(error, from);
    };

    const onSocket = (socket: Socket) => {
      const from = remoteOf(socket, shown);
      if (pending >= maxPending) {
        socket.destroy();
        refused(new Error(`${pending} connections are already in their handshake (maxPendingHandshakes); dropped this one`), from);
        return;
      }
      pending++;
      acceptChannel(socket, {
        identity,
        networkKey: this.networkKey,
        plain,
        encrypt,
        ...(this.options.handshakeTimeoutMs !== undefined ? { timeoutMs: this.options.handshakeTimeoutMs } : {}),
        ...(authorize ? { authorize: (publicKey: Uint8Array, id: string) => authorize({ id, publicKey }) } : {}),
      }).then(
        (channel) => {
          pending--;
          log.debug("accepted", { address: shown, from, peer: channel.remoteId, encrypted: channel.encrypted });
          onConnection(this.connectionOf(channel, from, false, options.holdProcess === false));
        },
        (error: unknown) => {
          pending--;
          if (error instanceof PlainPeerRefusedError) turnAwayPlainPeer(socket, shown);
          else socket.destroy();
          refused(error instanceof Error ? error : new Error(String(error)), from);
        },
      );
    };
    const listener = await listenSocket(addr, onSocket, options.holdProcess === false ? { holdProcess: false } : {});
    shown = listener.address;
    return listener;
  }

  /** The RPC stream over a channel, and who is on the other end. */
  private connectionOf(channel: Channel, address: string, dialled = false, holdWhileBusy = dialled): NetworkConnection {
    const stream = streamFromDuplex(channel.duplex, this.options.limits, { remoteAddress: address });
    const peer = peerOf(channel, address);
    const socket = channel.socket as Partial<ProcessHold> & { bytesRead?: number; bytesWritten?: number; localAddress?: string };
    const traffic = () => ({ bytesIn: socket.bytesRead ?? 0, bytesOut: socket.bytesWritten ?? 0 });
    const local = typeof socket.localAddress === "string" ? { localHost: socket.localAddress } : {};
    if (!holdWhileBusy || typeof socket.ref !== "function" || typeof socket.unref !== "function") return { stream, peer, dialled, traffic, ...local };
    return { stream, peer, dialled, traffic, ...local, processHold: socket as ProcessHold };
  }

  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
  }
}

/**
 * Tells a plain Cap'n Proto peer (a C++ EzRpcClient, say) in its own
 * protocol why it is turned away, then hangs up.
 */
function turnAwayPlainPeer(socket: Socket, listening: string): void {
  const reason = new RpcError(
    "failed",
    `${listening} requires the capmesh secret handshake (shs1): connect with the listener's public key, or have it listen with plain: true`,
  );
  socket.end(abortFrame(reason));
  socket.resume(); // read and drop what the peer still sends, so its end arrives
  const timer = setTimeout(() => socket.destroy(), 1000);
  socket.once("close", () => clearTimeout(timer));
}

/** A printable peer address for logs: the TCP peer, or the unix socket accepted on. */
function remoteOf(socket: Socket, listening: string): string {
  if (typeof socket.remoteAddress === "string" && typeof socket.remotePort === "number") {
    return formatAddress({ kind: "tcp", host: socket.remoteAddress, port: socket.remotePort });
  }
  return `${listening} (accepted)`;
}

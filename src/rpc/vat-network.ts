// The VatNetwork abstraction (rpc.capnp "Network-specific parameters"):
// how vats reach each other. The RPC system asks it for connections keyed by
// the remote vat's identity and is told about accepted ones. Two-party
// sockets implement it today; the secret handshake (identities) and Level 3
// three-party handoff (Provide/Accept between vats that meet through a
// third) plug in here without touching the connection state machine.
import type { MessageStream } from "../transport/message-stream.js";

/** Who is on the other end of a connection, as far as the network knows. */
export interface PeerInfo {
  /** A stable key for the remote vat: its public id (`@<base64>.ed25519`) once authenticated, else `anonymous#N`. */
  readonly id: string;
  /** True when the network proved the peer's identity (secret handshake). */
  readonly authenticated: boolean;
  /** Where the connection comes from, for logs. */
  readonly address: string;
  /** The peer's long-term public key, when authenticated. */
  readonly publicKey?: Uint8Array;
  /** True when the connection is encrypted (box-stream). */
  readonly encrypted?: boolean;
}

export interface NetworkConnection {
  readonly stream: MessageStream;
  readonly peer: PeerInfo;
  /**
   * Whether the connection keeps the process alive (a socket's ref/unref).
   * A dialled connection lets go of the process while it is idle, as Node's
   * HTTP agent does with its free sockets.
   */
  readonly processHold?: ProcessHold;
}

/** Something that keeps the Node process alive while ref'd: a socket, a timer. */
export interface ProcessHold {
  ref(): unknown;
  unref(): unknown;
}

export interface VatNetwork {
  /** Opens a new connection to `vat` (the RPC system reuses it while alive). */
  connect(vat: string, options?: { signal?: AbortSignal; remoteKey?: Uint8Array | string }): Promise<NetworkConnection>;
  /** Starts accepting; each accepted connection is handed over. */
  accept?(onConnection: (connection: NetworkConnection) => void): Promise<void>;
  /** Stops accepting and closes what the network opened. */
  close(): Promise<void>;
}

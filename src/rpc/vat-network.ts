// The VatNetwork abstraction (rpc.capnp "Network-specific parameters"):
// how vats reach each other. The RPC system asks it for connections keyed by
// the remote vat's identity and is told about accepted ones. Two-party
// sockets implement it today; the secret handshake (identities) and Level 3
// three-party handoff (Provide/Accept between vats that meet through a
// third) plug in here without touching the connection state machine.
import type { Pointer } from "capnp-es";
import type { MessageStream } from "../transport/message-stream.js";
import type { RpcConnection } from "./connection.js";

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
  /**
   * True if this vat dialled it. Of two connections between the same two
   * vats, the one dialled by the smaller key is kept (both ends agree
   * without talking); absent counts as accepted.
   */
  readonly dialled?: boolean;
  /** Bytes through the socket so far (counted below any encryption). */
  traffic?(): { bytesIn: number; bytesOut: number };
  /** This end's IP address on a TCP connection (what a peer on that network would dial back). */
  readonly localHost?: string;
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
  /** Level 3 support; absent = Level 1 (thirdPartyHosted uses the vine, Provide/Accept are echoed). */
  readonly thirdParty?: ThirdPartyNetwork;
}

/**
 * rpc.capnp Level 3 (three-party handoff) as a network offers it: the C++
 * reference's VatNetwork::Connection Level 3 methods (v2 rpc.h), taken by
 * one vat-wide object with the connection passed in. The Pointers are the
 * AnyPointer fields of the rpc messages (ThirdPartyToContact in
 * CapDescriptor.thirdPartyHosted.id, ThirdPartyToAwait in Provide.recipient,
 * ThirdPartyCompletion in Accept.provision; schema/network.capnp). Call
 * forwarding (C++ canForwardThirdPartyToContact) is deliberately absent:
 * contacts are bound to their recipient.
 */
export interface ThirdPartyNetwork {
  /**
   * Null if `recipient`'s peer may be handed a capability hosted by
   * `host`'s peer (a Provide may go to `host`); otherwise why not, for the
   * log. C++ canIntroduceTo.
   */
  whyNotIntroduce(recipient: NetworkConnection, host: NetworkConnection): string | null;
  /**
   * Writes the ThirdPartyToContact the recipient gets and the
   * ThirdPartyToAwait the Provide carries to the host. C++ introduceTo (as
   * its code calls it: on the recipient's connection, naming the host's).
   */
  introduce(recipient: NetworkConnection, host: NetworkConnection, contact: Pointer, toAwait: Pointer): { label: string };
  /**
   * Recipient: the connection to the host that a contact received over
   * `via` names (a live one authenticated as the host's key is reused, else
   * one is dialled expecting that key) and the completion to send in the
   * Accept; "self" when the contact names this vat. Rejects with an
   * RpcError saying why (the engine then keeps using the vine).
   */
  connectToIntroduced(
    via: NetworkConnection,
    contact: Pointer,
    signal?: AbortSignal,
  ): Promise<{ connection: NetworkConnection; writeCompletion(into: Pointer): void } | "self">;
  /**
   * Host: a Provide that came over `from` names a recipient; `value` goes to
   * the matching Accept. release() ends it (the Provide was finished, or
   * `from` closed). Never throws: a refusal is recorded and reported to the
   * Accept. C++ awaitThirdParty.
   */
  awaitThirdParty<T>(from: NetworkConnection, toAwait: Pointer, value: T): { release(): void };
  /**
   * Host: the value for an Accept that came over `from`; waits (bounded) for
   * its Provide. Rejects with an RpcError naming the reason (forged,
   * replayed, expired, misdirected, timed out, refused). C++ completeThirdParty.
   */
  completeThirdParty<T>(from: NetworkConnection, completion: Pointer): Promise<T>;
  /** A fresh embargo id for Accept.embargo / Disembargo.context.accept. C++ generateEmbargoId. */
  generateEmbargoId(): Uint8Array;
}

/**
 * What an RpcConnection sees of the vat it belongs to (RpcSystem): its
 * Level 3 network and the connections to other vats (C++ getConnectionState).
 */
export interface VatContext {
  /** Level 3, when this vat has direct paths on; null otherwise. */
  readonly thirdParty: ThirdPartyNetwork | null;
  /** The RpcConnection over `net`, adopting `net` if this vat has not yet. */
  connectionFor(net: NetworkConnection): RpcConnection;
  /** Level 3 counters of the vat, kept by its connections. */
  readonly handoffs: HandoffCounters;
  /** @internal Test-only: skip the 3PH embargo (proves the tests need it). */
  readonly _unsafeNoEmbargo?: boolean;
}

/** What a vat's connections count of Level 3 (stats). */
export interface HandoffCounters {
  /** Capabilities this vat handed on as thirdPartyHosted (a Provide sent to the host). */
  introductions: number;
  /** Recipient: thirdPartyHosted capabilities being picked up from their host (not settled yet). */
  pending: number;
  /** Recipient: handoffs that ended on the direct path (the host's Accept returned). */
  accepted: number;
  /** Recipient: handoffs that kept using the vine (see the capability's state for why). */
  fellBack: number;
}

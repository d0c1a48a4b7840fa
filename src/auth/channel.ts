// A connection's security layer, between the socket and the RPC stream:
// the shs1 handshake, then box-stream or the bare socket, or (only where a
// listener allows it) plain Cap'n Proto from an anonymous peer.

import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { boxStream } from "./box-stream.js";
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  HandshakeClosedError,
  HandshakeError,
  HandshakeProtocolError,
  HandshakeTimeoutError,
  clientHandshake,
  serverHandshake,
  type HandshakeIdentity,
} from "./handshake.js";
import { CLIENT_HELLO_LENGTH, NETWORK_KEY_LENGTH, helloAuthenticates } from "./shs1.js";

/**
 * The network key of a mesh that does not choose its own. Meshes that must
 * not meet should each pick a random 32-byte key (`capmesh netkey` prints one).
 */
export const DEFAULT_NETWORK_KEY: Uint8Array = new Uint8Array(createHash("sha256").update("capmesh network key, version 1").digest());

/** A network key as given by a user: 32 bytes, or their base64 (as SSB writes its caps). */
export type NetworkKeyInput = Uint8Array | string;

export function toNetworkKey(key: NetworkKeyInput | undefined): Uint8Array {
  if (key === undefined) return DEFAULT_NETWORK_KEY;
  const bytes = typeof key === "string" ? Buffer.from(key, "base64") : key;
  if (!(bytes instanceof Uint8Array) || bytes.length !== NETWORK_KEY_LENGTH) {
    throw new TypeError(
      `networkKey must be ${NETWORK_KEY_LENGTH} bytes (or their base64), got ${typeof key === "string" ? `a string of ${bytes.length} bytes` : typeof key}`,
    );
  }
  return new Uint8Array(bytes);
}

/**
 * A peer began plain Cap'n Proto on a listener that requires the handshake.
 * Its socket is left open so that the listener can tell it why (an rpc Abort).
 */
export class PlainPeerRefusedError extends HandshakeProtocolError {
  constructor() {
    super(
      "server",
      "client hello",
      "the peer speaks plain Cap'n Proto without the secret handshake, and this listener requires the handshake (listen with plain: true to let anonymous peers in)",
    );
    this.name = "PlainPeerRefusedError";
  }
}

/** What the security layer established. */
export interface Channel {
  /** The byte stream the RPC messages travel on (the socket, or box-stream over it). */
  readonly duplex: Duplex;
  /** The peer's long-term public key; null for an anonymous plain Cap'n Proto peer. */
  readonly remoteKey: Uint8Array | null;
  /** `@<base64>.ed25519`, or null for an anonymous peer. */
  readonly remoteId: string | null;
  /** True when box-stream encrypts the connection. */
  readonly encrypted: boolean;
  /** The socket underneath (for keeping the process alive or not: ref/unref). */
  readonly socket: Duplex;
}

interface Common {
  networkKey: Uint8Array;
  /** Encrypt with box-stream after the handshake (both ends must agree). */
  encrypt: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface DialSecurity extends Common {
  identity: HandshakeIdentity;
  remoteKey: Uint8Array | string;
}

export interface AcceptSecurity extends Common {
  /** Our identity; without it only plain Cap'n Proto can be accepted. */
  identity: HandshakeIdentity | undefined;
  /** Also accept plain Cap'n Proto (no handshake) from anonymous peers. */
  plain: boolean;
  authorize?: (remoteKey: Uint8Array, remoteId: string) => boolean | Promise<boolean>;
}

/** Runs the client side of the handshake on a freshly dialled socket. */
export async function dialChannel(socket: Socket, security: DialSecurity): Promise<Channel> {
  const result = await clientHandshake(socket, security);
  return secured(socket, result.remoteKey, result.remoteId, security.encrypt ? result.keys : undefined);
}

/** Runs the server side on an accepted socket: the handshake, or plain Cap'n Proto where allowed. */
export async function acceptChannel(socket: Socket, security: AcceptSecurity): Promise<Channel> {
  const { identity } = security;
  if (identity === undefined) {
    if (!security.plain) throw new TypeError("a listener needs an identity, or plain: true to accept plain Cap'n Proto");
    return anonymousChannel(socket);
  }
  const timeoutMs = security.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const started = Date.now();
  if ((await sniff(socket, security.networkKey, timeoutMs)) === "plain") {
    if (security.plain) return anonymousChannel(socket);
    throw new PlainPeerRefusedError();
  }
  const remaining = timeoutMs > 0 && Number.isFinite(timeoutMs) ? Math.max(1, timeoutMs - (Date.now() - started)) : timeoutMs;
  const result = await serverHandshake(socket, {
    identity,
    networkKey: security.networkKey,
    timeoutMs: remaining,
    ...(security.signal ? { signal: security.signal } : {}),
    ...(security.authorize ? { authorize: security.authorize } : {}),
  });
  return secured(socket, result.remoteKey, result.remoteId, security.encrypt ? result.keys : undefined);
}

function secured(
  socket: Socket,
  remoteKey: Uint8Array,
  remoteId: string,
  keys: Parameters<typeof boxStream>[1] | undefined,
): Channel {
  return { duplex: keys ? boxStream(socket, keys) : socket, remoteKey, remoteId, encrypted: keys !== undefined, socket };
}

/** A connection whose peer proved nothing: plain Cap'n Proto. */
export function anonymousChannel(socket: Socket): Channel {
  return { duplex: socket, remoteKey: null, remoteId: null, encrypted: false, socket };
}

/**
 * Tells a plain Cap'n Proto peer from an shs client by its first bytes,
 * which it leaves unread. A Cap'n Proto stream starts with (segment count
 * - 1) as a little-endian u32, a small number; an shs client hello starts
 * with an HMAC, whose first word is that small only once in 2^23 hellos, and
 * then the HMAC itself settles it when the whole hello is there. A plain
 * peer must speak first (C++'s EzRpcClient sends its Bootstrap at once).
 */
function sniff(socket: Socket, networkKey: Uint8Array, timeoutMs: number): Promise<"plain" | "shs"> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (error: HandshakeError | undefined, kind?: "plain" | "shs") => {
      if (timer !== undefined) clearTimeout(timer);
      socket.off("readable", check);
      socket.off("end", closed);
      socket.off("close", closed);
      socket.off("error", closed);
      if (error) {
        socket.destroy();
        reject(error);
      } else resolve(kind!);
    };
    const check = () => {
      const buffered = socket.readableLength;
      if (buffered < 4) {
        // Only "readable" pulls more in; read(0) asks for it without consuming.
        socket.read(0);
        return;
      }
      const head = socket.read() as Buffer;
      socket.unshift(head);
      if (head.readUInt32LE(0) >= SMALL_SEGMENT_COUNT) return done(undefined, "shs");
      if (head.length >= CLIENT_HELLO_LENGTH && helloAuthenticates(networkKey, head.subarray(0, CLIENT_HELLO_LENGTH))) {
        return done(undefined, "shs");
      }
      done(undefined, "plain");
    };
    const closed = () =>
      done(
        new HandshakeClosedError(
          "server",
          "client hello",
          `the connection closed before the peer sent anything (${socket.readableLength} bytes received)`,
        ),
      );
    socket.on("readable", check);
    socket.on("end", closed);
    socket.on("close", closed);
    socket.on("error", closed);
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      timer = setTimeout(
        () =>
          done(
            new HandshakeTimeoutError(
              "server",
              "client hello",
              `nothing arrived within ${timeoutMs} ms: the peer stalled before its first message (a plain Cap'n Proto peer must speak first)`,
            ),
          ),
        timeoutMs,
      );
    }
    if (socket.destroyed) closed();
    else check();
  });
}

/** Above this many segments a first word cannot start a Cap'n Proto frame we would accept. */
const SMALL_SEGMENT_COUNT = 512;

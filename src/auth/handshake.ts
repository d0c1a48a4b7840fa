// The secret handshake (shs1) over a connected socket, client and server.
//
// The functions read exactly the handshake's bytes: whatever the peer sent
// after them stays in the socket for box-stream. On failure the socket is
// destroyed (a server never writes a byte to a client with another network
// key) and the promise rejects with a HandshakeError subclass saying what
// went wrong; no timer or listener is left behind either way.

import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { boxStream, type BoxStreamOptions } from "./box-stream.js";
import { formatId, toPublicKey, type Identity } from "./identity.js";
import {
  CLIENT_AUTH_LENGTH,
  CLIENT_HELLO_LENGTH,
  NETWORK_KEY_LENGTH,
  SERVER_ACCEPT_LENGTH,
  SERVER_HELLO_LENGTH,
  boxStreamKeys,
  clean,
  clientCreateAuth,
  clientPrepareAcceptCheck,
  clientPrepareAuth,
  clientVerifyAccept,
  clientVerifyChallenge,
  createChallenge,
  helloAuthenticates,
  initialize,
  serverCreateAccept,
  serverPrepareAuthCheck,
  serverVerifyAuth,
  verifyChallenge,
  type BoxStreamKeys,
  type Shs1State,
} from "./shs1.js";

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

export type HandshakeRole = "client" | "server";
/** The message being awaited when the handshake failed, or "authorize" while the server's authorize hook runs. */
export type HandshakePhase = "client hello" | "server hello" | "client auth" | "server accept" | "authorize";

export type HandshakeErrorCode =
  | "NETWORK_KEY_MISMATCH"
  | "WRONG_REMOTE_KEY"
  | "PROTOCOL_ERROR"
  | "TIMEOUT"
  | "CONNECTION_CLOSED"
  | "UNAUTHORIZED"
  | "ABORTED";

/** A failed handshake. Subclasses name the cause; `code` says the same. */
export class HandshakeError extends Error {
  readonly code: HandshakeErrorCode;
  readonly role: HandshakeRole;
  readonly phase: HandshakePhase;
  constructor(code: HandshakeErrorCode, role: HandshakeRole, phase: HandshakePhase, message: string, cause?: unknown) {
    super(`shs ${role}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = "HandshakeError";
    this.code = code;
    this.role = role;
    this.phase = phase;
  }
}

/**
 * The peer uses another network key. A server sees it in the client's hello;
 * a client sees the server hang up without a reply (which is all a server
 * with another network key does).
 */
export class NetworkKeyMismatchError extends HandshakeError {
  constructor(role: HandshakeRole, phase: HandshakePhase, message: string, cause?: unknown) {
    super("NETWORK_KEY_MISMATCH", role, phase, message, cause);
    this.name = "NetworkKeyMismatchError";
  }
}

/**
 * Client: the server does not hold the key we dialled. Server: the client
 * dialled a different key than ours.
 */
export class WrongRemoteKeyError extends HandshakeError {
  constructor(role: HandshakeRole, phase: HandshakePhase, message: string, cause?: unknown) {
    super("WRONG_REMOTE_KEY", role, phase, message, cause);
    this.name = "WrongRemoteKeyError";
  }
}

/** The peer sent something that is not an shs handshake (HTTP, TLS, ...). */
export class HandshakeProtocolError extends HandshakeError {
  constructor(role: HandshakeRole, phase: HandshakePhase, message: string, cause?: unknown) {
    super("PROTOCOL_ERROR", role, phase, message, cause);
    this.name = "HandshakeProtocolError";
  }
}

/** The peer stalled: the handshake did not complete within the time limit. */
export class HandshakeTimeoutError extends HandshakeError {
  constructor(role: HandshakeRole, phase: HandshakePhase, message: string) {
    super("TIMEOUT", role, phase, message);
    this.name = "HandshakeTimeoutError";
  }
}

/** The connection was cut in the middle of the handshake. */
export class HandshakeClosedError extends HandshakeError {
  constructor(role: HandshakeRole, phase: HandshakePhase, message: string, cause?: unknown) {
    super("CONNECTION_CLOSED", role, phase, message, cause);
    this.name = "HandshakeClosedError";
  }
}

/** Server: the authorize hook refused the client (or failed). */
export class UnauthorizedPeerError extends HandshakeError {
  /** The refused client's id. */
  readonly remoteId: string;
  constructor(remoteId: string, message: string, cause?: unknown) {
    super("UNAUTHORIZED", "server", "authorize", message, cause);
    this.name = "UnauthorizedPeerError";
    this.remoteId = remoteId;
  }
}

/** A key pair as the handshake needs it (an Identity will do). */
export type HandshakeIdentity = Pick<Identity, "publicKey" | "secretKey">;

interface CommonOptions {
  /** Our long-term key pair. */
  identity: HandshakeIdentity;
  /** The mesh's network key ("app key"), 32 bytes. */
  networkKey: Uint8Array;
  /** Whole-handshake time limit. Default 5000 ms; 0 or Infinity for none. */
  timeoutMs?: number;
  /** Aborting destroys the socket and rejects with code "ABORTED". */
  signal?: AbortSignal;
}

export interface ClientHandshakeOptions extends CommonOptions {
  /** The server we mean to reach: its 32-byte public key or its "@...ed25519" id. */
  remoteKey: Uint8Array | string;
}

export interface ServerHandshakeOptions extends CommonOptions {
  /**
   * Decides whether to accept an authenticated client (before the server
   * reveals anything more). Default: everyone with the network key.
   */
  authorize?: (remoteKey: Uint8Array, remoteId: string) => boolean | Promise<boolean>;
}

export interface HandshakeResult {
  /** The peer's long-term public key. */
  remoteKey: Uint8Array;
  /** The peer's id, "@<base64>.ed25519". */
  remoteId: string;
  /** Keys and nonces for box-stream. */
  keys: BoxStreamKeys;
}

export interface SecureConnection extends HandshakeResult {
  /** The box-stream over the socket: plaintext in and out. */
  stream: Duplex;
}

// ---------------------------------------------------------------------------

interface Waiter {
  length: number;
  resolve: (bytes: Buffer) => void;
  reject: (error: Error) => void;
}

interface Failure {
  kind: "closed" | "timeout" | "aborted";
  /** Bytes of the awaited message that had arrived. */
  partial: Buffer;
  cause?: unknown;
}

/**
 * Exact reads from a socket in paused mode plus the handshake's time limit,
 * abort and teardown. A connection failure is turned into an error by the
 * role-specific `explain`.
 */
class HandshakeIO {
  readonly #socket: Duplex;
  readonly #explain: (failure: Failure, phase: HandshakePhase, length: number) => HandshakeError;
  readonly #signal: AbortSignal | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiter: Waiter | undefined;
  #phase: HandshakePhase;
  #length = 0;
  #error: HandshakeError | undefined;
  #finished = false;

  readonly #onReadable = (): void => this.#tryRead();
  readonly #onEnd = (): void => this.#lost({ kind: "closed", partial: Buffer.alloc(0) });
  readonly #onClose = (): void => this.#lost({ kind: "closed", partial: Buffer.alloc(0) });
  readonly #onError = (cause: Error): void => this.#lost({ kind: "closed", partial: Buffer.alloc(0), cause });
  readonly #onAbort = (): void => this.#lost({ kind: "aborted", partial: Buffer.alloc(0), cause: this.#signal?.reason });

  constructor(
    socket: Duplex,
    firstPhase: HandshakePhase,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    explain: (failure: Failure, phase: HandshakePhase, length: number) => HandshakeError,
  ) {
    this.#socket = socket;
    this.#phase = firstPhase;
    this.#explain = explain;
    this.#signal = signal;
    socket.on("readable", this.#onReadable);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
    signal?.addEventListener("abort", this.#onAbort);
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      this.#timer = setTimeout(() => this.#lost({ kind: "timeout", partial: Buffer.alloc(0) }), timeoutMs);
    }
    if (signal?.aborted) this.#onAbort();
    else if (socket.destroyed || socket.readableEnded) this.#onClose();
  }

  /** Bytes already waiting beyond what was read (garbage detection). */
  get buffered(): number {
    return this.#socket.readableLength;
  }

  /** Resolves with exactly `length` bytes. */
  read(length: number, phase: HandshakePhase): Promise<Buffer> {
    this.#phase = phase;
    this.#length = length;
    return new Promise((resolve, reject) => {
      if (this.#error !== undefined) {
        reject(this.#error);
        return;
      }
      this.#waiter = { length, resolve, reject };
      this.#tryRead();
    });
  }

  /** Marks the phase (for errors) while awaiting something other than a read. */
  enter(phase: HandshakePhase): void {
    this.#phase = phase;
    this.#length = 0;
  }

  write(bytes: Uint8Array): void {
    if (this.#error === undefined) this.#socket.write(bytes);
  }

  /** Throws the first failure, if any (for steps between reads). */
  check(): void {
    if (this.#error !== undefined) throw this.#error;
  }

  #tryRead(): void {
    const waiter = this.#waiter;
    if (waiter === undefined || this.#error !== undefined) return;
    const bytes = this.#socket.read(waiter.length) as Buffer | null;
    if (bytes === null) return;
    if (bytes.length < waiter.length) {
      // The stream ended with only part of the message.
      this.#lost({ kind: "closed", partial: bytes });
      return;
    }
    this.#waiter = undefined;
    waiter.resolve(bytes);
  }

  #lost(failure: Failure): void {
    if (this.#error !== undefined || this.#finished) return;
    if (failure.partial.length === 0 && failure.kind !== "aborted") {
      // Take what did arrive of the awaited message, to report it.
      const buffered = this.#socket.readableLength;
      if (buffered > 0) {
        const rest = this.#socket.read(buffered) as Buffer | null;
        if (rest !== null) failure = { ...failure, partial: rest };
      }
    }
    this.fail(this.#explain(failure, this.#phase, this.#length));
  }

  /** Fails the handshake: destroys the socket and rejects the pending read. */
  fail(error: HandshakeError): HandshakeError {
    if (this.#error !== undefined) return this.#error;
    this.#error = error;
    this.#teardown();
    // A reset while closing must not go unhandled once we stop listening.
    this.#socket.on("error", ignore);
    this.#socket.destroy();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(error);
    return error;
  }

  /** Success: stop listening, leave the socket (and any further bytes) to the caller. */
  finish(): void {
    this.#finished = true;
    this.#teardown();
  }

  #teardown(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const socket = this.#socket;
    socket.off("readable", this.#onReadable);
    socket.off("end", this.#onEnd);
    socket.off("close", this.#onClose);
    socket.off("error", this.#onError);
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }
}

function ignore(): void {}

/** A short description of bytes that are plainly another protocol, or undefined. */
function otherProtocol(bytes: Uint8Array, extra: number): string | undefined {
  if (bytes.length >= 2 && bytes[0] === 0x16 && bytes[1] === 0x03) return "a TLS handshake";
  let text = bytes.length > 0;
  for (const byte of bytes) {
    if (!(byte >= 0x20 && byte < 0x7f) && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) {
      text = false;
      break;
    }
  }
  if (text) {
    const line = Buffer.from(bytes).toString("latin1").split(/\r?\n/)[0]!.slice(0, 40);
    return `text starting ${JSON.stringify(line)} (HTTP, SSH or another text protocol)`;
  }
  if (looksLikeCapnpFrame(bytes, extra)) {
    return (
      "a plain Cap'n Proto message: that end does not use the secret handshake " +
      "(to reach a plain listener, connect without remoteKey and identity; or have the listener use an identity)"
    );
  }
  if (extra > 0) return `more bytes than a handshake message before our reply (${extra} extra)`;
  return undefined;
}

/**
 * Whether `bytes` (with `extra` more already buffered) open a standard
 * Cap'n Proto frame: a sane segment count and a first segment that fits in
 * what arrived. A plain listener answers our hello with an rpc Abort.
 */
function looksLikeCapnpFrame(bytes: Uint8Array, extra: number): boolean {
  if (bytes.length < 8) return false;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const segments = dv.getUint32(0, true) + 1;
  const firstWords = dv.getUint32(4, true);
  const header = 8 * (Math.floor(segments / 2) + 1);
  return segments <= 512 && firstWords > 0 && header + firstWords * 8 <= bytes.length + extra;
}

function describeTimeout(timeoutMs: number, phase: HandshakePhase, length: number, got: number): string {
  const waiting = length > 0 ? `waiting for the ${phase} (${got} of ${length} bytes received)` : `in phase "${phase}"`;
  return `the handshake timed out after ${timeoutMs} ms ${waiting}: the peer stalled`;
}

function checkOptions(options: CommonOptions): number {
  const { identity, networkKey } = options;
  if (!(networkKey instanceof Uint8Array) || networkKey.length !== NETWORK_KEY_LENGTH) {
    throw new TypeError(`shs: networkKey must be ${NETWORK_KEY_LENGTH} bytes`);
  }
  if (!(identity?.publicKey instanceof Uint8Array) || identity.publicKey.length !== 32) {
    throw new TypeError("shs: identity.publicKey must be 32 bytes");
  }
  if (!(identity.secretKey instanceof Uint8Array) || identity.secretKey.length !== 64) {
    throw new TypeError("shs: identity.secretKey must be 64 bytes (libsodium form: seed || public key)");
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new TypeError("shs: timeoutMs must be a non-negative number");
  }
  return timeoutMs;
}

// A new ephemeral key pair (with our hello's MAC) costs a SHA-512, an x25519
// base multiplication and an HMAC. Each identity keeps one made ahead per
// network key, replaced in idle time when a handshake takes it, so the next
// handshake does not wait for it. Each is used once and wiped by `clean`.
const spareStates = new WeakMap<Uint8Array, Map<string, Shs1State>>();

function newState(identity: HandshakeIdentity, networkKey: Uint8Array): Shs1State {
  return initialize({
    appKey: networkKey,
    local: { publicKey: identity.publicKey, secretKey: identity.secretKey },
    random: randomBytes(32),
  });
}

/** A fresh initialized state for a handshake as `identity` on `networkKey`. */
function takeInitialState(identity: HandshakeIdentity, networkKey: Uint8Array): Shs1State {
  let spares = spareStates.get(identity.secretKey);
  if (spares === undefined) spareStates.set(identity.secretKey, (spares = new Map()));
  const name = Buffer.from(networkKey.buffer, networkKey.byteOffset, networkKey.byteLength).toString("hex");
  const spare = spares.get(name);
  spares.delete(name);
  setImmediate(() => {
    if (!spares.has(name)) spares.set(name, newState(identity, networkKey));
  }).unref();
  return spare ?? newState(identity, networkKey);
}

function abortedError(role: HandshakeRole, phase: HandshakePhase, cause: unknown): HandshakeError {
  return new HandshakeError("ABORTED", role, phase, "the handshake was aborted", cause);
}

/**
 * Runs the client side. Resolves with the server's identity (which is the
 * one we asked for) and the box-stream keys.
 */
export async function clientHandshake(socket: Duplex, options: ClientHandshakeOptions): Promise<HandshakeResult> {
  const timeoutMs = checkOptions(options);
  const serverKey = new Uint8Array(toPublicKey(options.remoteKey));
  const serverId = formatId(serverKey);

  const io = new HandshakeIO(socket, "server hello", timeoutMs, options.signal, (failure, phase, length) => {
    const got = failure.partial.length;
    if (failure.kind === "aborted") return abortedError("client", phase, failure.cause);
    const garbage = got > 0 ? otherProtocol(failure.partial, 0) : undefined;
    if (garbage !== undefined) {
      return new HandshakeProtocolError("client", phase, `the server sent ${garbage}, not an shs handshake`, failure.cause);
    }
    if (failure.kind === "timeout") return new HandshakeTimeoutError("client", phase, describeTimeout(timeoutMs, phase, length, got));
    if (got === 0 && phase === "server hello") {
      return new NetworkKeyMismatchError(
        "client",
        phase,
        "the server closed the connection without answering our hello: it uses a different network key (or refuses connections)",
        failure.cause,
      );
    }
    if (got === 0 && phase === "server accept") {
      return new WrongRemoteKeyError(
        "client",
        phase,
        `the server hung up on our authentication: it is not ${serverId} (only that key can open it), or it does not accept us`,
        failure.cause,
      );
    }
    return new HandshakeClosedError(
      "client",
      phase,
      `the connection closed in the middle of the handshake, waiting for the ${phase} (${got} of ${length} bytes received)`,
      failure.cause,
    );
  });

  try {
    let state: Shs1State | null = takeInitialState(options.identity, options.networkKey);
    state = { ...state, remote: { publicKey: serverKey } };
    io.write(createChallenge(state));
    // While the server checks our hello (each prepare step runs while the
    // peer works on our last message).
    state = clientPrepareAuth(state);

    const serverHello = await io.read(SERVER_HELLO_LENGTH, "server hello");
    const verified = clientVerifyChallenge(state, serverHello);
    if (verified === null) {
      const garbage = otherProtocol(serverHello, io.buffered);
      throw io.fail(
        garbage !== undefined
          ? new HandshakeProtocolError("client", "server hello", `the server sent ${garbage}, not an shs handshake`)
          : verifyChallenge(state, serverHello) === null
            ? new NetworkKeyMismatchError(
                "client",
                "server hello",
                "the server hello does not authenticate under our network key: the server uses a different network key (or is not speaking shs)",
              )
            : new HandshakeProtocolError("client", "server hello", "the server hello carries an invalid ephemeral key"),
      );
    }
    state = verified;
    // Only a holder of the server's secret key can open this.
    io.write(clientCreateAuth(state));
    state = clientPrepareAcceptCheck(state);

    const accept = await io.read(SERVER_ACCEPT_LENGTH, "server accept");
    state = clientVerifyAccept(state, accept);
    if (state === null) {
      throw io.fail(
        new WrongRemoteKeyError("client", "server accept", `the server's accept does not verify: the server is not ${serverId}`),
      );
    }
    io.check();
    const done = clean(state);
    io.finish();
    return { remoteKey: serverKey, remoteId: serverId, keys: boxStreamKeys(done) };
  } catch (error) {
    throw error instanceof HandshakeError ? error : io.fail(new HandshakeProtocolError("client", "server hello", String(error), error));
  }
}

/**
 * Runs the server side. Resolves with the client's identity, learnt during
 * the handshake, and the box-stream keys.
 */
export async function serverHandshake(socket: Duplex, options: ServerHandshakeOptions): Promise<HandshakeResult> {
  const timeoutMs = checkOptions(options);
  const ourId = formatId(options.identity.publicKey);

  const io = new HandshakeIO(socket, "client hello", timeoutMs, options.signal, (failure, phase, length) => {
    const got = failure.partial.length;
    if (failure.kind === "aborted") return abortedError("server", phase, failure.cause);
    const garbage = got > 0 ? otherProtocol(failure.partial, 0) : undefined;
    if (garbage !== undefined) {
      return new HandshakeProtocolError("server", phase, `the client sent ${garbage}, not an shs handshake`, failure.cause);
    }
    if (failure.kind === "timeout") return new HandshakeTimeoutError("server", phase, describeTimeout(timeoutMs, phase, length, got));
    const waiting = length > 0 ? `waiting for the ${phase} (${got} of ${length} bytes received)` : `in phase "${phase}"`;
    const hint = phase === "client auth" && got === 0 ? " (the client may have rejected our hello)" : "";
    return new HandshakeClosedError(
      "server",
      phase,
      `the connection closed in the middle of the handshake, ${waiting}${hint}`,
      failure.cause,
    );
  });

  try {
    let state: Shs1State | null = takeInitialState(options.identity, options.networkKey);

    const clientHello = await io.read(CLIENT_HELLO_LENGTH, "client hello");
    if (!helloAuthenticates(options.networkKey, clientHello)) {
      // Hang up without a word: a client with another network key learns
      // nothing about us, not even that this is an shs server.
      const garbage = otherProtocol(clientHello, io.buffered);
      throw io.fail(
        garbage !== undefined
          ? new HandshakeProtocolError("server", "client hello", `the client sent ${garbage}, not an shs handshake`)
          : new NetworkKeyMismatchError(
              "server",
              "client hello",
              "the client hello does not authenticate under our network key: the client uses a different network key (or is not speaking shs)",
            ),
      );
    }
    // Our hello depends only on our own ephemeral key: it goes out before the
    // x25519s, which then overlap the client's work.
    io.write(createChallenge(state));
    state = verifyChallenge(state, clientHello);
    if (state === null) {
      throw io.fail(new HandshakeProtocolError("server", "client hello", "the client hello carries an invalid ephemeral key"));
    }
    state = serverPrepareAuthCheck(state);

    const auth = await io.read(CLIENT_AUTH_LENGTH, "client auth");
    state = serverVerifyAuth(state, auth);
    if (state === null) {
      throw io.fail(
        new WrongRemoteKeyError(
          "server",
          "client auth",
          `the client's authentication does not open or verify: the client dialled a different server key than ours (${ourId}), or sent garbage`,
        ),
      );
    }
    const clientKey = new Uint8Array(state.remote.publicKey!);
    const clientId = formatId(clientKey);

    if (options.authorize !== undefined) {
      io.enter("authorize");
      let allowed: boolean;
      try {
        allowed = await options.authorize(clientKey, clientId);
      } catch (cause) {
        io.check();
        throw io.fail(new UnauthorizedPeerError(clientId, `authorizing ${clientId} failed: ${String(cause)}`, cause));
      }
      io.check();
      if (allowed !== true) throw io.fail(new UnauthorizedPeerError(clientId, `${clientId} is not authorized to connect`));
    }

    io.write(serverCreateAccept(state));
    io.check();
    const done = clean(state);
    io.finish();
    return { remoteKey: clientKey, remoteId: clientId, keys: boxStreamKeys(done) };
  } catch (error) {
    throw error instanceof HandshakeError ? error : io.fail(new HandshakeProtocolError("server", "client hello", String(error), error));
  }
}

/** The client handshake, then box-stream over the socket. */
export async function secureClient(
  socket: Duplex,
  options: ClientHandshakeOptions & { boxStream?: BoxStreamOptions },
): Promise<SecureConnection> {
  const result = await clientHandshake(socket, options);
  return { ...result, stream: boxStream(socket, result.keys, options.boxStream) };
}

/** The server handshake, then box-stream over the socket. */
export async function secureServer(
  socket: Duplex,
  options: ServerHandshakeOptions & { boxStream?: BoxStreamOptions },
): Promise<SecureConnection> {
  const result = await serverHandshake(socket, options);
  return { ...result, stream: boxStream(socket, result.keys, options.boxStream) };
}

// Listening on and dialing transport addresses (unix sockets and TCP).

import { lstat, unlink } from "node:fs/promises";
import * as net from "node:net";
import { formatAddress, toAddress, type Address } from "./address.js";
import { readsInPlace, setRemoteLabel } from "./message-stream.js";

/**
 * Every socket dialled or accepted here reads into this one buffer (net's `onread`), each
 * read consumed before the next one starts (message-stream.ts readsInPlace):
 * no new 64 KiB buffer per read, and reads of up to 256 KiB.
 */
const READ_BUFFER_BYTES = 256 * 1024;
let readBuffer: Buffer | undefined;

interface InPlaceReads {
  buffer: Buffer;
  callback: (bytes: number, buffer: Buffer) => boolean;
  /** Names the socket these reads are for, once it exists. */
  attach(socket: net.Socket): void;
}

function inPlaceReads(): InPlaceReads {
  readBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  let deliver: ((chunk: Buffer) => boolean) | undefined;
  return {
    buffer: readBuffer,
    callback: (bytes, buffer) => deliver!(buffer.subarray(0, bytes)),
    attach(socket) {
      deliver = readsInPlace(socket);
    },
  };
}

/**
 * net's own slots for a socket's `onread` buffer and callback, found on a
 * probe socket. net.Server has no `onread` option, so an accepted socket is
 * given these slots (and its handle the buffer) in the tick it was accepted,
 * before its first read: the same socket object, so net's bookkeeping
 * (connection counts, 'end', half close) is untouched. Undefined when net
 * keeps them differently: accepted sockets then read as net gives them.
 */
const onreadSlots = ((): { buffer: symbol; callback: symbol } | undefined => {
  try {
    const probe = new net.Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } } as net.SocketConstructorOpts);
    const find = (name: string) => Object.getOwnPropertySymbols(probe).find((s) => s.description === name);
    const buffer = find("kBuffer");
    const callback = find("kBufferCb");
    probe.destroy();
    return buffer && callback ? { buffer, callback } : undefined;
  } catch {
    return undefined;
  }
})();

/** Makes a just-accepted socket read in place, as dialled ones do (see onreadSlots). */
function readInPlaceOnceAccepted(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Buffer) => void } })._handle;
  if (onreadSlots === undefined || typeof handle?.useUserBuffer !== "function") return;
  const reads = inPlaceReads();
  const slots = socket as unknown as Record<symbol, unknown>;
  slots[onreadSlots.buffer] = reads.buffer;
  slots[onreadSlots.callback] = reads.callback;
  handle.useUserBuffer(reads.buffer);
  reads.attach(socket);
}

/** A listening or dialing failure, with the address it concerns. */
export class SocketError extends Error {
  /** The Node error code (ECONNREFUSED, EADDRINUSE, ...) or ETIMEDOUT / ABORT_ERR. */
  readonly code: string;
  /** The address, canonical form. */
  readonly address: string;
  constructor(code: string, address: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SocketError";
    this.code = code;
    this.address = address;
  }
}

export interface SocketListener {
  /** The address actually bound (e.g. the real port when 0 was asked for). */
  readonly address: string;
  /**
   * Stops accepting, destroys the sockets this listener accepted that are
   * still open, and removes the unix socket file. Idempotent.
   */
  close(): Promise<void>;
}

export interface ListenOptions {
  /**
   * Errors that have nowhere else to go: a throw from onConnection (the
   * socket is then destroyed) or an error of the listening server.
   * By default they are ignored.
   */
  onError?: (error: Error) => void;
  /**
   * Keep the process alive while listening (default true). A listener that
   * only serves as a side door (a mesh client's direct-path listener) passes
   * false: then it never holds the process by itself.
   */
  holdProcess?: boolean;
}

export interface DialOptions {
  /** Aborts the attempt; the promise rejects with a SocketError "ABORT_ERR". */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds ("ETIMEDOUT"). No limit by default. */
  timeoutMs?: number;
  /**
   * Gets the socket as soon as it exists, before it is connected. What is
   * written then goes out the moment it connects, so a protocol's first
   * message need not wait for the promise to settle. Destroying the socket
   * abandons the dial ("ECONNABORTED").
   */
  onSocket?: (socket: net.Socket) => void;
}

// sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, NUL included.
const MAX_UNIX_PATH_BYTES = process.platform === "linux" ? 107 : 103;

function checkUnixPath(addr: string, path: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_PATH_BYTES) {
    throw new SocketError(
      "ENAMETOOLONG",
      addr,
      `unix socket path of ${addr} is ${bytes} bytes, over the operating system's limit of ${MAX_UNIX_PATH_BYTES}; use a shorter or relative path`,
    );
  }
}

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

// Tries to connect to a unix socket path: true if something accepted.
function unixIsLive(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.createConnection({ path });
    const timer = setTimeout(() => {
      // A server that neither accepts nor refuses: treat as live (safe side).
      probe.destroy();
      resolve(true);
    }, 1000);
    probe.once("connect", () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (e) => {
      clearTimeout(timer);
      const code = errnoOf(e);
      if (code === "ECONNREFUSED" || code === "ENOENT") resolve(false);
      else reject(e);
    });
  });
}

async function removeStaleSocket(addr: string, path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new SocketError(
      "EADDRINUSE",
      addr,
      `cannot listen on ${addr}: ${path} exists and is not a socket (refusing to remove it)`,
    );
  }
  let live: boolean;
  try {
    live = await unixIsLive(path);
  } catch (e) {
    throw new SocketError(
      errnoOf(e) ?? "EADDRINUSE",
      addr,
      `cannot listen on ${addr}: the existing socket file could not be checked (${(e as Error).message})`,
      { cause: e },
    );
  }
  if (live) {
    throw new SocketError("EADDRINUSE", addr, `address in use: a server is already listening on ${addr}`);
  }
  try {
    await unlink(path);
  } catch (e) {
    if (errnoOf(e) !== "ENOENT") throw e;
  }
}

function listenError(addr: string, e: unknown): SocketError {
  const code = errnoOf(e) ?? "ELISTEN";
  const detail = e instanceof Error ? e.message : String(e);
  let message: string;
  switch (code) {
    case "EADDRINUSE":
      message = `address in use: something is already listening on ${addr}`;
      break;
    case "EACCES":
    case "EPERM":
      message = `permission denied listening on ${addr} (${detail})`;
      break;
    case "EADDRNOTAVAIL":
      message = `cannot listen on ${addr}: that address is not available on this machine`;
      break;
    case "ENOENT":
      message = `cannot listen on ${addr}: its directory does not exist`;
      break;
    default:
      message = `cannot listen on ${addr}: ${detail}`;
  }
  return new SocketError(code, addr, message, { cause: e });
}

/**
 * Listens on `address` and hands every accepted socket to onConnection.
 * TCP sockets get TCP_NODELAY. A leftover unix socket file is removed first,
 * but only if nothing answers on it.
 */
export async function listenSocket(
  address: string | Address,
  onConnection: (socket: net.Socket) => void,
  options: ListenOptions = {},
): Promise<SocketListener> {
  const addr = toAddress(address);
  const shown = formatAddress(addr);
  if (addr.kind === "unix") {
    checkUnixPath(shown, addr.path);
    await removeStaleSocket(shown, addr.path);
  }

  const sockets = new Set<net.Socket>();
  const server = net.createServer();
  server.on("connection", (socket: net.Socket) => {
    readInPlaceOnceAccepted(socket);
    // Keeps an unhandled socket error from crashing the process; whoever
    // uses the socket still gets 'error' through their own listener.
    socket.on("error", () => {});
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    if (addr.kind === "tcp") {
      socket.setNoDelay(true);
    } else {
      setRemoteLabel(socket, `${shown} (accepted)`);
    }
    try {
      onConnection(socket);
    } catch (e) {
      socket.destroy();
      options.onError?.(e instanceof Error ? e : new Error(String(e)));
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(listenError(shown, e));
    server.once("error", onError);
    const done = () => {
      server.off("error", onError);
      resolve();
    };
    if (addr.kind === "unix") server.listen({ path: addr.path }, done);
    else server.listen({ host: addr.host, port: addr.port }, done);
  });
  server.on("error", (e) => options.onError?.(e));
  if (options.holdProcess === false) server.unref();

  let bound: string;
  let socketIdentity: { dev: number; ino: number } | undefined;
  if (addr.kind === "unix") {
    bound = shown;
    try {
      const st = await lstat(addr.path);
      socketIdentity = { dev: st.dev, ino: st.ino };
    } catch {
      socketIdentity = undefined;
    }
  } else {
    const info = server.address() as net.AddressInfo;
    bound = formatAddress({ kind: "tcp", host: info.address, port: info.port });
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await stopped;
      if (addr.kind === "unix" && socketIdentity) {
        // Node normally unlinks it already; remove it only if the file is
        // still the one we created (not a newer server's).
        try {
          const st = await lstat(addr.path);
          if (st.dev === socketIdentity.dev && st.ino === socketIdentity.ino) await unlink(addr.path);
        } catch (e) {
          if (errnoOf(e) !== "ENOENT") throw e;
        }
      }
    })();
    return closing;
  };

  return { address: bound, close };
}

function dialError(addr: Address, shown: string, e: unknown): SocketError {
  const code = errnoOf(e) ?? "ECONNECT";
  const detail = e instanceof Error ? e.message : String(e);
  let message: string;
  switch (code) {
    case "ECONNREFUSED":
      message =
        addr.kind === "unix"
          ? `nothing is listening on ${shown} (the socket file exists but no server accepted; it may be stale)`
          : `nothing is listening on ${shown}`;
      break;
    case "ENOENT":
      message =
        addr.kind === "unix"
          ? `nothing is listening on ${shown}: no socket file at ${addr.path}`
          : `cannot connect to ${shown}: ${detail}`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      message = `cannot connect to ${shown}: host name ${JSON.stringify(addr.kind === "tcp" ? addr.host : "")} could not be resolved`;
      break;
    case "EACCES":
    case "EPERM":
      message = `permission denied connecting to ${shown}`;
      break;
    case "ETIMEDOUT":
      message = `timed out connecting to ${shown}`;
      break;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      message = `cannot reach ${shown} (${code})`;
      break;
    default:
      message = `cannot connect to ${shown}: ${detail}`;
  }
  return new SocketError(code, shown, message, { cause: e });
}

/**
 * Connects to `address`. Resolves with the connected socket (TCP_NODELAY set
 * for TCP); rejects with a SocketError that says what went wrong.
 */
export function dialSocket(address: string | Address, options: DialOptions = {}): Promise<net.Socket> {
  let addr: Address;
  let shown: string;
  try {
    addr = toAddress(address);
    shown = formatAddress(addr);
    if (addr.kind === "unix") checkUnixPath(shown, addr.path);
    if (addr.kind === "tcp" && addr.port === 0) {
      throw new SocketError("EINVAL", shown, `cannot connect to ${shown}: port 0 is only meaningful for listening`);
    }
  } catch (e) {
    return Promise.reject(e);
  }
  const { signal, timeoutMs } = options;
  if (timeoutMs !== undefined && !(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    return Promise.reject(new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`));
  }
  if (signal?.aborted) {
    return Promise.reject(
      new SocketError("ABORT_ERR", shown, `connecting to ${shown} was aborted`, { cause: signal.reason }),
    );
  }

  return new Promise<net.Socket>((resolve, reject) => {
    const onread = inPlaceReads();
    const socket =
      addr.kind === "unix"
        ? net.createConnection({ path: addr.path, onread })
        : net.createConnection({ host: addr.host, port: addr.port, noDelay: true, onread });
    onread.attach(socket);
    let timer: NodeJS.Timeout | undefined;

    const cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      socket.off("close", onAbandoned);
    };
    const fail = (err: SocketError) => {
      cleanup();
      socket.on("error", () => {});
      socket.destroy();
      reject(err);
    };
    const onConnect = () => {
      cleanup();
      // See listenSocket: never let a socket error go unhandled.
      socket.on("error", () => {});
      if (addr.kind === "tcp") socket.setNoDelay(true);
      setRemoteLabel(socket, shown);
      resolve(socket);
    };
    const onError = (e: Error) => fail(dialError(addr, shown, e));
    const onAbort = () =>
      fail(new SocketError("ABORT_ERR", shown, `connecting to ${shown} was aborted`, { cause: signal?.reason }));

    const onAbandoned = () =>
      fail(new SocketError("ECONNABORTED", shown, `connecting to ${shown} was abandoned: the socket was destroyed before it connected`));

    socket.once("connect", onConnect);
    socket.once("error", onError);
    socket.once("close", onAbandoned);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => fail(new SocketError("ETIMEDOUT", shown, `timed out after ${timeoutMs} ms connecting to ${shown}`)),
        timeoutMs,
      );
    }
    options.onSocket?.(socket);
  });
}

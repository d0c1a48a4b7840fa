// The hostile side of one connection: a unix socket with write accounting
// (bytes the server has been handed), exact reads for the handshake, and a
// record of how the server ended it. Writes wait for the socket's callback;
// a server that stops reading leaves the connection "stalled", not hung.
import * as net from "node:net";

/** How long one write may wait for the socket to take it. */
const WRITE_STALL_MS = 3000;
/** How long a read (during a handshake) may wait. */
const READ_MS = 3000;
/** How long the server may go quiet, once we half-closed, without closing. */
export const CLOSE_DEADLINE_MS = 5000;

export class SocketIO {
  /** Bytes handed to the socket whose write completed. */
  written = 0;
  /** A write did not complete in time: the server stopped reading. */
  stalled = false;
  /** The server ended or reset the connection before we did. */
  closedByServer = false;
  #ending = false;
  #isClosed = false;
  #attached = false;
  #inbox: Buffer[] = [];
  #inboxBytes = 0;
  #wake: (() => void) | null = null;
  #sink: ((chunk: Buffer) => void) | null = null;
  #lastData = 0;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    // Resets are expected: the server destroys sockets it still had input on.
    socket.on("error", () => {});
    socket.on("end", () => {
      if (!this.#ending) this.closedByServer = true;
    });
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        if (!this.#ending) this.closedByServer = true;
        this.#isClosed = true;
        this.#wake?.();
        resolve();
      }),
    );
  }

  static connect(path: string): Promise<SocketIO> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new SocketIO(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Starts reading in flowing mode (not before: a handshake may read the socket itself first). */
  #attach(): void {
    if (this.#attached) return;
    this.#attached = true;
    this.socket.on("data", (chunk: Buffer) => {
      this.#lastData = performance.now();
      if (this.#sink) this.#sink(chunk);
      else {
        this.#inbox.push(chunk);
        this.#inboxBytes += chunk.length;
        this.#wake?.();
      }
    });
  }

  /** Hands everything the server sends from now on to `sink` (what was buffered first). */
  setSink(sink: (chunk: Buffer) => void): void {
    this.#sink = sink;
    for (const c of this.#inbox.splice(0)) sink(c);
    this.#inboxBytes = 0;
    this.#attach();
  }

  /** Discards what the server sends. */
  drain(): void {
    this.setSink(() => {});
  }

  /** Exactly `n` bytes from the server, or null if it closed or stalled first. */
  async read(n: number): Promise<Buffer | null> {
    this.#attach();
    const deadline = Date.now() + READ_MS;
    while (this.#inboxBytes < n) {
      if (this.#isClosed || Date.now() >= deadline) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
    const all = Buffer.concat(this.#inbox.splice(0));
    const rest = all.subarray(n);
    if (rest.length > 0) this.#inbox.push(rest);
    this.#inboxBytes = rest.length;
    return all.subarray(0, n);
  }

  /** Writes `bytes`; false if the connection is gone or stalled. */
  write(bytes: Uint8Array): Promise<boolean> {
    if (this.#isClosed || this.stalled || this.socket.destroyed || bytes.length === 0) {
      return Promise.resolve(!this.#isClosed && !this.stalled);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.stalled = true;
        resolve(false);
      }, WRITE_STALL_MS);
      this.socket.write(bytes, (err) => {
        clearTimeout(timer);
        if (err) return resolve(false);
        this.written += bytes.length;
        resolve(!this.stalled);
      });
    });
  }

  /** Writes `bytes` whole (`piece` 0) or `piece` bytes at a time. */
  async writePieces(bytes: Uint8Array, piece: number): Promise<boolean> {
    if (piece <= 0) return this.write(bytes);
    for (let at = 0; at < bytes.length; at += piece) {
      if (!(await this.write(bytes.subarray(at, at + piece)))) return false;
    }
    return true;
  }

  /**
   * Half-closes our side (destroys it if writes stalled) and waits for the
   * server to close the connection. False if it went quiet for the deadline
   * without closing (a server still flushing its answers is not quiet).
   */
  async end(): Promise<boolean> {
    this.#ending = !this.closedByServer;
    this.drainIfIdle();
    if (this.stalled) this.socket.destroy();
    else this.socket.end();
    this.#lastData = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const quiet = new Promise<boolean>((resolve) => {
      const check = () => {
        const idle = performance.now() - this.#lastData;
        if (idle >= CLOSE_DEADLINE_MS) resolve(false);
        else timer = setTimeout(check, CLOSE_DEADLINE_MS - idle);
      };
      check();
    });
    const ok = await Promise.race([this.closed.then(() => true), quiet]);
    clearTimeout(timer);
    return ok;
  }

  /** Makes sure the server's output is read (a socket nobody reads cannot see its end). */
  drainIfIdle(): void {
    if (!this.#attached) this.drain();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

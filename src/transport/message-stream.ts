// The connection-level transport: a duplex byte stream carrying framed
// Cap'n Proto messages, as the RPC engine sees it.

import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Message } from "capnp-es";
import { recycleMessage, releaseBuilderPool } from "../codec/message.js";
import { formatAddress } from "./address.js";
import { FrameDecoder, FrameError, encodeFrame, frameSize, releaseInboundSegmentPool, writeFrameInto } from "./framing.js";

/** Unread bytes held while reading is throttled, before the socket itself is paused. */
const THROTTLED_BACKLOG_BYTES = 1024 * 1024;
/** Frames up to this size are copied into the per-tick batch buffer. */
const SMALL_FRAME = 4096;
const BATCH_BYTES = 64 * 1024;
/**
 * On a socket, frames up to this size are copied into the batch too (a
 * batch this large then), so that a bulk stream of calls reuses a few send
 * buffers instead of sending, and so allocating, one per call.
 */
const COPIED_FRAME = 128 * 1024;
const BULK_BATCH_BYTES = 2 * COPIED_FRAME + 8 * 1024;
/** Finished send batches a socket stream keeps for reuse (besides the one it fills). */
const SPARE_BATCHES = 1;
/**
 * A connection's first batch buffer: under half of Node's buffer pool, so it
 * comes from the pool rather than as a new ArrayBuffer (external memory that
 * counts towards V8's next full GC). Short connections never need more.
 */
const FIRST_BATCH_BYTES = (Buffer.poolSize >>> 1) - 8;
/** Queued bytes that are written at once instead of at the end of the tick. */
const EARLY_FLUSH_BYTES = 4096;
/**
 * How often connections that sent nothing since the last look give their send
 * batch back. A busy connection keeps its batch (no 64 KiB allocation per
 * tick); an idle one holds none, so a hub of once-busy idle peers stays small.
 */
const IDLE_SWEEP_MS = 2_000;
import { resolveLimits, type TransportLimits } from "./limits.js";
import { FREE_BYTES_PER_CONNECTION, processInboundBudget, type InboundBudget } from "./inbound-budget.js";

export interface MessageStream {
  /**
   * Queues `message` for sending. All sends made in one tick go out in one
   * corked write. The stream keeps references to the message's segment
   * buffers until they are written: do not modify a message after sending it.
   * Dropped silently once the stream is closed.
   */
  send(message: Message): void;
  /**
   * Queues one already-framed message (standard framing, header included),
   * copied before returning. For small fixed messages built without a
   * capnp-es Message. Same ordering as send().
   */
  sendFrame(frame: Uint8Array): void;
  /**
   * Receives every message, in order. Set it right after creating the
   * stream; nothing is read from the peer until it is set. If it throws, the
   * stream is closed and onClose gets the thrown error.
   */
  onMessage: (message: Message) => void;
  /**
   * Called exactly once when the stream is finished: `undefined` after a
   * clean end (either side closed it without error), otherwise the error
   * (FrameError, socket error, peer reset, the error passed to close(), or
   * the one thrown by onMessage). Must not throw.
   */
  onClose: (error: Error | undefined) => void;
  /**
   * Optional: called when the writable side has drained after bufferedBytes
   * had grown past its high-water mark.
   */
  onDrain?: (() => void) | undefined;
  /**
   * Optional: called when the peer's bytes break the framing rules. May
   * return a last message (an rpc Abort naming the fault) to send before the
   * stream ends; the stream then closes and onClose gets the FrameError.
   */
  onFrameError?: ((error: FrameError) => Message | null) | undefined;
  /**
   * Flushes queued sends, then ends the stream. Idempotent. Messages that
   * arrive afterwards are dropped. An error given here is what onClose
   * reports (unless another error came first).
   */
  close(error?: Error): void;
  /**
   * Stops reading from the peer (its writes back up in the socket) until
   * resumeReading(). Messages already read are still delivered. For inbound
   * flow control: a peer that floods calls stops being read.
   */
  pauseReading(): void;
  resumeReading(): void;
  /** True once close() was called or the stream ended or failed. */
  readonly closed: boolean;
  /** Bytes queued but not yet handed to the operating system. */
  readonly bufferedBytes: number;
  /** Printable description of the peer, e.g. tcp://127.0.0.1:4000. */
  readonly remoteAddress: string;
  /**
   * Bytes of send buffer this stream keeps between ticks (its batch buffer),
   * 0 once it has gone idle and given it back. Optional: for introspection.
   */
  readonly sendBufferBytes?: number;
  /**
   * Bytes the peer sent that this stream holds while no message has been
   * made of them (an incomplete frame, a throttled backlog). Optional: for
   * introspection.
   */
  readonly receiveBufferBytes?: number;
}

export interface StreamOptions {
  /** Overrides the peer description (remoteAddress). */
  remoteAddress?: string;
  /**
   * After close(), how long to wait for the peer to finish its side before
   * destroying the duplex. Default 10 s.
   */
  closeTimeoutMs?: number;
  /**
   * The budget this stream's buffered inbound bytes (incomplete frames, read
   * backlog) are charged to. Default: the process-wide one (setInboundBudget).
   */
  budget?: InboundBudget;
}

// Sockets made by socket.ts read into one reused buffer (net's `onread`)
// instead of a new 64 KiB buffer per read: fresh buffers are external memory
// that drove V8 into a full collection every few tens of milliseconds of bulk
// traffic. A message stream over such a socket takes each read in place
// (copying only what it keeps); for anyone else the socket pushes a copy of
// each read as an ordinary readable stream does (the handshake reads that way).
const inPlaceReaders = new WeakMap<object, ((chunk: Buffer) => void) | null>();

/**
 * Marks `socket` as reading into a reused buffer; returns the function its
 * `onread` callback calls with each read (a view valid only during the call).
 */
export function readsInPlace(socket: Socket): (chunk: Buffer) => boolean {
  inPlaceReaders.set(socket, null);
  return (chunk) => {
    const reader = inPlaceReaders.get(socket);
    if (reader) {
      reader(chunk);
      return true;
    }
    return socket.push(Buffer.from(chunk));
  };
}

// Peer descriptions for sockets whose own remoteAddress is not useful (unix
// sockets have none). Set by socket.ts.
const remoteLabels = new WeakMap<object, string>();

/** Records a printable peer description for `duplex` (used by streamFromDuplex). */
export function setRemoteLabel(duplex: object, label: string): void {
  remoteLabels.set(duplex, label);
}

function describeRemote(duplex: Duplex): string {
  const label = remoteLabels.get(duplex);
  if (label !== undefined) return label;
  if (duplex instanceof Socket) {
    if (typeof duplex.remoteAddress === "string" && typeof duplex.remotePort === "number") {
      return formatAddress({ kind: "tcp", host: duplex.remoteAddress, port: duplex.remotePort });
    }
    return "unix:(peer)";
  }
  const own = (duplex as { remoteAddress?: unknown }).remoteAddress;
  return typeof own === "string" ? own : "unknown";
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(`non-Error value thrown: ${String(e)}`);
}

const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

/** Streams that keep a send batch, looked at by the idle sweep. */
const holdingBatch = new Set<DuplexMessageStream>();
let sweepTimer: NodeJS.Timeout | undefined;

function watchForIdle(stream: DuplexMessageStream): void {
  holdingBatch.add(stream);
  if (sweepTimer === undefined) {
    sweepTimer = setInterval(releaseIdleSendBuffers, IDLE_SWEEP_MS);
    sweepTimer.unref();
  }
}

/**
 * Gives back the send batch of every stream that sent nothing since the
 * previous call (the process does this by itself every 2 s); a stream that
 * did send is marked and keeps its batch until the next call. Returns the
 * bytes given back.
 */
export function releaseIdleSendBuffers(): number {
  let released = 0;
  for (const stream of holdingBatch) released += stream.releaseBatchIfIdle();
  if (holdingBatch.size === 0) {
    // Every stream is idle: the process-wide buffer pools go too.
    released += releaseBuilderPool() + releaseInboundSegmentPool();
    if (sweepTimer !== undefined) {
      clearInterval(sweepTimer);
      sweepTimer = undefined;
    }
  }
  return released;
}

/** Send batches kept by this process's socket streams: how many, and their bytes. */
export function sendBufferStats(): { streams: number; bytes: number } {
  let streams = 0;
  let bytes = 0;
  for (const stream of holdingBatch) {
    const held = stream.sendBufferBytes;
    if (held > 0) {
      streams++;
      bytes += held;
    }
  }
  return { streams, bytes };
}

function noMessageHandler(): void {
  throw new Error("a message arrived but the stream's onMessage handler was never set");
}

class DuplexMessageStream implements MessageStream {
  readonly remoteAddress: string;
  onClose: (error: Error | undefined) => void = () => {};
  onDrain: (() => void) | undefined = undefined;
  onFrameError: ((error: FrameError) => Message | null) | undefined = undefined;

  readonly #duplex: Duplex;
  readonly #isSocket: boolean;
  readonly #decoder: FrameDecoder;
  readonly #closeTimeoutMs: number;
  readonly #budget: InboundBudget;
  /** Set while reading is stopped because the inbound budget is spent: cancels the wait. */
  #budgetWait: (() => void) | undefined;
  #onMessage: (message: Message) => void = noMessageHandler;
  #reading = false;
  #closed = false;
  #corked = false;
  #error: Error | undefined;
  #reported = false;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(duplex: Duplex, limits: TransportLimits, options: StreamOptions) {
    this.#duplex = duplex;
    this.#isSocket = duplex instanceof Socket;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.remoteAddress = options.remoteAddress ?? describeRemote(duplex);
    this.#budget = options.budget ?? processInboundBudget;
    this.#decoder = new FrameDecoder(limits, (m) => this.#deliver(m), this.#budget);
    duplex.on("error", this.#handleError);
    duplex.on("end", this.#handleEnd);
    duplex.on("close", this.#handleClose);
    duplex.on("drain", this.#handleDrain);
    if (duplex.destroyed) {
      this.#closed = true;
      this.#error = duplex.errored ?? new Error(`the stream to ${this.remoteAddress} was already destroyed`);
      this.#report();
    }
  }

  get onMessage(): (message: Message) => void {
    return this.#onMessage;
  }

  set onMessage(handler: (message: Message) => void) {
    this.#onMessage = handler;
    this.#startReading();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get bufferedBytes(): number {
    return this.#duplex.writableLength + (this.#batchUsed - this.#batchStart);
  }

  get sendBufferBytes(): number {
    let bytes = this.#batch?.byteLength ?? 0;
    for (const spare of this.#spare) bytes += spare.byteLength;
    return bytes;
  }

  get receiveBufferBytes(): number {
    return this.#heldBytes;
  }

  /** For the idle sweep: drops the batch if nothing was sent since the last sweep; returns the bytes dropped. */
  releaseBatchIfIdle(): number {
    if (this.#sentSinceSweep && !this.#closed) {
      this.#sentSinceSweep = false;
      return 0;
    }
    if (this.#corked) return 0; // mid-tick: its batch holds this tick's frames
    const bytes = this.sendBufferBytes;
    this.#batch = null;
    this.#spare = [];
    this.#batchBytes = FIRST_BATCH_BYTES; // idle now: start small again
    this.#batchStart = this.#batchUsed = 0;
    holdingBatch.delete(this);
    return bytes;
  }

  send(message: Message): void {
    if (this.#closed) return;
    const duplex = this.#duplex;
    if (!this.#corked) {
      this.#corked = true;
      duplex.cork();
      process.nextTick(this.#uncork);
    }
    // Small frames (most RPC messages) are copied into one buffer per tick:
    // one write instead of two per message. Large ones go by reference.
    // write() returning false only advises us to slow down; the chunks are
    // queued regardless. bufferedBytes and onDrain let the engine react.
    this.#sentSinceSweep = true;
    const size = frameSize(message);
    if (size <= SMALL_FRAME || (this.#isSocket && size <= COPIED_FRAME)) {
      const batch = this.#reserve(size);
      this.#batchUsed = writeFrameInto(message, batch, this.#batchUsed);
      // The frame is ours now: a message nothing reads after sending gives its buffer back.
      recycleMessage(message);
      this.#maybeFlushEarly();
      return;
    }
    this.#flushBatch();
    for (const chunk of encodeFrame(message)) duplex.write(chunk);
  }

  sendFrame(frame: Uint8Array): void {
    if (this.#closed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#duplex.cork();
      process.nextTick(this.#uncork);
    }
    const batch = this.#reserve(frame.byteLength);
    batch.set(frame, this.#batchUsed);
    this.#batchUsed += frame.byteLength;
    this.#maybeFlushEarly();
  }

  /** The batch buffer, with room for `size` more bytes. */
  #reserve(size: number): Buffer {
    if (this.#batch === null || this.#batchUsed + size > this.#batch.byteLength) {
      // Full: hand what it holds to the socket now; if the socket took it
      // all, the same (warm) buffer serves again, and a small batch is
      // enough for any burst the peer keeps up with.
      if (this.#batch !== null && this.#isSocket && this.#writeOut() && size <= this.#batch.byteLength) {
        this.#sentSinceSweep = true;
        return this.#batch;
      }
      this.#flushBatch();
      // The socket is backed up: the views it holds keep this batch; the
      // connection is a busy one: full-size batches from then on.
      this.#batchBytes = this.#batch === null ? this.#batchBytes : Math.max(this.#batchBytes, BATCH_BYTES);
      if (size > SMALL_FRAME) this.#batchBytes = BULK_BATCH_BYTES;
      this.#retire();
      this.#batch = this.#spareBatch(Math.max(this.#batchBytes, size)) ?? Buffer.allocUnsafe(Math.max(this.#batchBytes, size));
      this.#batchStart = this.#batchUsed = 0;
      watchForIdle(this);
    }
    this.#sentSinceSweep = true;
    return this.#batch;
  }

  #maybeFlushEarly(): void {
    if (this.#batchUsed - this.#batchStart >= EARLY_FLUSH_BYTES) {
      // Enough for the peer to start on: hand it over now rather than at
      // the end of the tick, so both ends work at once instead of taking
      // turns with whole batches.
      this.#writeOut();
    }
  }

  /**
   * Writes what the batch holds; true (and the batch is free to reuse from
   * its start) when the duplex is a socket and nothing stayed queued: the
   * operating system took every byte, so no write still refers to the batch.
   * (Another duplex may still hold views of what it was given, e.g. in its
   * peer's read queue, until the end of the tick.)
   */
  #writeOut(): boolean {
    this.#flushBatch();
    this.#duplex.uncork();
    this.#duplex.cork();
    if (!this.#isSocket || this.#duplex.writableLength > 0) return false;
    this.#batchStart = this.#batchUsed = 0;
    return true;
  }

  #batch: Buffer | null = null;
  #batchBytes = FIRST_BATCH_BYTES;
  #batchStart = 0;
  #batchUsed = 0;
  /** Set by every send; cleared by the idle sweep (releaseIdleSendBuffers). */
  #sentSinceSweep = false;

  /** Hands the bytes batched so far to the duplex (they stay valid: the rest of the buffer is only appended to). */
  #flushBatch(): void {
    const batch = this.#batch;
    if (batch === null || this.#batchUsed === this.#batchStart) return;
    const part = batch.subarray(this.#batchStart, this.#batchUsed);
    if (this.#isSocket && batch.byteLength >= BATCH_BYTES) {
      // A socket is done with the bytes once their write completes: then the
      // batch may serve again (see #spareBatch).
      this.#writesOf.set(batch, (this.#writesOf.get(batch) ?? 0) + 1);
      this.#duplex.write(part, () => this.#batchWritten(batch));
    } else {
      this.#duplex.write(part);
    }
    this.#batchStart = this.#batchUsed;
  }

  // Socket streams: writes still pending per batch handed out, and batches
  // whose writes have all completed, kept for reuse (given back when idle).
  #writesOf = new Map<Buffer, number>();
  #spare: Buffer[] = [];

  #batchWritten(batch: Buffer): void {
    const left = (this.#writesOf.get(batch) ?? 1) - 1;
    if (left > 0) {
      this.#writesOf.set(batch, left);
      return;
    }
    this.#writesOf.delete(batch);
    if (batch !== this.#batch && !this.#closed && this.#spare.length < SPARE_BATCHES) this.#spare.push(batch);
  }

  /** Stops using the current batch: it serves again once the socket is done with it. */
  #retire(): void {
    const batch = this.#batch;
    this.#batch = null;
    if (batch === null || this.#writesOf.has(batch)) return;
    if (this.#isSocket && batch.byteLength >= BATCH_BYTES && !this.#closed && this.#spare.length < SPARE_BATCHES) this.#spare.push(batch);
  }

  /** A finished batch of at least `size` bytes, if one is kept. */
  #spareBatch(size: number): Buffer | null {
    const spare = this.#spare;
    for (let i = spare.length - 1; i >= 0; i--) {
      const batch = spare[i]!;
      if (batch.byteLength >= size) {
        spare.splice(i, 1);
        return batch;
      }
    }
    return null;
  }

  // Throttled reading: bytes keep arriving into a bounded backlog (so the
  // peer hanging up is still noticed) but are not decoded; past the bound
  // the socket itself stops being read.
  #throttled = false;
  #backlog: Buffer[] = [];
  #backlogBytes = 0;

  pauseReading(): void {
    this.#throttled = true;
  }

  resumeReading(): void {
    if (!this.#throttled) return;
    this.#throttled = false;
    if (this.#budgetWait === undefined) this.#duplex.resume();
    while (this.#backlog.length > 0 && !this.#throttled && !this.#closed) {
      const chunk = this.#backlog.shift()!;
      this.#backlogBytes -= chunk.byteLength;
      this.#budget.release(chunk.byteLength);
      this.#decode(chunk);
    }
  }

  /** Bytes this stream holds that the peer sent but no message has been made of yet. */
  get #heldBytes(): number {
    return this.#decoder.heldBytes + this.#backlogBytes;
  }

  /**
   * Past its free allowance, a stream that finds the process's inbound
   * budget spent stops reading from its socket until bytes are given back.
   */
  #checkBudget(): void {
    if (this.#budgetWait !== undefined || this.#closed) return;
    if (this.#heldBytes <= FREE_BYTES_PER_CONNECTION) {
      this.#budget.endOverdraft(this);
      return;
    }
    if (!this.#budget.exhausted || this.#budget.mayOverdraw(this)) return;
    this.#duplex.pause();
    this.#budgetWait = this.#budget.waitForRoom(() => {
      this.#budgetWait = undefined;
      if (!this.#closed && !this.#throttled) this.#duplex.resume();
    });
  }

  #releaseInbound(): void {
    this.#budgetWait?.();
    this.#budgetWait = undefined;
    this.#budget.endOverdraft(this);
    this.#decoder.dispose();
    if (this.#backlogBytes > 0) this.#budget.release(this.#backlogBytes);
    this.#backlog = [];
    this.#backlogBytes = 0;
  }

  close(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    if (error !== undefined && this.#error === undefined) this.#error = asError(error);
    this.#endWriting();
  }

  // Flush and end our side; keep reading (discarding) so the peer's end of
  // stream can arrive and the duplex can close.
  #endWriting(): void {
    this.#startReading();
    this.#duplex.resume();
    this.#flushBatch();
    this.#corked = false; // end() uncorks
    const duplex = this.#duplex;
    if (!duplex.writableEnded && !duplex.destroyed) duplex.end();
    if (this.#closeTimer === undefined && !duplex.destroyed) {
      this.#closeTimer = setTimeout(() => duplex.destroy(), this.#closeTimeoutMs);
      this.#closeTimer.unref();
    }
  }

  #startReading(): void {
    if (this.#reading) return;
    this.#reading = true;
    const duplex = this.#duplex;
    // Later reads come in place; what the socket already holds (read before
    // this stream existed) flows as 'data' on the next tick, before any of them.
    if (inPlaceReaders.has(duplex)) inPlaceReaders.set(duplex, this.#handleInPlace);
    duplex.on("data", this.#handleData);
  }

  /** A read in the socket's reused buffer: decoded now; whatever must wait is copied. */
  #handleInPlace = (chunk: Buffer): void => {
    if (this.#closed) return;
    if (this.#throttled || this.#backlog.length > 0) {
      this.#handleData(Buffer.from(chunk));
      return;
    }
    this.#decode(chunk, true);
  };

  #uncork = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.#flushBatch();
    this.#duplex.uncork();
    // Nothing left queued means the operating system took every byte, so the
    // batch buffer can be reused from its start. Otherwise the next frames
    // go after what the socket still holds. (Allocating a fresh 64 KiB buffer
    // per tick counts as external memory and drives V8 into a full GC every
    // few thousand round trips.)
    if (this.#duplex.writableLength === 0) this.#batchStart = this.#batchUsed = 0;
  };

  #deliver(message: Message): void {
    if (this.#closed) return;
    this.#onMessage(message);
  }

  #fail(error: Error): void {
    if (this.#error === undefined) this.#error = error;
    this.#closed = true;
    this.#corked = false;
    this.#duplex.destroy();
    this.#report();
  }

  #report(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#releaseInbound();
    // Whatever is still queued holds its own view of the batch.
    this.#batch = null;
    this.#spare = [];
    holdingBatch.delete(this);
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    const error = this.#error;
    queueMicrotask(() => this.onClose(error));
  }

  #handleData = (chunk: Buffer | string): void => {
    if (this.#closed) return;
    if (typeof chunk === "string") {
      this.#fail(new TypeError("the duplex delivers strings; it must not have an encoding set"));
      return;
    }
    if (this.#throttled || this.#backlog.length > 0) {
      this.#backlog.push(chunk);
      this.#backlogBytes += chunk.byteLength;
      this.#budget.charge(chunk.byteLength);
      if (this.#backlogBytes >= THROTTLED_BACKLOG_BYTES) this.#duplex.pause();
      else this.#checkBudget();
      return;
    }
    this.#decode(chunk);
  };

  #decode(chunk: Buffer, transient = false): void {
    try {
      this.#decoder.push(chunk, transient);
      this.#checkBudget();
    } catch (e) {
      const error = asError(e);
      if (error instanceof FrameError && this.onFrameError) this.#failWithGoodbye(error, this.onFrameError(error));
      else this.#fail(error);
    }
  }

  /** Tells the peer why (one last message), then ends instead of resetting. */
  #failWithGoodbye(error: FrameError, last: Message | null): void {
    if (this.#error === undefined) this.#error = error;
    this.#closed = true;
    try {
      this.#flushBatch();
      if (last) for (const chunk of encodeFrame(last)) this.#duplex.write(chunk);
      if (this.#corked) {
        this.#corked = false;
        this.#duplex.uncork();
      }
      this.#duplex.end();
      const timer = setTimeout(() => this.#duplex.destroy(), 2_000);
      timer.unref();
      this.#duplex.once("close", () => clearTimeout(timer));
    } catch {
      this.#duplex.destroy();
    }
    this.#report();
  }

  #handleEnd = (): void => {
    if (!this.#closed && this.#backlog.length > 0) {
      // The peer hung up while its work was throttled: what it sent after
      // that can no longer be answered usefully. Drop it and end cleanly.
      this.#budget.release(this.#backlogBytes);
      this.#backlog = [];
      this.#backlogBytes = 0;
      this.#closed = true;
    }
    if (!this.#closed) {
      try {
        this.#decoder.end();
      } catch (e) {
        const error = asError(e);
        // The peer half-closed mid-frame; it may still read our reason.
        if (error instanceof FrameError && this.onFrameError) this.#failWithGoodbye(error, this.onFrameError(error));
        else this.#fail(error);
        return;
      }
      this.#closed = true;
    }
    this.#endWriting();
  };

  #handleError = (error: Error): void => {
    this.#fail(error);
  };

  #handleClose = (): void => {
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    if (!this.#closed) {
      // Destroyed without an end of stream or an error of its own.
      this.#closed = true;
      if (this.#error === undefined) {
        this.#error = this.#decoder.midFrame
          ? new FrameError("truncated", `the connection to ${this.remoteAddress} was closed in the middle of a frame`)
          : new Error(`the connection to ${this.remoteAddress} was closed abruptly (no end of stream)`);
      }
    }
    this.#report();
  };

  #handleDrain = (): void => {
    this.onDrain?.();
  };
}

/**
 * Wraps a byte Duplex (a net.Socket, or any other duplex in binary mode that
 * emits 'close' once finished, as Node streams do by default).
 */
export function streamFromDuplex(
  duplex: Duplex,
  limits?: Partial<TransportLimits>,
  options: StreamOptions = {},
): MessageStream {
  return new DuplexMessageStream(duplex, resolveLimits(limits), options);
}

// ---------------------------------------------------------------------------
// In-memory pair, for tests of the RPC state machine.

type Delivery =
  | { kind: "frame"; chunks: Uint8Array[]; bytes: number }
  | { kind: "end" }
  | { kind: "reset" };

class MemoryMessageStream implements MessageStream {
  readonly remoteAddress: string;
  onClose: (error: Error | undefined) => void = () => {};
  onDrain: (() => void) | undefined = undefined;
  onFrameError: ((error: FrameError) => Message | null) | undefined = undefined;
  peer!: MemoryMessageStream;

  readonly #decoder: FrameDecoder;
  #onMessage: (message: Message) => void = noMessageHandler;
  #reading = false;
  #inbox: Delivery[] = [];
  #closed = false;
  #error: Error | undefined;
  #reported = false;
  #inFlight = 0;

  constructor(limits: TransportLimits, name: string) {
    this.remoteAddress = name;
    this.#decoder = new FrameDecoder(limits, (m) => {
      if (!this.#closed) this.#onMessage(m);
    });
  }

  get onMessage(): (message: Message) => void {
    return this.#onMessage;
  }

  set onMessage(handler: (message: Message) => void) {
    this.#onMessage = handler;
    if (!this.#reading) {
      this.#reading = true;
      if (this.#inbox.length > 0) queueMicrotask(() => this.#drainInbox());
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  get bufferedBytes(): number {
    return this.#inFlight;
  }

  send(message: Message): void {
    if (this.#closed) return;
    const chunks = encodeFrame(message);
    let bytes = 0;
    for (const c of chunks) bytes += c.byteLength;
    this.#inFlight += bytes;
    this.#post({ kind: "frame", chunks, bytes });
  }

  #paused = false;

  pauseReading(): void {
    this.#paused = true;
  }

  resumeReading(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#reading) this.#drainInbox();
  }

  sendFrame(frame: Uint8Array): void {
    if (this.#closed) return;
    const copy = frame.slice();
    this.#inFlight += copy.byteLength;
    this.#post({ kind: "frame", chunks: [copy], bytes: copy.byteLength });
  }

  close(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    if (error !== undefined && this.#error === undefined) this.#error = asError(error);
    this.#post({ kind: "end" });
    // Report after everything queued so far has been delivered.
    queueMicrotask(() => this.#report());
  }

  #post(d: Delivery): void {
    const peer = this.peer;
    queueMicrotask(() => {
      if (d.kind === "frame") {
        this.#inFlight -= d.bytes;
        if (this.#inFlight === 0) this.onDrain?.();
      }
      peer.#accept(d);
    });
  }

  // Deliveries that arrive before onMessage is set wait in the inbox; while
  // it is not empty, later ones queue behind them to keep the order.
  #accept(d: Delivery): void {
    if (this.#reading && !this.#paused && this.#inbox.length === 0) this.#receive(d);
    else this.#inbox.push(d);
  }

  #drainInbox(): void {
    while (this.#inbox.length > 0 && !this.#paused) this.#receive(this.#inbox.shift()!);
  }

  #receive(d: Delivery): void {
    if (d.kind === "reset") {
      this.#fail(new Error(`connection reset by peer (${this.remoteAddress})`), false);
      return;
    }
    if (d.kind === "end") {
      if (this.#closed) {
        this.#report();
        return;
      }
      try {
        this.#decoder.end();
      } catch (e) {
        this.#fail(asError(e), true);
        return;
      }
      this.#closed = true;
      this.#post({ kind: "end" });
      this.#report();
      return;
    }
    if (this.#closed) return;
    try {
      for (const chunk of d.chunks) this.#decoder.push(chunk);
    } catch (e) {
      this.#fail(asError(e), true);
    }
  }

  #fail(error: Error, resetPeer: boolean): void {
    if (this.#error === undefined) this.#error = error;
    this.#closed = true;
    if (resetPeer) this.#post({ kind: "reset" });
    this.#report();
  }

  #report(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#decoder.dispose();
    const error = this.#error;
    queueMicrotask(() => this.onClose(error));
  }
}

/**
 * Two connected in-memory streams. Every message goes through encodeFrame
 * and a FrameDecoder (so framing and limits are exercised) and is delivered
 * asynchronously (microtasks), in order. close() on one side ends the other
 * cleanly after delivering what was sent before it; a decode error or a
 * throwing onMessage on one side resets the other.
 */
export function memoryStreamPair(limits?: Partial<TransportLimits>): [MessageStream, MessageStream] {
  const resolved = resolveLimits(limits);
  const a = new MemoryMessageStream(resolved, "memory:b");
  const b = new MemoryMessageStream(resolved, "memory:a");
  a.peer = b;
  b.peer = a;
  return [a, b];
}

// box-stream: Secure Scuttlebutt's encrypted framing after the secret handshake.
//
// Each box on the wire is a 34-byte header, secretbox(bodyLength u16 BE ||
// bodyMac 16 bytes) under nonce n, then the body ciphertext (at most 4096
// bytes) whose MAC is the one in the header, under nonce n + 1. The next box
// starts at n + 2. Nonces are 24-byte big-endian counters that start at the
// values the handshake gives. A header boxing 18 zero bytes ("goodbye") ends
// the stream. Any box that fails to open is an attack or a fault: the stream
// is destroyed with a BoxStreamError naming it.

import { Socket } from "node:net";
import { Duplex } from "node:stream";
import { MAC_LENGTH as MAC, secretBox as defaultSecretBox, type SecretBox } from "./secretbox.js";
import type { BoxStreamKeys } from "./shs1.js";

export type { BoxStreamKeys } from "./shs1.js";

/** Largest body of one box. */
export const MAX_BOX_BODY = 4096;
/** Size of a boxed header (and of the goodbye). */
export const BOX_HEADER_LENGTH = 34;

const HEADER_PLAIN = 18;
/** How far back and ahead a header that fails to open is tried, to name the fault. */
const DIAGNOSE_WINDOW = 64;

export type BoxStreamFault =
  /** A header or body failed authentication: modified data (or a wrong key). */
  | "TAMPERED"
  /** A box that was already received came again. */
  | "REPLAYED"
  /** A later box came in place of the expected one: reordered or dropped boxes. */
  | "REORDERED"
  /** The stream ended without the goodbye. */
  | "TRUNCATED"
  /** An authentic header announced a body over 4096 bytes. */
  | "BODY_TOO_LONG"
  /** Bytes followed the goodbye. */
  | "DATA_AFTER_GOODBYE"
  /** The underlying connection failed. */
  | "TRANSPORT";

/** A box-stream fault; `code` says which. */
export class BoxStreamError extends Error {
  readonly code: BoxStreamFault;
  /** Index (from 0) of the box concerned, where there is one. */
  readonly boxIndex: number | undefined;
  constructor(code: BoxStreamFault, message: string, options?: { boxIndex?: number; cause?: unknown }) {
    super(`box-stream: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BoxStreamError";
    this.code = code;
    this.boxIndex = options?.boxIndex;
  }
}

function checkKey(bytes: Uint8Array, name: string, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new TypeError(`box-stream: ${name} must be ${length} bytes`);
  }
}

/** Adds one to a 24-byte big-endian counter, in place. */
function increment(nonce: Uint8Array): void {
  for (let i = nonce.length - 1; i >= 0; i--) {
    nonce[i] = (nonce[i]! + 1) & 0xff;
    if (nonce[i] !== 0) return;
  }
}

const NONCE_MOD = 1n << 192n;

function nonceToBig(nonce: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(nonce).toString("hex")}`);
}

function bigToNonce(value: bigint): Uint8Array {
  const wrapped = ((value % NONCE_MOD) + NONCE_MOD) % NONCE_MOD;
  return new Uint8Array(Buffer.from(wrapped.toString(16).padStart(48, "0"), "hex"));
}

/**
 * Turns plaintext into boxes. Stateful: each call continues the nonce
 * sequence. After `goodbye()` it refuses more.
 */
export class BoxEncoder {
  readonly #key: Uint8Array;
  readonly #nonce: Uint8Array;
  readonly #bodyNonce = new Uint8Array(24);
  #ended = false;

  readonly #cipher: SecretBox;

  /** `cipher` chooses the secretbox implementation (tests compare them). */
  constructor(key: Uint8Array, nonce: Uint8Array, cipher: SecretBox = defaultSecretBox) {
    checkKey(key, "key", 32);
    checkKey(nonce, "nonce", 24);
    this.#key = new Uint8Array(key);
    this.#nonce = new Uint8Array(nonce);
    this.#cipher = cipher;
  }

  /** True once the goodbye was produced. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * The boxes carrying the concatenation of `chunks`, as one buffer: bodies
   * of 4096 bytes and a shorter last one. Empty input gives an empty buffer.
   * With `into` large enough, the boxes are a view of its start.
   */
  encode(chunks: readonly Uint8Array[], into?: Buffer): Buffer {
    if (this.#ended) throw new Error("box-stream: cannot encode after goodbye");
    let total = 0;
    for (const chunk of chunks) total += chunk.length;
    if (total === 0) return Buffer.alloc(0);
    const count = Math.ceil(total / MAX_BOX_BODY);
    const size = count * BOX_HEADER_LENGTH + total;
    // `into`, when given and large enough: the boxes are written at its start.
    const out = into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);

    // Lay the plaintext out in the body slots, then encrypt each in place.
    let chunkIndex = 0;
    let chunkOffset = 0;
    let position = 0;
    let remaining = total;
    for (let box = 0; box < count; box++) {
      const length = Math.min(MAX_BOX_BODY, remaining);
      const body = position + BOX_HEADER_LENGTH;
      let filled = 0;
      while (filled < length) {
        const chunk = chunks[chunkIndex]!;
        const take = Math.min(length - filled, chunk.length - chunkOffset);
        out.set(take === chunk.length ? chunk : chunk.subarray(chunkOffset, chunkOffset + take), body + filled);
        filled += take;
        chunkOffset += take;
        if (chunkOffset === chunk.length) {
          chunkIndex++;
          chunkOffset = 0;
        }
      }
      this.#seal(out, position, length);
      position = body + length;
      remaining -= length;
    }
    return out;
  }

  /**
   * Encrypts the box at `start` whose plaintext body already sits after its
   * header slot. The header slot is MAC || boxed (length, body MAC): the
   * body's MAC is written straight into the header's plaintext, which is
   * then sealed where it lies.
   */
  #seal(out: Buffer, start: number, length: number): void {
    const headerPlain = start + MAC;
    const body = start + BOX_HEADER_LENGTH;
    this.#bodyNonce.set(this.#nonce);
    increment(this.#bodyNonce);
    this.#cipher.seal(out.subarray(body, body + length), out.subarray(headerPlain + 2, body), this.#bodyNonce, this.#key);
    out[headerPlain] = length >>> 8;
    out[headerPlain + 1] = length & 0xff;
    this.#cipher.seal(out.subarray(headerPlain, body), out.subarray(start, headerPlain), this.#nonce, this.#key);
    increment(this.#nonce);
    increment(this.#nonce);
  }

  /** The goodbye box; ends the encoder. */
  goodbye(): Buffer {
    if (this.#ended) throw new Error("box-stream: goodbye already sent");
    this.#ended = true;
    const out = Buffer.alloc(BOX_HEADER_LENGTH);
    this.#cipher.seal(out.subarray(MAC), out.subarray(0, MAC), this.#nonce, this.#key);
    return out;
  }
}

/**
 * Opens boxes. Feed it bytes as they come (any split); it hands over the
 * plaintext of each box as soon as the box is complete and authentic, and
 * throws a BoxStreamError at the first fault (after handing over the boxes
 * before it).
 */
export class BoxDecoder {
  readonly #key: Uint8Array;
  readonly #nonce: Uint8Array;
  readonly #bodyNonce = new Uint8Array(24);
  readonly #headerPlain = new Uint8Array(HEADER_PLAIN);
  readonly #tag = new Uint8Array(MAC);
  /** Body length of a header already opened whose body has not fully arrived, or -1. */
  #bodyLength = -1;
  #pending: Buffer | undefined;
  #boxes = 0;
  #ended = false;
  #failed: BoxStreamError | undefined;

  readonly #cipher: SecretBox;

  /** `cipher` chooses the secretbox implementation (tests compare them). */
  constructor(key: Uint8Array, nonce: Uint8Array, cipher: SecretBox = defaultSecretBox) {
    checkKey(key, "key", 32);
    checkKey(nonce, "nonce", 24);
    this.#key = new Uint8Array(key);
    this.#nonce = new Uint8Array(nonce);
    this.#cipher = cipher;
  }

  /** True once the goodbye was received. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Boxes opened so far (the goodbye not counted). */
  get boxes(): number {
    return this.#boxes;
  }

  /** Bytes received that do not yet make a complete box. */
  get pendingBytes(): number {
    return (this.#pending?.length ?? 0) + (this.#bodyLength >= 0 ? BOX_HEADER_LENGTH : 0);
  }

  /** Passes `deliver` the plaintext of each box `chunk` completes (empty bodies omitted). */
  update(chunk: Uint8Array, deliver: (plaintext: Buffer) => void): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (chunk.length === 0) return;
    if (this.#ended) {
      return this.#fail(new BoxStreamError("DATA_AFTER_GOODBYE", `${chunk.length} bytes arrived after the goodbye`, { boxIndex: this.#boxes }));
    }
    const input = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const data = this.#pending === undefined ? input : Buffer.concat([this.#pending, input]);
    this.#pending = undefined;
    let offset = 0;
    for (;;) {
      if (this.#bodyLength < 0) {
        if (data.length - offset < BOX_HEADER_LENGTH) break;
        const length = this.#openHeader(data.subarray(offset, offset + BOX_HEADER_LENGTH));
        offset += BOX_HEADER_LENGTH;
        if (length < 0) {
          this.#ended = true;
          if (offset < data.length) {
            return this.#fail(
              new BoxStreamError("DATA_AFTER_GOODBYE", `${data.length - offset} bytes followed the goodbye`, { boxIndex: this.#boxes }),
            );
          }
          return;
        }
        this.#bodyLength = length;
      }
      const length = this.#bodyLength;
      if (data.length - offset < length) break;
      const plain = this.#openBody(data.subarray(offset, offset + length));
      offset += length;
      this.#bodyLength = -1;
      this.#boxes++;
      increment(this.#nonce);
      increment(this.#nonce);
      if (plain.length > 0) deliver(plain);
    }
    if (offset < data.length) this.#pending = data.subarray(offset);
  }

  /**
   * As update(), but the boxes `chunk` completes are opened in `chunk` itself
   * (its bytes are overwritten: for a caller that owns a fresh buffer, such
   * as a socket's read), and their plaintext is delivered as one view of it
   * (the bodies moved together), not a copy per box: no allocation per box,
   * which fed the allocator's high-water mark during bulk traffic. A box
   * begun in an earlier chunk is joined in a buffer of its own.
   */
  updateInPlace(chunk: Buffer, deliver: (plaintext: Buffer) => void): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (chunk.length === 0) return;
    if (this.#ended || this.#pending !== undefined) {
      // Finish the box begun earlier the copying way, then go on in place.
      const need = this.#pending === undefined ? chunk.length : this.#bytesToFinishBox(chunk.length);
      this.update(chunk.subarray(0, need), deliver);
      if (need === chunk.length || this.#ended) {
        if (need < chunk.length) this.update(chunk.subarray(need), deliver); // after the goodbye: fails
        return;
      }
      chunk = chunk.subarray(need);
    }
    let offset = 0;
    let from = -1;
    let to = -1;
    const flush = (): void => {
      if (to > from) deliver(chunk.subarray(from, to));
      from = to = -1;
    };
    try {
      for (;;) {
        if (this.#bodyLength < 0) {
          if (chunk.length - offset < BOX_HEADER_LENGTH) break;
          const length = this.#openHeader(chunk.subarray(offset, offset + BOX_HEADER_LENGTH));
          offset += BOX_HEADER_LENGTH;
          if (length < 0) {
            this.#ended = true;
            flush();
            if (offset < chunk.length) {
              this.#fail(
                new BoxStreamError("DATA_AFTER_GOODBYE", `${chunk.length - offset} bytes followed the goodbye`, { boxIndex: this.#boxes }),
              );
            }
            return;
          }
          this.#bodyLength = length;
        }
        const length = this.#bodyLength;
        if (chunk.length - offset < length) break;
        const body = chunk.subarray(offset, offset + length);
        this.#bodyNonce.set(this.#nonce);
        increment(this.#bodyNonce);
        if (!this.#cipher.open(body, this.#tag, this.#bodyNonce, this.#key)) {
          this.#fail(
            new BoxStreamError("TAMPERED", `the body of box #${this.#boxes} failed authentication: the data was modified in transit`, {
              boxIndex: this.#boxes,
            }),
          );
        }
        if (from < 0) {
          from = offset;
          to = offset + length;
        } else {
          chunk.copyWithin(to, offset, offset + length);
          to += length;
        }
        offset += length;
        this.#bodyLength = -1;
        this.#boxes++;
        increment(this.#nonce);
        increment(this.#nonce);
      }
    } catch (error) {
      flush(); // the boxes before the fault are handed over first
      throw error;
    }
    flush();
    if (offset < chunk.length) this.#pending = chunk.subarray(offset);
  }

  /** Bytes of the next `available` that complete the pending header, or the pending body. */
  #bytesToFinishBox(available: number): number {
    const have = this.#pending?.length ?? 0;
    // A partial header is completed alone: its body, if whole in what follows, is then opened in place.
    return Math.min(available, this.#bodyLength >= 0 ? this.#bodyLength - have : BOX_HEADER_LENGTH - have);
  }

  /**
   * The input has ended: throws a TRUNCATED BoxStreamError unless the goodbye
   * was received. `what` starts the message ("the connection closed").
   */
  end(what = "the stream ended"): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#ended) return;
    const partial = this.pendingBytes;
    this.#fail(
      new BoxStreamError(
        "TRUNCATED",
        `${what} without a goodbye after ${this.#boxes} boxes` +
          (partial > 0 ? `, in the middle of a box (${partial} bytes of it received)` : "") +
          ": truncated by the peer or an attacker",
        { boxIndex: this.#boxes },
      ),
    );
  }

  #fail(error: BoxStreamError): never {
    this.#failed = error;
    this.#pending = undefined;
    throw error;
  }

  /** Opens a header: the body length, or -1 for the goodbye. Throws on a fault. */
  #openHeader(boxed: Uint8Array): number {
    const plain = this.#headerPlain;
    plain.set(boxed.subarray(MAC));
    if (!this.#cipher.open(plain, boxed.subarray(0, MAC), this.#nonce, this.#key)) return this.#fail(this.#diagnose(boxed));
    let zero = true;
    for (let i = 0; i < HEADER_PLAIN; i++) {
      if (plain[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) return -1;
    const length = (plain[0]! << 8) | plain[1]!;
    if (length > MAX_BOX_BODY) {
      return this.#fail(
        new BoxStreamError("BODY_TOO_LONG", `box #${this.#boxes} announces a ${length}-byte body, over the ${MAX_BOX_BODY}-byte limit`, {
          boxIndex: this.#boxes,
        }),
      );
    }
    this.#tag.set(plain.subarray(2, HEADER_PLAIN));
    return length;
  }

  #openBody(ciphertext: Uint8Array): Buffer {
    // Decrypted in a copy: the caller's bytes stay as they were.
    const plain = Buffer.from(ciphertext);
    this.#bodyNonce.set(this.#nonce);
    increment(this.#bodyNonce);
    if (!this.#cipher.open(plain, this.#tag, this.#bodyNonce, this.#key)) {
      return this.#fail(
        new BoxStreamError("TAMPERED", `the body of box #${this.#boxes} failed authentication: the data was modified in transit`, {
          boxIndex: this.#boxes,
        }),
      );
    }
    return plain;
  }

  /** Names the fault of a header that does not open under the expected nonce. */
  #diagnose(boxed: Uint8Array): BoxStreamError {
    const index = this.#boxes;
    const expected = nonceToBig(this.#nonce);
    const opens = (delta: bigint): boolean =>
      this.#cipher.open(boxed.slice(MAC), boxed.subarray(0, MAC), bigToNonce(expected + delta), this.#key);
    for (let k = 1; k <= DIAGNOSE_WINDOW; k++) {
      if (k <= index && opens(BigInt(-2 * k))) {
        return new BoxStreamError("REPLAYED", `box #${index} is a replay of box #${index - k}, already received`, { boxIndex: index });
      }
      if (opens(BigInt(2 * k))) {
        return new BoxStreamError(
          "REORDERED",
          `box #${index + k} arrived in place of box #${index}: boxes were reordered or dropped`,
          { boxIndex: index },
        );
      }
    }
    return new BoxStreamError(
      "TAMPERED",
      `the header of box #${index} failed authentication: the data was modified in transit (or the keys do not match)`,
      { boxIndex: index },
    );
  }
}

export interface BoxStreamOptions {
  /**
   * Keep our writable side open after the peer's goodbye (Node's Duplex
   * option). Default false: the peer's goodbye ends our side too, sending ours.
   */
  allowHalfOpen?: boolean;
  /** Readable and writable high-water marks in bytes. Default 64 KiB. */
  highWaterMark?: number;
}

/** Pending plaintext is encrypted and written at once past this many bytes. */
const FLUSH_BYTES = 64 * 1024;
/**
 * Output buffers shared by the process's box-streams over sockets, each large
 * enough for the boxes of a FLUSH_BYTES batch and a frame header or two: a
 * fresh buffer per write made garbage the size of the traffic, and the C
 * allocator kept much of what it grew for it after a burst (issue 12).
 */
const OUTPUT_SLAB_BYTES = 80 * 1024;
const OUTPUT_SLABS = 4;
/** Batches this large or larger (and that fit) are boxed into a slab; smaller ones into a buffer of their own, from Node's pool. */
const SLAB_MIN_BYTES = 16 * 1024;
const outputSlabs: Buffer[] = [];

/**
 * Wraps a connected duplex (after the handshake) in box-stream: what is
 * written is encrypted, what is read is decrypted. Writes made in the same
 * tick are batched into full boxes and one write to the socket. `end()` sends
 * the goodbye; the socket itself is ended once both goodbyes have passed.
 * Any fault destroys the returned stream (and the socket) with a
 * BoxStreamError.
 */
export function boxStream(socket: Duplex, keys: BoxStreamKeys, options: BoxStreamOptions = {}): Duplex {
  return new BoxStream(socket, keys, options);
}

type Callback = (error?: Error | null) => void;

class BoxStream extends Duplex {
  readonly #socket: Duplex;
  readonly #encoder: BoxEncoder;
  readonly #decoder: BoxDecoder;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;
  /** A write callback held until the socket drains. */
  #held: Callback | undefined;
  #socketPaused = false;
  #goodbyeSent = false;
  #goodbyeReceived = false;
  #detached = false;
  /** Reads are decrypted where they arrived (see BoxDecoder.updateInPlace). */
  readonly #inPlace: boolean;

  readonly #onData = (chunk: Buffer): void => this.#receive(chunk);
  readonly #onEnd = (): void => this.#receiveEnd("the connection ended");
  readonly #onClose = (): void => this.#receiveEnd("the connection closed");
  readonly #onError = (error: Error): void => {
    if (this.#goodbyeSent && this.#goodbyeReceived) return;
    this.destroy(new BoxStreamError("TRANSPORT", `the connection failed: ${error.message}`, { boxIndex: this.#decoder.boxes, cause: error }));
  };
  readonly #onDrain = (): void => {
    const held = this.#held;
    if (held === undefined) return;
    this.#held = undefined;
    if (this.#pendingBytes > 0 && !this.#flush()) {
      this.#held = held;
      return;
    }
    held();
  };

  constructor(socket: Duplex, keys: BoxStreamKeys, options: BoxStreamOptions) {
    const highWaterMark = options.highWaterMark ?? 64 * 1024;
    super({
      allowHalfOpen: options.allowHalfOpen ?? false,
      readableHighWaterMark: highWaterMark,
      writableHighWaterMark: highWaterMark,
    });
    this.#socket = socket;
    this.#inPlace = socket instanceof Socket;
    this.#encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
    this.#decoder = new BoxDecoder(keys.decryptKey, keys.decryptNonce);
    // The goodbyes end the session, not the transport's half-close: keep the
    // socket writable after the peer's FIN so our goodbye can still go out.
    if ("allowHalfOpen" in socket) (socket as { allowHalfOpen: boolean }).allowHalfOpen = true;
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
    socket.on("drain", this.#onDrain);
    if (socket.destroyed) {
      process.nextTick(() => this.#receiveEnd("the connection was already closed"));
    } else if (socket.isPaused()) {
      socket.resume();
    }
  }

  // --- reading

  #receive(chunk: Buffer): void {
    if (this.destroyed) return;
    let more = true;
    const deliver = (plaintext: Buffer): void => {
      more = this.push(plaintext);
    };
    try {
      // A net socket's reads are fresh buffers nobody else holds: opened in place.
      if (this.#inPlace) this.#decoder.updateInPlace(chunk, deliver);
      else this.#decoder.update(chunk, deliver);
    } catch (error) {
      this.destroy(error as Error);
      return;
    }
    if (this.#decoder.ended && !this.#goodbyeReceived) {
      this.#goodbyeReceived = true;
      this.push(null);
      this.#maybeEndSocket();
    } else if (!more && !this.#socketPaused) {
      this.#socketPaused = true;
      this.#socket.pause();
    }
  }

  #receiveEnd(what: string): void {
    if (this.destroyed || this.#goodbyeReceived) return;
    try {
      this.#decoder.end(what);
    } catch (error) {
      this.destroy(error as Error);
    }
  }

  override _read(): void {
    if (this.#socketPaused) {
      this.#socketPaused = false;
      this.#socket.resume();
    }
  }

  // --- writing

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#queue([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: Callback): void {
    this.#queue(
      chunks.map((entry) => entry.chunk),
      callback,
    );
  }

  /**
   * Takes chunks and, unless the socket is saturated, acknowledges them at
   * once so that the further writes of this tick come too: the batch is
   * encrypted and written on the next tick, or at once past FLUSH_BYTES.
   * A chunk acknowledged before it is encrypted is copied first, since its
   * writer may reuse it after the callback.
   */
  #queue(chunks: readonly Buffer[], callback: Callback): void {
    const first = this.#pending.length;
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
    }
    if (this.#socket.writableNeedDrain) {
      // Acknowledged only after the drain, once encrypted: no copy needed.
      this.#held = callback;
      return;
    }
    if (this.#pendingBytes >= FLUSH_BYTES) {
      if (this.#flush()) callback();
      else this.#held = callback;
      return;
    }
    for (let i = first; i < this.#pending.length; i++) this.#pending[i] = Buffer.from(this.#pending[i]!);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(() => {
        this.#flushScheduled = false;
        if (!this.destroyed) this.#flush();
      });
    }
    callback();
  }

  /** Encrypts and writes what is pending; false if the socket wants us to wait for drain. */
  #flush(): boolean {
    if (this.#pendingBytes === 0) return !this.#socket.writableNeedDrain;
    const chunks = this.#pending;
    const bytes = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    // On a socket, a large batch of up to FLUSH_BYTES (most) is boxed into a
    // process-wide output buffer, taken back once the socket has written it.
    const boxed = bytes + Math.ceil(bytes / MAX_BOX_BODY) * BOX_HEADER_LENGTH;
    const slab =
      this.#inPlace && bytes >= SLAB_MIN_BYTES && boxed <= OUTPUT_SLAB_BYTES ? (outputSlabs.pop() ?? Buffer.allocUnsafeSlow(OUTPUT_SLAB_BYTES)) : undefined;
    let boxes: Buffer;
    try {
      boxes = this.#encoder.encode(chunks, slab);
    } catch (error) {
      if (slab !== undefined && outputSlabs.length < OUTPUT_SLABS) outputSlabs.push(slab);
      this.destroy(error as Error);
      return true;
    }
    if (slab === undefined) return this.#socket.write(boxes);
    // Back to the pool once written (a failed write's callback comes too; a
    // slab whose callback never comes is left to the collector).
    return this.#socket.write(boxes, () => {
      if (outputSlabs.length < OUTPUT_SLABS) outputSlabs.push(slab);
    });
  }

  override _final(callback: Callback): void {
    this.#flush();
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) {
      // The peer said goodbye and closed the connection: nothing to tell it.
      if (this.#goodbyeReceived) {
        this.#goodbyeSent = true;
        callback();
      } else {
        callback(new BoxStreamError("TRANSPORT", "cannot send the goodbye: the connection is closed"));
      }
      return;
    }
    socket.write(this.#encoder.goodbye(), (error) => {
      if (error) {
        callback(new BoxStreamError("TRANSPORT", `sending the goodbye failed: ${error.message}`, { cause: error }));
        return;
      }
      this.#goodbyeSent = true;
      this.#maybeEndSocket();
      callback();
    });
  }

  /**
   * Both goodbyes have passed: nothing more may come either way. End the
   * socket, and close it once our last bytes are flushed (a peer that never
   * closes its side must not keep it open).
   */
  #maybeEndSocket(): void {
    const socket = this.#socket;
    if (this.#goodbyeSent && this.#goodbyeReceived && !socket.writableEnded) {
      socket.end(() => socket.destroy());
    }
  }

  // --- teardown

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#detach();
    const held = this.#held;
    this.#held = undefined;
    this.#pending = [];
    this.#pendingBytes = 0;
    const clean = error === null && this.#goodbyeSent && this.#goodbyeReceived;
    if (!clean) this.#socket.destroy();
    held?.(error ?? new Error("box-stream: destroyed before this write was sent"));
    callback(error);
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    const socket = this.#socket;
    socket.off("data", this.#onData);
    socket.off("end", this.#onEnd);
    socket.off("close", this.#onClose);
    socket.off("error", this.#onError);
    socket.off("drain", this.#onDrain);
    // Late errors of a socket we no longer watch (a reset while closing)
    // must not go unhandled.
    socket.on("error", ignore);
  }
}

function ignore(): void {}

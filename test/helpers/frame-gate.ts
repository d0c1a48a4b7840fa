// A test-only relay for one link between two capmesh vats: it listens on a
// unix socket of its own and, for every connection it accepts, dials the
// real listener and passes bytes both ways. Unix links are authenticated by
// the secret handshake but not encrypted after it, so past the handshake
// bytes (passed untouched) the gate cuts each direction into Cap'n Proto
// frames with the project's FrameDecoder, logs what each rpc message is
// (read with our wire readers), and can hold a direction's frames and let
// them go later, in order. Multi-process tests use it to see and order what
// travels on a link they do not own (a plugin's hub link, a host's direct
// address) without sleeps.
import { rmSync } from "node:fs";
import * as net from "node:net";
import type { Pointer } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { noCaps, readPointer } from "../../src/codec/runtime.js";
import { ThirdPartyCompletion$codec, type ThirdPartyCompletion } from "../../src/gen/network.js";
import { CLIENT_AUTH_LENGTH, CLIENT_HELLO_LENGTH, SERVER_ACCEPT_LENGTH, SERVER_HELLO_LENGTH } from "../../src/auth/shs1.js";
import { descriptorFrom, readIncoming, targetFrom, type WireDescriptor, type WireTarget } from "../../src/rpc/wire.js";
import { toAddress } from "../../src/transport/address.js";
import { FrameDecoder, frameSize, type InboundMessage } from "../../src/transport/framing.js";
import { InboundBudget } from "../../src/transport/inbound-budget.js";
import { listenSocket, type SocketListener } from "../../src/transport/socket.js";

/** toTarget: from the dialler to the real listener; fromTarget: back. */
export type GateDirection = "toTarget" | "fromTarget";

const DIRECTIONS: readonly GateDirection[] = ["toTarget", "fromTarget"];

/** shs1 bytes each side sends before the rpc stream: hello + client auth, hello + server accept. */
export const HANDSHAKE_BYTES: Readonly<Record<GateDirection, number>> = {
  toTarget: CLIENT_HELLO_LENGTH + CLIENT_AUTH_LENGTH,
  fromTarget: SERVER_HELLO_LENGTH + SERVER_ACCEPT_LENGTH,
};

/** rpc.capnp Message union tags (v2 numbering), by name. */
const KINDS = [
  "unimplemented",
  "abort",
  "call",
  "return",
  "finish",
  "resolve",
  "release",
  "obsoleteSave",
  "bootstrap",
  "obsoleteDelete",
  "provide",
  "accept",
  "join",
  "disembargo",
  "thirdPartyAnswer",
] as const;

/** What the gate saw: an rpc message kind, or bytes it could not read as one. */
export type FrameKind = (typeof KINDS)[number] | "unknown" | "malformed";

const RETURN_KINDS = ["results", "exception", "canceled", "resultsSentElsewhere", "takeFromOtherQuestion", "awaitFromThirdParty"] as const;
export type ReturnKind = (typeof RETURN_KINDS)[number] | "unknown";

/** One frame (or, after a framing error, the rest of a direction's bytes) that reached the gate. */
export interface FrameEntry {
  /** Its index in `gate.log`. */
  readonly seq: number;
  readonly dir: GateDirection;
  /** The relayed connection, numbered from 1 in the order accepted. */
  readonly conn: number;
  readonly kind: FrameKind;
  /** The frame's size on the wire, header included. */
  readonly bytes: number;
  /** Call, Finish, Bootstrap, Provide, Accept. */
  readonly questionId?: number;
  /** Return. */
  readonly answerId?: number;
  /** Call. */
  readonly interfaceId?: bigint;
  readonly methodId?: number;
  /** Call, Provide, Disembargo. */
  readonly target?: WireTarget;
  /** Return: which union member. */
  readonly returnKind?: ReturnKind;
  /** The reason of a Return's or Resolve's exception, or of an Abort. */
  readonly reason?: string;
  /** Descriptor kinds of a Call's params, a Return's results, or a Resolve's cap. */
  readonly descriptors?: readonly WireDescriptor["kind"][];
  /** True when `descriptors` holds a thirdPartyHosted one. */
  readonly thirdPartyHosted: boolean;
  /** Resolve. */
  readonly promiseId?: number;
  /** Release: the import ID and count. */
  readonly id?: number;
  readonly referenceCount?: number;
  /** Finish. */
  readonly releaseResultCaps?: boolean;
  /** Disembargo: which context. */
  readonly context?: "senderLoopback" | "receiverLoopback" | "accept" | "other";
  /** Disembargo: the loopback embargo ID, or the accept's embargo bytes in hex. */
  readonly embargoId?: number | string;
  /** Accept: the embargo bytes in hex, or null for none. */
  readonly embargo?: string | null;
  /** Accept: its ThirdPartyCompletion as sent (null when absent or unreadable), e.g. to replay it. */
  readonly completion?: ThirdPartyCompletion | null;
  /** Unimplemented: the kind of the message echoed. */
  readonly echoed?: FrameKind;
  /** malformed: what went wrong. */
  readonly error?: string;
  /** passed at once; held (still queued); released (held, then passed); dropped (held when the gate closed). */
  state: "passed" | "held" | "released" | "dropped";
}

export type FramePredicate = (entry: FrameEntry) => boolean;

export interface FrameGateOptions {
  /** The real listener: `unix:/path` (or `tcp://host:port`). */
  target: string;
  /** Directory for the gate's own socket. */
  dir: string;
  /** File name of the gate's socket in `dir` (default a fresh random one). */
  name?: string;
  /** Pass the shs1 handshake before parsing frames (default true); false for plain Cap'n Proto links. */
  handshake?: boolean;
}

/** Byte and frame counts of one direction. */
export interface DirectionCounters {
  /** Bytes that arrived at the gate. */
  received: number;
  /** Bytes written on to the other side (handshake included). */
  forwarded: number;
  /** Frames logged. */
  frames: number;
  /** Frames queued now. */
  held: number;
}

/**
 * Lets new connections through only once `n` have arrived, across every
 * gate it is given to (two vats dialling each other through two gates).
 * One use: connections after the n-th pass at once.
 */
export class ConnectionBarrier {
  #waiting: (() => void)[] = [];
  #arrived = 0;
  constructor(readonly n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`a connection barrier needs a positive whole number of connections, got ${n}`);
  }

  /** Connections that have arrived so far. */
  get arrived(): number {
    return this.#arrived;
  }

  /** True once n connections arrived and were let go. */
  get open(): boolean {
    return this.#arrived >= this.n;
  }

  /** Starts `go` now if the barrier is open, else when the n-th connection arrives. */
  arrive(go: () => void): void {
    this.#arrived++;
    if (this.#arrived < this.n) {
      this.#waiting.push(go);
      return;
    }
    const all = [...this.#waiting.splice(0), go];
    for (const start of all) start();
  }

  /** Drops the waiting connections' starts (the gates are closing). */
  cancel(): void {
    this.#waiting.length = 0;
  }
}

interface Queued {
  readonly relay: Relay;
  readonly dir: GateDirection;
  readonly bytes: Uint8Array;
  readonly entry: FrameEntry;
}

type Mode = { kind: "pass" } | { kind: "hold" } | { kind: "holdAfter"; predicate: FramePredicate };

interface Waiter {
  readonly predicate: FramePredicate;
  readonly after: number;
  readonly resolve: (entry: FrameEntry) => void;
  readonly reject: (error: Error) => void;
}

export class FrameGate {
  /** Every frame seen, both directions, in the order it reached the gate. */
  readonly log: FrameEntry[] = [];
  /** Problems relaying (a failed dial of the target, framing errors). */
  readonly errors: string[] = [];
  readonly #counters: Record<GateDirection, DirectionCounters> = {
    toTarget: { received: 0, forwarded: 0, frames: 0, held: 0 },
    fromTarget: { received: 0, forwarded: 0, frames: 0, held: 0 },
  };
  readonly #modes: Record<GateDirection, Mode> = { toTarget: { kind: "pass" }, fromTarget: { kind: "pass" } };
  readonly #queues: Record<GateDirection, Queued[]> = { toTarget: [], fromTarget: [] };
  readonly #relays = new Set<Relay>();
  readonly #waiters = new Set<Waiter>();
  readonly #barriers = new Set<ConnectionBarrier>();
  #barrier: ConnectionBarrier | null = null;
  #accepted = 0;
  #closed = false;
  #listener!: SocketListener;

  private constructor(
    /** The gate's own address, `unix:...`: dial this instead of the target. */
    readonly address: string,
    readonly target: string,
    private readonly path: string,
    readonly handshake: boolean,
  ) {}

  static async start(options: FrameGateOptions): Promise<FrameGate> {
    toAddress(options.target); // fails early on a malformed target
    const name = options.name ?? `gate-${Math.random().toString(36).slice(2, 10)}.sock`;
    const path = `${options.dir.replace(/\/+$/, "")}/${name}`;
    const gate = new FrameGate(`unix:${path}`, options.target, path, options.handshake ?? true);
    gate.#listener = await listenSocket(gate.address, (socket) => gate.#accept(socket));
    return gate;
  }

  /** A barrier several gates can share: see holdConnections. */
  static barrier(n: number): ConnectionBarrier {
    return new ConnectionBarrier(n);
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.#accepted;
  }

  /** Connections waiting at a holdConnections barrier. */
  get waitingConnections(): number {
    let n = 0;
    for (const r of this.#relays) if (!r.started) n++;
    return n;
  }

  /** Bytes forwarded per direction (handshake included). */
  get bytes(): Readonly<Record<GateDirection, number>> {
    return { toTarget: this.#counters.toTarget.forwarded, fromTarget: this.#counters.fromTarget.forwarded };
  }

  /** A snapshot of one direction's counts. */
  counters(dir: GateDirection): DirectionCounters {
    return { ...this.#counters[dir], held: this.#queues[dir].length };
  }

  /** The frames of `dir` queued now, in order. */
  held(dir: GateDirection): FrameEntry[] {
    return this.#queues[dir].map((q) => q.entry);
  }

  /** Queues every later frame of `dir` (all connections) until release(dir). The handshake still passes. */
  hold(dir: GateDirection): void {
    this.#modes[checkDir(dir)] = { kind: "hold" };
  }

  /** Passes frames of `dir` until one matches `predicate` (it passes too), then holds everything after it. */
  holdAfter(dir: GateDirection, predicate: FramePredicate): void {
    this.#modes[checkDir(dir)] = { kind: "holdAfter", predicate };
  }

  /** Sends what `dir` holds, in order, and passes its frames from then on. */
  release(dir: GateDirection): void {
    this.#modes[checkDir(dir)] = { kind: "pass" };
    const queue = this.#queues[dir].splice(0);
    for (const q of queue) {
      q.entry.state = "released";
      this.#forward(q.relay, q.dir, q.bytes);
    }
    for (const relay of new Set(queue.map((q) => q.relay))) relay.endIfDrained(dir);
  }

  /**
   * Discards what `dir` holds (frames lost in flight, as when a link dies)
   * and passes its frames from then on; an end or close that waited behind
   * them goes through now.
   */
  drop(dir: GateDirection): void {
    this.#modes[checkDir(dir)] = { kind: "pass" };
    const queue = this.#queues[dir].splice(0);
    for (const q of queue) q.entry.state = "dropped";
    for (const relay of new Set(queue.map((q) => q.relay))) relay.endIfDrained(dir, true);
  }

  /**
   * Keeps new connections (handshake included) un-relayed until `n` have
   * arrived, then lets them all go. Given a ConnectionBarrier instead, the
   * count is shared with the other gates it was given to.
   */
  holdConnections(n: number | ConnectionBarrier): ConnectionBarrier {
    const barrier = typeof n === "number" ? new ConnectionBarrier(n) : n;
    this.#barrier = barrier;
    this.#barriers.add(barrier);
    return barrier;
  }

  /**
   * The first log entry (from index `after`, default 0) that matches,
   * already logged or yet to come. Rejects after `timeoutMs` (default
   * 10 000) naming `what` and what the gate saw, or when the gate closes.
   */
  waitFor(predicate: FramePredicate, options: { timeoutMs?: number; what?: string; after?: number } = {}): Promise<FrameEntry> {
    const after = options.after ?? 0;
    const what = options.what ?? "a matching frame";
    const found = this.log.find((e) => e.seq >= after && predicate(e));
    if (found) return Promise.resolve(found);
    if (this.#closed) return Promise.reject(new Error(`frame gate ${this.address} is closed; never saw ${what}. ${this.summary()}`));
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise<FrameEntry>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`frame gate: timed out after ${timeoutMs} ms waiting for ${what}. ${this.summary()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        predicate,
        after,
        resolve: (entry) => {
          clearTimeout(timer);
          resolve(entry);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** The log, one line per frame (the last `max`), for failure messages. */
  summary(max = 40): string {
    if (this.log.length === 0) return `Gate log (${this.#accepted} connections): nothing yet.`;
    const shown = this.log.slice(-max);
    const skipped = this.log.length - shown.length;
    return [
      `Gate log (${this.#accepted} connections, ${this.log.length} frames${skipped > 0 ? `, first ${skipped} left out` : ""}):`,
      ...shown.map((e) => `  ${describeEntry(e)}`),
    ].join("\n");
  }

  /** Stops listening, closes every relayed socket, removes the socket file. Held frames are dropped. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const b of this.#barriers) b.cancel();
    for (const dir of DIRECTIONS) for (const q of this.#queues[dir].splice(0)) q.entry.state = "dropped";
    for (const relay of this.#relays) relay.destroy();
    await this.#listener.close();
    rmSync(this.path, { force: true });
    for (const w of this.#waiters) w.reject(new Error(`frame gate ${this.address} closed while waiting. ${this.summary()}`));
    this.#waiters.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------

  #accept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const relay = new Relay(this, ++this.#accepted, socket, this.handshake);
    this.#relays.add(relay);
    socket.once("close", () => this.#relays.delete(relay));
    const barrier = this.#barrier;
    if (barrier && !barrier.open) barrier.arrive(() => relay.start());
    else relay.start();
  }

  /** @internal Called by a relay: `bytes` arrived from one side. */
  noteReceived(dir: GateDirection, bytes: number): void {
    this.#counters[dir].received += bytes;
  }

  /** @internal Handshake bytes: passed untouched, never held. */
  passRaw(relay: Relay, dir: GateDirection, bytes: Uint8Array): void {
    this.#forward(relay, dir, bytes);
  }

  /** @internal A whole frame (or unreadable bytes) arrived: log it, then pass or hold it. */
  frame(relay: Relay, dir: GateDirection, bytes: Uint8Array, fields: Omit<FrameEntry, "seq" | "dir" | "conn" | "bytes" | "state">): void {
    const entry: FrameEntry = { seq: this.log.length, dir, conn: relay.id, bytes: bytes.byteLength, ...fields, state: "passed" };
    const mode = this.#modes[dir];
    let hold = mode.kind === "hold";
    if (mode.kind === "holdAfter" && safeMatch(mode.predicate, entry)) this.#modes[dir] = { kind: "hold" };
    // Once something is queued, later frames of that direction queue behind it.
    if (this.#queues[dir].length > 0) hold = true;
    entry.state = hold ? "held" : "passed";
    this.#counters[dir].frames++;
    this.log.push(entry);
    if (hold) this.#queues[dir].push({ relay, dir, bytes, entry });
    else this.#forward(relay, dir, bytes);
    for (const w of this.#waiters) {
      if (entry.seq >= w.after && safeMatch(w.predicate, entry)) {
        this.#waiters.delete(w);
        w.resolve(entry);
      }
    }
  }

  /** @internal Whether `relay` still has frames of `dir` queued. */
  holds(relay: Relay, dir: GateDirection): boolean {
    return this.#queues[dir].some((q) => q.relay === relay);
  }

  /** @internal */
  error(message: string): void {
    this.errors.push(message);
  }

  #forward(relay: Relay, dir: GateDirection, bytes: Uint8Array): void {
    if (relay.write(dir, bytes)) this.#counters[dir].forwarded += bytes.byteLength;
  }
}

/** One relayed connection: the accepted socket and the socket dialled to the target. */
class Relay {
  started = false;
  #upstream: net.Socket | null = null;
  readonly #parsers: Record<GateDirection, FrameSplitter>;
  readonly #ended: Record<GateDirection, boolean> = { toTarget: false, fromTarget: false };
  readonly #closed: Record<GateDirection, boolean> = { toTarget: false, fromTarget: false };

  constructor(
    private readonly gate: FrameGate,
    readonly id: number,
    private readonly client: net.Socket,
    handshake: boolean,
  ) {
    this.#parsers = {
      toTarget: new FrameSplitter(gate, this, "toTarget", handshake ? HANDSHAKE_BYTES.toTarget : 0),
      fromTarget: new FrameSplitter(gate, this, "fromTarget", handshake ? HANDSHAKE_BYTES.fromTarget : 0),
    };
    // Until started (a connection barrier), nothing is read from the client.
    client.pause();
  }

  start(): void {
    if (this.started || this.client.destroyed) return;
    this.started = true;
    const address = toAddress(this.gate.target);
    const upstream =
      address.kind === "unix"
        ? net.createConnection({ path: address.path, allowHalfOpen: true })
        : net.createConnection({ host: address.host, port: address.port, allowHalfOpen: true, noDelay: true });
    this.#upstream = upstream;
    upstream.on("error", (e) => {
      this.gate.error(`connection ${this.id}: the target ${this.gate.target} failed: ${e.message}`);
      this.client.destroy();
    });
    this.client.on("error", () => this.#upstream?.destroy());
    this.#pipe(this.client, "toTarget");
    this.#pipe(upstream, "fromTarget");
    this.client.resume();
  }

  #pipe(from: net.Socket, dir: GateDirection): void {
    from.on("data", (chunk: Buffer) => {
      this.gate.noteReceived(dir, chunk.byteLength);
      this.#parsers[dir].push(chunk);
    });
    from.on("end", () => {
      this.#ended[dir] = true;
      this.endIfDrained(dir);
    });
    from.on("close", () => {
      // A close without an end (reset, destroy): the other side goes too,
      // unless frames of this direction still wait to be released.
      this.#closed[dir] = true;
      if (!this.#ended[dir] && !this.gate.holds(this, dir)) this.#sink(dir)?.destroy();
    });
  }

  /** The socket frames of `dir` are written to. */
  #sink(dir: GateDirection): net.Socket | null {
    return dir === "toTarget" ? this.#upstream : this.client;
  }

  write(dir: GateDirection, bytes: Uint8Array): boolean {
    const sink = this.#sink(dir);
    if (!sink || sink.destroyed || sink.writableEnded) return false;
    sink.write(bytes);
    return true;
  }

  /** Passes on the end of `dir` once nothing of it is held (and, after a drop, a close too). */
  endIfDrained(dir: GateDirection, dropped = false): void {
    if (dropped && this.#closed[dir] && !this.#ended[dir]) {
      this.#sink(dir)?.destroy();
      return;
    }
    if (!this.#ended[dir] || this.gate.holds(this, dir)) return;
    const sink = this.#sink(dir);
    if (sink && !sink.destroyed && !sink.writableEnded) sink.end();
  }

  destroy(): void {
    this.client.destroy();
    this.#upstream?.destroy();
  }
}

/** Cuts one direction's bytes into the handshake, then whole frames. */
class FrameSplitter {
  #handshakeLeft: number;
  #failed = false;
  /** Bytes pushed to the decoder and not yet handed out as frames. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #decoder: FrameDecoder;

  constructor(
    private readonly gate: FrameGate,
    private readonly relay: Relay,
    private readonly dir: GateDirection,
    handshakeBytes: number,
  ) {
    this.#handshakeLeft = handshakeBytes;
    // Its own budget: what the gate buffers must not count against the vats in this process.
    this.#decoder = new FrameDecoder(undefined, (m) => this.#onMessage(m), new InboundBudget());
  }

  push(chunk: Buffer): void {
    if (this.#handshakeLeft > 0) {
      const take = Math.min(this.#handshakeLeft, chunk.byteLength);
      this.#handshakeLeft -= take;
      this.gate.passRaw(this.relay, this.dir, chunk.subarray(0, take));
      chunk = chunk.subarray(take);
      if (chunk.byteLength === 0) return;
    }
    if (this.#failed) {
      this.gate.frame(this.relay, this.dir, chunk, { kind: "malformed", thirdPartyHosted: false, error: "after a framing error" });
      return;
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    try {
      this.#decoder.push(chunk);
    } catch (e) {
      // Bad framing: the rest goes on as opaque bytes, so the vats see what they would have.
      this.#failed = true;
      const message = e instanceof Error ? e.message : String(e);
      this.gate.error(`connection ${this.relay.id} ${this.dir}: ${message}`);
      const rest = this.#take(this.#pendingBytes);
      if (rest.byteLength > 0) this.gate.frame(this.relay, this.dir, rest, { kind: "malformed", thirdPartyHosted: false, error: message });
    }
  }

  #onMessage(message: InboundMessage): void {
    const size = frameSize(message);
    if (size > this.#pendingBytes) throw new Error(`frame gate: a ${size}-byte frame decoded from ${this.#pendingBytes} buffered bytes`);
    this.gate.frame(this.relay, this.dir, this.#take(size), describe(message));
  }

  /** The first `n` pending bytes, as one buffer. */
  #take(n: number): Uint8Array {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.#pending[0]!;
      if (head.byteLength <= need) {
        parts.push(head);
        this.#pending.shift();
        need -= head.byteLength;
      } else {
        parts.push(head.subarray(0, need));
        this.#pending[0] = head.subarray(need);
        need = 0;
      }
    }
    this.#pendingBytes -= n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}

type Fields = Omit<FrameEntry, "seq" | "dir" | "conn" | "bytes" | "state">;

function kindName(which: number): FrameKind {
  return KINDS[which] ?? "unknown";
}

function descriptorFields(descriptors: readonly WireDescriptor[]): Pick<Fields, "descriptors" | "thirdPartyHosted"> {
  const kinds = descriptors.map((d) => d.kind);
  return { descriptors: kinds, thirdPartyHosted: kinds.includes("thirdPartyHosted") };
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

/** What an rpc message is, read with the engine's own wire readers (capnp-es for the rare kinds). */
function describe(message: InboundMessage): Fields {
  try {
    const m = readIncoming(message, Number.MAX_SAFE_INTEGER, true);
    switch (m.kind) {
      case "call":
        return {
          kind: "call",
          questionId: m.questionId,
          interfaceId: m.interfaceId,
          methodId: m.methodId,
          target: m.target,
          ...descriptorFields(m.params.capTable),
        };
      case "return":
        return {
          kind: "return",
          answerId: m.answerId,
          returnKind: RETURN_KINDS[m.which] ?? "unknown",
          ...(m.exception ? { reason: m.exception.reason } : {}),
          ...descriptorFields(m.results?.capTable ?? []),
        };
      case "finish":
        return { kind: "finish", questionId: m.questionId, releaseResultCaps: m.releaseResultCaps, thirdPartyHosted: false };
      case "release":
        return { kind: "release", id: m.id, referenceCount: m.referenceCount, thirdPartyHosted: false };
      case "provide":
        return { kind: "provide", questionId: m.questionId, target: m.target, thirdPartyHosted: false };
      case "accept":
        return {
          kind: "accept",
          questionId: m.questionId,
          embargo: m.embargo === null ? null : hex(m.embargo),
          completion: completionOf(m.provision),
          thirdPartyHosted: false,
        };
      case "disembargo-accept":
        return { kind: "disembargo", context: "accept", target: m.target, embargoId: hex(m.embargoId), thirdPartyHosted: false };
      case "other":
        return describeOther(message.getRoot(rpc.Message), m.which);
    }
  } catch (e) {
    return { kind: "malformed", thirdPartyHosted: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/** An Accept's completion, copied out of the frame. */
function completionOf(provision: Pointer | null): ThirdPartyCompletion | null {
  if (provision === null) return null;
  try {
    const c = readPointer(ThirdPartyCompletion$codec, provision, noCaps);
    return { introducer: c.introducer.slice(), host: c.host.slice(), nonce: c.nonce.slice(), addresses: [...c.addresses] };
  } catch {
    return null;
  }
}

function describeOther(root: rpc.Message, which: number): Fields {
  const kind = kindName(which);
  switch (which) {
    case rpc.Message.BOOTSTRAP:
      return { kind, questionId: root.bootstrap.questionId, thirdPartyHosted: false };
    case rpc.Message.ABORT:
      return { kind, reason: root.abort.reason, thirdPartyHosted: false };
    case rpc.Message.UNIMPLEMENTED: {
      const echoed = root.unimplemented;
      return { kind, echoed: kindName(echoed.which()), thirdPartyHosted: false };
    }
    case rpc.Message.RESOLVE: {
      const r = root.resolve;
      if (r._isException) return { kind, promiseId: r.promiseId, reason: r.exception.reason, thirdPartyHosted: false };
      return { kind, promiseId: r.promiseId, ...descriptorFields([descriptorFrom(r.cap)]) };
    }
    case rpc.Message.DISEMBARGO: {
      // Level 1 contexts (the accept context was read by readIncoming).
      const d = root.disembargo;
      const target = targetFrom(d.target);
      const c = d.context;
      if (c._isSenderLoopback) return { kind, target, context: "senderLoopback", embargoId: c.senderLoopback, thirdPartyHosted: false };
      if (c._isReceiverLoopback) return { kind, target, context: "receiverLoopback", embargoId: c.receiverLoopback, thirdPartyHosted: false };
      return { kind, target, context: "other", thirdPartyHosted: false };
    }
    default:
      return { kind, thirdPartyHosted: false };
  }
}

function safeMatch(predicate: FramePredicate, entry: FrameEntry): boolean {
  try {
    return predicate(entry);
  } catch {
    return false;
  }
}

function checkDir(dir: GateDirection): GateDirection {
  if (dir !== "toTarget" && dir !== "fromTarget") throw new TypeError(`a gate direction is "toTarget" or "fromTarget", got ${String(dir)}`);
  return dir;
}

function targetText(t: WireTarget | undefined): string {
  if (!t) return "";
  if (t.promisedAnswer) return ` -> answer ${t.promisedAnswer.questionId}${t.promisedAnswer.transform.length ? `.${t.promisedAnswer.transform.join(".")}` : ""}`;
  return ` -> import ${t.importedCap}`;
}

/** One line for a log entry, e.g. `#3 c1 toTarget call q2 0xd7e3...:0 -> import 0 (64 B)`. */
export function describeEntry(e: FrameEntry): string {
  const parts = [`#${e.seq} c${e.conn} ${e.dir} ${e.kind}`];
  if (e.questionId !== undefined) parts.push(` q${e.questionId}`);
  if (e.answerId !== undefined) parts.push(` a${e.answerId} ${e.returnKind}`);
  if (e.interfaceId !== undefined) parts.push(` 0x${e.interfaceId.toString(16)}:${e.methodId}`);
  if (e.promiseId !== undefined) parts.push(` promise ${e.promiseId}`);
  if (e.id !== undefined) parts.push(` id ${e.id} x${e.referenceCount}`);
  if (e.context !== undefined) parts.push(` ${e.context}${e.embargoId !== undefined ? ` ${e.embargoId}` : ""}`);
  if (e.embargo !== undefined) parts.push(` embargo ${e.embargo ?? "none"}`);
  if (e.echoed !== undefined) parts.push(` of ${e.echoed}`);
  parts.push(targetText(e.target));
  if (e.descriptors && e.descriptors.length > 0) parts.push(` [${e.descriptors.join(", ")}]`);
  if (e.reason !== undefined) parts.push(` "${e.reason}"`);
  if (e.error !== undefined) parts.push(` (${e.error})`);
  parts.push(` ${e.bytes} B`);
  if (e.state !== "passed") parts.push(` ${e.state}`);
  return parts.join("");
}

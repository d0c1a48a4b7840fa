// A hand-driven rpc peer for the bad-input tests: a plain net.Socket that
// writes whatever bytes or rpc messages a test builds, and decodes what the
// server sends back with our own FrameDecoder. It follows no protocol rules
// on its own.
import * as net from "node:net";
import { Message, ObjectSize, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { initStructIn, readStructIn } from "../../../src/rpc/payload.js";
import { FrameDecoder } from "../../../src/transport/framing.js";

/** Rejects with a descriptive error if `promise` takes longer than `ms` (a failure guard, not synchronisation). */
export function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === "string" ? what : what()}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Waits for `condition`, giving the event loop up to `turns` setImmediate turns. */
export async function until(condition: () => boolean, what: string | (() => string), turns = 5000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (!condition()) {
    throw new Error(`condition not reached after ${turns} event-loop turns: ${typeof what === "string" ? what : what()}`);
  }
}

/**
 * Polls `condition` every few ms until it holds, or fails after `ms` saying
 * what it waited for: for state that other processes change.
 */
export async function eventually(condition: () => boolean, what: string | (() => string), ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Deterministic bytes (mulberry32). */
export function seededBytes(seed: number, length: number): Uint8Array {
  let a = seed >>> 0;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/** A frame header (standard framing) for segments of the given sizes in words. */
export function frameHeader(segmentWords: number[], countField = segmentWords.length - 1): Uint8Array {
  const words = Math.floor(segmentWords.length / 2) + 1;
  const header = new Uint8Array(words * 8);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, countField >>> 0, true);
  segmentWords.forEach((w, i) => dv.setUint32(4 + 4 * i, w >>> 0, true));
  return header;
}

/** Builds an rpc message and returns it in standard framed form. */
export function rpcBytes(build: (root: rpc.Message, message: Message) => void): Uint8Array {
  const message = new Message();
  const root = message.initRoot(rpc.Message);
  build(root, message);
  return new Uint8Array(message.toArrayBuffer());
}

export const COUNTER_ID = 0xd7e3f1a0b2c4e6f8n;
export const ADD = 0;
export const ECHO = 2;
export const HANG = 4;

/** Fills a Call to Counter.add(delta) on export `target`. */
export function fillAddCall(root: rpc.Message, questionId: number, target: number, delta: bigint): void {
  const call = root._initCall();
  call.questionId = questionId;
  call.target.importedCap = target;
  call.interfaceId = COUNTER_ID;
  call.methodId = ADD;
  const s = initStructIn(call._initParams().content, new ObjectSize(8, 0));
  utils.setInt64(0, delta, s);
}

/** Fills a Call with empty params. */
export function fillEmptyCall(root: rpc.Message, questionId: number, target: number, methodId: number): rpc.Call {
  const call = root._initCall();
  call.questionId = questionId;
  call.target.importedCap = target;
  call.interfaceId = COUNTER_ID;
  call.methodId = methodId;
  initStructIn(call._initParams().content, new ObjectSize(0, 0));
  return call;
}

/** Reads the Int64 at data word 0 of a Return's results struct (add's `value`). */
export function resultInt64(ret: rpc.Return): bigint {
  return utils.getInt64(0, readStructIn(ret.results.content));
}

export function describeMessage(m: rpc.Message): string {
  const which = m.which();
  switch (which) {
    case rpc.Message.ABORT:
      return `Abort(${m.abort.reason})`;
    case rpc.Message.RETURN: {
      const r = m.return;
      const kind = r.which();
      return kind === rpc.Return.EXCEPTION ? `Return#${r.answerId}(exception: ${r.exception.reason})` : `Return#${r.answerId}(${kind})`;
    }
    case rpc.Message.UNIMPLEMENTED:
      return `Unimplemented(${m.unimplemented.which()})`;
    default:
      return `message ${which}`;
  }
}

/**
 * The messages a raw test peer received, and waiting for one: `next(match)`
 * takes the first not yet taken that matches, now or when it arrives.
 */
export abstract class MessageInbox {
  readonly received: rpc.Message[] = [];
  isClosed = false;
  private waiters: { match: (m: rpc.Message) => boolean; resolve: (m: rpc.Message) => void; reject: (e: Error) => void }[] = [];
  private readonly consumed = new Set<rpc.Message>();

  /** The first received message (not yet taken) that matches; waits for it. */
  next(match: (m: rpc.Message) => boolean, what = "a message"): Promise<rpc.Message> {
    const found = this.received.find((m) => !this.consumed.has(m) && match(m));
    if (found) {
      this.consumed.add(found);
      return Promise.resolve(found);
    }
    if (this.isClosed) {
      return Promise.reject(new Error(`connection closed before ${what}; received: ${this.summary()}`));
    }
    return within(
      new Promise((resolve, reject) => this.waiters.push({ match, resolve, reject })),
      10_000,
      () => `${what}; received so far: ${this.summary()}`,
    );
  }

  returnFor(questionId: number): Promise<rpc.Return> {
    return this.next((m) => m._isReturn && m.return.answerId === questionId, `Return for question ${questionId}`).then(
      (m) => m.return,
    );
  }

  summary(): string {
    return this.received.length === 0 ? "(nothing)" : this.received.map(describeMessage).join(", ");
  }

  /** Files a message that arrived, handing it to a waiter that wants it. */
  protected deliver(m: rpc.Message): void {
    this.received.push(m);
    const i = this.waiters.findIndex((w) => w.match(m));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      this.consumed.add(m);
      w!.resolve(m);
    }
  }

  /** The connection ended: waiters fail, saying `why` and what came. */
  protected ended(why: string): void {
    this.isClosed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`${why}; received so far: ${this.summary()}`));
  }
}

export class RawPeer extends MessageInbox {
  /** Resolves when the socket has closed (for whatever reason). */
  readonly closed: Promise<void>;
  /** Set if what the server sent could not be decoded (must never happen). */
  decodeError: Error | null = null;
  /** True once the server ended its side of the stream. */
  sawEnd = false;
  private readonly decoder = new FrameDecoder(undefined, (m) => this.deliver(m.getRoot(rpc.Message)));

  private constructor(readonly socket: net.Socket) {
    super();
    // Resets are expected when the server destroys a socket it still had
    // unread input on.
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (e) {
        this.decodeError ??= e as Error;
      }
    });
    socket.on("end", () => (this.sawEnd = true));
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.ended("the server closed the connection");
        resolve();
      }),
    );
  }

  static connect(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawPeer(socket));
      });
    });
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  send(build: (root: rpc.Message, message: Message) => void): void {
    this.write(rpcBytes(build));
  }

  /** Bootstrap by hand: returns the export ID of the server's bootstrap capability. */
  async bootstrap(questionId: number): Promise<number> {
    this.send((root) => (root._initBootstrap().questionId = questionId));
    const ret = await this.returnFor(questionId);
    if (!ret._isResults) throw new Error(`bootstrap failed: ${ret._isException ? ret.exception.reason : ret.which()}`);
    const descriptor = ret.results.capTable.get(0);
    if (!descriptor._isSenderHosted) throw new Error(`bootstrap cap is not senderHosted (${descriptor.which()})`);
    return descriptor.senderHosted;
  }

  /** Calls add(delta) on `target`, returns the value, sends Finish. */
  async add(questionId: number, target: number, delta: bigint): Promise<bigint> {
    this.send((root) => fillAddCall(root, questionId, target, delta));
    const ret = await this.returnFor(questionId);
    this.finish(questionId);
    if (!ret._isResults) throw new Error(`add failed: ${ret._isException ? ret.exception.reason : ret.which()}`);
    return resultInt64(ret);
  }

  finish(questionId: number, releaseResultCaps = true): void {
    this.send((root) => {
      const f = root._initFinish();
      f.questionId = questionId;
      f.releaseResultCaps = releaseResultCaps;
    });
  }

  /** Waits for the server to close the connection; returns the Abort reasons it sent. */
  async serverCloses(): Promise<string[]> {
    await within(this.closed, 10_000, `the server to close the connection; received: ${this.summary()}`);
    return this.received.filter((m) => m._isAbort).map((m) => m.abort.reason);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

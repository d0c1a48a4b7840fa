// Shared helpers for the transport tests.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Message, ObjectSize, Struct, utils } from "capnp-es";
import type { MessageStream } from "../../src/transport/index.js";

/** A test struct: one u64 (seq) and four pointers (Data payloads / child). */
export class TestStruct extends Struct {
  static override readonly _capnp = {
    displayName: "TestStruct",
    id: "a1b2c3d4e5f60718",
    size: new ObjectSize(8, 4),
  };
}

// capnp-es does not export its multi-segment arena; borrow the class from a
// message it parsed itself (as the framing module does).
const probe = new Message(new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), false);
const MultiSegmentArena = (probe._capnp.arena as object).constructor as new (buffers: ArrayBuffer[]) => object;

/** A fresh message whose big allocations spill into new segments. */
export function newMultiSegmentMessage(): Message {
  return new Message(new MultiSegmentArena([]) as ConstructorParameters<typeof Message>[0]);
}

export function fillPattern(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + seed) & 0xff;
}

export function checkPattern(bytes: Uint8Array, seed: number): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== ((i * 31 + seed) & 0xff)) return false;
  return true;
}

/**
 * A message carrying `seq` and payloads of the given sizes (pointer i holds
 * payload i, filled with a pattern seeded by seq + i).
 */
export function makeMessage(seq: number, payloads: number[] = [], multiSegment = false): Message {
  const m = multiSegment ? newMultiSegmentMessage() : new Message();
  const root = m.initRoot(TestStruct);
  utils.setUint64(0, BigInt(seq), root);
  payloads.forEach((size, i) => {
    const d = utils.initData(i, size, root);
    fillPattern(d.toUint8Array(), seq + i);
  });
  return m;
}

export interface Decoded {
  seq: number;
  payloads: Uint8Array[];
}

export function readMessage(m: Message, payloadCount = 0): Decoded {
  const root = m.getRoot(TestStruct);
  const seq = Number(utils.getUint64(0, root));
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < payloadCount; i++) payloads.push(utils.getData(i, root).toUint8Array());
  return { seq, payloads };
}

export { concatBytes as concat } from "../../src/transport/bytes.js";

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function makeTempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "capmesh-transport-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Records what a stream delivers, with promises to wait on. */
export class Recorder {
  readonly messages: Message[] = [];
  closeError: Error | undefined | null = null; // null: not closed yet
  closeCount = 0;
  #waiters: { n: number; resolve: () => void }[] = [];
  #closeWaiters: ((e: Error | undefined) => void)[] = [];

  constructor(
    readonly stream: MessageStream,
    onMessage?: (m: Message) => void,
  ) {
    stream.onMessage = (m) => {
      onMessage?.(m);
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (this.messages.length >= w.n) {
          w.resolve();
          return false;
        }
        return true;
      });
    };
    stream.onClose = (e) => {
      this.closeCount++;
      this.closeError = e;
      for (const w of this.#closeWaiters) w(e);
      this.#closeWaiters = [];
    };
  }

  waitFor(n: number): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  closed(): Promise<Error | undefined> {
    if (this.closeError !== null) return Promise.resolve(this.closeError);
    return new Promise((resolve) => this.#closeWaiters.push(resolve));
  }
}

export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

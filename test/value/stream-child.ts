// A plugin process for test/value/streams.test.ts: joins the hub named by
// the CAPMESH_* environment as argv[2] and serves a closure whose answers
// are records holding streams (a Node Readable of bytes and an async
// generator of values, which toValue serves as a ByteSource and a
// ValueSource), with the stream window fixed at 1 MiB so that the bounds
// the test checks are exact. Its calls:
//   ("record", size, count)  { sha256, bytes: size seeded bytes, values: count items {i, square} }
//   ("endless")              { bytes, values }: both endless, counting what they produce
//   ("fail")                 { bytes, values }: each fails after a little data (code EDRY)
//   ("status")               { bytes, values, finished }: produced so far, and the streams finished
//   ("consume", record)      reads record.bytes and record.values (streams the caller sent) to
//                            their ends: { sha256, size, items }
//   ("consume-some", record, n)  reads n items of record.values, then stops reading both
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { closure, joinMesh, setStreamWindow, type StreamReader } from "../../src/index.js";

const name = process.argv[2]!;
setStreamWindow(1024 * 1024);

/** size bytes, the same for the same seed, in 64 KiB chunks. */
function* seeded(size: number, seed: number): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let at = 0; at < size; at += 65536) {
    const chunk = Buffer.allocUnsafe(Math.min(65536, size - at));
    for (let i = 0; i < chunk.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk[i] = x & 0xff;
    }
    yield chunk;
  }
}

const produced = { bytes: 0, values: 0 };
const finished: string[] = [];

async function* endlessBytes() {
  try {
    for (;;) {
      const chunk = Buffer.alloc(65536, produced.bytes & 0xff);
      produced.bytes += chunk.length;
      yield chunk;
    }
  } finally {
    finished.push("bytes");
  }
}

async function* endlessValues() {
  try {
    for (let i = 0; ; i++) {
      produced.values++;
      yield { i, text: `item ${i}` };
    }
  } finally {
    finished.push("values");
  }
}

async function* failing<T>(items: T[]) {
  yield* items;
  throw Object.assign(new Error("the well ran dry"), { code: "EDRY" });
}

async function* squares(count: number) {
  for (let i = 0; i < count; i++) yield { i, square: i * i };
}

const serve = closure(async (op: unknown, a?: unknown, b?: unknown) => {
  switch (op) {
    case "record": {
      const size = a as number;
      const hash = createHash("sha256");
      for (const chunk of seeded(size, 7)) hash.update(chunk);
      // A byte-mode Readable: toValue makes it a byte stream.
      return { sha256: hash.digest("hex"), bytes: Readable.from(seeded(size, 7), { objectMode: false }), values: squares(b as number) };
    }
    case "endless":
      return { bytes: Readable.from(endlessBytes(), { objectMode: false }), values: endlessValues() };
    case "fail":
      return {
        bytes: Readable.from(failing([Buffer.alloc(1000, 1), Buffer.alloc(1000, 2)]), { objectMode: false }),
        values: failing([1, 2, 3]),
      };
    case "status":
      return { ...produced, finished };
    case "consume": {
      const record = a as { bytes: StreamReader<Uint8Array>; values: StreamReader<unknown> };
      const hash = createHash("sha256");
      let size = 0;
      const items: unknown[] = [];
      await Promise.all([
        (async () => {
          for await (const chunk of record.bytes) (size += chunk.length), hash.update(chunk);
        })(),
        (async () => {
          for await (const item of record.values) items.push(item);
        })(),
      ]);
      return { kinds: [record.bytes.kind, record.values.kind], sha256: hash.digest("hex"), size, items };
    }
    case "consume-some": {
      const record = a as { bytes: StreamReader<Uint8Array>; values: StreamReader<unknown> };
      const items: unknown[] = [];
      for await (const item of record.values) if (items.push(item) === b) break;
      record.bytes.cancel();
      return items;
    }
  }
  throw new Error(`stream-child: unknown op ${String(op)}`);
});

const peer = await joinMesh({ name, provide: serve, handleSignals: true });
console.log(`registered ${name} as ${peer.id}`);

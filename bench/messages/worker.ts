// capmesh's side of the message benchmark: builds and reads one shape with the
// generated codecs (shapes.ts) over src/codec/runtime.ts, the way a capmesh
// user does, and prints timings in the protocol of peers/cpp/message-bench.c++:
//
//   node --expose-gc --import tsx bench/messages/worker.ts <shape> <count> <repeat> [<seconds>]
//
// {"ready":true,…} once set up, then {"start":op,"rep":R} and {"op":op,"rep":R,"ns":N,…}
// for the reads, "presized" builds (into one segment allocated up front: no
// growth) and then the builds: at least <repeat> runs of each, more (up
// to 10 × <repeat>) while they add up to under 0.5 s, and none after they add
// up to more than <seconds>. The runner (run.ts) kills this
// process when one run takes longer than its limit: a build cannot be
// interrupted from inside.
//
// build = writeMessage(codec, plain object) + message.toArrayBuffer() (the bytes
//         one would send), from objects made beforehand.
// read  = new Message(bytes, false) with a large traversal limit, then
//         readMessage(codec, message): every field decoded into plain objects
//         (Data stays a view of the message's buffer).
// The garbage of the previous run is collected before each run, outside the
// clock; the time GC pauses took during a run is reported beside it (gcNs).
import { PerformanceObserver, performance } from "node:perf_hooks";
import { Message, Pointer } from "capnp-es";
import { noCaps, readMessage, writeMessage, writePointer, type Codec, type Init } from "../../src/codec/runtime.js";
import { countFor, SHAPES, type Shape } from "./params.js";
import { Blob$codec, Node$codec, Words$codec, type Blob, type Node, type Words } from "./shapes.js";

/** Read budget handed to each message (bytes; capnp-es's default is 64 MiB, less than the largest message). */
const TRAVERSAL_LIMIT = 2 ** 31;

function line(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function check(ok: boolean, what: string): void {
  if (!ok) fail(`check failed: ${what}`);
}

const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => fail("run with node --expose-gc"));

// ---------------------------------------------------------------- shapes

interface Case<T> {
  codec: Codec<T>;
  /** Makes the plain object to build from (a new one each call). */
  make(): Init<T>;
  /** Room for the message, to build the read input without any growth. */
  bytesEstimate: number;
  /** Checks a decoded value; `full` also sums every element. */
  verify(out: T, full: boolean): void;
}

const blobByte = (i: number): number => (i * 7 + 3) & 0xff;

function blobCase(count: number): Case<Blob> {
  return {
    codec: Blob$codec,
    make() {
      const data = new Uint8Array(count);
      for (let i = 0; i < count; i++) data[i] = blobByte(i);
      return { data };
    },
    bytesEstimate: count + 64,
    verify(out, full) {
      check(out.data.length === count, "blob size");
      if (count > 0) check(out.data[count - 1] === blobByte(count - 1), "blob's last byte");
      if (full) for (let i = 0; i < count; i++) if (out.data[i] !== blobByte(i)) check(false, "blob bytes");
    },
  };
}

function wordsCase(count: number): Case<Words> {
  return {
    codec: Words$codec,
    make() {
      const values = new Array<bigint>(count);
      for (let i = 0; i < count; i++) values[i] = BigInt(i);
      return { values };
    },
    bytesEstimate: count * 8 + 64,
    verify(out, full) {
      check(out.values.length === count, "words count");
      if (count > 0) check(out.values[count - 1] === BigInt(count - 1), "last word");
      if (full) {
        let sum = 0n;
        for (const v of out.values) sum += v;
        check(sum === (BigInt(count) * BigInt(count - 1)) / 2n, "words sum");
      }
    },
  };
}

function treeCase(count: number): Case<Node> {
  if (count < 1 || count > 0xffffff) fail("tree node count between 1 and 2^24 - 1");
  return {
    codec: Node$codec,
    make() {
      // Bottom up: node i's children are 4i+1 … 4i+4; leaves have no children list.
      const nodes = new Array<Init<Node>>(count);
      for (let i = count - 1; i >= 0; i--) {
        const node: { id: number; value: number; name: string; children?: Init<Node>[] } = {
          id: i,
          value: i * 0.5,
          name: "n" + i.toString(16).padStart(6, "0"),
        };
        const first = i * 4 + 1;
        if (first < count) node.children = nodes.slice(first, Math.min(first + 4, count));
        nodes[i] = node;
      }
      return nodes[0]!;
    },
    bytesEstimate: count * 48 + 4096,
    verify(out, full) {
      check(out.id === 0 && out.children.length === Math.min(4, count - 1), "tree root");
      if (!full) return;
      let n = 0;
      let ids = 0;
      let values = 0;
      const stack: Node[] = [out];
      while (stack.length > 0) {
        const node = stack.pop()!;
        n++;
        ids += node.id;
        values += node.value;
        check(node.name.length === 7, "node name");
        for (const c of node.children) stack.push(c);
      }
      check(n === count, "tree node count");
      check(ids === (count * (count - 1)) / 2, "tree id sum");
      check(values === (count * (count - 1)) / 4, "tree value sum");
    },
  };
}

function makeCase(shape: Shape, count: number): Case<unknown> {
  switch (shape) {
    case "blob":
      return blobCase(count) as Case<unknown>;
    case "words":
      return wordsCase(count) as Case<unknown>;
    case "tree":
      return treeCase(count) as Case<unknown>;
  }
}

// ---------------------------------------------------------------- operations

/**
 * The message's bytes, built into one segment allocated up front: linear
 * whatever the state of capmesh's own growth, so that reads can be measured
 * even where building is too slow to wait for. The layout is the one
 * writeMessage makes (same allocation order, one segment).
 */
function presizedBytes<T>(c: Case<T>, value: Init<T>): ArrayBuffer {
  const message = new Message(new ArrayBuffer((c.bytesEstimate + 7) & ~7), false, true);
  const segment = message.getSegment(0);
  segment.byteLength = 8; // the root pointer
  writePointer(c.codec, value, new Pointer(segment, 0), noCaps);
  return message.toArrayBuffer();
}

function read<T>(c: Case<T>, bytes: ArrayBuffer): T {
  const message = new Message(bytes, false);
  message._capnp.traversalLimit = TRAVERSAL_LIMIT;
  return readMessage(c.codec, message);
}

function build<T>(c: Case<T>, value: Init<T>): { bytes: ArrayBuffer; segments: number } {
  const message = writeMessage(c.codec, value);
  return { bytes: message.toArrayBuffer(), segments: message._capnp.segments.length };
}

// GC pauses, from V8's "gc" performance entries (delivered a moment after the fact).
const pauses: { start: number; end: number }[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pauses.push({ start: e.startTime, end: e.startTime + e.duration });
}).observe({ entryTypes: ["gc"] });

/** Runs `fn` on the clock; also says how much of that time went to GC pauses. */
async function timed<R>(fn: () => R): Promise<{ result: R; ns: number; gcNs: number }> {
  pauses.length = 0;
  const start = performance.now();
  const t0 = process.hrtime.bigint();
  const result = fn();
  const ns = Number(process.hrtime.bigint() - t0);
  const end = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 5));
  let gcMs = 0;
  for (const p of pauses) gcMs += Math.max(0, Math.min(p.end, end) - Math.max(p.start, start));
  return { result, ns, gcNs: Math.round(gcMs * 1e6) };
}

async function main(): Promise<void> {
  const [shapeArg, countArg, repeatArg, secondsArg] = process.argv.slice(2);
  const shape = shapeArg as Shape;
  if (!SHAPES.includes(shape)) fail(`usage: worker.ts ${SHAPES.join("|")} <count> <repeat> [<seconds>]`);
  const count = Number(countArg);
  const repeat = Number(repeatArg);
  const budget = secondsArg === undefined ? Infinity : Number(secondsArg) * 1e9;
  if (!Number.isInteger(count) || count < 0 || !Number.isInteger(repeat) || repeat < 1 || !(budget > 0)) fail("bad arguments");

  // Warm-up on a quarter-MiB message of the same shape, so that the JIT has seen the code.
  const small = makeCase(shape, Math.min(count, countFor(shape, 0.25)));
  const smallValue = small.make();
  const smallBytes = presizedBytes(small, smallValue);
  for (let i = 0; i < 3; i++) {
    small.verify(read(small, smallBytes), i === 0);
    build(small, smallValue);
  }

  // The objects to build from are made again after the reads: a reader does not hold them.
  const c = makeCase(shape, count);
  const bytes = presizedBytes(c, c.make());
  c.verify(read(c, bytes), true);
  line({ ready: true, bytes: bytes.byteLength, segments: 1 });

  // At least <repeat> runs; more (up to 10 × <repeat>) while they add up to under half a second.
  const more = (rep: number, total: number): boolean =>
    total <= budget && (rep <= repeat || (total < 0.5e9 && rep <= repeat * 10));

  let total = 0;
  for (let rep = 1; more(rep, total); rep++) {
    gc();
    line({ start: "read", rep });
    const { result, ns, gcNs } = await timed(() => read(c, bytes));
    total += ns;
    c.verify(result, false);
    line({ op: "read", rep, ns, gcNs });
  }
  const value = c.make();
  // The same build into a segment allocated up front: what building costs without any growth
  // (before the real builds, which the runner may have to stop).
  total = 0;
  for (let rep = 1; more(rep, total); rep++) {
    gc();
    line({ start: "presized", rep });
    const { ns, gcNs } = await timed(() => presizedBytes(c, value));
    total += ns;
    line({ op: "presized", rep, ns, gcNs });
  }

  total = 0;
  for (let rep = 1; more(rep, total); rep++) {
    gc();
    line({ start: "build", rep });
    const { result, ns, gcNs } = await timed(() => build(c, value));
    total += ns;
    const same = result.bytes.byteLength === bytes.byteLength && (rep > 1 || Buffer.from(result.bytes).equals(Buffer.from(bytes)));
    line({ op: "build", rep, ns, gcNs, bytes: result.bytes.byteLength, segments: result.segments, same });
  }
}

await main();

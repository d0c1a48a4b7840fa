// The interface the stream tests call, shaped as the closures to come will
// be (issue 13): a call that takes a value and streams, and returns a value
// and streams. Written out by hand, as generated code would be, for
//   interface Tasks {
//     run @0 (value :Value, bytes :ByteSource, values :ValueSource)
//         -> (value :Value, bytes :ByteSource, values :ValueSource);
//   }
// (a test schema cannot import schema/*.capnp into src/gen's modules).
import { createCipheriv, createHash } from "node:crypto";
import {
  ByteSource,
  checkFields,
  defineInterface,
  defineStruct,
  fieldError,
  fromByteSource,
  fromValue,
  fromValueSource,
  readCap,
  readStructField,
  toByteSource,
  toValue,
  toValueSource,
  Value$codec,
  ValueSource,
  writeCap,
  writeStructField,
  type CallContext,
  type Capability,
  type Codec,
  type Init,
  type RpcPromise,
  type Value,
} from "../../src/index.js";

export type Io = { value: Value; bytes: ByteSource | null; values: ValueSource | null };
export const Io$codec: Codec<Io> = defineStruct<Io>({
  name: "Tasks$Io",
  dataWords: 0,
  pointers: 3,
  fields: ["value", "bytes", "values"],
  read(v, caps) {
    return {
      value: readStructField(v, 0, Value$codec, caps),
      bytes: readCap<ByteSource>(v, 1, ByteSource, caps),
      values: readCap<ValueSource>(v, 2, ValueSource, caps),
    };
  },
  write(x, v, caps) {
    let n = 0;
    let f = "";
    try {
      if (x.value != null) (f = "value"), n++, writeStructField(v, 0, Value$codec, x.value, caps);
      if (x.bytes != null) (f = "bytes"), n++, writeCap(v, 1, ByteSource, x.bytes, caps);
      if (x.values != null) (f = "values"), n++, writeCap(v, 2, ValueSource, x.values, caps);
    } catch (e) {
      throw fieldError(e, f);
    }
    let k = 0;
    for (const _ in x) k++;
    if (k !== n) checkFields(x, n, Io$codec);
  },
});

export interface Tasks extends Capability {
  run(params: Init<Io>): RpcPromise<Io>;
}
export interface TasksServer {
  run(params: Io, ctx: CallContext): Promise<Init<Io>> | Init<Io>;
}
export const Tasks = defineInterface<Tasks, TasksServer>({
  name: "Tasks",
  id: 0xc3a1f0e2d4b6a801n,
  methods: [{ name: "run", ordinal: 0, params: Io$codec, results: Io$codec, stream: false }],
  superclasses: [],
});

export const CHUNK = 64 * 1024;
const KEY = Buffer.alloc(16, 7);

/** `size` bytes determined by `seed` (AES-CTR's keystream: fast, and the same on both sides). */
export async function* seeded(size: number, seed: number, chunk = CHUNK): AsyncGenerator<Uint8Array> {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(seed >>> 0, 0);
  const cipher = createCipheriv("aes-128-ctr", KEY, iv);
  const zeros = Buffer.alloc(chunk);
  for (let sent = 0; sent < size; sent += chunk) yield cipher.update(zeros.subarray(0, Math.min(chunk, size - sent)));
}

export async function sha256Of(chunks: AsyncIterable<Uint8Array>): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const c of chunks) {
    hash.update(c);
    bytes += c.byteLength;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** What the Tasks server has seen, for assertions (and the child's "stats" op). */
export const served = {
  /** Bytes pulled from sources the server made. */
  pulled: 0,
  /** Sources whose generator's finally ran, and how each ended. */
  finished: [] as string[],
};

/** A source that counts what is pulled from it and records how it finished. */
export async function* counted(size: number, seed: number, name: string): AsyncGenerator<Uint8Array> {
  let how = "returned early";
  try {
    for await (const c of seeded(size, seed)) {
      served.pulled += c.byteLength;
      yield c;
    }
    how = "ran to its end";
  } finally {
    served.finished.push(`${name}: ${how}`);
  }
}

/** The server: what `value.op` asks for. */
export const tasks: TasksServer = {
  async run({ value, bytes, values }) {
    const args = fromValue(value) as Record<string, unknown>;
    const size = Number(args.size ?? 0);
    const seed = Number(args.seed ?? 1);
    switch (args.op) {
      case "download": // a stream in results
        return { bytes: toByteSource(counted(size, seed, String(args.name ?? "download"))) };
      case "endless":
        return { bytes: toByteSource(counted(Number.MAX_SAFE_INTEGER, seed, String(args.name ?? "endless"))) };
      case "upload": // a stream in params
        return { value: toValue(await sha256Of(fromByteSource(bytes!))) };
      case "echo": // a stream in params, streamed back in results as it arrives
        return { bytes: toByteSource(fromByteSource(bytes!)) };
      case "fail":
        return {
          bytes: toByteSource(
            (async function* () {
              yield* seeded(size, seed);
              throw Object.assign(new Error(String(args.message)), { code: "EPRODUCER" });
            })(),
          ),
        };
      case "values":
        return {
          values: toValueSource(
            (async function* () {
              for (let i = 0; i < size; i++) yield { i, text: `item ${i}`, bytes: new Uint8Array([i & 0xff, 1, 2]) };
            })(),
          ),
        };
      case "sumValues": {
        let count = 0;
        let sum = 0;
        for await (const v of fromValueSource(values!)) {
          count++;
          sum += (v as { i: number }).i;
        }
        return { value: toValue({ count, sum }) };
      }
      case "echoValues":
        return { values: toValueSource(fromValueSource(values!)) };
      case "drop": // a stream in params, never read
        return { value: toValue("dropped") };
      case "stats":
        return { value: toValue({ pulled: served.pulled, finished: served.finished, memory: { ...process.memoryUsage() } }) };
      default:
        throw new Error(`unknown op ${String(args.op)}`);
    }
  },
};

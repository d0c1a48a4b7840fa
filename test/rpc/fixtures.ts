// A hand-written schema (codecs as generated code would produce them) so the
// engine's state machine can be tested independently of the generator.
import { ObjectSize, utils, type Struct } from "capnp-es";
import type { CapTableReader, CapTableWriter, InterfaceDef, StructCodec } from "../../src/codec/types.js";
import { defineInterface, type InterfaceHandle, type Capability, type CallContext, type CallOptions, type RpcPromise } from "../../src/rpc/index.js";
import type { TailCall } from "../../src/rpc/types.js";

function codec<T>(name: string, data: number, ptrs: number, encode: StructCodec<T>["encode"], decode: StructCodec<T>["decode"], pipeline: StructCodec<T>["pipeline"] = {}): StructCodec<T> {
  return { name, size: new ObjectSize(data, ptrs), encode, decode, pipeline };
}

function writeCap(s: Struct, index: number, caps: CapTableWriter, value: unknown, iface: InterfaceDef | null) {
  const i = caps.add(value, iface);
  if (i >= 0) utils.setInterfacePointer(i, utils.getPointer(index, s));
}
function readCap(s: Struct, index: number, caps: CapTableReader, iface: InterfaceDef | null): any {
  const p = utils.getPointer(index, s);
  if (utils.isNull(p)) return null;
  return caps.get(utils.getInterfacePointer(p), iface);
}

export interface Counter extends Capability {
  add(p: { delta?: bigint }): RpcPromise<{ value: bigint }>;
  next(p?: {}): RpcPromise<{ counter: Counter }>;
  echo(p: { cap?: Counter | null }): RpcPromise<{ cap: Counter | null }>;
  fail(p: { reason?: string }): RpcPromise<{}>;
  hang(p?: {}, opts?: CallOptions): RpcPromise<{}>;
  forward(p: { cap?: Counter | null; delta?: bigint }): RpcPromise<{ value: bigint }>;
}
export interface CounterServer {
  add(p: { delta: bigint }, ctx: CallContext): { value: bigint } | Promise<{ value: bigint }>;
  next(p: {}, ctx: CallContext): { counter: Counter | CounterServer } | Promise<{ counter: Counter | CounterServer }>;
  echo(p: { cap: Counter | null }, ctx: CallContext): { cap: Counter | null } | Promise<{ cap: Counter | null }>;
  fail(p: { reason: string }, ctx: CallContext): Promise<{}> | {};
  hang(p: {}, ctx: CallContext): Promise<{}>;
  forward(p: { cap: Counter | null; delta: bigint }, ctx: CallContext): TailCall;
}

const empty = codec<{}>("Empty", 0, 0, () => {}, () => ({}));
const addParams = codec<{ delta?: bigint }>("add$Params", 8, 0, (v, s) => utils.setInt64(0, BigInt(v.delta ?? 0n), s), (s) => ({ delta: utils.getInt64(0, s) }));
const addResults = codec<{ value?: bigint }>("add$Results", 8, 0, (v, s) => utils.setInt64(0, BigInt(v.value ?? 0n), s), (s) => ({ value: utils.getInt64(0, s) }));
const capHolder = (name: string, field: string) =>
  codec<any>(
    name,
    0,
    1,
    (v, s, caps) => writeCap(s, 0, caps, v[field], Counter),
    (s, caps) => ({ [field]: readCap(s, 0, caps, Counter) }),
    {},
  );
const nextResults = capHolder("next$Results", "counter");
const echoParams = capHolder("echo$Params", "cap");
const echoResults = capHolder("echo$Results", "cap");
const failParams = codec<{ reason?: string }>(
  "fail$Params",
  0,
  1,
  (v, s) => utils.setText(0, v.reason ?? "", s),
  (s) => ({ reason: utils.getText(0, s) }),
);

const forwardParams: StructCodec<{ cap?: Counter | null; delta?: bigint }> = codec(
  "forward$Params",
  8,
  1,
  (v, s, caps) => {
    writeCap(s, 0, caps, v.cap, Counter);
    utils.setInt64(0, BigInt(v.delta ?? 0n), s);
  },
  (s, caps) => ({ cap: readCap(s, 0, caps, Counter), delta: utils.getInt64(0, s) }),
);

export const Counter: InterfaceHandle<Counter, CounterServer> = defineInterface<Counter, CounterServer>({
  name: "Counter",
  id: 0xd7e3f1a0b2c4e6f8n,
  methods: [
    { name: "add", ordinal: 0, params: addParams, results: addResults, stream: false },
    { name: "next", ordinal: 1, params: empty, results: nextResults, stream: false },
    { name: "echo", ordinal: 2, params: echoParams, results: echoResults, stream: false },
    { name: "fail", ordinal: 3, params: failParams, results: empty, stream: false },
    { name: "hang", ordinal: 4, params: empty, results: empty, stream: false },
    { name: "forward", ordinal: 5, params: forwardParams, results: addResults, stream: false },
  ],
  superclasses: [],
});
// Pipeline metadata refers to Counter itself, so it is set after definition.
(nextResults as { pipeline: object }).pipeline = { counter: { kind: "interface", pointer: 0, iface: Counter } };
(echoResults as { pipeline: object }).pipeline = { cap: { kind: "interface", pointer: 0, iface: Counter } };

/** A counter that records the order calls arrive in. */
export class CounterImpl implements CounterServer {
  value: bigint;
  log: bigint[] = [];
  canceled = 0;
  disposed = false;
  constructor(start = 0n) {
    this.value = start;
  }
  add({ delta }: { delta: bigint }) {
    this.log.push(delta);
    this.value += delta;
    return { value: this.value };
  }
  next() {
    return { counter: Counter.server(new CounterImpl(this.value + 1n)) };
  }
  echo({ cap }: { cap: Counter | null }) {
    return { cap: cap ? cap.dup() : null };
  }
  fail({ reason }: { reason: string }): {} {
    throw new Error(reason);
  }
  hang(_p: {}, ctx: CallContext): Promise<{}> {
    return new Promise((_resolve, reject) => {
      ctx.signal.addEventListener("abort", () => {
        this.canceled++;
        reject(new Error("canceled"));
      });
    });
  }
  forward({ cap, delta }: { cap: Counter | null; delta: bigint }, ctx: CallContext): TailCall {
    return ctx.tailCall(cap!, "add", { delta });
  }
  [Symbol.dispose]() {
    this.disposed = true;
  }
}

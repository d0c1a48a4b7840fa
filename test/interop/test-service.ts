// A TypeScript TestService with the same semantics as the C++ peer's
// (peers/cpp/interop-peer.c++), so the C++ client can test our server.
import {
  ByteSink,
  Counter,
  TestService,
  type ByteSinkServer,
  type CounterServer,
  type FailKind,
  type TestServiceServer,
} from "./schema/interop.js";
import { RpcError, type CallContext, type ExceptionType } from "../../src/rpc/index.js";

export function fnv1a(data: Uint8Array, hash = 0xcbf29ce484222325n): bigint {
  // BigInt FNV is slow; work on two 32-bit halves instead.
  let hi = Number(hash >> 32n);
  let lo = Number(hash & 0xffffffffn);
  for (let i = 0; i < data.length; i++) {
    lo = (lo ^ data[i]!) >>> 0;
    // multiply (hi,lo) by 0x100000001b3 = 2^40 + 0x1b3, mod 2^64
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    const newLo = loMul >>> 0;
    hi = (Math.imul(hi, 0x1b3) + carry + ((lo << 8) >>> 0)) >>> 0;
    lo = newLo;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export class CounterImpl implements CounterServer {
  constructor(public value: bigint) {}
  add({ delta }: { delta: bigint }) {
    this.value += delta;
    return { value: this.value };
  }
  next() {
    return { counter: Counter.server(new CounterImpl(this.value + 1n)) };
  }
}

class SinkImpl implements ByteSinkServer {
  bytes = 0n;
  hash = 0xcbf29ce484222325n;
  write({ chunk }: { chunk: Uint8Array }) {
    this.bytes += BigInt(chunk.length);
    this.hash = fnv1a(chunk, this.hash);
  }
  done() {
    return { bytes: this.bytes, checksum: this.hash };
  }
}

const KINDS: Record<string, ExceptionType> = {
  failed: "failed",
  overloaded: "overloaded",
  disconnected: "disconnected",
  unimplemented: "unimplemented",
};

/** State shared by one server's connections, observable by tests. */
export class TestServiceImpl implements TestServiceServer {
  canceled = 0;
  live = 0;
  private laterQueue: { start: bigint; resolve: (c: Counter) => void }[] = [];

  echo(p: { text: string; data: Uint8Array; n: bigint }) {
    return p;
  }
  newCounter({ start }: { start: bigint }) {
    return { counter: Counter.server(new CounterImpl(start)) };
  }
  async callBack({ cb, value }: { cb: import("./schema/interop.js").Callback | null; value: string }) {
    const { reply } = await cb!.call({ value });
    return { reply };
  }
  echoCap({ cap }: { cap: Counter | null }) {
    return { cap: cap?.dup() ?? null };
  }
  later({ start }: { start: bigint }) {
    const counter = Counter.fromPromise(new Promise<Counter>((resolve) => this.laterQueue.push({ start, resolve })));
    return { counter };
  }
  resolveLater() {
    for (const { start, resolve } of this.laterQueue.splice(0)) resolve(Counter.server(new CounterImpl(start)));
  }
  fail({ kind, reason }: { kind: FailKind; reason: string }): void {
    throw new RpcError(KINDS[String(kind)] ?? "failed", reason);
  }
  hang(_p: unknown, ctx: CallContext): Promise<void> {
    return new Promise((_resolve, reject) => {
      ctx.signal.addEventListener("abort", () => {
        this.canceled++;
        reject(new RpcError("failed", "canceled"));
      });
    });
  }
  canceledCount() {
    return { count: this.canceled };
  }
  tracked() {
    const service = this;
    service.live++;
    const impl = new (class extends CounterImpl {
      [Symbol.dispose]() {
        service.live--;
      }
    })(0n);
    return { counter: Counter.server(impl) };
  }
  liveTracked() {
    return { count: this.live };
  }
  sink() {
    return { sink: ByteSink.server(new SinkImpl()) };
  }
  payload({ size }: { size: number }) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + 3) & 0xff;
    return { data };
  }
  checksum({ data }: { data: Uint8Array }) {
    return { sum: fnv1a(data) };
  }
  counters({ n }: { n: number }) {
    return { list: Array.from({ length: n }, (_, i) => Counter.server(new CounterImpl(BigInt(i + 1)))) };
  }
  async sumCounters({ list }: { list: (Counter | null)[] }) {
    const values = await Promise.all(list.map((c) => (c ? c.add({ delta: 0n }).then((r) => r.value) : 0n)));
    return { total: values.reduce((a, b) => a + b, 0n) };
  }
  nested({ start }: { start: bigint }) {
    const mk = (v: bigint, label: string) => ({ counter: Counter.server(new CounterImpl(v)), label });
    return { outer: { inner: mk(start, "inner"), list: [mk(start + 1n, "first"), mk(start + 2n, "second")] } };
  }
  async callMany({ cap, times }: { cap: Counter | null; times: number }) {
    let value = 0n;
    for (let i = 0; i < times; i++) value = (await cap!.add({ delta: 1n })).value;
    return { value };
  }
}

export { TestService };

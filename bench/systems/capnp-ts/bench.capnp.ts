// Bindings for bench/schema/bench.capnp on the capnp-ts 0.9 runtime, written by
// hand: the only published compiler, capnpc-ts 0.7.0, targets capnp-ts 0.5's
// API (no interfaces, no RPC) and crashes on this schema with the TypeScript 4
// it pulls in. The shapes follow the runtime's documented conventions
// (Method tables, RemotePromise subclasses with pipelined getters, Server
// method tables). Type and method ids are those `capnp compile` assigns.
import {
  Client,
  ObjectSize,
  RemotePromise,
  Server,
  Struct,
  getInterfaceClient,
  setInterfaceClient,
  type ClientLike,
  type Data,
  type Method,
  type ParamsInit,
  type ServerMethodImpl,
} from "capnp-ts";

const BENCH_ID = 0xd3ab75c2f94d47bdn;
const SINK_ID = 0x9817b1a1524e97c0n;

export class Bench_Ping$Params extends Struct {
  static override readonly _capnp = { displayName: "ping$Params", id: "f0233ccb88ff54ce", size: new ObjectSize(8, 0) };
  get n(): number {
    return Struct.getUint32(0, this);
  }
  set n(value: number) {
    Struct.setUint32(0, value, this);
  }
}
export class Bench_Ping$Results extends Struct {
  static override readonly _capnp = { displayName: "ping$Results", id: "fbd063ca74d9522b", size: new ObjectSize(8, 0) };
  get n(): number {
    return Struct.getUint32(0, this);
  }
  set n(value: number) {
    Struct.setUint32(0, value, this);
  }
}
export class Bench_Next$Params extends Struct {
  static override readonly _capnp = { displayName: "next$Params", id: "9613d1ba4b7e0951", size: new ObjectSize(8, 0) };
  get depth(): number {
    return Struct.getUint32(0, this);
  }
  set depth(value: number) {
    Struct.setUint32(0, value, this);
  }
}
export class Bench_Next$Results extends Struct {
  static override readonly _capnp = { displayName: "next$Results", id: "ac1e31fc435cba9b", size: new ObjectSize(0, 1) };
  get next(): Bench$Client {
    return new Bench$Client(getInterfaceClient(0, this));
  }
  set next(value: ClientLike) {
    setInterfaceClient(0, value, this);
  }
}
export class Bench_Sink$Params extends Struct {
  static override readonly _capnp = { displayName: "sink$Params", id: "818268add7e947fc", size: new ObjectSize(0, 0) };
}
export class Bench_Sink$Results extends Struct {
  static override readonly _capnp = { displayName: "sink$Results", id: "cb7e060375e35ccd", size: new ObjectSize(0, 1) };
  get sink(): BenchSink$Client {
    return new BenchSink$Client(getInterfaceClient(0, this));
  }
  set sink(value: ClientLike) {
    setInterfaceClient(0, value, this);
  }
}
export class BenchSink_Write$Params extends Struct {
  static override readonly _capnp = { displayName: "write$Params", id: "d74dcb9f6a85af64", size: new ObjectSize(0, 1) };
  get chunk(): Data {
    return Struct.getData(0, this);
  }
  initChunk(length: number): Data {
    return Struct.initData(0, length, this);
  }
}
/** capnp/stream.capnp's StreamResult: what `-> stream` methods return. */
export class StreamResult extends Struct {
  static override readonly _capnp = { displayName: "StreamResult", id: "995f9a3377c0b16e", size: new ObjectSize(0, 0) };
}
export class BenchSink_Done$Params extends Struct {
  static override readonly _capnp = { displayName: "done$Params", id: "e74f3d9da4f94caf", size: new ObjectSize(0, 0) };
}
export class BenchSink_Done$Results extends Struct {
  static override readonly _capnp = { displayName: "done$Results", id: "f2bedcac6d5bcda5", size: new ObjectSize(8, 0) };
  get bytes(): bigint {
    return Struct.getUint64(0, this);
  }
  set bytes(value: bigint) {
    Struct.setUint64(0, value, this);
  }
}

function method<P extends Struct, R extends Struct>(
  interfaceId: bigint,
  interfaceName: string,
  methodId: number,
  methodName: string,
  ParamsClass: Method<P, R>["ParamsClass"],
  ResultsClass: Method<P, R>["ResultsClass"],
): Method<P, R> {
  return { interfaceId, interfaceName, methodId, methodName, ParamsClass, ResultsClass };
}

const benchMethods = {
  ping: method<Bench_Ping$Params, Bench_Ping$Results>(BENCH_ID, "Bench", 0, "ping", Bench_Ping$Params, Bench_Ping$Results),
  next: method<Bench_Next$Params, Bench_Next$Results>(BENCH_ID, "Bench", 1, "next", Bench_Next$Params, Bench_Next$Results),
  sink: method<Bench_Sink$Params, Bench_Sink$Results>(BENCH_ID, "Bench", 2, "sink", Bench_Sink$Params, Bench_Sink$Results),
};
const sinkMethods = {
  write: method<BenchSink_Write$Params, StreamResult>(SINK_ID, "BenchSink", 0, "write", BenchSink_Write$Params, StreamResult),
  done: method<BenchSink_Done$Params, BenchSink_Done$Results>(SINK_ID, "BenchSink", 1, "done", BenchSink_Done$Params, BenchSink_Done$Results),
};

export class Bench_Next$Promise extends RemotePromise<Bench_Next$Results> {
  /** The `next` capability, usable before the call returns. */
  getNext(): Bench$Client {
    return new Bench$Client(this.pipelineClient(0));
  }
}
export class Bench_Sink$Promise extends RemotePromise<Bench_Sink$Results> {
  getSink(): BenchSink$Client {
    return new BenchSink$Client(this.pipelineClient(0));
  }
}

export class Bench$Client {
  constructor(readonly client: Client) {}
  ping(params?: ParamsInit<Bench_Ping$Params>): RemotePromise<Bench_Ping$Results> {
    return this.client.call(benchMethods.ping, params);
  }
  next(params?: ParamsInit<Bench_Next$Params>): Bench_Next$Promise {
    return this.client.call(benchMethods.next, params, Bench_Next$Promise);
  }
  sink(): Bench_Sink$Promise {
    return this.client.call(benchMethods.sink, undefined, Bench_Sink$Promise);
  }
  dispose(): void {
    this.client.dispose();
  }
}
export class BenchSink$Client {
  constructor(readonly client: Client) {}
  write(params?: ParamsInit<BenchSink_Write$Params>): RemotePromise<StreamResult> {
    return this.client.call(sinkMethods.write, params);
  }
  done(): RemotePromise<BenchSink_Done$Results> {
    return this.client.call(sinkMethods.done);
  }
  dispose(): void {
    this.client.dispose();
  }
}

export interface Bench$Target {
  ping: ServerMethodImpl<Bench_Ping$Params, Bench_Ping$Results>;
  next: ServerMethodImpl<Bench_Next$Params, Bench_Next$Results>;
  sink: ServerMethodImpl<Bench_Sink$Params, Bench_Sink$Results>;
}
export class Bench$Server extends Server {
  constructor(target: Bench$Target) {
    super([
      { ...benchMethods.ping, impl: target.ping },
      { ...benchMethods.next, impl: target.next },
      { ...benchMethods.sink, impl: target.sink },
    ]);
  }
}
export interface BenchSink$Target {
  write: ServerMethodImpl<BenchSink_Write$Params, StreamResult>;
  done: ServerMethodImpl<BenchSink_Done$Params, BenchSink_Done$Results>;
}
export class BenchSink$Server extends Server {
  constructor(target: BenchSink$Target) {
    super([
      { ...sinkMethods.write, impl: target.write },
      { ...sinkMethods.done, impl: target.done },
    ]);
  }
}

/** What Conn.bootstrap needs to know about the interface. */
export const Bench = {
  _capnp: { displayName: "Bench", id: "d3ab75c2f94d47bd" },
  Client: Bench$Client,
  Server: Bench$Server,
};

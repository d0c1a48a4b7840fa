// capnp-es's own RPC (its Conn) serving bench/schema/bench.capnp.
import net from "node:net";
import { Conn } from "capnp-es";
import { listen, tuneAccepted } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import {
  Bench,
  BenchSink,
  type Bench$Server$Target,
  type BenchSink$Server$Target,
  type Bench_Next$Params,
  type Bench_Next$Results,
  type Bench_Ping$Params,
  type Bench_Ping$Results,
  type Bench_Sink$Results,
  type BenchSink_Done$Results,
  type BenchSink_Write$Params,
} from "./bench.js";
import { SocketTransport } from "./transport.js";

class SinkImpl implements BenchSink$Server$Target {
  bytes = 0n;
  async write(params: BenchSink_Write$Params): Promise<void> {
    this.bytes += BigInt(params.chunk.length);
  }
  async done(_params: unknown, results: BenchSink_Done$Results): Promise<void> {
    results.bytes = this.bytes;
  }
}

class BenchImpl implements Bench$Server$Target {
  constructor(readonly depth: number) {}
  async ping(params: Bench_Ping$Params, results: Bench_Ping$Results): Promise<void> {
    results.n = this.depth === 0 ? params.n : this.depth;
  }
  async next(params: Bench_Next$Params, results: Bench_Next$Results): Promise<void> {
    results.next = new Bench.Server(new BenchImpl(params.depth)).client();
  }
  async sink(_params: unknown, results: Bench_Sink$Results): Promise<void> {
    results.sink = new BenchSink.Server(new SinkImpl()).client();
  }
}

await runServer((address) =>
  listen(
    net.createServer((socket) => {
      tuneAccepted(socket);
      socket.on("error", () => socket.destroy());
      const conn = new Conn(new SocketTransport(socket));
      conn.onError = () => socket.destroy();
      conn.initMain(Bench, new BenchImpl(0));
    }),
    address,
  ),
);

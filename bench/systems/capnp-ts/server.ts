// capnp-ts 0.9's RPC (its Conn) serving bench/schema/bench.capnp.
import net from "node:net";
import { Conn } from "capnp-ts";
import { listen, tuneAccepted } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { Bench$Server, BenchSink$Server, type Bench$Target } from "./bench.capnp.js";
import { SocketTransport } from "./transport.js";

function benchAt(depth: number): Bench$Server {
  const target: Bench$Target = {
    ping(params, results) {
      results.n = depth === 0 ? params.n : depth;
    },
    next(params, results) {
      results.next = benchAt(params.depth);
    },
    sink(_params, results) {
      let bytes = 0n;
      results.sink = new BenchSink$Server({
        write(params) {
          bytes += BigInt(params.chunk.getLength());
        },
        done(_p, r) {
          r.bytes = bytes;
        },
      });
    },
  };
  return new Bench$Server(target);
}

await runServer((address) =>
  listen(
    net.createServer((socket) => {
      tuneAccepted(socket);
      socket.on("error", () => socket.destroy());
      new Conn(new SocketTransport(socket), {
        main: benchAt(0),
        onError: () => socket.destroy(),
      });
    }),
    address,
  ),
);

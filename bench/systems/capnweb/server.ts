// Cap'n Web server: the Bench shape as RpcTarget classes.
import net from "node:net";
import { RpcSession, RpcTarget } from "capnweb";
import { listen, tuneAccepted } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { SocketTransport } from "./transport.js";

export class BenchSink extends RpcTarget {
  #bytes = 0;
  /** Cap'n Web's flow-controlled equivalent of `write @0 (chunk) -> stream`. */
  writable(): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({
      write: (chunk) => {
        this.#bytes += chunk.byteLength;
      },
    });
  }
  done(): number {
    return this.#bytes;
  }
}

export class Bench extends RpcTarget {
  readonly #depth: number;
  constructor(depth: number) {
    super();
    this.#depth = depth;
  }
  ping(n: number): number {
    return this.#depth === 0 ? n : this.#depth;
  }
  next(depth: number): Bench {
    return new Bench(depth);
  }
  sink(): BenchSink {
    return new BenchSink();
  }
}

await runServer((address) =>
  listen(
    net.createServer((socket) => {
      tuneAccepted(socket);
      socket.on("error", () => socket.destroy());
      new RpcSession(new SocketTransport(socket), new Bench(0));
    }),
    address,
  ),
);

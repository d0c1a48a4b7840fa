// capnp-es's own RPC (its Conn) as the client.
import { Conn } from "capnp-es";
import { connect } from "../../lib/address.js";
import { CHAIN_LENGTH, STREAM_WINDOW, runClient } from "../../lib/client.js";
import { Bench, type Bench$Client } from "./bench.js";
import { SocketTransport } from "./transport.js";

await runClient(async (address) => {
  const socket = await connect(address);
  const conn = new Conn(new SocketTransport(socket));
  let connError: Error | undefined;
  conn.onError = (err) => {
    connError = err instanceof Error ? err : new Error(String(err));
  };
  const bench: Bench$Client = conn.bootstrap(Bench);
  const check = <T>(p: Promise<T>): Promise<T> => (connError ? Promise.reject(connError) : p);
  // The first call goes out pipelined on the Bootstrap question; the second
  // one, made after Bootstrap has returned, uses the returned capability.
  for (const phase of ["pipelined on Bootstrap", "after Bootstrap returned"]) {
    try {
      await check(bench.ping((p) => (p.n = 0)).promise());
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!message.includes("null client")) throw err;
      // capnp-es 0.0.16's Conn.handleBootstrapMessage adds the main capability
      // to the cap table but returns a null content pointer.
      throw new Error(`the capnp-es server's Bootstrap return holds a null capability: ping ${phase} failed: ${message}`);
    }
  }
  return {
    notes: {
      stream: `-> stream treated as an ordinary call by capnp-es: ${STREAM_WINDOW} writes in flight at most`,
    },
    ping: async (n) =>
      (
        await check(
          bench
            .ping((p) => {
              p.n = n;
            })
            .promise(),
        )
      ).n,
    async stream(chunk, more) {
      const sink = bench.sink().getSink();
      const acks: Promise<unknown>[] = [];
      let oldest = 0;
      while (more()) {
        if (acks.length - oldest >= STREAM_WINDOW) await acks[oldest++];
        acks.push(
          check(
            sink
              .write((p) => {
                p._initChunk(chunk.length).copyBuffer(chunk);
              })
              .promise(),
          ),
        );
      }
      await Promise.all(acks.slice(oldest));
      return Number((await check(sink.done().promise())).bytes);
    },
    async chainPipelined(n) {
      let step: Bench$Client = bench;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        step = step
          .next((p) => {
            p.depth = depth;
          })
          .getNext();
      }
      return (
        await check(
          step
            .ping((p) => {
              p.n = n;
            })
            .promise(),
        )
      ).n;
    },
    async chainAwaited(n) {
      let step: Bench$Client = bench;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        const results = await check(
          step
            .next((p) => {
              p.depth = depth;
            })
            .promise(),
        );
        step = results.next;
      }
      return (
        await check(
          step
            .ping((p) => {
              p.n = n;
            })
            .promise(),
        )
      ).n;
    },
    close() {
      socket.end();
    },
  };
});

// capnp-ts 0.9's RPC (its Conn) as the client.
import { Conn } from "capnp-ts";
import { connect } from "../../lib/address.js";
import { CHAIN_LENGTH, STREAM_WINDOW, runClient } from "../../lib/client.js";
import { Bench, type Bench$Client } from "./bench.capnp.js";
import { SocketTransport } from "./transport.js";

await runClient(async (address) => {
  const socket = await connect(address);
  let connError: Error | undefined;
  const conn = new Conn(new SocketTransport(socket), {
    onError: (err) => {
      connError = err;
    },
  });
  const bench = conn.bootstrap(Bench);
  const check = <T>(p: PromiseLike<T>): Promise<T> => (connError ? Promise.reject(connError) : Promise.resolve(p));
  return {
    notes: {
      all: "bindings written by hand (bench.capnp.ts): capnpc-ts 0.7.0, the only published compiler, targets capnp-ts 0.5 (no RPC) and crashes on this schema",
      stream: `-> stream treated as an ordinary call by capnp-ts: ${STREAM_WINDOW} writes in flight at most`,
    },
    ping: async (n) => (await check(bench.ping((p) => (p.n = n)))).n,
    async stream(chunk, more) {
      const sink = bench.sink().getSink();
      const acks: Promise<unknown>[] = [];
      let oldest = 0;
      while (more()) {
        if (acks.length - oldest >= STREAM_WINDOW) await acks[oldest++];
        acks.push(check(sink.write((p) => p.initChunk(chunk.length).copyBuffer(chunk))));
      }
      await Promise.all(acks.slice(oldest));
      const bytes = Number((await check(sink.done())).bytes);
      sink.dispose();
      return bytes;
    },
    async chainPipelined(n) {
      const steps: Bench$Client[] = [];
      let step: Bench$Client = bench;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        step = step.next((p) => (p.depth = depth)).getNext();
        steps.push(step);
      }
      const result = (await check(step.ping((p) => (p.n = n)))).n;
      for (const s of steps) s.dispose();
      return result;
    },
    async chainAwaited(n) {
      let step: Bench$Client = bench;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        const following = (await check(step.next((p) => (p.depth = depth)))).next;
        if (step !== bench) step.dispose();
        step = following;
      }
      const result = (await check(step.ping((p) => (p.n = n)))).n;
      step.dispose();
      return result;
    },
    close() {
      conn.close();
    },
  };
});

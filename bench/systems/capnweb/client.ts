// Cap'n Web client.
import { RpcSession, type RpcStub } from "capnweb";
import { connect } from "../../lib/address.js";
import { CHAIN_LENGTH, runClient } from "../../lib/client.js";
import type { Bench } from "./server.js";
import { SocketTransport } from "./transport.js";

await runClient(async (address) => {
  const socket = await connect(address);
  const session = new RpcSession<Bench>(new SocketTransport(socket));
  const bench: RpcStub<Bench> = session.getRemoteMain();
  return {
    notes: { stream: "WritableStream passed over RPC (Cap'n Web's own flow control), bytes as base64 inside the JSON" },
    ping: (n) => bench.ping(n) as Promise<number>,
    async stream(chunk, more) {
      using sink = bench.sink();
      const writable = (await sink.writable()) as WritableStream<Uint8Array>;
      const writer = writable.getWriter();
      while (more()) {
        await writer.ready;
        void writer.write(chunk);
      }
      await writer.close();
      return (await sink.done()) as number;
    },
    async chainPipelined(n) {
      // Each step is an RpcPromise used as a stub: one round trip in all.
      const steps = [];
      let step = bench.next(1);
      steps.push(step);
      for (let depth = 2; depth <= CHAIN_LENGTH; depth++) {
        step = step.next(depth);
        steps.push(step);
      }
      const result = (await step.ping(n)) as number;
      for (const s of steps) s[Symbol.dispose]();
      return result;
    },
    async chainAwaited(n) {
      let current = await bench.next(1);
      for (let depth = 2; depth <= CHAIN_LENGTH; depth++) {
        const following = await current.next(depth);
        current[Symbol.dispose]();
        current = following;
      }
      const result = (await current.ping(n)) as number;
      current[Symbol.dispose]();
      return result;
    },
    close() {
      bench[Symbol.dispose]();
      socket.end();
    },
  };
});

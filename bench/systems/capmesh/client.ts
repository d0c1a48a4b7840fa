// capmesh client for the benchmark figures.
import { formatAddress } from "../../lib/address.js";
import { CHAIN_LENGTH, runClient } from "../../lib/client.js";
import { Bench } from "../../../src/gen/bench.js";
import { connect } from "../../../src/rpc/index.js";

await runClient(async (address) => {
  const session = await connect(formatAddress(address));
  const bench = session.bootstrap(Bench);
  return {
    ping: async (n) => (await bench.ping({ n })).n,
    async stream(chunk, more) {
      using sink = (await bench.sink()).sink!;
      // `-> stream`: each write resolves once the bytes in flight fit the window.
      while (more()) await sink.write({ chunk });
      return Number((await sink.done()).bytes);
    },
    async chainPipelined(n) {
      const steps: Bench[] = [];
      let step = bench.next({ depth: 1 }).next;
      steps.push(step);
      for (let depth = 2; depth <= CHAIN_LENGTH; depth++) {
        step = step.next({ depth }).next;
        steps.push(step);
      }
      const result = (await step.ping({ n })).n;
      for (const s of steps) s.release();
      return result;
    },
    async chainAwaited(n) {
      let current = (await bench.next({ depth: 1 })).next!;
      for (let depth = 2; depth <= CHAIN_LENGTH; depth++) {
        const following = (await current.next({ depth })).next!;
        current.release();
        current = following;
      }
      const result = (await current.ping({ n })).n;
      current.release();
      return result;
    },
    async close() {
      bench.release();
      await session.close();
    },
  };
});

// The bench figures on a capmesh Bench capability, however it was reached
// (bench/systems/capmesh's own client, the mesh and direct-path benches).
import type { BenchConnection } from "../../lib/client.js";
import { CHAIN_LENGTH } from "../../lib/client.js";
import type { Bench } from "../../schema/bench.js";

/** A BenchConnection on `bench`; `close` runs after `bench` is released. */
export function benchConnection(bench: Bench, close: () => Promise<void>): BenchConnection {
  return {
    ping: async (n) => (await bench.ping({ n })).n,
    async stream(chunk, more) {
      using sink = (await bench.sink()).sink!;
      // `-> stream`: each write resolves once the bytes in flight fit the window.
      while (more()) await sink.write({ chunk });
      return Number((await sink.done()).bytes);
    },
    async chainPipelined(n) {
      // Nothing is awaited but the last call: each next() is only pipelined
      // on, so its promise is disposed (its results released) at the end,
      // like each client taken from it.
      const calls = [bench.next({ depth: 1 })];
      for (let depth = 2; depth <= CHAIN_LENGTH; depth++) calls.push(calls[depth - 2]!.next.next({ depth }));
      const steps = calls.map((call) => call.next);
      try {
        return (await steps[steps.length - 1]!.ping({ n })).n;
      } finally {
        for (const step of steps) step.release();
        for (const call of calls) call[Symbol.dispose]();
      }
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
      await close();
    },
  };
}

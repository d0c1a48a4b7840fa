// The receiving side of test/value/hostile.test.ts, a process of its own so
// that its peak memory is its own: serves the Transformer of ./helpers.ts on
// the unix socket argv[2] (no handshake, so a raw peer can speak to it) and
// prints "listening <address>". transform() converts what it got with
// fromValue, under the default limits, and answers with how many items the
// value held; given { op: "memory" } it answers with its peak RSS so far.
import { fromValue, listen, toValue } from "../../src/index.js";
import { Transformer } from "./helpers.js";

function count(x: unknown): number {
  if (Array.isArray(x)) return x.length + x.reduce((n: number, y) => n + count(y), 0);
  if (typeof x === "object" && x !== null && !(x instanceof Uint8Array)) return Object.values(x).reduce((n: number, y) => n + 1 + count(y), 0);
  return 0;
}

const listener = await listen(`unix:${process.argv[2]!}`, {
  bootstrap: Transformer.server({
    transform({ value }) {
      const x = fromValue(value);
      if ((x as { op?: unknown } | null)?.op === "memory") return { value: toValue({ maxRss: process.resourceUsage().maxRSS * 1024 }) };
      return { value: toValue({ items: count(x) }) };
    },
  }),
});
console.log(`listening ${listener.address}`);

// Micro-benchmark of the encode path (not a test): a ten-field record
// encoded 1e6 times, and a 200k-node tree encoded as one message. Used to
// keep the write-side value checks cheap.
//
//   npm run bench:encode [-- rounds]
import { writeMessage } from "../../src/codec/runtime.js";
import type { Init } from "../../src/codec/init.js";
import { Record$codec, type Record } from "../../test/codec/fixtures/gen/codectest.js";
import { Node$codec, type Node } from "../../test/rpc/schema/trees.js";

const RECORD: Init<Record> = {
  id: 12345,
  score: 0.75,
  name: "a record",
  tags: ["x", "yz"],
  active: true,
  kind: "blue",
  stamp: -123456789n,
  payload: new Uint8Array([1, 2, 3, 4]),
  origin: { x: 1, y: -2 },
  level: 200,
};

function tree(nodes: number, fanout: number): Init<Node> {
  let made = 1;
  const root: { value: bigint; label: string; children: Init<Node>[] } = { value: 0n, label: "root", children: [] };
  const queue = [root];
  for (let q = 0; made < nodes; q++) {
    const parent = queue[q]!;
    for (let i = 0; i < fanout && made < nodes; i++, made++) {
      const child = { value: BigInt(made), label: `n${made}`, children: [] };
      parent.children.push(child);
      queue.push(child);
    }
  }
  return root;
}

/** Wall-clock milliseconds for `iterations` calls of `fn`. */
function time(iterations: number, fn: () => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const rounds = Number(process.argv[2] ?? 5);
const big = tree(200_000, 4);
// Warm up both shapes before measuring.
for (let i = 0; i < 100_000; i++) writeMessage(Record$codec, RECORD);
writeMessage(Node$codec, big);

// The fastest round of each: on a shared machine, other load only ever adds time.
const records: number[] = [];
const trees: number[] = [];
for (let r = 0; r < rounds; r++) {
  records.push(time(1_000_000, () => writeMessage(Record$codec, RECORD)));
  trees.push(time(5, () => writeMessage(Node$codec, big)));
}
const best = (xs: number[]) => Math.min(...xs).toFixed(0);
console.log(`best of ${rounds}: record x1e6 ${best(records)} ms, 200k-node tree x5 ${best(trees)} ms`);

// The shapes of the message benchmark and how big each is for a given size.
// The runner computes the count here and passes it to both programs (capmesh's
// worker.ts and the C++ message-bench), so they build the same message.

export const SHAPES = ["blob", "words", "tree"] as const;
export type Shape = (typeof SHAPES)[number];

export const MIB = 1024 * 1024;

/** Tree nodes per MiB: 200,000 nodes make an 8 MiB message (42 bytes a node). */
const NODES_PER_MIB = 200_000 / 8;

/** What the shapes are, for the results. */
export const SHAPE_TEXT: Record<Shape, string> = {
  blob: "`Blob { data :Data }`: one Data of the message's size less 16 bytes",
  words: "`Words { values :List(UInt64) }`: (size − 16) / 8 values 0, 1, 2, …",
  tree:
    "`Node { id :UInt32, value :Float64, name :Text, children :List(Node) }`: a complete 4-ary tree, " +
    "node i with id i, value i/2, a 7-character name and children 4i+1 … 4i+4; 200,000 nodes per 8 MiB",
};

/**
 * The count a shape is built with for a message of `mib` MiB: bytes of Data
 * (blob), UInt64 values (words) or nodes (tree). The root pointer and the root
 * struct take 16 bytes; the tree's nodes average 42 bytes.
 */
export function countFor(shape: Shape, mib: number): number {
  const bytes = Math.floor((mib * MIB) / 8) * 8;
  switch (shape) {
    case "blob":
      return Math.max(0, bytes - 16);
    case "words":
      return Math.max(0, (bytes - 16) / 8);
    case "tree":
      return Math.max(1, Math.round(NODES_PER_MIB * mib));
  }
}

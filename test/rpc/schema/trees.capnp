# Test schema for the hostile-input and large-message tests (test/rpc/):
# recursive trees and big flat values, served over real sockets.
@0xb8c465ef525d0d8e;

struct Node {
  value @0 :UInt64;
  label @2 :Text;
  children @1 :List(Node);
}

interface Trees {
  make @0 (nodes :UInt32, fanout :UInt32, shared :Bool) -> (tree :Node);
  # A tree of `nodes` nodes, each with up to `fanout` children. With
  # `shared`, it is built as a DAG whose levels share one children list, of
  # `nodes` levels (the encoding expands it: 2^nodes leaves for fanout 2).

  count @1 (tree :Node) -> (nodes :UInt64);
  # Counts the nodes of a tree (reads all of it).

  blob @2 (bytes :UInt32) -> (data :Data);
  # `bytes` bytes of data.

  ping @3 () -> ();
  # Answers at once: the well-behaved client's probe.
}

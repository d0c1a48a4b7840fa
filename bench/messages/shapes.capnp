@0xce6bc6e82e3a473e;
# The message shapes of the build/read benchmark (bench/messages/). capmesh
# builds and reads them through shapes.ts (generated from this file by
# `npm run gen`); the C++ reference, peers/cpp/message-bench.c++, through
# the code `capnp compile -oc++` makes from it.

struct Blob {
  # Flat data, one piece: a single Data field.
  data @0 :Data;
}

struct Words {
  # Flat data, many values: a single List(UInt64).
  values @0 :List(UInt64);
}

struct Node {
  # A tree. Each node takes 40 bytes of its own (2 data words, 2 pointers and
  # an 8-byte name), plus 8 for the tag of its parent's children list
  # (shared by up to 4 siblings).
  id @0 :UInt32;
  value @1 :Float64;
  name @2 :Text;
  children @3 :List(Node);
}

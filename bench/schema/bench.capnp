@0xd1b8a3c6e2f40a17;
# The benchmark interface: the same shape is served by every system that
# bench/ compares, so only the RPC stack differs.

interface Bench {
  ping @0 (n :UInt32) -> (n :UInt32);
  next @1 (depth :UInt32) -> (next :Bench);
  # A capability one step further along a chain; `depth` is echoed back by ping.
  sink @2 () -> (sink :BenchSink);
}

interface BenchSink {
  write @0 (chunk :Data) -> stream;
  done @1 () -> (bytes :UInt64);
}

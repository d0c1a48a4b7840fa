@0xc0c01b568f8cd72f;
# Test schema shared by the TypeScript tests and the C++ reference peer
# (peers/cpp). Every method exists to exercise one protocol feature
# against an independent implementation.

enum FailKind {
  failed @0;
  overloaded @1;
  disconnected @2;
  unimplemented @3;
}

interface Counter {
  # A stateful object: used for pipelining, embargoes and release tracking.
  add @0 (delta :Int64) -> (value :Int64);
  next @1 () -> (counter :Counter);
  # A new counter whose value is one more than this one's; chains of
  # `next` exercise pipelining on the capability the previous call returned.
}

interface Callback {
  call @0 (value :Text) -> (reply :Text);
}

interface ByteSink {
  write @0 (chunk :Data) -> stream;
  done @1 () -> (bytes :UInt64, checksum :UInt64);
  # checksum: FNV-1a 64 over every byte written, in order.
}

struct Inner {
  counter @0 :Counter;
  label @1 :Text;
}

struct Outer {
  inner @0 :Inner;
  list @1 :List(Inner);
}

interface TestService {
  echo @0 (text :Text, data :Data, n :Int64) -> (text :Text, data :Data, n :Int64);
  newCounter @1 (start :Int64) -> (counter :Counter);
  callBack @2 (cb :Callback, value :Text) -> (reply :Text);
  # Calls cb.call(value) and returns its reply: a callback into the caller.
  echoCap @3 (cap :Counter) -> (cap :Counter);
  # Hands the capability back: the caller sees its own object again.
  later @4 (start :Int64) -> (counter :Counter);
  # Returns a promise capability that resolves once `resolveLater` is called.
  resolveLater @5 () -> ();
  fail @6 (kind :FailKind, reason :Text) -> ();
  hang @7 () -> ();
  # Never returns on its own; the server counts the calls that were canceled.
  canceledCount @8 () -> (count :UInt32);
  tracked @9 () -> (counter :Counter);
  # Counters made here are counted while alive; release is seen by liveTracked.
  liveTracked @10 () -> (count :UInt32);
  sink @11 () -> (sink :ByteSink);
  payload @12 (size :UInt32) -> (data :Data);
  # Returns `size` bytes where byte i = (i * 7 + 3) & 0xff.
  checksum @13 (data :Data) -> (sum :UInt64);
  # FNV-1a 64 of data.
  counters @14 (n :UInt32) -> (list :List(Counter));
  sumCounters @15 (list :List(Counter)) -> (total :Int64);
  # Calls add(0) on each and sums the values; null entries count as 0.
  nested @16 (start :Int64) -> (outer :Outer);
  # outer.inner.counter starts at `start`; outer.list has two counters.
  callMany @17 (cap :Counter, times :UInt32) -> (value :Int64);
  # Calls cap.add(1) `times` times, sequentially, returns the last value.
}

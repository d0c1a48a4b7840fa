# Test schema for sequential (one call at a time) and parallel delivery
# (test/rpc/sequential.test.ts, test/mesh/sequential.test.ts): a server that
# counts the calls it runs at once and waits on gates the test opens.
@0xba946a3f776a3cd4;

interface Probe {
  work @0 (id :UInt32, gate :Gate) -> (id :UInt32, active :UInt32);
  # Enters (counting calls running at once), waits until `gate.wait(id)`
  # returns if a gate is given, then leaves; `active` as it entered.
  push @1 (id :UInt32, gate :Gate) -> stream;
  # As work, flow-controlled (`-> stream`).
  poke @2 (id :UInt32) -> (seen :UInt32);
  # Returns at once; `seen` counts the calls this server has entered.
  via @3 (callback :Callback) -> (text :Text);
  # Calls `callback.run()` from inside this call and returns its text, or
  # "error: <message>" if it failed.
  stats @4 () -> (maxActive :UInt32, order :List(UInt32), entered :UInt32, queued :UInt32);
  # The most calls that ran at once, the ids of work/push/poke in the order
  # they entered, how many calls entered, and (for a sequential server) how
  # many wait in its queue.
}

interface Gate {
  wait @0 (id :UInt32) -> ();
}

interface Callback {
  run @0 () -> (text :Text);
}

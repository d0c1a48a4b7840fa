@0xe6c3f0f4a1d2b3c5;
# The schema of `npm start`'s mesh demo (peers/demo/) and the README
# examples: a chat room showing a typed call, a pipelined call and a
# callback, and a counter to call from the command line.

interface Greeter {
  greet @0 (name :Text) -> (greeting :Text);
  room @1 (name :Text) -> (room :Room);
  # The room of that name (made on first use).
}

interface Room {
  join @0 (who :Text, listener :Listener) -> (members :UInt32);
  # The room calls `listener.heard` for everything said from now on.
  say @1 (who :Text, text :Text) -> ();
}

interface Listener {
  heard @0 (who :Text, text :Text) -> ();
}

interface Counter {
  # One count shared by every caller, e.g. from another terminal:
  # npx capmesh call counter add '{"by": 2}'
  add @0 (by :Int32) -> (total :Int32);
  # Adds `by` (negative to subtract) and returns the new total.
  get @1 () -> (total :Int32);
}

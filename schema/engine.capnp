@0xbe1fbbd2f6ee5e2b;
# The engine, version 1: what a mesh hub (or the service that embeds one)
# offers each peer beside the registry, and closures, the contract for
# implementations in any language.
#
# A peer asks its Hub for an Engine (`Hub.engine`, schema/mesh.capnp), named
# for one plugin: the Engine reads that plugin's configuration section and
# the environment entries the hub's policy exposes to the peer, reaches other
# plugins by name, evaluates closures, and takes log and progress lines that
# the hub prints tagged with the plugin's name. Every request is checked as
# the identity the handshake proved, like the Hub's own.
#
# Everything here is a capability, so it can be passed on, pipelined and
# revoked: a plugin may hand its Engine (or a CallContext) to another peer,
# which then acts for it.
#
# Extending. A service that embeds the hub offers more by declaring an
# interface of its own that extends Engine (`interface MyEngine
# extends(Engine) { ... }`, in its own schema file with its own id), and
# having the hub return a capability of that interface from `Hub.engine`.
# Peers that know only Engine use it as one; peers that know MyEngine call
# its methods on the same capability. This schema does not change.

using Value = import "value.capnp".Value;
using ValueSource = import "stream.capnp".ValueSource;

interface Closure {
  # A function as a capability: whoever holds it may call it, any number of
  # times, concurrently. It runs in the vat that made it; when that vat
  # leaves, calls fail with `disconnected`.

  call @0 (args :List(Value), input :ValueSource) -> (result :Value, output :ValueSource);
  # `args` are positional (a JavaScript closure is called as fn(...args));
  # an empty list is a call with no arguments. `input` is an optional stream
  # of values for the closure to read; null when there is none. The closure
  # answers with `result` (null when it has nothing to say), and, when it
  # produces a sequence rather than one value, with `output`, a stream the
  # caller reads (null when there is none). A closure that fails fails the
  # call with an rpc.capnp exception (`failed`, its message).
}

enum LogLevel {
  debug @0;
  info @1;
  warn @2;
  error @3;
}

struct EnvEntry {
  name @0 :Text;
  value @1 :Text;
}

interface Engine {
  # Engine services for one plugin (the name it was asked for), bound to the
  # peer's proven identity.

  config @0 () -> (config :Value);
  # This plugin's configuration section: the value under its name in the
  # hub's `plugins` configuration, null when there is none.

  env @1 (names :List(Text)) -> (entries :List(EnvEntry));
  # Environment entries of the hub's process that its policy (`policy.env`)
  # exposes to this peer. `names` are exact names; an empty list asks for
  # every exposed entry that is set. A name the policy does not expose fails
  # the whole call (`failed`, naming the name and the rule that refused it);
  # an exposed name that is not set is left out of `entries`.

  connect @2 (name :Text, waitMs :UInt32) -> (cap :Capability);
  # As Hub.connect: the capability registered as `name`, under the same
  # policy (`policy.connect`), so that a peer handed only an Engine (or a
  # CallContext) can reach the plugins its giver may. (Listing and lookup
  # stay on the Hub.)

  eval @3 (closure :Closure, args :List(Value), input :ValueSource) -> (result :Value, output :ValueSource);
  # Calls `closure` for the plugin, wherever it lives, with the arguments and
  # input given, and answers with its results. The engine makes the call
  # itself (and, through a CallContext, stops it when the context ends).

  log @4 (level :LogLevel, message :Text, fields :Value) -> ();
  # A log line for the hub's log, tagged with the plugin's name and identity.
  # `fields` is a record of structured fields (or null).

  progress @5 (message :Text, done :Float64, total :Float64) -> ();
  # Progress of the plugin's work, logged as a line like `log`'s; `total` 0
  # means unknown.

  callContext @6 (label :Text) -> (context :CallContext, scope :ContextScope);
  # Opens a context for one call the plugin is serving (`label` names it in
  # logs). The plugin hands `context` to whoever should make engine calls
  # "in the context of" that call, and ends it through `scope` when the call
  # has returned and the streams it returned have ended (the SDK does this).
  # A context opened through a CallContext ends with it at the latest.
}

interface CallContext extends(Engine) {
  # The engine, scoped to one call: log lines are tagged with the call's
  # label as well, and once its scope ends every method (the Engine's too)
  # fails with `failed`, saying the call context has ended. Calls running on
  # it at that moment (an `eval`) are canceled, and the hub drops what the
  # context held.

  info @0 () -> (plugin :Text, label :Text);
  # Which plugin and call this context belongs to.
}

interface ContextScope {
  # Held by whoever opened a CallContext: ending the scope (or releasing it)
  # ends the context.

  end @0 () -> ();
}

@0xc9b0990f1609124e;
# The capmesh mesh protocol, version 1: the contract between a hub and the
# peers that join it, for implementations in any language.
#
# A hub listens on well-known addresses (a unix socket, TCP). Any process
# that completes the secret handshake (shs1, with the mesh's network key) is
# a peer, and its bootstrap capability is a `Hub` bound to the peer's proven
# identity: every request below is made, and checked against the hub's
# policy, as that identity. A peer that registers a name is a plugin; one
# that does not is a client. The hub makes no other distinction.
#
# Rules every implementation follows:
# - Errors are rpc.capnp exceptions. A refusal (policy, quota, a taken name,
#   an invalid name, an incompatible version) is `failed`, and its reason
#   names what refused it and what to do.
# - Names: 1 to 128 characters from [a-z0-9._-], starting with a letter or
#   digit (so they are safe in paths, URLs and logs).
# - Times are milliseconds since the Unix epoch.
# - Releasing a capability the hub returned (a Registration, a Watch) ends
#   what it stands for; so does the peer's disconnection.

const protocolVersion :UInt32 = 1;
# The mesh protocol version this schema describes. It is separate from the
# package version of any implementation: a plugin built on an older release
# keeps working as long as its protocol version is accepted.

struct Hello {
  # What each side says in `Hub.hello`.
  protocolVersion @0 :UInt32;
  features @1 :List(Text);
  # Optional protocol features this side supports (e.g. "watch", "provider",
  # "direct-paths"). Unknown names are ignored.
  software @2 :Text;
  # Implementation name and version, for logs only (e.g. "capmesh/0.1.0").
  addresses @3 :List(Text);
  # With the feature "direct-paths": where this side listens for direct
  # connections from other peers ("unix:/path", "tcp://host:port"), most
  # preferred first. A side that says "direct-paths" takes part in rpc.capnp
  # Level 3 (three-party handoff, schema/network.capnp): the hub may hand it
  # capabilities hosted by other peers as `thirdPartyHosted`, and hand its own
  # capabilities to others the same way. Only when both the hub and the peer
  # say "direct-paths" does the hub send either of them a Provide or a
  # thirdPartyHosted descriptor; everyone else gets capabilities proxied.
}

struct InterfaceInfo {
  id @0 :UInt64;
  # The interface's 64-bit schema ID.
  name @1 :Text;
  # Its name in the schema, e.g. "Greeter".
}

struct PluginInfo {
  # What a plugin says about itself when it registers.
  version @0 :Text;
  # The plugin's own version (free form).
  description @1 :Text;
  interfaces @2 :List(InterfaceInfo);
  # The interfaces its capability implements.
  addresses @3 :List(Text);
  # Where the plugin can be dialled directly ("unix:/path", "tcp://host:port"):
  # used by direct peer paths (rpc.capnp Level 3). Empty if it cannot be.
  features @4 :List(Text);
  # Optional features of the plugin itself, for callers to check before use.
  schema @5 :Data;
  # The compiled schema of `interfaces`: a serialized capnp
  # CodeGeneratorRequest holding at least their nodes, so that tools (such as
  # `capmesh call`) can encode params and decode results with no generated
  # code. May be empty.
  protocolVersion @6 :UInt32;
  # The mesh protocol version the plugin speaks (as in its Hello).
}

struct Entry {
  # A registered plugin, as the hub lists it.
  name @0 :Text;
  id @1 :Text;
  # The plugin's proven identity, "@<base64>.ed25519".
  info @2 :PluginInfo;
  since @3 :UInt64;
  # When it registered (ms since the epoch).
}

struct Event {
  # One change to the set of registered plugins.
  union {
    snapshot @0 :List(Entry);
    # Sent first to a new watcher: everything registered now.
    joined @1 :Entry;
    left :group {
      name @2 :Text;
      id @3 :Text;
      reason @4 :Text;
      # "released", "disconnected", "replaced by @…", "revoked".
    }
  }
}

interface Hub {
  # The bootstrap capability a hub offers each peer, bound to its identity.

  hello @0 (hello :Hello) -> (hub :Hello, hubId :Text, you :Text);
  # Version negotiation. The hub answers with its own Hello, its identity and
  # the identity it authenticated for the caller; it refuses a protocol
  # version it cannot serve with a `failed` exception naming both versions.
  # Calling hello is optional: a peer that skips it is taken to speak
  # `protocolVersion` 1 with no optional features.

  register @1 (name :Text, cap :Capability, provider :Provider, info :PluginInfo, replace :Bool)
      -> (registration :Registration);
  # Registers `name` for the caller. Exactly one of `cap` (the same capability
  # for every caller) and `provider` (asked for a capability per caller) is
  # set. A taken name is refused, unless `replace` is set and the policy lets
  # the caller replace the holder: the holder's Registration then ends
  # ("replaced by …") and watchers see `left` then `joined`.

  list @2 () -> (plugins :List(Entry));
  # Every registered plugin, ordered by name. Entries here and in watch
  # events carry no `info.schema` (it is empty): schemas are kilobytes per
  # plugin and only tools that call by them need one; they ask `lookup`.

  watch @3 (observer :Observer) -> (watch :Watch);
  # Delivers a snapshot, then every `joined` and `left`, in order, to
  # `observer`. Events wait while the observer has not answered earlier ones
  # (flow control); a watcher that falls too far behind, or fails, is dropped.

  connect @4 (name :Text, waitMs :UInt32) -> (cap :Capability);
  # The capability registered as `name` (callers may pipeline on it at once).
  # Unknown names fail with `failed` naming the name; with `waitMs` > 0 the
  # call waits up to that long for the name to be registered.

  lookup @5 (name :Text) -> (entry :Entry);
  # A registered plugin's whole entry (its info, features and schema)
  # without connecting to it. Fails like `connect` for an unknown name.

  admin @6 () -> (admin :Admin);
  # Hub administration, for identities the policy allows.

  engine @7 (name :Text) -> (engine :Capability);
  # An Engine (schema/engine.capnp; typed here as any capability so that
  # this schema stands alone, e.g. for peers that never use the engine) for
  # the plugin `name`: its configuration section, the environment the
  # policy exposes, closures, log lines tagged with the name. The caller must hold `name`, or be
  # allowed to register it (so a plugin can read its configuration before it
  # registers). An empty name gives an engine for a client: no configuration
  # section, log lines tagged with the caller's identity. A hub that embeds
  # the engine may return a capability of an interface that extends Engine.
}

interface Provider {
  # Implemented by a plugin that grants per caller.
  provide @0 (caller :Text) -> (cap :Capability);
  # The capability for `caller`, the identity the hub authenticated (the hub
  # vouches for it). May fail to refuse that caller.
}

interface Registration {
  # A registered name. Releasing it unregisters the name.
  update @0 (info :PluginInfo) -> ();
  # Replaces the plugin's info; watchers see it as `left` then `joined`.
  ended @1 () -> (reason :Text);
  # Returns when the registration ends while the holder still holds it
  # (replaced, revoked, hub shutting down), with the reason.
}

interface Observer {
  # Implemented by a watcher.
  event @0 (event :Event) -> stream;
}

interface Watch {
  # An active watch. Releasing it stops the events.
}

struct PeerStats {
  id @0 :Text;
  address @1 :Text;
  registrations @2 :UInt32;
  watchers @3 :UInt32;
  questions @4 :UInt32;
  answers @5 :UInt32;
  imports @6 :UInt32;
  exports @7 :UInt32;
  directPaths @8 :Bool;
  # The peer said "direct-paths" in its Hello (and the hub has them on).
  provisions @9 :UInt32;
  # Provides this peer sent the hub that are still open (the hub as host).
  vines @10 :UInt32;
  # Capabilities the hub introduced to this peer whose vine it still holds.
}

struct HubStats {
  connections @0 :UInt32;
  registrations @1 :UInt32;
  watchers @2 :UInt32;
  peers @3 :List(PeerStats);
  forwardedCalls @4 :UInt64;
  # Calls the hub passed between peers (a capability of one peer called by
  # another). Calls that go over a direct path between the two do not count.
  introductions @5 :UInt64;
  # Capabilities the hub handed on as thirdPartyHosted (one per handoff).
  directPaths @6 :Bool;
  # The hub takes part in direct paths (its Hello says "direct-paths").
  contexts @7 :UInt32;
  # Call contexts (Engine.callContext) open now: each ends with its scope.
}

interface Admin {
  stats @0 () -> (stats :HubStats);
  # The hub's tables, per peer: everything returns to its baseline when peers leave.
}

@0x9b3730a56c700eac;
# Channels, version 1: a bidirectional byte channel to a plugin by name, for
# plugins that speak a protocol of their own over it rather than define a
# schema.
#
# A plugin that accepts channels says the feature "channels" in its
# PluginInfo, and the capability that callers of its name get (mesh.capnp
# Hub.connect) also implements ChannelAcceptor: a caller connects to the
# name as usual and calls `open` on it. The plugin registers a Provider, so
# the hub vouches for each caller's identity (Provider.provide's `caller`)
# and the plugin knows who opens each channel. Being an ordinary
# capability, the channel goes over a direct path between the two peers
# when both have direct paths on (schema/network.capnp), and through the
# hub otherwise.
#
# Each direction is a stream.capnp ByteSource, with its flow control: the
# caller's bytes travel in `input`, the plugin's in `output`. Ending a
# direction (sink.end) is a half close; the channel is over once both
# directions have ended. Aborting a direction, or a reader that stops
# reading, ends the channel for both sides.

using ByteSource = import "stream.capnp".ByteSource;

interface ChannelAcceptor {
  open @0 (protocol :Text, input :ByteSource) -> (output :ByteSource);
  # Opens a channel speaking `protocol` (free form, chosen by the plugin;
  # may be empty). Refused with a `failed` exception whose reason is the
  # plugin's; accepted, `output` carries the plugin's bytes.
}

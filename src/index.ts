// capmesh: a plugin mesh on Cap'n Proto capability RPC.
export * from "./rpc/index.js";
export { SocketNetwork, type AcceptOptions, type ConnectionSecurityOptions, type SocketNetworkOptions } from "./network/socket-network.js";
export * from "./auth/index.js";
export { AddressError, parseAddress, formatAddress, type Address } from "./transport/address.js";
export { SocketError } from "./transport/socket.js";
export { FrameError, type FrameErrorCode } from "./transport/framing.js";
export { DEFAULT_LIMITS, READ_BUDGET_FLOOR_BYTES, type TransportLimits } from "./transport/limits.js";
export {
  DEFAULT_INBOUND_BUDGET_BYTES,
  FREE_BYTES_PER_CONNECTION,
  inboundBudgetStats,
  setInboundBudget,
  type InboundBudgetStats,
} from "./transport/inbound-budget.js";
export { CopyLimitError } from "./codec/copy.js";
export * from "./codec/runtime.js";
// Schemas loaded at run time, for tools with no generated code (capmesh call).
export {
  loadSchema,
  serializeSchema,
  type DynamicServer,
  type LoadedField,
  type LoadedInterface,
  type LoadedSchema,
  type LoadedStruct,
  type SchemaType,
} from "./codegen/dynamic.js";
// Values (schema/value.capnp): dynamic values for generic interfaces, to and from plain JS.
export * from "./value/index.js";
// Streams (schema/stream.capnp): bytes and values as capabilities, with backpressure and cancellation.
export * from "./stream/index.js";
// The engine (schema/engine.capnp): config, environment, closures, logs and call contexts for plugins.
export * from "./engine/index.js";
// The mesh: a hub, the plugin SDK, and the mesh protocol's types (schema/mesh.capnp).
export { startHub, type HubOptions, type MeshHub } from "./mesh/hub.js";
export {
  joinMesh,
  type JoinOptions,
  type MeshPeer,
  type MeshPeerStats,
  type PeerConnectionStats,
  type CapabilityPath,
} from "./mesh/join.js";
export { DIRECT_PATHS_FEATURE, type DirectPathOptions } from "./mesh/direct.js";
export { CHANNELS_FEATURE, type ChannelHandler, type ChannelRequest, type OpenChannelOptions } from "./mesh/channels.js";
export { ChannelAcceptor, type ChannelAcceptorServer } from "./gen/channel.js";
export { SocketThirdParty, type ThirdPartyLimits, type SocketThirdPartyOptions } from "./network/third-party.js";
export { ConfigError, loadConfig, parseConfig, CONFIG_FILE } from "./mesh/config.js";
export { Policy, DEFAULT_QUOTAS, type Action, type Rule, type PolicyRules, type Quotas } from "./mesh/policy.js";
export { nameProblem, MAX_NAME_LENGTH } from "./mesh/names.js";
export { ENV as MESH_ENV } from "./mesh/defaults.js";
export {
  Hub,
  Registration,
  Observer,
  Provider,
  Watch,
  Admin,
  protocolVersion as MESH_PROTOCOL_VERSION,
  type Entry,
  type Event as MeshEvent,
  type PluginInfo,
  type InterfaceInfo,
  type HubStats,
  type PeerStats,
} from "./gen/mesh.js";

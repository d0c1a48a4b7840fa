// capmesh: a plugin mesh on Cap'n Proto capability RPC.
export * from "./rpc/index.js";
export { SocketNetwork, type AcceptOptions, type ConnectionSecurityOptions, type SocketNetworkOptions } from "./network/socket-network.js";
export * from "./auth/index.js";
export { parseAddress, formatAddress, type Address } from "./transport/address.js";
export { DEFAULT_LIMITS, type TransportLimits } from "./transport/limits.js";
export * from "./codec/runtime.js";

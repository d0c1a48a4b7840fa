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

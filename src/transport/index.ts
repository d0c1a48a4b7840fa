// Transport layer: addresses, limits, Cap'n Proto stream framing, message
// streams over byte duplexes, and unix/TCP sockets.

export { AddressError, ACCEPTED_ADDRESS_FORMS, formatAddress, parseAddress, toAddress } from "./address.js";
export type { Address } from "./address.js";
export { DEFAULT_LIMITS, READ_BUDGET_FLOOR_BYTES, readBudgetBytes, resolveLimits } from "./limits.js";
export {
  DEFAULT_INBOUND_BUDGET_BYTES,
  FREE_BYTES_PER_CONNECTION,
  InboundBudget,
  inboundBudgetStats,
  processInboundBudget,
  setInboundBudget,
} from "./inbound-budget.js";
export type { InboundBudgetStats } from "./inbound-budget.js";
export type { TransportLimits } from "./limits.js";
export {
  FrameDecoder,
  FrameError,
  InboundMessage,
  decodeFrame,
  encodeFrame,
  frameBytes,
  frameHeaderBytes,
  messageFromSegments,
} from "./framing.js";
export type { FrameErrorCode } from "./framing.js";
export { memoryStreamPair, releaseIdleSendBuffers, sendBufferStats, streamFromDuplex } from "./message-stream.js";
export type { MessageStream, StreamOptions } from "./message-stream.js";
export { SocketError, dialSocket, listenSocket } from "./socket.js";
export type { DialOptions, ListenOptions, SocketListener } from "./socket.js";

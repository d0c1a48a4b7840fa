// capmesh/rpc: the Cap'n Proto RPC engine and its typed API.
export { RpcConnection, type ConnectionOptions, type InboundLimits } from "./connection.js";
export { RpcError, ProtocolError, type ExceptionType } from "./errors.js";
export type { CapHook, Payload, Response, CallResult, PipelineSource } from "./hook.js";
export { LocalServerHook, type ServerDispatch, type ServerCallContext } from "./local.js";
export {
  CapabilityClient,
  defineInterface,
  dynamicCall,
  hookOf,
  methodPropertyName,
  wrapHook,
  type DynamicResponse,
  type InterfaceHandle,
  type ServerOptions,
} from "./typed.js";
export { CallQueue } from "./sequential.js";
export { setStreamWindow } from "./flow.js";
export type { Capability, CallContext, CallOptions, Pipelined, RpcPromise, ServerOf, TailCall } from "./types.js";
export { capabilityState, getLocalServer, isPromise, type CapabilityState } from "./introspect.js";
export { RpcSystem, Session, startSession, type BootstrapOffer } from "./system.js";
export type { NetworkConnection, PeerInfo, VatNetwork } from "./vat-network.js";
// listen/connect live with the network layer; re-exported for code that imports capmesh/rpc alone.
export { connect, listen, type ConnectOptions, type Listener, type ListenOptions } from "../network/endpoints.js";
export type { InterfaceDef, MethodDef, StructCodec, CapTableReader, CapTableWriter, PipelineField } from "../codec/types.js";
export type { Init } from "../codec/init.js";

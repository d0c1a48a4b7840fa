// Stands in for the RPC runtime (src/rpc/index.ts) in the codec fixture: the
// generated fixture module imports defineInterface and the RPC types from
// here, so codec tests do not depend on the RPC engine.
import type { InterfaceDef } from "../../src/codec/types.js";
import type { Capability } from "../../src/rpc/types.js";

export type { CallContext, CallOptions, Capability, RpcPromise, TailCall } from "../../src/rpc/types.js";

export function defineInterface<C extends Capability, S>(
  def: InterfaceDef,
): InterfaceDef & { server(impl: S): C; readonly __client?: C; readonly __server?: S } {
  return {
    ...def,
    server(): C {
      throw new Error("the codec test shim has no RPC runtime");
    },
  };
}

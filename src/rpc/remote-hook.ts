// Hooks that send over a connection (C++'s RpcClient family): they know how
// to name themselves in a MessageTarget and in a CapDescriptor.
import type * as rpc from "capnp-es/capnp/rpc";
import type { CallHints, CallResult, CapHook, OutgoingCall, Payload } from "./hook.js";
import type { RpcConnection } from "./connection.js";

export interface RemoteHook extends CapHook {
  readonly conn: RpcConnection;
  /**
   * Addresses a message to this capability. Returns null when the message
   * can go over this connection, or the hook to deliver to instead.
   */
  writeTarget(target: rpc.MessageTarget): CapHook | null;
  /** Describes this capability to the peer (receiverHosted / receiverAnswer). */
  writeDescriptor(descriptor: rpc.CapDescriptor): void;
}

export function isRemoteHookOf(hook: CapHook, conn: RpcConnection): hook is RemoteHook {
  return hook.brand === conn;
}

/** Shared call plumbing: encode in the wire message directly, or copy in. */
export function remoteCall(
  hook: RemoteHook,
  interfaceId: bigint,
  methodId: number,
  params: Payload,
  hints: CallHints | undefined,
): CallResult {
  const out = hook.conn.newRemoteCall(hook, interfaceId, methodId);
  hook.conn.copyPayload(params, out.content, out.message);
  return out.send(hints);
}

export type { OutgoingCall };

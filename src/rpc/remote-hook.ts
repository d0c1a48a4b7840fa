// Hooks that send over a connection (C++'s RpcClient family): they know how
// to name themselves in a MessageTarget and in a CapDescriptor.
import type { CallHints, CallResult, CapHook, OutgoingCall, Payload } from "./hook.js";
import type { RpcConnection } from "./connection.js";
import type { WireDescriptor, WireTarget } from "./wire.js";
import { noteCopiedOut } from "./payload.js";

export interface RemoteHook extends CapHook {
  readonly conn: RpcConnection;
  /**
   * How to address a message to this capability over this connection, or
   * null when it now lives elsewhere (a promise that resolved away).
   */
  target(): WireTarget | null;
  /** Describes this capability to the peer (receiverHosted / receiverAnswer). */
  descriptor(): WireDescriptor;
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
  const out = hook.conn.newRemoteCall(hook, interfaceId, methodId, hints);
  hook.conn.copyPayload(params, out.content, out.message);
  noteCopiedOut(params.message);
  return out.send(hints);
}

export type { OutgoingCall };

// Exceptions as rpc.capnp defines them (struct Exception): a type that tells
// the caller what to do about it, and a human-readable reason.
import type * as rpc from "capnp-es/capnp/rpc";

export type ExceptionType = "failed" | "overloaded" | "disconnected" | "unimplemented";

const WIRE_TYPES: readonly ExceptionType[] = ["failed", "overloaded", "disconnected", "unimplemented"];

/**
 * An error that crossed (or could cross) an RPC connection. It carries no
 * stack trace: the type and reason are what the caller acts on; the stack
 * would show the peer's message arriving or the engine tearing a connection
 * down, never the caller's code. Capturing one costs more than the rest of a
 * connection's teardown.
 */
export class RpcError extends Error {
  override name = "RpcError";
  readonly type: ExceptionType;
  /** True when the exception came from the peer rather than this vat. */
  readonly remote: boolean;
  constructor(type: ExceptionType, message: string, remote = false) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.type = type;
    this.remote = remote;
  }

  static failed(message: string): RpcError {
    return new RpcError("failed", message);
  }
  static disconnected(message: string): RpcError {
    return new RpcError("disconnected", message);
  }
  static unimplemented(message: string): RpcError {
    return new RpcError("unimplemented", message);
  }
}

/** A violation of the protocol by the peer: the connection is aborted. */
export class ProtocolError extends RpcError {
  override name = "ProtocolError";
  constructor(message: string) {
    super("failed", message);
  }
}

/**
 * The error a call rejects with when its caller aborts it through `signal`:
 * it says why, keeping the signal's reason as its cause (AbortSignal.timeout()
 * gives "timed out", not "canceled").
 */
export function canceledBy(signal: AbortSignal | undefined): RpcError {
  const reason: unknown = signal?.reason;
  let error: RpcError;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    error = new RpcError("failed", `call timed out: ${reason.message} (the caller's AbortSignal timed out); the call was canceled`);
  } else if (reason instanceof RpcError) {
    return reason;
  } else if (reason instanceof Error && reason.name !== "AbortError") {
    error = new RpcError("failed", `call canceled by the caller: ${reason.message}`);
  } else {
    error = new RpcError("failed", "call canceled by the caller");
  }
  if (reason !== undefined) Object.defineProperty(error, "cause", { value: reason, configurable: true, writable: true });
  return error;
}

/** Normalises anything thrown by application code into an RpcError. */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof Error) {
    if (err.name === "AbortError") return new RpcError("failed", "call canceled");
    return new RpcError("failed", err.message || err.name);
  }
  return new RpcError("failed", String(err));
}

export function writeException(err: unknown, out: rpc.Exception): void {
  const e = toRpcError(err);
  out.reason = e.message;
  out.type = WIRE_TYPES.indexOf(e.type) as rpc.Exception_Type;
}

export function readException(ex: rpc.Exception): RpcError {
  return exceptionFromWire({ type: ex.type as number, reason: ex.reason });
}

/** An RpcError from an Exception read off the wire (type as its enum number). */
export function exceptionFromWire(ex: { type: number; reason: string }): RpcError {
  const type = WIRE_TYPES[ex.type] ?? "failed";
  let reason = ex.reason;
  if (reason.startsWith("remote exception: ")) reason = reason.slice("remote exception: ".length);
  return new RpcError(type, reason, true);
}

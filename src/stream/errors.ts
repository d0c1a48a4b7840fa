// Errors across a stream: what a producer's failure becomes on the wire
// (ByteSink.abort's ErrorInfo) and what the consumer's read rejects with.
import type { ErrorInfo } from "../gen/value.js";
import { RpcError } from "../rpc/errors.js";
import { ErrorValue } from "../value/error-value.js";
import { toValue } from "../value/encode.js";
import { fromValue } from "../value/decode.js";
import { ownValue } from "./own.js";

/** The ErrorInfo for whatever a producer threw (its message, code and details when they convert). */
export function errorInfoOf(err: unknown): ErrorInfo {
  // A stream relayed from a producer that went away says so downstream too.
  if (err instanceof RpcError && err.type === "disconnected") return { message: err.message, code: DISCONNECTED, details: NULL };
  if (err instanceof Error || (typeof err === "object" && err !== null && "message" in err)) {
    try {
      const v = toValue(err);
      if (v.which === "error") return v.error;
    } catch {
      // Details that have no Value form: the message and code still go.
    }
    const e = err as { message?: unknown; code?: unknown };
    const code = typeof e.code === "string" || typeof e.code === "number" ? String(e.code) : "";
    return { message: String(e.message), code, details: NULL };
  }
  return { message: String(err), code: "", details: NULL };
}

const NULL = { which: "null", null: true } as const;
/** The code an abort carries when the stream it relayed lost its producer. */
const DISCONNECTED = "disconnected";

/** The error a consumer's read rejects with when its producer aborted. */
export function errorFromInfo(info: ErrorInfo): ErrorValue | RpcError {
  if (info.code === DISCONNECTED) return new RpcError("disconnected", info.message, true);
  let details: unknown = null;
  // Details are the producer's to describe; a malformed value is dropped, not fatal.
  if (info.details != null && info.details.which !== "null") {
    try {
      details = ownValue(fromValue(info.details));
    } catch {
      details = null;
    }
  }
  return new ErrorValue(info.message, { code: info.code, details });
}

/** What the consumer's read rejects with when the producer went away without ending the stream. */
export function producerGone(detail?: string): RpcError {
  return RpcError.disconnected(
    `capmesh: the stream's producer went away before ending it${detail ? ` (${detail})` : ""}; the data read so far is incomplete`,
  );
}

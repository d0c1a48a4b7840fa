// One line per rpc message, for triage of findings (show.ts) and logs.
import * as rpc from "capnp-es/capnp/rpc";
import { parseFrame } from "./frames.js";

/** Union member names by tag (capnp-es's *_Which objects map names to tags). */
function namer(which: Record<string, number>): (tag: number) => string {
  const names = new Map(Object.entries(which).map(([k, v]) => [v, k.toLowerCase()]));
  return (tag) => names.get(tag) ?? `tag ${tag}`;
}
const messageName = namer(rpc.Message_Which);
const descriptorName = namer(rpc.CapDescriptor_Which);
const returnName = namer(rpc.Return_Which);
const contextName = namer(rpc.Disembargo_Context_Which);

function target(t: rpc.MessageTarget): string {
  if (t._isImportedCap) return `import ${t.importedCap}`;
  return promisedAnswer(t.promisedAnswer);
}

function descriptors(p: rpc.Payload): string {
  if (!p._hasCapTable()) return "";
  const list = p.capTable;
  const shown = Array.from({ length: Math.min(list.length, 6) }, (_, i) => describeDescriptor(list.get(i)));
  return ` caps [${shown.join(", ")}${list.length > 6 ? `, … ${list.length} in all` : ""}]`;
}

function describeDescriptor(d: rpc.CapDescriptor): string {
  if (d._isSenderHosted) return `senderHosted ${d.senderHosted}`;
  if (d._isSenderPromise) return `senderPromise ${d.senderPromise}`;
  if (d._isReceiverHosted) return `receiverHosted ${d.receiverHosted}`;
  if (d._isReceiverAnswer) return `receiverAnswer(${promisedAnswer(d.receiverAnswer)})`;
  return descriptorName(d.which());
}

function promisedAnswer(pa: rpc.PromisedAnswer): string {
  const ops = pa._hasTransform() ? Array.from({ length: pa.transform.length }, (_, i) => pa.transform.get(i).getPointerField) : [];
  return `answer ${pa.questionId}${ops.length ? ` .${ops.join(".")}` : ""}`;
}

/** One line for a frame's message (or why it does not parse). */
export function describeFrame(frame: Uint8Array): string {
  const m = parseFrame(frame);
  if (!m) return `(${frame.length} bytes that are not a whole frame)`;
  try {
    const root = m.getRoot(rpc.Message);
    const which = root.which();
    switch (which) {
      case rpc.Message.BOOTSTRAP:
        return `Bootstrap q${root.bootstrap.questionId}`;
      case rpc.Message.CALL: {
        const c = root.call;
        return `Call q${c.questionId} → ${target(c.target)}: 0x${c.interfaceId.toString(16)}.${c.methodId}${descriptors(c.params)} sendResultsTo=${c.sendResultsTo.which()}`;
      }
      case rpc.Message.RETURN: {
        const r = root.return;
        return `Return a${r.answerId} ${returnName(r.which())}${r._isResults ? descriptors(r.results) : ""} releaseParamCaps=${r.releaseParamCaps}`;
      }
      case rpc.Message.FINISH:
        return `Finish q${root.finish.questionId} releaseResultCaps=${root.finish.releaseResultCaps}`;
      case rpc.Message.RELEASE:
        return `Release export ${root.release.id} ×${root.release.referenceCount}`;
      case rpc.Message.RESOLVE: {
        const r = root.resolve;
        if (!r._isCap) return `Resolve promise ${r.promiseId} → exception`;
        return `Resolve promise ${r.promiseId} → ${describeDescriptor(r.cap)}`;
      }
      case rpc.Message.DISEMBARGO: {
        const d = root.disembargo;
        const ctx = d.context;
        return `Disembargo → ${target(d.target)} ${contextName(ctx.which())} ${ctx._isSenderLoopback ? ctx.senderLoopback : ctx._isReceiverLoopback ? ctx.receiverLoopback : ""}`;
      }
      case rpc.Message.UNIMPLEMENTED:
        return `Unimplemented(${messageName(root.unimplemented.which())})`;
      default:
        return messageName(which);
    }
  } catch (e) {
    return `(malformed: ${e instanceof Error ? e.message : String(e)})`;
  }
}


// Case generation: which kind of hostile connection, seeded from what.
import { randomBoxOps } from "../attacks/box.js";
import { randomHandshakeAttack } from "../attacks/handshake.js";
import { randomResponder } from "../attacks/responder.js";
import type { Case } from "../cases.js";
import type { Conversation } from "../corpus.js";
import type { Rng } from "../prng.js";
import type { ContentSpec, DescriptorSpec } from "../raw.js";
import { encodeMessage, type MessageSpec } from "../rpc-spec.js";
import { chunk, mutateBytes } from "./bytes.js";
import { IFACE, M } from "./content.js";
import { mutateMessages } from "./messages.js";
import { hostileScript } from "./script.js";

export interface GenerateOptions {
  /** Allow one large (MiB-sized) honest message in this batch. */
  allowBig: boolean;
}

function pickConversation(rng: Rng, corpus: readonly Conversation[]): Conversation {
  // What clients sent is the most direct seed for a server; what servers sent
  // (Returns, Resolves, Disembargos) reaches its caller side.
  const c2s = corpus.filter((c) => c.direction === "c2s");
  const s2c = corpus.filter((c) => c.direction === "s2c");
  return rng.chance(0.75) || s2c.length === 0 ? rng.pick(c2s) : rng.pick(s2c);
}

function corpusFrames(rng: Rng, corpus: readonly Conversation[]): { frames: Uint8Array[]; from: string } {
  const conv = pickConversation(rng, corpus);
  let frames = [...conv.frames];
  if (rng.chance(0.2) && frames.length > 2) {
    const start = rng.int(frames.length - 1);
    frames = frames.slice(start, start + rng.range(1, frames.length - start));
  }
  return { frames, from: conv.name };
}

function donors(rng: Rng, corpus: readonly Conversation[]): Uint8Array[] {
  return [...pickConversation(rng, corpus).frames];
}

/** A recorded conversation mutated at the message level, maybe at the byte level too. */
function fromCorpus(rng: Rng, corpus: readonly Conversation[]): { frames: Uint8Array[]; label: string } {
  const { frames, from } = corpusFrames(rng, corpus);
  const notes = mutateMessages(rng, frames, rng.weighted([[1, 0], [4, 1], [3, 2], [2, rng.range(3, 6)]]));
  if (rng.chance(0.3)) notes.push(...mutateBytes(rng, frames, donors(rng, corpus), rng.range(1, 3)));
  return { frames, label: `corpus ${from}${notes.length ? ": " + notes.join("; ") : " (as recorded)"}` };
}

/** A hostile script, sometimes after a recorded prefix, rarely byte-mutated. */
function fromScript(rng: Rng, corpus: readonly Conversation[]): { frames: Uint8Array[]; label: string } {
  const specs = hostileScript(rng);
  const frames = specs.map(encodeMessage);
  const notes = [`script of ${specs.length} messages (${summarize(specs)})`];
  if (rng.chance(0.15)) {
    const { frames: prefix, from } = corpusFrames(rng, corpus);
    frames.unshift(...prefix);
    notes.push(`after ${from}`);
  }
  if (rng.chance(0.1)) notes.push(...mutateBytes(rng, frames, donors(rng, corpus), 1));
  return { frames, label: notes.join("; ") };
}

/** Framing attacks: a recorded conversation with byte-level damage. */
function fromFraming(rng: Rng, corpus: readonly Conversation[]): { frames: Uint8Array[]; label: string } {
  const { frames, from } = corpusFrames(rng, corpus);
  const notes = mutateBytes(rng, frames, donors(rng, corpus), rng.range(1, 4));
  return { frames, label: `framing on ${from}: ${notes.join("; ")}` };
}

function summarize(specs: readonly MessageSpec[]): string {
  const counts = new Map<string, number>();
  for (const s of specs) counts.set(s.type, (counts.get(s.type) ?? 0) + 1);
  return [...counts].map(([t, n]) => (n > 1 ? `${t}×${n}` : t)).join(" ");
}

/** One large, honest message: handling it must take time linear in its size. */
function bigMessage(rng: Rng): { frames: Uint8Array[]; label: string } {
  const size = rng.pick([256 << 10, 1 << 20, 4 << 20, 8 << 20, 15 << 20]);
  const boot: MessageSpec = { type: "bootstrap", question: 0 };
  const call = (methodId: number, content: ContentSpec, caps: DescriptorSpec[] = []): MessageSpec => ({
    type: "call",
    question: 1,
    target: { importedCap: 0 },
    interfaceId: IFACE.testService,
    methodId,
    content,
    caps,
    sendResultsTo: 0,
  });
  const kind = rng.pick(["checksum", "echo", "list of caps", "cap table", "unimplemented"] as const);
  let spec: MessageSpec;
  switch (kind) {
    case "checksum":
      spec = call(M.checksum, { kind: "struct", data: [], ptrs: [{ kind: "bytes", length: size, fill: 0x5a, nulTerminated: false }] });
      break;
    case "echo":
      spec = call(M.echo, {
        kind: "struct",
        data: [7n],
        ptrs: [
          { kind: "bytes", length: size >> 1, fill: 0x61, nulTerminated: true },
          { kind: "bytes", length: size >> 1, fill: 0x33, nulTerminated: false },
        ],
      });
      break;
    case "list of caps":
      spec = call(M.sumCounters, { kind: "struct", data: [], ptrs: [{ kind: "cap-list", indices: new Array<number>(size >> 3).fill(-1) }] });
      break;
    case "cap table": {
      // Every entry an import of ours: the server makes an entry per descriptor.
      const n = Math.min(size >> 4, 500_000);
      spec = call(M.echoCap, { kind: "struct", data: [], ptrs: [{ kind: "capPtr", index: 0 }] }, Array.from({ length: n }, (_, i) => ({ kind: "senderHosted" as const, id: i })));
      break;
    }
    case "unimplemented":
      spec = { type: "unknown", tag: 20, content: { kind: "big", dataWords: size >> 3 } };
      break;
  }
  return { frames: [encodeMessage(boot), encodeMessage(spec)], label: `big message: ${kind}, ${size} bytes` };
}

export function generateCase(rng: Rng, corpus: readonly Conversation[], options: GenerateOptions): Case {
  const kind = rng.weighted<string>([
    [4, "corpus"],
    [4, "script"],
    [2, "framing"],
    [2, "box"],
    [1.5, "handshake"],
    [options.allowBig ? 0.4 : 0, "big"],
  ]);
  if (kind === "handshake") {
    return { kind: "handshake", attack: randomHandshakeAttack(rng), label: "broken handshake" };
  }
  const made =
    kind === "big"
      ? bigMessage(rng)
      : kind === "script" || (kind === "box" && rng.chance(0.5))
        ? fromScript(rng, corpus)
        : kind === "framing"
          ? fromFraming(rng, corpus)
          : fromCorpus(rng, corpus);
  const writes = chunk(rng, made.frames);
  if (kind === "box") {
    const ops = rng.chance(0.5) ? randomBoxOps(rng) : [];
    return { kind: "box", writes, ops, label: made.label };
  }
  return {
    kind: "plain",
    listener: rng.chance(0.85) ? "plain" : "secure",
    writes,
    responder: randomResponder(rng),
    label: made.label,
  };
}

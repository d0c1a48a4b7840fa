// The seed corpus: recorded real conversations, one file per direction of
// each, as the raw framed bytes that crossed the socket (standard Cap'n
// Proto stream framing, so `capnp decode --flat`-style tools can read a
// frame). Names are `<conversation>.<c2s|s2c>.bin`:
//   cpp-client-<scenario>   the C++ interop peer's client against a capmesh server
//   ts-client-<scenario>    a capmesh client against the C++ interop peer's server
// `npx tsx test/fuzz/record.ts` rebuilds it (needs the C++ toolchain); the
// fuzzer only reads it.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { concat, splitFrames } from "./frames.js";

export const CORPUS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "corpus");

/** Frames over this size are left out of the corpus (the fuzzer makes big ones itself). */
export const MAX_CORPUS_FRAME = 32 * 1024;
/** Each file stops growing here; the total stays well under 1 MB. */
export const MAX_CORPUS_FILE = 24 * 1024;

export interface Conversation {
  /** File name without `.bin`, e.g. `cpp-client-echo.c2s`. */
  readonly name: string;
  readonly direction: "c2s" | "s2c";
  readonly frames: readonly Uint8Array[];
}

export function loadCorpus(dir = CORPUS_DIR): Conversation[] {
  const out: Conversation[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = /^(.+)\.(c2s|s2c)\.bin$/.exec(file);
    if (!m) continue;
    const { frames } = splitFrames(new Uint8Array(readFileSync(path.join(dir, file))));
    if (frames.length > 0) out.push({ name: `${m[1]}.${m[2]}`, direction: m[2] as "c2s" | "s2c", frames });
  }
  if (out.length === 0) throw new Error(`no corpus in ${dir}: run \`npx tsx test/fuzz/record.ts\``);
  return out;
}

/** The frames of a recorded direction, trimmed to the corpus size limits. */
export function trimForCorpus(chunks: readonly Uint8Array[]): Uint8Array {
  const { frames } = splitFrames(concat(chunks));
  const kept: Uint8Array[] = [];
  let size = 0;
  for (const f of frames) {
    if (f.length > MAX_CORPUS_FRAME) continue;
    if (size + f.length > MAX_CORPUS_FILE) break;
    kept.push(f);
    size += f.length;
  }
  return concat(kept);
}

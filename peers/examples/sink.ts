// A plugin: registers "sink", asks the plugin "source" for its file by name,
// copies the byte stream into a file of its own while hashing it, checks the
// hash against the one the source gave, and leaves (exit code 1 if they differ).
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { callable, closure, joinMesh, StreamReader } from "../../src/index.js";
import { Closure } from "../../src/gen/engine.js";

const out = process.argv[2];
if (!out) throw new Error("usage: sink.ts OUT (where to write the copy)");
let copied = 0;

{
  await using mesh = await joinMesh({
    name: "sink",
    provide: closure(() => ({ copied })), // what it has received so far
    info: { version: "1.0.0", description: "copies the source's file, checking its hash" },
  });
  const source = callable(mesh.connect("source", Closure, { wait: 5_000 }));
  // The stream in the answer arrives as a reader, already reading.
  const file = (await source()) as { name: string; size: number; sha256: string; bytes: StreamReader<Uint8Array> };
  source.release();
  if (!(file.bytes instanceof StreamReader) || file.bytes.kind !== "bytes") throw new Error(`"source" answered without a byte stream`);
  const hash = createHash("sha256");
  await pipeline(file.bytes.nodeReadable(), async function* (chunks: AsyncIterable<Uint8Array>) {
    for await (const chunk of chunks) {
      hash.update(chunk);
      copied += chunk.length;
      yield chunk;
    }
  }, createWriteStream(out));
  const sha256 = hash.digest("hex");
  if (sha256 !== file.sha256) {
    console.log(`copied ${file.name}: ${copied} bytes, sha256 ${sha256}, but the source said ${file.sha256}`);
    process.exitCode = 1;
  } else {
    console.log(`copied ${file.name}: ${copied} bytes, sha256 ${sha256} (matches the source's)`);
  }
}

// A plugin: registers "source" and offers one file's bytes. Each call of its
// closure answers with the file's name, size and SHA-256, and a byte stream
// of its contents (the file's Readable inside the result: toValue serves it
// as a ByteSource), read from disk only as fast as the reader takes it.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import { closure, joinMesh } from "../../src/index.js";

const path = process.argv[2];
if (!path) throw new Error("usage: source.ts FILE (the file to offer)");
const hash = createHash("sha256");
await pipeline(createReadStream(path), hash);
const file = { name: basename(path), size: (await stat(path)).size, sha256: hash.digest("hex") };

const mesh = await joinMesh({
  name: "source",
  provide: closure(() => ({ ...file, bytes: createReadStream(path) })),
  info: { version: "1.0.0", description: `offers ${file.name} as a byte stream` },
});
console.log(`registered "source" as ${mesh.id}; offering ${file.name} (${file.size} bytes, sha256 ${file.sha256})`);

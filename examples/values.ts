import { createReadStream, statSync } from "node:fs";
import { callable, closure, joinMesh, startHub, type StreamReader } from "../src/index.js";
import { Closure } from "../src/gen/engine.js";

const hub = await startHub();
async function* squares(n: number) {
  for (let i = 1; i <= n; i++) yield i * i;
}
// A plugin answers with a plain value; the Readable and the generator in it travel as streams.
const plugin = await joinMesh({
  name: "files",
  provide: closure((name: string) => ({ name, big: 2n ** 60n, head: new Uint8Array([1, 2]), bytes: createReadStream(name), squares: squares(5) })),
});
const client = await joinMesh();
const files = callable(client.connect("files", Closure));
type File = { name: string; big: bigint; head: Uint8Array; bytes: StreamReader<Uint8Array>; squares: StreamReader<number> };
const file = (await files("package.json")) as File;
console.log(`${file.name}: ${typeof file.big}, ${file.head.length} bytes in the value`);
let size = 0;
for await (const chunk of file.bytes) size += chunk.length; // a byte stream: Uint8Array chunks
const got: number[] = [];
for await (const n of file.squares) got.push(n); // a value stream: plain values
console.log(`${size === statSync(file.name).size ? "all" : "not all"} of it streamed; squares ${got.join(", ")}`);
files.release();
for (const peer of [client, plugin, hub]) await peer.close();

import { PassThrough } from "node:stream";
import { joinMesh, startHub } from "../src/index.js";

const hub = await startHub();
// The plugin: its end is a Duplex; what the caller writes goes into it, what it gives out goes back.
const plugin = await joinMesh({
  name: "echo",
  channels: ({ caller, protocol }) => {
    if (protocol !== "echo/1") throw new Error(`speaks echo/1, not "${protocol}"`);
    console.log(`channel from ${caller === client.id ? "the client" : caller}`);
    return new PassThrough();
  },
});
// A peer: its end of the channel.
const client = await joinMesh();
const channel = await client.openChannel("echo", { protocol: "echo/1" });
channel.end("hello");
for await (const chunk of channel) console.log(`echoed: ${chunk}`);
await client.openChannel("echo", { protocol: "x" }).catch((e: Error) => console.log(e.message));
for (const peer of [client, plugin, hub]) await peer.close();

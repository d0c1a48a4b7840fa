// The hub of the memory bench's idle-peer figure, in a process of its own so
// that its RSS is its own: `startHub` on a unix socket (handshake, no
// box-stream: the default there) and on TCP loopback (handshake and
// box-stream), with direct paths off so that every call of a peer's burst
// goes through the hub.
//
//   node --expose-gc --import tsx bench/memory/hub.ts <home> <socket>
//
// Prints {"ready", "unix", "tcp", "id"}. Commands: `memory` collects garbage
// and reports process.memoryUsage(), the connections, and the send buffers
// the hub's connections still keep (sendBufferStats); `memory {collect:
// false}` only reads them (a forced collection would hold back V8's own
// shrinking of its heap after a burst).
import { startHub } from "../../src/mesh/hub.js";
import { sendBufferStats } from "../../src/transport/message-stream.js";
import { childMain, emit, serveCommands } from "../mesh/child.js";

await childMain(async () => {
  const [home, socket] = process.argv.slice(2);
  if (home === undefined || socket === undefined) throw new Error("usage: hub.ts <home> <socket>");
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("run the hub with node --expose-gc");
  // Over TCP only what a rule allows: here, what the unix socket allows by default.
  const everyone = [{ peer: "*" }];
  const policy = { register: everyone, connect: everyone, watch: everyone };
  const hub = await startHub({ home, socket, listen: ["tcp://127.0.0.1:0"], directPaths: false, policy });
  serveCommands(
    {
      memory: async ({ collect }) => {
        if (collect === false) return { ...process.memoryUsage(), sendBuffers: sendBufferStats().bytes };
        // Twice, and again after a moment: what finalizers and pending callbacks free goes in the later passes.
        gc();
        gc();
        await new Promise((resolve) => setTimeout(resolve, 100));
        gc();
        const buffers = sendBufferStats();
        return { ...process.memoryUsage(), connections: hub.stats().connections, sendBuffers: buffers.bytes, sendBufferStreams: buffers.streams };
      },
    },
    () => hub.close(),
  );
  const tcp = hub.addresses.find((a) => a.startsWith("tcp"));
  emit({ ready: true, unix: hub.address, tcp, id: hub.id });
});

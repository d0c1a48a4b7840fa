// JSON-RPC server: vscode-jsonrpc over the socket (Content-Length framing).
import net from "node:net";
import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from "vscode-jsonrpc/node";
import { listen, tuneAccepted } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";

function serve(socket: net.Socket): void {
  tuneAccepted(socket);
  socket.on("error", () => socket.destroy());
  const connection = createMessageConnection(new StreamMessageReader(socket), new StreamMessageWriter(socket));
  // Handle id -> depth. Chain handles are single-use: dropped once called.
  const objects = new Map<number, number>([[0, 0]]);
  let nextId = 1;
  let bytes = 0;
  const depthOf = (target: number): number => {
    const depth = objects.get(target);
    if (depth === undefined) throw new Error(`no object ${target}`);
    if (target !== 0) objects.delete(target);
    return depth;
  };
  connection.onRequest("ping", (p: { target: number; n: number }) => {
    const depth = depthOf(p.target);
    return depth === 0 ? p.n : depth;
  });
  connection.onRequest("next", (p: { target: number; depth: number }) => {
    depthOf(p.target);
    const id = nextId++;
    objects.set(id, p.depth);
    return id;
  });
  connection.onRequest("write", (p: { chunk: string }) => {
    bytes += Buffer.from(p.chunk, "base64").length;
    return null;
  });
  connection.onRequest("done", () => {
    const total = bytes;
    bytes = 0;
    return total;
  });
  connection.onClose(() => connection.dispose());
  connection.listen();
}

await runServer((address) => listen(net.createServer(serve), address));

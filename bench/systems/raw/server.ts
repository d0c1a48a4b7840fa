// Raw floor server: length-prefixed echo over a bare Node socket.
import net from "node:net";
import { listen, tuneAccepted } from "../../lib/address.js";
import { CorkedWriter, lengthPrefixed } from "../../lib/framing.js";
import { runServer } from "../../lib/server.js";
import { OP_DONE, OP_NEXT, OP_PING, OP_WRITE } from "./protocol.js";

function serve(socket: net.Socket): void {
  tuneAccepted(socket);
  const out = new CorkedWriter(socket);
  const objects = new Map<number, number>([[0, 0]]);
  let bytes = 0;
  const ack = Buffer.from([1, 0, 0, 0, OP_WRITE]);
  const nextReply = Buffer.from([1, 0, 0, 0, OP_NEXT]);
  const depthOf = (target: number): number => {
    const depth = objects.get(target);
    if (depth === undefined) throw new Error(`no object ${target}`);
    if (target !== 0) objects.delete(target);
    return depth;
  };
  const splitter = lengthPrefixed((p) => {
    switch (p[0]) {
      case OP_PING: {
        const reply = Buffer.allocUnsafe(9);
        reply.writeUInt32LE(5, 0);
        reply[4] = OP_PING;
        const depth = depthOf(p.readUInt32LE(1));
        reply.writeUInt32LE(depth === 0 ? p.readUInt32LE(5) : depth, 5);
        out.write(reply);
        break;
      }
      case OP_NEXT: {
        depthOf(p.readUInt32LE(1));
        objects.set(p.readUInt32LE(5), p.readUInt32LE(9));
        out.write(nextReply);
        break;
      }
      case OP_WRITE:
        bytes += p.length - 1;
        out.write(ack);
        break;
      case OP_DONE: {
        const reply = Buffer.allocUnsafe(13);
        reply.writeUInt32LE(9, 0);
        reply[4] = OP_DONE;
        reply.writeBigUInt64LE(BigInt(bytes), 5);
        bytes = 0;
        out.write(reply);
        break;
      }
      default:
        socket.destroy(new Error(`bad op ${p[0]}`));
    }
  });
  socket.on("data", (d: Buffer) => {
    try {
      splitter.push(d);
    } catch (err) {
      socket.destroy(err as Error);
    }
  });
  socket.on("error", () => socket.destroy());
}

await runServer((address) => listen(net.createServer(serve), address));

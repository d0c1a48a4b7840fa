// The floor: dial and one 8-byte echo; bytes straight onto the socket.
import { connect } from "../../../lib/address.js";
import { runAuthClient } from "../../harness.js";
import { endAndClose, readBytes, readCount, writeAll } from "../../streams.js";

const hello = Buffer.from("capmesh!");

await runAuthClient(() => ({
  async connect(address) {
    const socket = await connect(address);
    socket.write(hello);
    await readBytes(socket, hello.length);
    return () => endAndClose(socket);
  },
  async push(address, chunk, count) {
    const socket = await connect(address);
    const reply = readCount(socket);
    await writeAll(socket, chunk, count);
    const bytes = await reply;
    socket.destroy();
    return bytes;
  },
}));

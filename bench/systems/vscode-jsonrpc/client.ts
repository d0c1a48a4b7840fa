// JSON-RPC client: vscode-jsonrpc over the socket.
import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from "vscode-jsonrpc/node";
import { connect } from "../../lib/address.js";
import { CHAIN_LENGTH, STREAM_WINDOW, runClient } from "../../lib/client.js";

await runClient(async (address) => {
  const socket = await connect(address);
  const connection = createMessageConnection(new StreamMessageReader(socket), new StreamMessageWriter(socket));
  connection.listen();
  const ping = (target: number, n: number): Promise<number> => connection.sendRequest<number>("ping", { target, n });
  return {
    notes: {
      pipelined: "no object capabilities: each step names the previous handle id",
      stream: `base64 chunks as requests, ${STREAM_WINDOW} unanswered at most (no flow control of its own)`,
    },
    ping: (n) => ping(0, n),
    async stream(chunk, more) {
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const acks: Promise<unknown>[] = [];
      let oldest = 0;
      while (more()) {
        if (acks.length - oldest >= STREAM_WINDOW) await acks[oldest++];
        acks.push(connection.sendRequest("write", { chunk: bytes.toString("base64") }));
      }
      await Promise.all(acks.slice(oldest));
      return connection.sendRequest<number>("done");
    },
    async chainAwaited(n) {
      let target = 0;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        target = await connection.sendRequest<number>("next", { target, depth });
      }
      return ping(target, n);
    },
    close() {
      connection.dispose();
      socket.end();
    },
  };
});

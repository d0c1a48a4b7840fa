// Raw floor client: every message of one tick goes out in one corked writev.
import { connect } from "../../lib/address.js";
import { CHAIN_LENGTH, STREAM_WINDOW, runClient, type BenchConnection } from "../../lib/client.js";
import { CorkedWriter, lengthPrefixed } from "../../lib/framing.js";
import { OP_DONE, OP_NEXT, OP_PING, OP_WRITE } from "./protocol.js";

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

await runClient(async (address) => {
  const socket = await connect(address);
  const out = new CorkedWriter(socket);
  // Replies arrive in request order: a FIFO of waiters is all the matching needed.
  const waiting: Pending[] = [];
  let head = 0;
  let failure: Error | undefined;
  const splitter = lengthPrefixed((payload) => {
    const w = waiting[head];
    if (w === undefined) throw new Error("unexpected reply");
    waiting[head++] = undefined as unknown as Pending;
    if (head > 4096 && head * 2 > waiting.length) {
      waiting.splice(0, head);
      head = 0;
    }
    w.resolve(payload);
  });
  socket.on("data", (d: Buffer) => splitter.push(d));
  const onGone = (err?: Error): void => {
    failure = err ?? new Error("connection closed");
    for (let i = head; i < waiting.length; i++) waiting[i]?.reject(failure);
    waiting.length = 0;
    head = 0;
  };
  socket.on("error", onGone);
  socket.on("close", () => onGone());

  const request = (frame: Buffer, extra?: Uint8Array): Promise<Buffer> => {
    if (failure !== undefined) return Promise.reject(failure);
    const reply = new Promise<Buffer>((resolve, reject) => waiting.push({ resolve, reject }));
    out.write(frame);
    if (extra !== undefined) out.write(extra);
    return reply;
  };
  const ping = async (target: number, n: number): Promise<number> => {
    const f = Buffer.allocUnsafe(13);
    f.writeUInt32LE(9, 0);
    f[4] = OP_PING;
    f.writeUInt32LE(target, 5);
    f.writeUInt32LE(n, 9);
    return (await request(f)).readUInt32LE(1);
  };
  let nextId = 1;
  const next = (target: number, depth: number): [number, Promise<Buffer>] => {
    const id = nextId;
    nextId = nextId >= 0xfffffff0 ? 1 : nextId + 1;
    const f = Buffer.allocUnsafe(17);
    f.writeUInt32LE(13, 0);
    f[4] = OP_NEXT;
    f.writeUInt32LE(target, 5);
    f.writeUInt32LE(id, 9);
    f.writeUInt32LE(depth, 13);
    return [id, request(f)];
  };

  const connection: BenchConnection = {
    ping: (n) => ping(0, n),
    async stream(chunk, more) {
      const header = Buffer.allocUnsafe(5);
      header.writeUInt32LE(chunk.length + 1, 0);
      header[4] = OP_WRITE;
      const acks: Promise<Buffer>[] = [];
      let oldest = 0;
      while (more()) {
        if (acks.length - oldest >= STREAM_WINDOW) await acks[oldest++];
        acks.push(request(header, chunk));
        if (socket.writableNeedDrain) await out.drained();
      }
      await Promise.all(acks.slice(oldest));
      const done = Buffer.from([1, 0, 0, 0, OP_DONE]);
      return Number((await request(done)).readBigUInt64LE(1));
    },
    async chainPipelined(n) {
      // All eleven frames leave in one writev; only the last reply is awaited
      // (the others resolve in order before it).
      let target = 0;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) target = next(target, depth)[0];
      return ping(target, n);
    },
    async chainAwaited(n) {
      let target = 0;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) {
        const [id, reply] = next(target, depth);
        await reply;
        target = id;
      }
      return ping(target, n);
    },
    close: () => {
      socket.end();
    },
  };
  return connection;
});

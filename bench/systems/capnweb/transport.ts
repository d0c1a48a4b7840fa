// A Cap'n Web RpcTransport over a socket: each JSON message is one frame of a
// u32 little-endian byte length and the UTF-8 text. Writes of one tick are
// batched into one writev.
import type net from "node:net";
import type { RpcTransport } from "capnweb";
import { CorkedWriter, lengthPrefixed } from "../../lib/framing.js";

export class SocketTransport implements RpcTransport {
  private readonly out: CorkedWriter;
  private readonly inbox: string[] = [];
  private inboxHead = 0;
  private waiter: { resolve(m: string): void; reject(e: Error): void } | undefined;
  private failure: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    this.out = new CorkedWriter(socket);
    const splitter = lengthPrefixed((payload) => this.deliver(payload.toString("utf8")));
    socket.on("data", (d: Buffer) => splitter.push(d));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("connection closed")));
  }

  send(message: string): void {
    if (this.failure !== undefined) throw this.failure;
    const length = Buffer.byteLength(message, "utf8");
    const frame = Buffer.allocUnsafe(4 + length);
    frame.writeUInt32LE(length, 0);
    frame.write(message, 4, "utf8");
    this.out.write(frame);
  }

  receive(): Promise<string> {
    if (this.inboxHead < this.inbox.length) {
      const m = this.inbox[this.inboxHead++]!;
      if (this.inboxHead === this.inbox.length) {
        this.inbox.length = 0;
        this.inboxHead = 0;
      }
      return Promise.resolve(m);
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  abort(): void {
    this.socket.end();
  }

  private deliver(message: string): void {
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.resolve(message);
    } else {
      this.inbox.push(message);
    }
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
}

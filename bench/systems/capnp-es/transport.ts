// A capnp-es RPC Transport over a socket, in Cap'n Proto's standard stream
// framing (what the C++ implementation speaks). Writes of one tick are batched
// into one writev.
import type net from "node:net";
import { Message, type Transport } from "capnp-es";
import { Message as RpcMessage } from "capnp-es/capnp/rpc";
import { CorkedWriter, capnpFramed } from "../../lib/framing.js";

export class SocketTransport implements Transport {
  private readonly out: CorkedWriter;
  private readonly inbox: RpcMessage[] = [];
  private waiter: { resolve(m: RpcMessage): void; reject(e?: Error): void } | undefined;
  private closed = false;
  private failure: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    this.out = new CorkedWriter(socket);
    const splitter = capnpFramed((frame) => {
      const copy = new Uint8Array(frame).buffer;
      this.deliver(new Message(copy, false).getRoot(RpcMessage));
    });
    socket.on("data", (d: Buffer) => {
      try {
        splitter.push(d);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on("error", (err) => this.end(err));
    socket.on("close", () => this.end());
  }

  sendMessage(msg: RpcMessage): void {
    if (this.closed) return;
    this.out.write(new Uint8Array(msg.segment.message.toArrayBuffer()));
  }

  recvMessage(): Promise<RpcMessage> {
    const m = this.inbox.shift();
    if (m !== undefined) return Promise.resolve(m);
    // capnp-es's Conn treats a rejection with no reason as a clean end.
    if (this.closed) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  close(): void {
    this.socket.end();
  }

  private deliver(m: RpcMessage): void {
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.resolve(m);
    } else {
      this.inbox.push(m);
    }
  }

  private end(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
}

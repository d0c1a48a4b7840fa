// A capnp-ts 0.9 Transport over a socket, in Cap'n Proto's standard stream
// framing. Writes of one tick are batched into one writev.
import type net from "node:net";
import type { Transport } from "capnp-ts";
import { CorkedWriter, capnpFramed } from "../../lib/framing.js";

export class SocketTransport implements Transport {
  private readonly out: CorkedWriter;
  private messageHandler: ((data: Uint8Array) => void) | undefined;
  private closeHandler: ((err?: Error) => void) | undefined;
  private closed = false;

  constructor(private readonly socket: net.Socket) {
    this.out = new CorkedWriter(socket);
    const splitter = capnpFramed((frame) => this.messageHandler?.(new Uint8Array(frame)));
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

  send(data: Uint8Array): void {
    if (!this.closed) this.out.write(data);
  }

  onMessage(cb: (data: Uint8Array) => void): void {
    this.messageHandler = cb;
  }

  onClose(cb: (err?: Error) => void): void {
    this.closeHandler = cb;
  }

  close(): void {
    this.socket.end();
  }

  private end(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeHandler?.(err);
  }
}

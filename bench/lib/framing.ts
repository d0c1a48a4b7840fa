// Socket helpers shared by the systems that need their own message framing.
import type net from "node:net";

/**
 * Batches every write made during one tick into a single writev: the socket
 * is corked on the first write of a tick and uncorked on the next tick.
 */
export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(readonly socket: net.Socket) {}

  /** Returns false when the socket's buffer is over its high-water mark. */
  write(data: Uint8Array): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    return this.socket.write(data);
  }

  /** Resolves once the socket has drained, or at once if it needs no draining. */
  drained(): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.socket.off("close", onClose);
        resolve();
      };
      const onClose = (): void => {
        this.socket.off("drain", onDrain);
        reject(new Error("socket closed"));
      };
      this.socket.once("drain", onDrain);
      this.socket.once("close", onClose);
    });
  }
}

/** A u32 little-endian length header for `payloadLength` bytes. */
export function lengthHeader(payloadLength: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32LE(payloadLength, 0);
  return h;
}

/**
 * Splits a byte stream into frames. `frameLength` looks at the buffered bytes
 * and returns the total length of the first frame, or -1 when more bytes are
 * needed to tell. Each frame is handed on as one Buffer (a view when it lies
 * within one received chunk, a copy otherwise).
 */
export class FrameSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly frameLength: (buf: Buffer) => number,
    private readonly onFrame: (frame: Buffer) => void,
    private readonly headerBytes: number,
  ) {}

  push(data: Buffer): void {
    this.chunks.push(data);
    this.buffered += data.length;
    for (;;) {
      if (this.buffered < this.headerBytes) return;
      let head = this.chunks[0]!;
      if (head.length < this.headerBytes) {
        head = this.coalesce();
      }
      const total = this.frameLength(head);
      if (total < 0) {
        if (this.chunks.length === 1) return;
        const whole = this.coalesce();
        const again = this.frameLength(whole);
        if (again < 0) return;
        continue;
      }
      if (this.buffered < total) return;
      let frame: Buffer;
      if (head.length >= total) {
        frame = head.subarray(0, total);
        if (head.length === total) this.chunks.shift();
        else this.chunks[0] = head.subarray(total);
      } else {
        const whole = this.coalesce();
        frame = whole.subarray(0, total);
        if (whole.length === total) this.chunks.shift();
        else this.chunks[0] = whole.subarray(total);
      }
      this.buffered -= total;
      this.onFrame(frame);
    }
  }

  private coalesce(): Buffer {
    const whole = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [whole];
    return whole;
  }
}

/** Frames of a u32 little-endian length followed by that many bytes. */
export function lengthPrefixed(onFrame: (payload: Buffer) => void): FrameSplitter {
  return new FrameSplitter(
    (buf) => 4 + buf.readUInt32LE(0),
    (frame) => onFrame(frame.subarray(4)),
    4,
  );
}

/**
 * Frames in Cap'n Proto's standard stream framing: (segment count - 1) as
 * u32, one u32 word count per segment, padding to 8 bytes, the segments.
 * The frame handed on includes the segment table.
 */
export function capnpFramed(onFrame: (frame: Buffer) => void): FrameSplitter {
  return new FrameSplitter(
    (buf) => {
      const segments = buf.readUInt32LE(0) + 1;
      const tableBytes = (4 + 4 * segments + 7) & ~7;
      if (buf.length < 4 + 4 * segments) return -1;
      let words = 0;
      for (let i = 0; i < segments; i++) words += buf.readUInt32LE(4 + 4 * i);
      return tableBytes + words * 8;
    },
    onFrame,
    8,
  );
}

// Node-stream pieces shared by the floor and capmesh systems of the auth bench.
import { once } from "node:events";
import type { Duplex } from "node:stream";

/** Writes `chunk` `count` times, waiting for 'drain' whenever the stream asks, then ends. */
export async function writeAll(stream: Duplex, chunk: Uint8Array, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    if (!stream.write(chunk)) await once(stream, "drain");
  }
  stream.end();
}

/** Resolves with the first `length` bytes read (the rest is dropped). */
export function readBytes(stream: Duplex, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= length) {
        stream.off("data", onData).off("error", reject).off("end", onEnd);
        resolve(Buffer.concat(chunks).subarray(0, length));
      }
    };
    const onEnd = (): void => reject(new Error(`the stream ended after ${got} of ${length} bytes`));
    stream.on("data", onData).once("error", reject).once("end", onEnd);
  });
}

/** The byte count a box-figure server reports: u64 little-endian. */
export function countReply(bytes: number): Buffer {
  const reply = Buffer.alloc(8);
  reply.writeBigUInt64LE(BigInt(bytes));
  return reply;
}

export async function readCount(stream: Duplex): Promise<number> {
  return Number((await readBytes(stream, 8)).readBigUInt64LE(0));
}

/** Box-figure server side: counts what arrives until the end, then reports the count and ends. */
export function serveCount(stream: Duplex): void {
  let bytes = 0;
  stream.on("data", (chunk: Buffer) => (bytes += chunk.length));
  stream.on("end", () => stream.end(countReply(bytes)));
  stream.on("error", () => stream.destroy());
}

/** Ends our side and resolves once the stream has closed. */
export async function endAndClose(stream: Duplex): Promise<void> {
  if (stream.closed) return;
  const closed = once(stream, "close");
  stream.end();
  await closed;
}

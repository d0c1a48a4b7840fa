// A unix-socket proxy that records both directions of every connection it
// carries, for the corpus recorder. Bytes pass through unchanged.
import * as net from "node:net";
import { rmSync } from "node:fs";

export interface Recording {
  /** What the connecting side (the client) sent. */
  c2s: Uint8Array[];
  /** What the server sent back. */
  s2c: Uint8Array[];
}

export interface RecordingProxy {
  readonly address: string;
  /** Resolves once `count` connections have come and gone (both sockets closed). */
  finished(count: number): Promise<Recording[]>;
  close(): Promise<void>;
}

/** Listens on `path`, forwarding each connection to the unix socket `upstream`. */
export async function startRecordingProxy(path: string, upstream: string): Promise<RecordingProxy> {
  const done: Recording[] = [];
  const waiters: { count: number; resolve: (r: Recording[]) => void }[] = [];
  const notify = () => {
    for (const w of waiters.splice(0)) {
      if (done.length >= w.count) w.resolve(done.slice());
      else waiters.push(w);
    }
  };

  const server = net.createServer((client) => {
    const rec: Recording = { c2s: [], s2c: [] };
    const up = net.createConnection({ path: upstream });
    let open = 2;
    const closed = () => {
      if (--open === 0) {
        done.push(rec);
        notify();
      }
    };
    client.on("data", (d: Buffer) => {
      rec.c2s.push(new Uint8Array(d));
      up.write(d);
    });
    up.on("data", (d: Buffer) => {
      rec.s2c.push(new Uint8Array(d));
      client.write(d);
    });
    // Half-closes pass through, so each side sees the other's end of stream.
    client.on("end", () => up.end());
    up.on("end", () => client.end());
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
    client.on("close", closed);
    up.on("close", closed);
  });
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path }, () => resolve());
  });
  return {
    address: `unix:${path}`,
    finished: (count) =>
      new Promise((resolve) => {
        waiters.push({ count, resolve });
        notify();
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

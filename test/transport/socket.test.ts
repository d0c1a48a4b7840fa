import { spawn } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  FrameError,
  SocketError,
  dialSocket,
  listenSocket,
  parseAddress,
  streamFromDuplex,
  type SocketListener,
  type TransportLimits,
} from "../../src/transport/index.js";
import { Recorder, checkPattern, makeMessage, makeTempDir, readMessage, tick } from "./helpers.js";

let dir: string;
let cleanupDir: () => Promise<void>;
const listeners: SocketListener[] = [];
const sockets: net.Socket[] = [];

beforeAll(async () => {
  ({ dir, cleanup: cleanupDir } = await makeTempDir());
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});
afterAll(async () => {
  await cleanupDir();
});

let counter = 0;
function unixAddress(): string {
  return `unix:${join(dir, `s${++counter}.sock`)}`;
}

async function listen(address: string, onConnection: (s: net.Socket) => void): Promise<SocketListener> {
  const l = await listenSocket(address, onConnection);
  listeners.push(l);
  return l;
}

async function dial(address: string): Promise<net.Socket> {
  const s = await dialSocket(address, { timeoutMs: 5000 });
  sockets.push(s);
  return s;
}

/** A listener whose connections are wrapped in MessageStreams, recorded in `accepted`. */
async function messageServer(
  address: string,
  limits?: Partial<TransportLimits>,
  onMessage?: (r: Recorder, m: ReturnType<typeof makeMessage>) => void,
) {
  const accepted: Recorder[] = [];
  const waiting: ((r: Recorder) => void)[] = [];
  const listener = await listen(address, (socket) => {
    const stream = streamFromDuplex(socket, limits);
    const r: Recorder = new Recorder(stream, (m) => onMessage?.(r, m));
    accepted.push(r);
    waiting.shift()?.(r);
  });
  const nextAccepted = (): Promise<Recorder> =>
    new Promise((resolve) => {
      const already = accepted[accepted.length - 1 - waiting.length];
      if (already && accepted.length > waiting.length) resolve(already);
      else waiting.push(resolve);
    });
  return { listener, accepted, nextAccepted };
}

async function connectClient(address: string, limits?: Partial<TransportLimits>): Promise<Recorder> {
  return new Recorder(streamFromDuplex(await dial(address), limits));
}

const seqs = (r: Recorder) => r.messages.map((m) => readMessage(m).seq);

for (const kind of ["unix", "tcp"] as const) {
  const freshAddress = () => (kind === "unix" ? unixAddress() : "tcp://127.0.0.1:0");

  describe(`message streams over ${kind}`, () => {
    it("1,000 messages each way arrive in order", async () => {
      const { listener, nextAccepted } = await messageServer(freshAddress());
      const client = await connectClient(listener.address);
      const server = await nextAccepted();
      for (let i = 0; i < 1000; i++) {
        client.stream.send(makeMessage(i, i % 100 === 0 ? [5000] : []));
        server.stream.send(makeMessage(100_000 + i));
        if (i % 128 === 0) await tick();
      }
      await Promise.all([client.waitFor(1000), server.waitFor(1000)]);
      expect(seqs(server)).toEqual([...Array(1000).keys()]);
      expect(seqs(client)).toEqual([...Array(1000).keys()].map((i) => 100_000 + i));
      expect(checkPattern(readMessage(server.messages[500]!, 1).payloads[0]!, 500)).toBe(true);
      client.stream.close();
      expect(await server.closed()).toBeUndefined();
      expect(await client.closed()).toBeUndefined();
    });

    it("a 20 MiB message passes when the limit allows it (and echoes back)", async () => {
      const size = 20 * 1024 * 1024;
      const { listener } = await messageServer(freshAddress(), undefined, (r, m) => r.stream.send(m));
      const client = await connectClient(listener.address);
      client.stream.send(makeMessage(77, [size]));
      await client.waitFor(1);
      const echoed = readMessage(client.messages[0]!, 1);
      expect(echoed.seq).toBe(77);
      expect(echoed.payloads[0]!.length).toBe(size);
      expect(checkPattern(echoed.payloads[0]!, 77)).toBe(true);
      client.stream.close();
      expect(await client.closed()).toBeUndefined();
    });

    it("a receiver limited to 1 MiB rejects a 20 MiB message clearly; its other connections keep working", async () => {
      const { listener, nextAccepted } = await messageServer(
        freshAddress(),
        { maxMessageBytes: 1024 * 1024 },
        (r, m) => r.stream.send(m),
      );
      const good = await connectClient(listener.address);
      const goodServer = await nextAccepted();
      const bad = await connectClient(listener.address);
      const badServer = await nextAccepted();

      bad.stream.send(makeMessage(1, [20 * 1024 * 1024]));
      const err = await badServer.closed();
      expect(err).toBeInstanceOf(FrameError);
      expect((err as FrameError).code).toBe("message-too-large");
      expect(err!.message).toMatch(/over this receiver's limit of 1048576 bytes/);
      expect(err!.message).toMatch(/maxMessageBytes/);
      // The sender learns its connection is gone (reset, or end of stream).
      await bad.closed();
      expect(bad.stream.closed).toBe(true);

      // Old and new connections to the same listener still work.
      for (let i = 0; i < 10; i++) good.stream.send(makeMessage(i));
      await good.waitFor(10);
      expect(seqs(good)).toEqual([...Array(10).keys()]);
      expect(goodServer.stream.closed).toBe(false);
      const late = await connectClient(listener.address);
      late.stream.send(makeMessage(42, [1000]));
      await late.waitFor(1);
      expect(readMessage(late.messages[0]!).seq).toBe(42);
      good.stream.close();
      late.stream.close();
      await Promise.all([good.closed(), late.closed()]);
    });

    it("close() flushes pending sends before ending", async () => {
      const { listener, nextAccepted } = await messageServer(freshAddress());
      const client = await connectClient(listener.address);
      const server = await nextAccepted();
      for (let i = 0; i < 500; i++) client.stream.send(makeMessage(i));
      client.stream.send(makeMessage(500, [4 * 1024 * 1024]));
      expect(client.stream.bufferedBytes).toBeGreaterThan(4 * 1024 * 1024);
      client.stream.close();
      client.stream.send(makeMessage(501)); // dropped
      expect(await server.closed()).toBeUndefined();
      expect(seqs(server)).toEqual([...Array(501).keys()]);
      expect(checkPattern(readMessage(server.messages[500]!, 1).payloads[0]!, 500)).toBe(true);
      expect(await client.closed()).toBeUndefined();
    });

    it("a FrameError from one peer does not crash the process and closes only that stream", async () => {
      const { listener, nextAccepted } = await messageServer(freshAddress());
      const raw = await dial(listener.address);
      const server = await nextAccepted();
      raw.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]));
      const err = await server.closed();
      expect((err as FrameError).code).toBe("segment-count");
      await new Promise<void>((resolve) => (raw.destroyed ? resolve() : raw.once("close", () => resolve())));
    });

    it("a truncated frame then end of stream reports 'truncated'", async () => {
      const { listener, nextAccepted } = await messageServer(freshAddress());
      const raw = await dial(listener.address);
      const server = await nextAccepted();
      raw.end(new Uint8Array([0, 0, 0, 0, 10, 0, 0, 0, 1, 2, 3]));
      const err = await server.closed();
      expect((err as FrameError).code).toBe("truncated");
    });

    it("reports a sensible remoteAddress", async () => {
      const { listener, nextAccepted } = await messageServer(freshAddress());
      const client = await connectClient(listener.address);
      const server = await nextAccepted();
      expect(client.stream.remoteAddress).toBe(listener.address);
      if (kind === "tcp") expect(server.stream.remoteAddress).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      else expect(server.stream.remoteAddress).toContain(listener.address);
      client.stream.close();
      await server.closed();
    });

    it("listener.close() destroys accepted sockets and stops accepting", async () => {
      const { listener } = await messageServer(freshAddress());
      const client = await connectClient(listener.address);
      await listener.close();
      await listener.close(); // idempotent
      await client.closed();
      expect(client.stream.closed).toBe(true);
      await expect(dialSocket(listener.address)).rejects.toThrow(/nothing is listening/);
    });
  });
}

describe("listenSocket", () => {
  it("resolves the real TCP port and sets TCP_NODELAY", async () => {
    const spy = vi.spyOn(net.Socket.prototype, "setNoDelay");
    try {
      let accepted: net.Socket | undefined;
      const l = await listen("tcp://127.0.0.1:0", (s) => (accepted = s));
      const a = parseAddress(l.address);
      expect(a.kind === "tcp" && a.port > 0).toBe(true);
      await dial(l.address);
      while (!accepted) await tick();
      expect(spy.mock.contexts).toContain(accepted);
      expect(spy.mock.calls.every((c) => c[0] === true)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });

  it("listens on IPv6 loopback when available", async () => {
    let l: SocketListener;
    try {
      l = await listen("tcp://[::1]:0", () => {});
    } catch (e) {
      expect((e as SocketError).code).toMatch(/EADDRNOTAVAIL|EAFNOSUPPORT/);
      return;
    }
    expect(l.address).toMatch(/^tcp:\/\/\[::1\]:\d+$/);
    await dial(l.address);
  });

  it("creates and removes the unix socket file", async () => {
    const address = unixAddress();
    const path = address.slice("unix:".length);
    const l = await listenSocket(address, () => {});
    expect(l.address).toBe(address);
    expect(statSync(path).isSocket()).toBe(true);
    await l.close();
    expect(existsSync(path)).toBe(false);
  });

  it("removes a stale unix socket file left by a dead process", async () => {
    const address = unixAddress();
    const path = address.slice("unix:".length);
    const child = spawn(
      process.execPath,
      ["-e", "require('net').createServer().listen(process.argv[1], () => console.log('ready'))", path],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", () => reject(new Error("child exited early")));
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    expect(statSync(path).isSocket()).toBe(true); // left behind
    await expect(dialSocket(address)).rejects.toThrow(/nothing is listening on unix:.*stale/);
    const l = await listen(address, () => {});
    await dial(l.address);
  });

  it("refuses to take over a unix socket a live server is using", async () => {
    const address = unixAddress();
    await listen(address, () => {});
    const err = await listenSocket(address, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect((err as SocketError).code).toBe("EADDRINUSE");
    expect((err as Error).message).toMatch(/address in use: a server is already listening on unix:/);
    // The first server is unharmed.
    await dial(address);
  });

  it("refuses to remove a path that is not a socket", async () => {
    const path = join(dir, "not-a-socket");
    writeFileSync(path, "keep me");
    await expect(listenSocket(`unix:${path}`, () => {})).rejects.toThrow(/exists and is not a socket/);
    expect(existsSync(path)).toBe(true);
  });

  it("reports a TCP port in use", async () => {
    const first = await listen("tcp://127.0.0.1:0", () => {});
    const err = await listenSocket(first.address, () => {}).catch((e: unknown) => e);
    expect((err as SocketError).code).toBe("EADDRINUSE");
    expect((err as Error).message).toBe(`address in use: something is already listening on ${first.address}`);
  });

  it("rejects unix paths longer than the OS allows", async () => {
    const long = `unix:${join(dir, "x".repeat(120))}`;
    await expect(listenSocket(long, () => {})).rejects.toThrow(/over the operating system's limit/);
    await expect(dialSocket(long)).rejects.toThrow(/over the operating system's limit/);
  });

  it("a throwing onConnection destroys that socket, reports it, and keeps listening", async () => {
    const errors: Error[] = [];
    let calls = 0;
    const l = await listenSocket(
      "tcp://127.0.0.1:0",
      () => {
        calls++;
        if (calls === 1) throw new Error("setup failed");
      },
      { onError: (e) => errors.push(e) },
    );
    listeners.push(l);
    const first = await dial(l.address);
    await new Promise((resolve) => first.once("close", resolve));
    expect(errors.map((e) => e.message)).toEqual(["setup failed"]);
    await dial(l.address);
    while (calls < 2) await tick();
  });
});

describe("dialSocket", () => {
  it("says nothing is listening on a closed TCP port", async () => {
    const l = await listenSocket("tcp://127.0.0.1:0", () => {});
    await l.close();
    const err = await dialSocket(l.address).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect((err as SocketError).code).toBe("ECONNREFUSED");
    expect((err as Error).message).toBe(`nothing is listening on ${l.address}`);
    expect((err as SocketError).address).toBe(l.address);
  });

  it("says there is no socket file for a missing unix path", async () => {
    const address = unixAddress();
    const err = await dialSocket(address).catch((e: unknown) => e);
    expect((err as SocketError).code).toBe("ENOENT");
    expect((err as Error).message).toMatch(/^nothing is listening on unix:.*: no socket file at /);
  });

  it("accepts the bare host:port form", async () => {
    const l = await listen("127.0.0.1:0", () => {});
    const port = (parseAddress(l.address) as { port: number }).port;
    const s = await dial(`127.0.0.1:${port}`);
    expect(s.remotePort).toBe(port);
  });

  it("rejects port 0 and bad timeouts", async () => {
    await expect(dialSocket("tcp://127.0.0.1:0")).rejects.toThrow(/port 0 is only meaningful for listening/);
    await expect(dialSocket("tcp://127.0.0.1:1", { timeoutMs: -1 })).rejects.toThrow(RangeError);
    await expect(dialSocket("nonsense")).rejects.toThrow(/invalid address/);
  });

  it("can be aborted", async () => {
    const pre = new AbortController();
    pre.abort(new Error("stop"));
    const err1 = await dialSocket("tcp://127.0.0.1:9", { signal: pre.signal }).catch((e: unknown) => e);
    expect((err1 as SocketError).code).toBe("ABORT_ERR");

    const l = await listen("tcp://127.0.0.1:0", () => {});
    const ac = new AbortController();
    const p = dialSocket(l.address, { signal: ac.signal });
    ac.abort();
    const err2 = await p.catch((e: unknown) => e);
    expect((err2 as SocketError).code).toBe("ABORT_ERR");
    expect((err2 as Error).message).toBe(`connecting to ${l.address} was aborted`);
  });

  it("fails cleanly on an address that never answers", async () => {
    // 192.0.2.0/24 is reserved for documentation: packets go nowhere, so this
    // usually times out; a sandbox or missing route may refuse at once.
    // (dial-timeout.test.ts checks the timeout path deterministically.)
    const err = await dialSocket("tcp://192.0.2.1:9", { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect((err as Error).message).toMatch(/tcp:\/\/192\.0\.2\.1:9/);
  });
});

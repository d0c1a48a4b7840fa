// listen/connect with identities: the secret handshake in front of every
// connection, box-stream where it applies, plain Cap'n Proto only where a
// listener allows it, and every way a handshake can fail — each leaving the
// listener serving others and nothing behind.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  DEFAULT_NETWORK_KEY,
  HandshakeClosedError,
  HandshakeProtocolError,
  HandshakeTimeoutError,
  NetworkKeyMismatchError,
  UnauthorizedPeerError,
  WrongRemoteKeyError,
  connect,
  generateIdentity,
  listen,
  type Listener,
  type ListenOptions,
  type PeerInfo,
  type Session,
} from "../../src/index.js";
import { PlainPeerRefusedError } from "../../src/auth/channel.js";
import { Cleanup, listen as rawListen } from "../auth/helpers.js";
import { Counter, CounterImpl } from "../rpc/fixtures.js";

const server = generateIdentity();
const alice = generateIdentity();
const bob = generateIdentity();

const dir = mkdtempSync(join(tmpdir(), "capmesh-secure-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const unixAddress = () => `unix:${join(dir, `${randomBytes(6).toString("hex")}.sock`)}`;

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

async function serve(address: string, options: ListenOptions = {}): Promise<Listener> {
  const listener = await listen(address, { identity: server, bootstrap: Counter.server(new CounterImpl(7n)), ...options });
  cleanup.add(() => listener.close());
  return listener;
}

function track(session: Session): Session {
  cleanup.add(() => session.close());
  return session;
}

/** A good client still gets through: the listener survived whatever came before. */
async function stillServes(listener: Listener): Promise<void> {
  const session = await connect(listener.address, { identity: alice, remoteKey: server.id });
  expect((await session.bootstrap(Counter).add({ delta: 1n })).value).toBe(8n);
  await session.close();
}

/** Sockets and timers this process holds, by kind (what a leak would raise). */
function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind === "Timeout" || kind.endsWith("SocketWrap") || kind === "PipeWrap" || kind === "TCPWRAP") counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/**
 * Waits until the process holds no more sockets or timers of any kind than
 * `before` (polled on our own timer, which has fired by the time we count).
 */
async function noneLeftBeyond(before: Record<string, number>): Promise<void> {
  let now = handles();
  for (let i = 0; i < 200 && Object.entries(now).some(([kind, n]) => n > (before[kind] ?? 0)); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    now = handles();
  }
  for (const [kind, n] of Object.entries(now)) expect(n, `${kind} handles`).toBeLessThanOrEqual(before[kind] ?? 0);
}

/** A raw TCP server on loopback, for playing a misbehaving listener. */
async function rawServer(onSocket: (socket: net.Socket) => void): Promise<string> {
  const port = await rawListen(cleanup, (socket) => {
    socket.on("error", () => {});
    onSocket(socket);
  });
  return `tcp://127.0.0.1:${port}`;
}

/**
 * A TCP relay in front of `target` that records what the client sends, and
 * flips one bit of it at byte `tamperAt` if asked.
 */
async function recordingRelay(target: string, tamperAt?: number): Promise<{ address: string; sent: () => Buffer }> {
  const port = Number(new URL(target).port);
  const chunks: Buffer[] = [];
  let offset = 0;
  const address = await rawServer((downstream) => {
    const upstream = net.connect(port, "127.0.0.1");
    upstream.on("error", () => downstream.destroy());
    downstream.on("data", (chunk: Buffer) => {
      chunks.push(Buffer.from(chunk));
      if (tamperAt !== undefined && tamperAt >= offset && tamperAt < offset + chunk.length) chunk[tamperAt - offset]! ^= 0x01;
      offset += chunk.length;
      upstream.write(chunk);
    });
    upstream.pipe(downstream);
    downstream.on("end", () => upstream.end());
    downstream.on("close", () => upstream.destroy());
  });
  return { address, sent: () => Buffer.concat(chunks) };
}

/** Resolves with the listener's next refusal. */
function nextRefusal(options: ListenOptions): { options: ListenOptions; refused: Promise<Error> } {
  let report!: (error: Error) => void;
  const refused = new Promise<Error>((resolve) => (report = resolve));
  return { options: { ...options, onRefused: (error) => report(error) }, refused };
}

describe("authenticated connections", () => {
  it("each side learns the other's proven id, and the bootstrap function hands out per-identity capabilities", async () => {
    const seen: PeerInfo[] = [];
    const serverSessions: Session[] = [];
    const listener = await serve("tcp://127.0.0.1:0", {
      bootstrap: (peer) => {
        seen.push(peer);
        return Counter.server(new CounterImpl(peer.id === alice.id ? 100n : 0n));
      },
      onSession: (session) => serverSessions.push(session),
    });
    const asAlice = track(await connect(listener.address, { identity: alice, remoteKey: server.id }));
    const asBob = track(await connect(listener.address, { identity: bob, remoteKey: server.publicKey }));

    expect(asAlice.remoteId).toBe(server.id);
    expect(asBob.remoteId).toBe(server.id);
    expect((await asAlice.bootstrap(Counter).add({ delta: 1n })).value).toBe(101n);
    expect((await asBob.bootstrap(Counter).add({ delta: 1n })).value).toBe(1n);
    expect(seen.map((peer) => [peer.id, peer.authenticated])).toEqual([
      [alice.id, true],
      [bob.id, true],
    ]);
    expect(serverSessions.map((session) => session.remoteId)).toEqual([alice.id, bob.id]);
  });

  it("close() resolves once the connection has closed at both ends, goodbyes and all", async () => {
    for (const address of ["tcp://127.0.0.1:0", unixAddress()]) {
      const listener = await serve(address);
      const session = await connect(listener.address, { identity: alice, remoteKey: server.id });
      expect((await session.bootstrap(Counter).add({ delta: 1n })).value).toBe(8n);
      expect(listener.sessions.size).toBe(1);
      await session.close();
      // Our end of stream (box-stream's goodbye over TCP) reached the
      // listener, which closed its side before ours finished closing.
      expect(listener.sessions.size).toBe(0);
    }
  });

  it("a dialler without an identity of its own still checks the listener's, under a throwaway id", async () => {
    const ids: string[] = [];
    const listener = await serve(unixAddress(), { onSession: (session) => ids.push(session.remoteId!) });
    const session = track(await connect(listener.address, { remoteKey: server.id }));
    expect(session.remoteId).toBe(server.id);
    expect((await session.bootstrap(Counter).add({ delta: 0n })).value).toBe(7n);
    expect(ids).toHaveLength(1);
    expect(ids[0]).toMatch(/^@[A-Za-z0-9+/]{43}=\.ed25519$/);
    expect([alice.id, bob.id, server.id]).not.toContain(ids[0]);
  });

  it("over TCP, box-stream hides the calls by default; encrypt: false sends them authenticated but readable", async () => {
    const marker = `plaintext-marker-${randomBytes(8).toString("hex")}`;
    for (const encrypt of [undefined, false] as const) {
      const listener = await serve("tcp://127.0.0.1:0", encrypt === undefined ? {} : { encrypt });
      const relay = await recordingRelay(listener.address);
      const peers: PeerInfo[] = [];
      const session = await connect(relay.address, { identity: alice, remoteKey: server.id, ...(encrypt === undefined ? {} : { encrypt }) });
      expect(session.peer.encrypted).toBe(encrypt === undefined);
      await expect(session.bootstrap(Counter).fail({ reason: marker })).rejects.toThrow(marker);
      for (const s of listener.sessions) peers.push(s.peer);
      await session.close();
      expect(peers.map((p) => p.encrypted)).toEqual([encrypt === undefined]);
      expect(relay.sent().includes(marker)).toBe(encrypt === false);
    }
  });

  it("a byte changed in transit is caught: that connection closes saying so, the listener serves on", async () => {
    const serverSide: Session[] = [];
    const listener = await serve("tcp://127.0.0.1:0", { onSession: (session) => serverSide.push(session) });
    // The client's handshake messages are 64 + 112 bytes; the next byte is box-stream.
    const relay = await recordingRelay(listener.address, 64 + 112 + 40);
    const session = track(await connect(relay.address, { identity: alice, remoteKey: server.id }));
    await expect(session.bootstrap(Counter).add({ delta: 1n })).rejects.toMatchObject({ type: "disconnected" });
    expect((await serverSide[0]!.closed).message).toMatch(/modified in transit/);
    await stillServes(listener);
  });

  it("over unix sockets, authentication only by default; encrypt: true adds box-stream", async () => {
    for (const encrypt of [undefined, true] as const) {
      const listener = await serve(unixAddress(), encrypt === undefined ? {} : { encrypt });
      const session = track(await connect(listener.address, { identity: alice, remoteKey: server.id, ...(encrypt ? { encrypt } : {}) }));
      expect((await session.bootstrap(Counter).add({ delta: 0n })).value).toBe(7n);
      expect(session.peer.encrypted).toBe(encrypt === true);
      expect([...listener.sessions].map((s) => s.peer.encrypted)).toEqual([encrypt === true]);
    }
  });

  it("separate meshes: the network key is the listener's choice, the default one included", async () => {
    const meshKey = randomBytes(32);
    const listener = await serve("tcp://127.0.0.1:0", { networkKey: meshKey.toString("base64") });
    const session = track(await connect(listener.address, { identity: alice, remoteKey: server.id, networkKey: meshKey }));
    expect((await session.bootstrap(Counter).add({ delta: 0n })).value).toBe(7n);
    await expect(connect(listener.address, { identity: alice, remoteKey: server.id, networkKey: DEFAULT_NETWORK_KEY })).rejects.toBeInstanceOf(
      NetworkKeyMismatchError,
    );
  });
});

describe("plain Cap'n Proto", () => {
  it("a listener with an identity turns a plain peer away with an Abort that says why", async () => {
    const { options, refused } = nextRefusal({});
    const listener = await serve(unixAddress(), options);
    const plain = track(await connect(listener.address));
    const failure = plain.bootstrap(Counter).add({ delta: 0n });
    await expect(failure).rejects.toThrow(/requires the capmesh secret handshake/);
    expect((await plain.closed).message).toMatch(/requires the capmesh secret handshake/);
    expect(await refused).toBeInstanceOf(PlainPeerRefusedError);
    await stillServes(listener);
  });

  it("the Abort names the listener's real address (a TCP port 0 as bound), not the one asked for", async () => {
    const listener = await serve("tcp://127.0.0.1:0", {});
    expect(listener.address).not.toMatch(/:0$/);
    const plain = track(await connect(listener.address));
    const failure = plain.bootstrap(Counter).add({ delta: 0n });
    await expect(failure).rejects.toThrow(`${listener.address} requires the capmesh secret handshake`);
  });

  it("a handshake client that meets a plain listener is told to drop remoteKey", async () => {
    const listener = await listen(unixAddress(), { bootstrap: Counter.server(new CounterImpl()) });
    try {
      const attempt = connect(listener.address, { identity: alice, remoteKey: server.id });
      await expect(attempt).rejects.toBeInstanceOf(HandshakeProtocolError);
      await expect(connect(listener.address, { identity: alice, remoteKey: server.id })).rejects.toThrow(
        /plain Cap'n Proto message.*connect without remoteKey/,
      );
    } finally {
      await listener.close();
    }
  });

  it("with plain: true the same listener also lets anonymous plain peers in", async () => {
    const seen: PeerInfo[] = [];
    const listener = await serve(unixAddress(), {
      plain: true,
      bootstrap: (peer) => (seen.push(peer), Counter.server(new CounterImpl(peer.authenticated ? 1n : 2n))),
    });
    const anonymous = track(await connect(listener.address));
    expect(anonymous.remoteId).toBeNull();
    expect((await anonymous.bootstrap(Counter).add({ delta: 0n })).value).toBe(2n);
    const authenticated = track(await connect(listener.address, { identity: alice, remoteKey: server.id }));
    expect((await authenticated.bootstrap(Counter).add({ delta: 0n })).value).toBe(1n);
    expect(seen.map((peer) => [peer.authenticated, peer.authenticated ? peer.id : "anonymous"])).toEqual([
      [false, "anonymous"],
      [true, alice.id],
    ]);
  });

  it("is the default only for a unix listener without an identity; over TCP it must be asked for", async () => {
    const unix = await listen(unixAddress(), { bootstrap: Counter.server(new CounterImpl(3n)) });
    cleanup.add(() => unix.close());
    const session = track(await connect(unix.address));
    expect((await session.bootstrap(Counter).add({ delta: 0n })).value).toBe(3n);
    await expect(listen("tcp://127.0.0.1:0", { bootstrap: Counter.server(new CounterImpl()) })).rejects.toThrow(/plain: true/);
  });

  it("a dialler with an identity but no remoteKey is told what is missing", async () => {
    const listener = await serve(unixAddress());
    await expect(connect(listener.address, { identity: alice })).rejects.toThrow(/no remoteKey/);
  });
});

describe("failed handshakes", () => {
  it("wrong network key: the dialler is told, the listener refuses it and serves others", async () => {
    const { options, refused } = nextRefusal({});
    const listener = await serve("tcp://127.0.0.1:0", options);
    const before = handles();
    await expect(connect(listener.address, { identity: alice, remoteKey: server.id, networkKey: randomBytes(32) })).rejects.toThrow(
      NetworkKeyMismatchError,
    );
    expect(await refused).toBeInstanceOf(NetworkKeyMismatchError);
    await noneLeftBeyond(before);
    await stillServes(listener);
  });

  it("wrong remote key: the dialler finds out, and the listener never learns who dialled", async () => {
    const { options, refused } = nextRefusal({});
    const authorize = vi.fn(() => true);
    const listener = await serve("tcp://127.0.0.1:0", { ...options, authorize });
    const before = handles();
    await expect(connect(listener.address, { identity: alice, remoteKey: bob.id })).rejects.toThrow(WrongRemoteKeyError);
    const error = await refused;
    expect(error).toBeInstanceOf(WrongRemoteKeyError);
    expect(error.message).not.toContain(alice.id);
    expect(authorize).not.toHaveBeenCalled();
    await noneLeftBeyond(before);
    await stillServes(listener);
  });

  it("authorize: a refused identity is hung up on before the listener reveals more", async () => {
    const { options, refused } = nextRefusal({});
    const listener = await serve("tcp://127.0.0.1:0", { ...options, authorize: (peer) => peer.id !== bob.id });
    await expect(connect(listener.address, { identity: bob, remoteKey: server.id })).rejects.toThrow(WrongRemoteKeyError);
    const error = await refused;
    expect(error).toBeInstanceOf(UnauthorizedPeerError);
    expect((error as UnauthorizedPeerError).remoteId).toBe(bob.id);
    await stillServes(listener);
  });

  it("garbage: a listener that answers with text is named as another protocol", async () => {
    // It reads (and drops) what comes, so it sees the dialler leave and closes.
    const address = await rawServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n").resume());
    const before = handles();
    await expect(connect(address, { identity: alice, remoteKey: server.id })).rejects.toThrow(HandshakeProtocolError);
    await noneLeftBeyond(before);
  });

  it("nothing listening: the dial's own error, not a handshake one, and nothing left behind", async () => {
    const before = handles();
    for (const address of [unixAddress(), "tcp://127.0.0.1:1"]) {
      const attempt = connect(address, { identity: alice, remoteKey: server.id });
      await expect(attempt).rejects.toThrow(/nothing is listening/);
      await expect(attempt).rejects.not.toBeInstanceOf(HandshakeClosedError);
    }
    await noneLeftBeyond(before);
  });

  it("stall: a listener that never answers times out, leaving no timer or socket", async () => {
    // It reads (and drops) what comes, so it sees the dialler leave.
    const address = await rawServer((socket) => socket.resume());
    const before = handles();
    const attempt = connect(address, { identity: alice, remoteKey: server.id, handshakeTimeoutMs: 150 });
    await expect(attempt).rejects.toThrow(HandshakeTimeoutError);
    await noneLeftBeyond(before);
  });

  it("cut: a listener that hangs up halfway through its hello", async () => {
    const address = await rawServer((socket) => socket.once("data", () => socket.end(randomBytes(20))));
    await expect(connect(address, { identity: alice, remoteKey: server.id })).rejects.toThrow(HandshakeClosedError);
  });

  it("a dialler that stalls is dropped after the listener's time limit, while others get through", async () => {
    const { options, refused } = nextRefusal({ handshakeTimeoutMs: 150 });
    const listener = await serve("tcp://127.0.0.1:0", options);
    const port = Number(new URL(listener.address).port);
    const staller = net.connect(port, "127.0.0.1");
    staller.on("error", () => {});
    cleanup.add(() => void staller.destroy());
    const hungUp = new Promise((resolve) => staller.once("close", resolve));
    await stillServes(listener);
    expect(await refused).toBeInstanceOf(HandshakeTimeoutError);
    await hungUp;
  });

  it("a dialler that hangs up mid-hello is refused as cut, not as a stall", async () => {
    const { options, refused } = nextRefusal({});
    const listener = await serve("tcp://127.0.0.1:0", options);
    const port = Number(new URL(listener.address).port);
    const cut = net.connect(port, "127.0.0.1", () => cut.end(randomBytes(30)));
    cut.on("error", () => {});
    cleanup.add(() => void cut.destroy());
    expect(await refused).toBeInstanceOf(HandshakeClosedError);
    await stillServes(listener);
  });

  it("bounds the connections in their handshake at once", async () => {
    const refusals: Error[] = [];
    const listener = await serve("tcp://127.0.0.1:0", { maxPendingHandshakes: 2, onRefused: (error) => refusals.push(error) });
    const port = Number(new URL(listener.address).port);
    const open = (): Promise<net.Socket> =>
      new Promise((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
        socket.on("error", () => {});
        cleanup.add(() => void socket.destroy());
      });
    const stalled = [await open(), await open()];
    const third = await open();
    await new Promise((resolve) => third.once("close", resolve));
    expect(refusals.map((e) => e.message)).toEqual([expect.stringMatching(/maxPendingHandshakes/)]);
    for (const socket of stalled) socket.destroy();
    await vi.waitFor(() => expect(refusals).toHaveLength(3));
    await stillServes(listener);
  });
});

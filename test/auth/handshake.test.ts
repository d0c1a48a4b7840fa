import { createHmac, randomBytes } from "node:crypto";
import type * as net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  BoxEncoder,
  HandshakeClosedError,
  HandshakeError,
  HandshakeProtocolError,
  HandshakeTimeoutError,
  NetworkKeyMismatchError,
  UnauthorizedPeerError,
  WrongRemoteKeyError,
  boxStream,
  clientHandshake,
  generateIdentity,
  secureClient,
  secureServer,
  serverHandshake,
  shs1,
  type HandshakeResult,
  type Identity,
} from "../../src/auth/index.js";
import { Cleanup, closed, connect, listen, readAll } from "./helpers.js";

const cleanup = new Cleanup();

/** shs1's hello MAC: HMAC-SHA-512-256 under the network key. */
function shs1hmac(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac("sha512", key).update(data).digest().subarray(0, 32);
}
afterEach(async () => {
  vi.restoreAllMocks();
  await cleanup.run();
});

/**
 * Watches the timers armed with `delay` ms (a value only the handshake under
 * test uses): `pending()` counts those neither cleared nor fired.
 */
function watchTimers(delay: number): { armed(): number; pending(): number } {
  const set = vi.spyOn(globalThis, "setTimeout");
  const clear = vi.spyOn(globalThis, "clearTimeout");
  const ours = (): unknown[] => set.mock.calls.flatMap((call, i) => (call[1] === delay ? [set.mock.results[i]!.value] : []));
  return {
    armed: () => ours().length,
    pending: () => {
      const cleared = new Set(clear.mock.calls.map((call) => call[0]));
      return ours().filter((timer) => !cleared.has(timer as never) && !(timer as { _destroyed?: boolean })._destroyed).length;
    },
  };
}

/** Resolves with exactly n bytes from a raw socket, or null if it ends first. */
function readExactly(socket: net.Socket, n: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const attempt = (): void => {
      const bytes = socket.read(n) as Buffer | null;
      if (bytes === null) return;
      done(bytes.length === n ? bytes : null);
    };
    const ended = (): void => done(null);
    const done = (value: Buffer | null): void => {
      socket.off("readable", attempt);
      socket.off("end", ended);
      socket.off("close", ended);
      resolve(value);
    };
    socket.on("readable", attempt);
    socket.on("end", ended);
    socket.on("close", ended);
    attempt();
  });
}

/** Resolves once bytes are waiting in the socket (without reading them). */
function dataArrived(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const ready = (): void => {
      if (socket.readableLength === 0) return;
      socket.off("readable", ready);
      resolve();
    };
    socket.on("readable", ready);
  });
}

/** Outcome of a promise, as the error or the value. */
function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

async function failure(promise: Promise<unknown>): Promise<HandshakeError> {
  const outcome = await settle(promise);
  expect(outcome.ok).toBe(false);
  const error = (outcome as { error: unknown }).error;
  expect(error).toBeInstanceOf(HandshakeError);
  return error as HandshakeError;
}

const WATCHED = ["readable", "data", "end", "close"] as const;
function listenerCounts(socket: net.Socket): number[] {
  return WATCHED.map((event) => socket.listenerCount(event));
}

/**
 * A server whose connections run `handler`; returns the port and a promise of
 * the first connection's handler result.
 */
async function serve<T>(handler: (socket: net.Socket) => Promise<T>): Promise<{ port: number; result: Promise<T>; socket: Promise<net.Socket> }> {
  let resolveSocket!: (socket: net.Socket) => void;
  let resolveResult!: (result: Promise<T>) => void;
  const socket = new Promise<net.Socket>((resolve) => (resolveSocket = resolve));
  const result = new Promise<Promise<T>>((resolve) => (resolveResult = resolve)).then((p) => p);
  const port = await listen(cleanup, (s) => {
    resolveSocket(s);
    resolveResult(handler(s));
  });
  return { port, result, socket };
}

/** Wraps socket.write to record what a side sends. */
function recordWrites(socket: net.Socket): Buffer[] {
  const written: Buffer[] = [];
  const write = socket.write.bind(socket) as (chunk: Uint8Array) => boolean;
  socket.write = ((chunk: Uint8Array, ...rest: unknown[]) => {
    written.push(Buffer.from(chunk));
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof socket.write;
  return written;
}

const networkKey = randomBytes(32);

describe("handshake over TCP", () => {
  it("completes: each side learns the other's identity, keys pair up, nothing is left behind", async () => {
    const server = generateIdentity();
    const client = generateIdentity();
    const timers = watchTimers(4321);
    let serverListeners: number[] = [];
    const { port, result } = await serve(async (socket) => {
      const before = listenerCounts(socket);
      const outcome = await serverHandshake(socket, { identity: server, networkKey, timeoutMs: 4321 });
      serverListeners = listenerCounts(socket);
      expect(serverListeners).toEqual(before);
      return outcome;
    });
    const socket = await connect(cleanup, port);
    const before = listenerCounts(socket);
    const ours = await clientHandshake(socket, { identity: client, networkKey, remoteKey: server.id, timeoutMs: 4321 });
    const theirs = await result;
    expect(listenerCounts(socket)).toEqual(before);
    expect(timers.armed()).toBe(2);
    expect(timers.pending()).toBe(0);

    expect(ours.remoteId).toBe(server.id);
    expect(theirs.remoteId).toBe(client.id);
    expect(Buffer.from(theirs.remoteKey).equals(Buffer.from(client.publicKey))).toBe(true);
    const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
    expect(hex(ours.keys.encryptKey)).toBe(hex(theirs.keys.decryptKey));
    expect(hex(ours.keys.decryptKey)).toBe(hex(theirs.keys.encryptKey));
    expect(hex(ours.keys.encryptNonce)).toBe(hex(theirs.keys.decryptNonce));
    expect(hex(ours.keys.decryptNonce)).toBe(hex(theirs.keys.encryptNonce));
    expect(hex(ours.keys.encryptKey)).not.toBe(hex(ours.keys.decryptKey));
  });

  it("every handshake has fresh ephemeral keys, those made ahead in idle time included", async () => {
    const server = generateIdentity();
    const client = generateIdentity();
    const serverSides: Promise<Buffer>[] = [];
    const port = await listen(cleanup, (socket) => {
      const written = recordWrites(socket);
      serverSides.push(serverHandshake(socket, { identity: server, networkKey }).then(() => written[0]!));
    });
    const clientHellos: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      const socket = await connect(cleanup, port);
      const written = recordWrites(socket);
      await clientHandshake(socket, { identity: client, networkKey, remoteKey: server.id });
      clientHellos.push(written[0]!);
      // Idle time, in which each side makes its next ephemeral key ahead.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const hellos = [...clientHellos, ...(await Promise.all(serverSides))];
    const ephemeralKeys = hellos.map((hello) => hello.subarray(32, 64).toString("hex"));
    expect(ephemeralKeys).toHaveLength(12);
    expect(new Set(ephemeralKeys).size).toBe(12);
  });

  it("secureClient/secureServer give box-streams that talk", async () => {
    const server = generateIdentity();
    const { port, result } = await serve(async (socket) => {
      const connection = await secureServer(socket, { identity: server, networkKey });
      connection.stream.end(`hello ${connection.remoteId}`);
      return readAll(connection.stream);
    });
    const client = generateIdentity();
    const connection = await secureClient(await connect(cleanup, port), { identity: client, networkKey, remoteKey: server.publicKey });
    connection.stream.end("hello server");
    expect((await readAll(connection.stream)).toString()).toBe(`hello ${client.id}`);
    expect((await result).toString()).toBe("hello server");
    await closed(connection.stream);
  });

  it("client: bytes arriving with the server accept are left for the stream", async () => {
    const server = generateIdentity();
    const { port } = await serve(async (socket) => {
      // A server that sends its accept and the first box in one write.
      let state: shs1.Shs1State | null = shs1.initialize({ appKey: networkKey, local: server, random: randomBytes(32) });
      state = shs1.verifyChallenge(state, (await readExactly(socket, 64))!)!;
      socket.write(shs1.createChallenge(state));
      state = shs1.serverVerifyAuth(state, (await readExactly(socket, 112))!)!;
      const accept = shs1.serverCreateAccept(state);
      const keys = shs1.boxStreamKeys(shs1.clean(state));
      const encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
      socket.write(Buffer.concat([accept, encoder.encode([Buffer.from("right behind the accept")]), encoder.goodbye()]));
    });
    const socket = await connect(cleanup, port);
    const { keys } = await clientHandshake(socket, { identity: generateIdentity(), networkKey, remoteKey: server.id });
    const stream = boxStream(socket, keys);
    expect((await readAll(stream)).toString()).toBe("right behind the accept");
  });

  it("server: bytes arriving with the client auth are left for the stream", async () => {
    const server = generateIdentity();
    const { port, result } = await serve(async (socket) => {
      const { keys } = await serverHandshake(socket, { identity: server, networkKey });
      return readAll(boxStream(socket, keys));
    });
    const socket = await connect(cleanup, port);
    const client = generateIdentity();
    let state: shs1.Shs1State | null = shs1.initialize({ appKey: networkKey, local: client, remote: { publicKey: server.publicKey }, random: randomBytes(32) });
    socket.write(shs1.createChallenge(state));
    state = shs1.clientVerifyChallenge(state, (await readExactly(socket, 64))!)!;
    // The client can't have keys before the accept, but can send them early:
    // precompute what clean() will give by opening the accept later.
    const auth = shs1.clientCreateAuth(state);
    const afterAccept = readExactly(socket, 80);
    socket.write(auth);
    state = shs1.clientVerifyAccept(state, (await afterAccept)!)!;
    const keys = shs1.boxStreamKeys(shs1.clean(state));
    const encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
    socket.write(Buffer.concat([encoder.encode([Buffer.from("first words")]), encoder.goodbye()]));
    expect((await result).toString()).toBe("first words");
  });

  it("wrong network key: the server hangs up without sending a byte, both sides say why", async () => {
    const server = generateIdentity();
    let serverWrites: Buffer[] = [];
    const { port, result } = await serve(async (socket) => {
      serverWrites = recordWrites(socket);
      return failure(serverHandshake(socket, { identity: server, networkKey, timeoutMs: 1234 }));
    });
    const timers = watchTimers(1234);
    const socket = await connect(cleanup, port);
    const clientError = await failure(
      clientHandshake(socket, { identity: generateIdentity(), networkKey: randomBytes(32), remoteKey: server.id, timeoutMs: 1234 }),
    );
    const serverError = await result;

    expect(clientError).toBeInstanceOf(NetworkKeyMismatchError);
    expect(clientError.code).toBe("NETWORK_KEY_MISMATCH");
    expect(clientError.phase).toBe("server hello");
    expect(clientError.message).toMatch(/closed the connection without answering our hello: it uses a different network key/);
    expect(serverError).toBeInstanceOf(NetworkKeyMismatchError);
    expect(serverError.message).toMatch(/client uses a different network key/);
    expect(serverWrites).toEqual([]);
    expect(socket.destroyed).toBe(true);
    expect(timers.armed()).toBe(2);
    expect(timers.pending()).toBe(0);
  });

  it("wrong remote key: the client finds the server is not who it dialled; the server sees a client that dialled someone else", async () => {
    const server = generateIdentity();
    const expected = generateIdentity();
    const { port, result } = await serve((socket) => failure(serverHandshake(socket, { identity: server, networkKey })));
    const socket = await connect(cleanup, port);
    const clientError = await failure(clientHandshake(socket, { identity: generateIdentity(), networkKey, remoteKey: expected.id }));
    const serverError = await result;
    expect(clientError).toBeInstanceOf(WrongRemoteKeyError);
    expect(clientError.phase).toBe("server accept");
    expect(clientError.message).toContain(`it is not ${expected.id}`);
    expect(serverError).toBeInstanceOf(WrongRemoteKeyError);
    expect(serverError.phase).toBe("client auth");
    expect(serverError.message).toMatch(/client dialled a different server key than ours/);
  });

  it("a listener without the expected server key learns nothing of the dialler's identity", async () => {
    const impostor = generateIdentity();
    const expected = generateIdentity();
    const client = generateIdentity();
    const { port, result } = await serve(async (socket) => {
      // An impostor with the right network key runs the server steps with its own key.
      const received: Buffer[] = [];
      let state: shs1.Shs1State | null = shs1.initialize({ appKey: networkKey, local: impostor, random: randomBytes(32) });
      const hello = (await readExactly(socket, 64))!;
      received.push(hello);
      state = shs1.verifyChallenge(state, hello)!;
      socket.write(shs1.createChallenge(state));
      const auth = (await readExactly(socket, 112))!;
      received.push(auth);
      const opened = shs1.serverVerifyAuth(state, auth);
      socket.destroy();
      return { received: Buffer.concat(received), opened };
    });
    const socket = await connect(cleanup, port);
    const clientError = await failure(clientHandshake(socket, { identity: client, networkKey, remoteKey: expected.publicKey }));
    const { received, opened } = await result;
    expect(opened).toBeNull();
    expect(received.length).toBe(64 + 112);
    expect(received.includes(Buffer.from(client.publicKey))).toBe(false);
    expect(clientError).toBeInstanceOf(WrongRemoteKeyError);
  });

  it("garbage: a server hello that is text, TLS or random bytes", async () => {
    const cases: Array<[Buffer, abstract new (...args: never[]) => HandshakeError, RegExp]> = [
      [Buffer.from("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), HandshakeProtocolError, /text starting "HTTP\/1.1 400 Bad Request"/],
      [Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), randomBytes(80)]), HandshakeProtocolError, /TLS handshake/],
      // Binary (a NUL first, so neither text nor TLS by chance).
      [Buffer.concat([Buffer.alloc(1), randomBytes(63)]), NetworkKeyMismatchError, /does not authenticate under our network key/],
    ];
    for (const [reply, kind, message] of cases) {
      const { port } = await serve(async (socket) => {
        await readExactly(socket, 64);
        socket.write(reply);
      });
      const error = await failure(clientHandshake(await connect(cleanup, port), { identity: generateIdentity(), networkKey, remoteKey: generateIdentity().id }));
      expect(error).toBeInstanceOf(kind);
      expect(error.message).toMatch(message);
    }
  });

  it("garbage: a client speaking HTTP gets no reply", async () => {
    let serverWrites: Buffer[] = [];
    const { port, result } = await serve((socket) => {
      serverWrites = recordWrites(socket);
      return failure(serverHandshake(socket, { identity: generateIdentity(), networkKey }));
    });
    const socket = await connect(cleanup, port);
    socket.write("GET /capmesh HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n");
    const error = await result;
    expect(error).toBeInstanceOf(HandshakeProtocolError);
    expect(error.code).toBe("PROTOCOL_ERROR");
    expect(error.message).toMatch(/client sent text starting "GET \/capmesh HTTP\/1.1"/);
    expect(serverWrites).toEqual([]);
  });

  it("a client hello with the right MAC but a low-order ephemeral key is refused after the server hello", async () => {
    let serverWrites: Buffer[] = [];
    const { port, result } = await serve((socket) => {
      serverWrites = recordWrites(socket);
      return failure(serverHandshake(socket, { identity: generateIdentity(), networkKey }));
    });
    const socket = await connect(cleanup, port);
    // An all-zero x25519 key: every shared secret with it is zero.
    const lowOrder = new Uint8Array(32);
    socket.write(Buffer.concat([shs1hmac(networkKey, lowOrder), lowOrder]));
    const error = await result;
    expect(error).toBeInstanceOf(HandshakeProtocolError);
    expect(error.message).toMatch(/client hello carries an invalid ephemeral key/);
    // The server hello went out before the key was checked (it reveals only
    // what a holder of the network key may know), then the server hung up.
    expect(Buffer.concat(serverWrites).length).toBe(shs1.SERVER_HELLO_LENGTH);
    expect((await readAll(socket)).length).toBe(shs1.SERVER_HELLO_LENGTH);
  });

  it("garbage: a short text banner, then silence, is named as such rather than as a stall", async () => {
    const { port } = await serve(async (socket) => {
      socket.write("SSH-2.0-OpenSSH_9.6\r\n");
    });
    const socket = await connect(cleanup, port);
    await dataArrived(socket);
    const error = await failure(clientHandshake(socket, { identity: generateIdentity(), networkKey, remoteKey: generateIdentity().id, timeoutMs: 100 }));
    expect(error).toBeInstanceOf(HandshakeProtocolError);
    expect(error.message).toMatch(/SSH-2.0/);
  });

  it("stall: a server that never answers times out, and the timer and listeners are gone", async () => {
    const { port } = await serve(async () => undefined);
    const socket = await connect(cleanup, port);
    const timers = watchTimers(100);
    const before = listenerCounts(socket);
    const error = await failure(clientHandshake(socket, { identity: generateIdentity(), networkKey, remoteKey: generateIdentity().id, timeoutMs: 100 }));
    expect(error).toBeInstanceOf(HandshakeTimeoutError);
    expect(error.code).toBe("TIMEOUT");
    expect(error.phase).toBe("server hello");
    expect(error.message).toMatch(/timed out after 100 ms waiting for the server hello \(0 of 64 bytes received\)/);
    expect(socket.destroyed).toBe(true);
    expect(listenerCounts(socket)).toEqual(before);
    expect(timers.armed()).toBe(1);
    expect(timers.pending()).toBe(0);
  });

  it("stall: a client that sends part of its hello and stops times out", async () => {
    const { port, result } = await serve(async (socket) => {
      await dataArrived(socket);
      return failure(serverHandshake(socket, { identity: generateIdentity(), networkKey, timeoutMs: 100 }));
    });
    const socket = await connect(cleanup, port);
    socket.write(Buffer.concat([Buffer.alloc(1), randomBytes(9)]));
    const error = await result;
    expect(error).toBeInstanceOf(HandshakeTimeoutError);
    expect(error.message).toMatch(/waiting for the client hello \(10 of 64 bytes received\)/);
    await closed(socket);
  });

  it("cut: the client hangs up in the middle of its hello", async () => {
    const { port, result } = await serve((socket) => failure(serverHandshake(socket, { identity: generateIdentity(), networkKey })));
    const socket = await connect(cleanup, port);
    socket.end(Buffer.concat([Buffer.alloc(1), randomBytes(29)]));
    const error = await result;
    expect(error).toBeInstanceOf(HandshakeClosedError);
    expect(error.code).toBe("CONNECTION_CLOSED");
    expect(error.message).toMatch(/closed in the middle of the handshake, waiting for the client hello \(30 of 64 bytes received\)/);
  });

  it("cut: the server hangs up in the middle of its accept", async () => {
    const server = generateIdentity();
    const { port } = await serve(async (socket) => {
      let state: shs1.Shs1State | null = shs1.initialize({ appKey: networkKey, local: server, random: randomBytes(32) });
      state = shs1.verifyChallenge(state, (await readExactly(socket, 64))!)!;
      socket.write(shs1.createChallenge(state));
      state = shs1.serverVerifyAuth(state, (await readExactly(socket, 112))!)!;
      socket.end(shs1.serverCreateAccept(state).subarray(0, 40));
    });
    const error = await failure(clientHandshake(await connect(cleanup, port), { identity: generateIdentity(), networkKey, remoteKey: server.id }));
    expect(error).toBeInstanceOf(HandshakeClosedError);
    expect(error.phase).toBe("server accept");
    expect(error.message).toMatch(/40 of 80 bytes received/);
  });

  it("abort: an AbortSignal stops the handshake", async () => {
    const { port } = await serve(async () => undefined);
    const socket = await connect(cleanup, port);
    const controller = new AbortController();
    const pending = failure(clientHandshake(socket, { identity: generateIdentity(), networkKey, remoteKey: generateIdentity().id, signal: controller.signal }));
    controller.abort();
    const error = await pending;
    expect(error.code).toBe("ABORTED");
    expect(socket.destroyed).toBe(true);
    const again = await failure(
      clientHandshake(await connect(cleanup, port), { identity: generateIdentity(), networkKey, remoteKey: generateIdentity().id, signal: AbortSignal.abort() }),
    );
    expect(again.code).toBe("ABORTED");
  });

  it("authorize: a refused client is hung up on", async () => {
    const server = generateIdentity();
    const client = generateIdentity();
    const seen: string[] = [];
    const { port, result } = await serve((socket) =>
      failure(
        serverHandshake(socket, {
          identity: server,
          networkKey,
          authorize: async (_key, id) => {
            seen.push(id);
            return false;
          },
        }),
      ),
    );
    const clientError = await failure(clientHandshake(await connect(cleanup, port), { identity: client, networkKey, remoteKey: server.id }));
    const serverError = await result;
    expect(seen).toEqual([client.id]);
    expect(serverError).toBeInstanceOf(UnauthorizedPeerError);
    expect((serverError as UnauthorizedPeerError).remoteId).toBe(client.id);
    expect(clientError).toBeInstanceOf(WrongRemoteKeyError);
    expect(clientError.message).toMatch(/or it does not accept us/);
  });

  it("authorize: an accepted client completes", async () => {
    const server = generateIdentity();
    const client: Identity = generateIdentity();
    const { port, result } = await serve((socket) =>
      serverHandshake(socket, { identity: server, networkKey, authorize: async (key) => Buffer.from(key).equals(Buffer.from(client.publicKey)) }),
    );
    const ours: HandshakeResult = await clientHandshake(await connect(cleanup, port), { identity: client, networkKey, remoteKey: server.id });
    expect(ours.remoteId).toBe(server.id);
    expect((await result).remoteId).toBe(client.id);
  });

  it("refuses bad options before touching the socket", async () => {
    const { port } = await serve(async () => undefined);
    const socket = await connect(cleanup, port);
    const identity = generateIdentity();
    await expect(clientHandshake(socket, { identity, networkKey: randomBytes(16), remoteKey: identity.id })).rejects.toThrow(/networkKey must be 32 bytes/);
    await expect(clientHandshake(socket, { identity, networkKey, remoteKey: "@nope.ed25519" })).rejects.toThrow(/invalid id/);
    expect(socket.destroyed).toBe(false);
  });
});

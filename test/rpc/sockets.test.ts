import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { connect, listen, type ConnectOptions, type Listener, type ListenOptions, type Session } from "../../src/index.js";
import { Counter, CounterImpl } from "./fixtures.js";

const server = generateIdentity();
const client = generateIdentity();

/** The ways a connection can be secured; the RPC behaviour must not depend on it. */
const SECURITY: [string, ListenOptions, ConnectOptions][] = [
  ["plain Cap'n Proto", { plain: true }, {}],
  ["shs, transport default", { identity: server }, { identity: client, remoteKey: server.id }],
  ["shs + box-stream", { identity: server, encrypt: true }, { identity: client, remoteKey: server.id, encrypt: true }],
  ["shs, no encryption", { identity: server, encrypt: false }, { identity: client, remoteKey: server.id, encrypt: false }],
];

const dir = mkdtempSync(join(tmpdir(), "capmesh-sock-"));
const open: (Listener | Session)[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TRANSPORTS: [string, () => string][] = [
  ["unix", () => `unix:${join(dir, `s-${Math.random().toString(36).slice(2)}.sock`)}`],
  ["tcp", () => "tcp://127.0.0.1:0"],
];

const CASES = TRANSPORTS.flatMap(([kind, address]) => SECURITY.map(([mode, serve, dial]) => [kind, mode, address, serve, dial] as const));

describe.each(CASES)("two-party RPC over %s, %s", (_kind, _mode, address, serve, dial) => {
  it("serves a bootstrap capability and pipelines calls", async () => {
    const listener = await listen(address(), { ...serve, bootstrap: Counter.server(new CounterImpl(5n)) });
    open.push(listener);
    const session = await connect(listener.address, dial);
    open.push(session);
    const counter = session.bootstrap(Counter);
    const third = counter.next().counter.next().counter;
    expect((await third.add({ delta: 0n })).value).toBe(7n);
    expect((await counter.add({ delta: 1n })).value).toBe(6n);
  });

  it("lets either side offer a bootstrap capability and call the other", async () => {
    const clientSide = new CounterImpl(1000n);
    const sessions: Session[] = [];
    const listener = await listen(address(), {
      ...serve,
      bootstrap: Counter.server(new CounterImpl()),
      onSession: (s) => sessions.push(s),
    });
    open.push(listener);
    const session = await connect(listener.address, { ...dial, bootstrap: Counter.server(clientSide) });
    open.push(session);
    await session.bootstrap(Counter).add({ delta: 1n });
    // The server now asks the client for the client's bootstrap.
    const back = sessions[0]!.bootstrap(Counter);
    expect((await back.add({ delta: 1n })).value).toBe(1001n);
    expect(clientSide.log).toEqual([1n]);
  });

  it("passes a callback that the server calls back into", async () => {
    const listener = await listen(address(), { ...serve, bootstrap: Counter.server(new CounterImpl()) });
    open.push(listener);
    const session = await connect(listener.address, dial);
    open.push(session);
    const mine = new CounterImpl(50n);
    const echoed = (await session.bootstrap(Counter).echo({ cap: Counter.server(mine) })).cap!;
    expect((await echoed.add({ delta: 2n })).value).toBe(52n);
    expect(mine.log).toEqual([2n]);
  });

  it("fails calls with disconnected when the server goes away, and the client can reconnect", async () => {
    const impl = new CounterImpl();
    const addr = address();
    const listener = await listen(addr, { ...serve, bootstrap: Counter.server(impl) });
    const session = await connect(listener.address, dial);
    open.push(session);
    const counter = session.bootstrap(Counter);
    await counter.add({ delta: 1n });
    const hanging = counter.hang({});
    await listener.close();
    await expect(hanging).rejects.toMatchObject({ type: "disconnected" });
    const reason = await session.closed;
    expect(reason.type).toBe("disconnected");
  });
});

// The typed API's edges: -> stream failures, dynamic calls, and the
// FinalizationRegistry safety net.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ObjectSize, utils } from "capnp-es";
import { afterEach, describe, expect, it } from "vitest";
import { ByteSink, TestService } from "../interop/schema/interop.js";
import { RpcConnection } from "../../src/rpc/connection.js";
import { initStructIn, readStructIn } from "../../src/rpc/payload.js";
import { dynamicCall, RpcError, Session, setStreamWindow, type PeerInfo } from "../../src/rpc/index.js";
import { memoryStreamPair } from "../../src/transport/message-stream.js";
import { Counter, CounterImpl } from "./fixtures.js";

const sessions: Session[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close();
});

function pair<C>(offer: Parameters<typeof Session.prototype.bootstrap>[0] & { readonly __client?: C }, server: unknown): C {
  const [a, b] = memoryStreamPair();
  const peer = (id: string): PeerInfo => ({ id, authenticated: false, address: `memory:${id}` });
  sessions.push(new Session(new RpcConnection(a), peer("client"), server as never));
  const client = new Session(new RpcConnection(b), peer("server"), null);
  sessions.push(client);
  return client.bootstrap(offer);
}

describe("-> stream methods", () => {
  it("surface a server failure at a later write and at the final call", async () => {
    let writes = 0;
    const sink = ByteSink.server({
      write() {
        if (++writes === 3) throw new Error("disk full");
      },
      done: () => ({ bytes: 0n, checksum: 0n }),
    });
    const svc = pair(TestService, TestService.server({ sink: () => ({ sink: sink.dup() }) } as never));
    const remote = (await svc.sink({})).sink!;
    const chunk = new Uint8Array(1000);
    let failure: unknown = null;
    for (let i = 0; i < 1000 && failure === null; i++) {
      await remote.write({ chunk }).catch((e: unknown) => (failure = e));
    }
    expect(failure).toBeInstanceOf(RpcError);
    expect((failure as RpcError).message).toContain("disk full");
    // Writes already in flight may still arrive; new ones fail here, without a round trip.
    const arrived = writes;
    await expect(remote.write({ chunk })).rejects.toThrow(/disk full/);
    await expect(remote.done({})).rejects.toThrow(/disk full/);
    expect(arrived).toBeGreaterThanOrEqual(3);
  });

  it("make the caller wait while the window is full", async () => {
    setStreamWindow(4 * 1024 * 1024);
    try {
      const released: (() => void)[] = [];
      const sink = ByteSink.server({
        write: () => new Promise<void>((resolve) => released.push(resolve)),
        done: () => ({ bytes: 0n, checksum: 0n }),
      });
      const remote = pair(ByteSink, sink);
      // Just under 1 MiB per message with its envelope: with a 4 MiB window,
      // four fit and the fifth has to wait.
      const chunk = new Uint8Array(1024 * 1024 - 1024);
      for (let i = 0; i < 4; i++) await remote.write({ chunk });
      let fifthDone = false;
      const fifth = remote.write({ chunk }).then(() => (fifthDone = true));
      for (let i = 0; i < 50 && released.length < 5; i++) await new Promise((r) => setImmediate(r));
      expect(released.length).toBe(5);
      expect(fifthDone).toBe(false);
      released.shift()!();
      await fifth;
      expect(fifthDone).toBe(true);
      for (const r of released) r();
    } finally {
      setStreamWindow(null);
    }
  });

  it("start adaptive streams at a 256 KiB window", async () => {
    const held: (() => void)[] = [];
    const sink = ByteSink.server({
      write: () => new Promise<void>((resolve) => held.push(resolve)),
      done: () => ({ bytes: 0n, checksum: 0n }),
    });
    const remote = pair(ByteSink, sink);
    const chunk = new Uint8Array(64 * 1024);
    // Three 64 KiB calls fit under 256 KiB; the fourth fills it and waits.
    for (let i = 0; i < 3; i++) await remote.write({ chunk });
    let fourthDone = false;
    const fourth = remote.write({ chunk }).then(() => (fourthDone = true));
    for (let i = 0; i < 50 && held.length < 4; i++) await new Promise((r) => setImmediate(r));
    expect(held.length).toBe(4);
    expect(fourthDone).toBe(false);
    held.shift()!();
    await fourth;
    for (const r of held) r();
  });
});

describe("dynamic calls", () => {
  it("call a method by interface and method id with hand-built params", async () => {
    const counter = pair(Counter, Counter.server(new CounterImpl(40n)));
    using response = await dynamicCall(counter, Counter.id, 0, (content) => {
      utils.setInt64(0, 2n, initStructIn(content, new ObjectSize(8, 0)));
    });
    expect(utils.getInt64(0, readStructIn(response.content))).toBe(42n);
  });

  it("reject an unknown method with unimplemented", async () => {
    const counter = pair(Counter, Counter.server(new CounterImpl()));
    const err = await dynamicCall(counter, Counter.id, 99, () => {}).catch((e: unknown) => e);
    expect((err as RpcError).type).toBe("unimplemented");
  });
});

describe("the FinalizationRegistry safety net", () => {
  it("releases a client the program forgot, so the server object is disposed", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--expose-gc", "--import", "tsx", "test/rpc/gc-child.ts"],
      { timeout: 30_000 },
    );
    expect(stdout.trim()).toBe("disposed after gc");
  });
});

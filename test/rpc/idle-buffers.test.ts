// An idle connection keeps no buffers: after a burst of large calls and a
// `-> stream` both ways of a real socket connection, the send batches that
// grew for it (up to a few hundred KiB each) are given back once the
// connection has been idle for a sweep or two (message-stream.ts, every 2 s),
// without anyone asking, and nothing of an incomplete frame is held.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { connect, listen, type ConnectOptions, type ListenOptions } from "../../src/index.js";
import { connectionBuffers } from "../../src/rpc/introspect.js";
import { ByteSink, TestService } from "../interop/schema/interop.js";

const server = generateIdentity();
const client = generateIdentity();
const dir = mkdtempSync(join(tmpdir(), "capmesh-idle-buffers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The least send batch one side must hold right after the burst: on a socket,
// frames up to 128 KiB go through the batch, which grows for them; over
// box-stream (not a socket) large frames go by reference, so the batch stays
// the small first one.
const CASES: [string, string, ListenOptions, ConnectOptions, number][] = [
  ["unix, plain Cap'n Proto", `unix:${join(dir, "plain.sock")}`, { plain: true }, {}, 64 * 1024],
  ["TCP, handshake and box-stream", "tcp://127.0.0.1:0", { identity: server, encrypt: true }, { identity: client, remoteKey: server.id, encrypt: true }, 1],
];

/** Polls `check` until it returns true, failing with `what` after `ms`. */
async function until(what: () => string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.concurrent.each(CASES)("a connection over %s", (_name, address, serve, dial, busyAtLeast) => {
  it("gives its send and receive buffers back once it has gone idle", async () => {
    let received = 0;
    const sink = ByteSink.server({
      write: ({ chunk }) => void (received += chunk.byteLength),
      done: () => ({ bytes: BigInt(received), checksum: 0n }),
    });
    const service = TestService.server({
      echo: ({ text, data, n }: { text: string; data: Uint8Array; n: bigint }) => ({ text, data, n }),
      sink: () => ({ sink: sink.dup() }),
    } as never);
    await using listener = await listen(address, { ...serve, bootstrap: service });
    await using session = await connect(listener.address, dial);
    const svc = session.bootstrap(TestService);

    // The burst: 40 large calls in flight (100 KiB each way), then 2 MiB of `-> stream`.
    const data = new Uint8Array(100 * 1024).fill(3);
    const echoes = await Promise.all(Array.from({ length: 40 }, (_, n) => svc.echo({ text: "x", data, n: BigInt(n) })));
    expect(echoes.every((e) => e.data?.byteLength === data.byteLength)).toBe(true);
    using remoteSink = (await svc.sink({})).sink!;
    const chunk = new Uint8Array(64 * 1024).fill(5);
    for (let i = 0; i < 32; i++) await remoteSink.write({ chunk });
    expect((await remoteSink.done({})).bytes).toBe(BigInt(32 * chunk.byteLength));

    const [accepted] = [...listener.sessions];
    expect(accepted).toBeDefined();
    const sides = { client: session, server: accepted! };
    const held = () => Object.entries(sides).map(([side, s]) => ({ side, ...connectionBuffers(s) }));
    // Busy: the batches grew past a small one (at least one side; which depends on the transport).
    const busy = held();
    expect(Math.max(...busy.map((b) => b.send))).toBeGreaterThanOrEqual(busyAtLeast);
    // Idle: given back by the sweep, unasked.
    await until(
      () => `still held: ${JSON.stringify(held())} (right after the burst: ${JSON.stringify(busy)})`,
      () => held().every((b) => b.send === 0 && b.receive === 0),
      8_000,
    );
    // Still a working connection, which starts small again.
    expect((await svc.echo({ text: "again", data: new Uint8Array(10), n: 1n })).text).toBe("again");
    expect(Math.max(...held().map((b) => b.send))).toBeLessThanOrEqual(8 * 1024);
  });
});

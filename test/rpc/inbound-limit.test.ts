// A peer that floods us with calls that never finish must not grow our
// memory without bound: past the inbound limits we stop reading from it
// (its writes back up in its socket), and other peers are unaffected.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect, listen, type Session } from "../../src/rpc/index.js";
import { Counter, CounterImpl } from "./fixtures.js";
import { fillAddCall, fillEmptyCall, HANG, RawPeer, rpcBytes, until } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-flood-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("inbound flow control", () => {
  it("stops reading from a peer with too many calls in progress, and notices when it hangs up", async () => {
    const path = join(dir, "flood.sock");
    const impl = new CounterImpl();
    const sessions: Session[] = [];
    const listener = await listen(`unix:${path}`, {
      bootstrap: Counter.server(impl),
      inbound: { maxCalls: 50 },
      onSession: (s) => sessions.push(s),
    });
    const good = await connect(listener.address);
    try {
      const peer = await RawPeer.connect(path);
      const target = await peer.bootstrap(0);
      const flood = 3000;
      const chunks: Uint8Array[] = [];
      for (let q = 1; q <= flood; q++) chunks.push(rpcBytes((root) => fillEmptyCall(root, q, target, HANG)));
      for (const c of chunks) peer.write(c);
      const server = sessions.at(-1)!.connection;
      await until(() => server.inboundInProgress.paused, "the server to stop reading from the flooding peer");
      // Bounded: the limit plus what one socket read had already delivered.
      expect(server.inboundInProgress.calls).toBeLessThan(flood / 2);
      expect(server.stats().answers).toBeLessThan(flood / 2);
      // Another peer is served meanwhile.
      expect((await good.bootstrap(Counter).add({ delta: 1n })).value).toBe(1n);
      // When the flooding peer goes away its calls are canceled and the count drains.
      peer.destroy();
      await until(() => server.inboundInProgress.calls === 0, "the flooding peer's calls to be canceled");
    } finally {
      await good.close();
      await listener.close();
    }
  });

  it("answers every call of a burst larger than the limit, in order, by resuming reads", async () => {
    const path = join(dir, "burst.sock");
    const impl = new CounterImpl();
    const sessions: Session[] = [];
    const listener = await listen(`unix:${path}`, {
      bootstrap: Counter.server(impl),
      inbound: { maxCalls: 5 },
      onSession: (s) => sessions.push(s),
    });
    try {
      const peer = await RawPeer.connect(path);
      const target = await peer.bootstrap(0);
      const burst = 1000;
      for (let q = 1; q <= burst; q++) peer.write(rpcBytes((root) => fillAddCall(root, q, target, 1n)));
      const last = await peer.returnFor(burst);
      expect(last.which()).toBe(0); // results
      expect(impl.log.length).toBe(burst);
      expect(impl.value).toBe(BigInt(burst));
      expect(sessions[0]!.connection.inboundInProgress).toMatchObject({ paused: false });
      peer.destroy();
    } finally {
      await listener.close();
    }
  });
});

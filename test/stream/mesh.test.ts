// Streams between mesh peers: through the hub (every call forwarded) and
// over a direct path, both ways, with cancellation reaching the producer.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromByteSource, fromValue, generateIdentity, joinMesh, startHub, toByteSource, toValue, type MeshHub, type MeshPeer } from "../../src/index.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { seeded, served, sha256Of, Tasks, tasks } from "./tasks.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-stream-mesh-"));
let hub: MeshHub;
let plugin: MeshPeer;
const join_ = (options: { directPaths?: false; name?: string; provide?: unknown } = {}) =>
  joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false, ...options } as never);

beforeAll(async () => {
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
  plugin = await join_({ name: "tasks", provide: Tasks.server(tasks) });
});
afterAll(async () => {
  await plugin?.close();
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

describe.each([
  ["through the hub", { directPaths: false as const }],
  ["over a direct path", {}],
])("streams between plugins %s", (how, options) => {
  it("go both ways with their content intact, and a reader that stops stops the producer", async () => {
    const client = await join_(options);
    try {
      const remote = client.connect("tasks", Tasks, { wait: 5000 });
      await remote.whenResolved();
      expect(client.pathOf(remote).path).toBe(how === "through the hub" ? "hub" : "direct");
      const forwardedBefore = Number(hub.stats().forwardedCalls);

      const size = 8 * 1024 * 1024 + 3;
      const expected = await sha256Of(seeded(size, 11));
      using out = toByteSource(seeded(size, 11));
      const up = await remote.run({ value: toValue({ op: "upload" }), bytes: out });
      expect(fromValue(up.value)).toEqual(expected);
      const down = await remote.run({ value: toValue({ op: "download", size, seed: 11 }) });
      expect(await sha256Of(fromByteSource(down.bytes!))).toEqual(expected);
      down.bytes!.release();

      const finished = served.finished.length;
      const endless = await remote.run({ value: toValue({ op: "endless", name: `stopped ${how}` }) });
      let n = 0;
      for await (const _ of fromByteSource(endless.bytes!)) if (++n === 5) break;
      endless.bytes!.release();
      await eventually(() => served.finished.length > finished, "the producer's source to finish");
      expect(served.finished.slice(finished)).toEqual([`stopped ${how}: returned early`]);

      // The hub carried the writes, or none of them.
      const forwarded = Number(hub.stats().forwardedCalls) - forwardedBefore;
      if (how === "through the hub") expect(forwarded).toBeGreaterThan(200);
      else expect(forwarded).toBe(0);
      remote.release();
    } finally {
      await client.close();
    }
  }, 60_000);
});

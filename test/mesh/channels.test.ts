// Channels by name (schema/channel.capnp) over real sockets: the hub in this
// process, the plugin a child process (test/mesh/channel-child.ts), the
// opener a client here. Bytes both ways (a large transfer checked by hash),
// refusal with the plugin's reason, the caller's identity as the plugin saw
// it, the channel on the direct path (the hub forwards no call during the
// transfer), closing either end ending the other, a pair of Web streams,
// and a plugin killed mid-channel failing the opener with disconnected.
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { Counter } from "../rpc/fixtures.js";
import { DIRECT_CHILD } from "./helpers/direct-child.js";
import { killLeftAndWait, startTsPlugin, type Registered } from "./helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-channels-"));
let hub: MeshHub;
let plugin: Registered;
const children: ChildProcess[] = [];
const peers: MeshPeer[] = [];

beforeAll(async () => {
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
  plugin = await startTsPlugin("chan", { script: "test/mesh/channel-child.ts", env: { ...process.env, ...hub.env }, children });
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
});

afterAll(async () => {
  await killLeftAndWait(children);
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

async function client(): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey, handleSignals: false });
  peers.push(peer);
  return peer;
}

/** Everything the channel's readable side gives until it ends. */
async function readAll(channel: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of channel) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Writes `data` in 100 KiB pieces with backpressure, then ends the channel (a half close). */
async function writeAll(channel: Duplex, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 100 * 1024) {
    if (!channel.write(data.subarray(at, at + 100 * 1024))) await once(channel, "drain");
  }
  channel.end();
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const forwarded = () => Number(hub.stats().forwardedCalls);
/** Bytes `peer` received over direct connections to the plugin (each side may have dialled one). */
const directBytesIn = (peer: MeshPeer) =>
  peer
    .stats()
    .connections.filter((c) => c.kind === "direct" && c.peer === plugin.id)
    .reduce((sum, c) => sum + c.bytesIn, 0);

describe("channels by name", () => {
  it("echoes 16 MiB both ways over the direct path, checked by hash", async () => {
    const peer = await client();
    const channel = await peer.openChannel("chan", { protocol: "echo" });
    // A first round trip settles the handoff; from then on the hub passes nothing on.
    channel.write("ping");
    const [first] = (await once(channel, "data")) as [Buffer];
    expect(Buffer.from(first).toString()).toBe("ping");
    const before = forwarded();
    const bytesBefore = directBytesIn(peer);
    const data = randomBytes(16 * 1024 * 1024);
    const [back] = await Promise.all([readAll(channel), writeAll(channel, data)]);
    expect(back.length).toBe(data.length);
    expect(sha(back)).toBe(sha(data));
    expect(forwarded()).toBe(before);
    expect(directBytesIn(peer) - bytesBefore, JSON.stringify(peer.stats())).toBeGreaterThan(data.length);
    await expect.poll(() => plugin.output()).toMatch(/^closed echo$/m);
  });

  it("reads and writes as a pair of Web streams", async () => {
    const peer = await client();
    const { readable, writable } = Duplex.toWeb(await peer.openChannel("chan", { protocol: "echo" }));
    const writer = writable.getWriter();
    await writer.write(new TextEncoder().encode("over the web"));
    await writer.close();
    let text = "";
    for await (const chunk of readable as ReadableStream<Uint8Array>) text += Buffer.from(chunk).toString();
    expect(text).toBe("over the web");
  });

  it("refuses with the plugin's name and reason", async () => {
    const peer = await client();
    await expect(peer.openChannel("chan", { protocol: "refuse" })).rejects.toThrow(
      'openChannel("chan", protocol "refuse"): plugin "chan" refused the channel: not today',
    );
  });

  it("tells the plugin who opened the channel (the hub vouches for it)", async () => {
    const peer = await client();
    const channel = await peer.openChannel("chan", { protocol: "who" });
    channel.end();
    expect((await readAll(channel)).toString()).toBe(peer.id);
    expect(plugin.output()).toContain(`channel who from ${peer.id}`);
  });

  it("keeps the name's own capability working beside its channels", async () => {
    const peer = await client();
    using counter = peer.connect("chan", Counter);
    expect((await counter.add({ delta: 5n })).value).toBeGreaterThanOrEqual(5n);
  });

  it("ends the opener's read when the plugin ends its side or destroys its end", async () => {
    const peer = await client();
    const bye = await peer.openChannel("chan", { protocol: "bye" });
    expect((await readAll(bye)).toString()).toBe("bye");
    bye.destroy();

    const drop = await peer.openChannel("chan", { protocol: "drop" });
    drop.write("hello");
    expect((await readAll(drop)).length).toBe(0);
    await expect.poll(() => plugin.output()).toMatch(/^closed drop$/m);
  });

  it("closes the plugin's end when the opener destroys its end", async () => {
    const peer = await client();
    const closedBefore = plugin.output().match(/^closed echo$/gm)?.length ?? 0;
    const channel = await peer.openChannel("chan", { protocol: "echo" });
    const errors: Error[] = [];
    channel.on("error", (error: Error) => errors.push(error));
    channel.write("x");
    await once(channel, "data");
    channel.destroy();
    await once(channel, "close");
    // An ordinary close, not a failure.
    expect(errors).toEqual([]);
    await expect.poll(() => plugin.output().match(/^closed echo$/gm)?.length ?? 0).toBe(closedBefore + 1);
  });

  it("fails the opener's channel with disconnected when the plugin is killed", async () => {
    const doomed = await startTsPlugin("doomed", { script: "test/mesh/channel-child.ts", env: { ...process.env, ...hub.env }, children });
    const peer = await client();
    const channel = await peer.openChannel("doomed", { protocol: "echo" });
    channel.write("x");
    await once(channel, "data");
    const failed = once(channel, "error");
    doomed.child.kill("SIGKILL");
    const [error] = (await failed) as [Error & { type?: string }];
    expect(error.type).toBe("disconnected");
  });

  it("says so when the plugin does not accept channels", async () => {
    await startTsPlugin("plain", { script: DIRECT_CHILD, env: { ...process.env, ...hub.env }, children });
    const peer = await client();
    await expect(peer.openChannel("plain")).rejects.toThrow('openChannel("plain"): plugin "plain" does not accept channels');
  });
});

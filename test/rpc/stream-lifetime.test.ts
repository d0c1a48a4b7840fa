// `-> stream` params live until the method returns: the large segments of a
// streamed call serve the next frames, and a view a server kept becomes empty
// rather than showing another call's bytes. Other methods' params are left alone.
import { afterEach, describe, expect, it } from "vitest";
import { ByteSink, TestService } from "../interop/schema/interop.js";
import { RpcConnection } from "../../src/rpc/connection.js";
import { Session, type PeerInfo } from "../../src/rpc/index.js";
import { inboundSegmentPoolBytes } from "../../src/transport/framing.js";
import { memoryStreamPair } from "../../src/transport/message-stream.js";

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

const pattern = (bytes: number, seed: number): Uint8Array => {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 13 + seed) & 0xff;
  return out;
};

/** Byte-for-byte equality (vitest's deep equality walks typed arrays element by element: slow at 64 KiB). */
const same = (a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean =>
  a.length === b.length && a.every((x, i) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(b[i]!));

function sinkService(write: (chunk: Uint8Array) => void | Promise<void>) {
  const sink = ByteSink.server({ write: ({ chunk }) => write(chunk), done: () => ({ bytes: 0n, checksum: 0n }) });
  return TestService.server({ sink: () => ({ sink: sink.dup() }) } as never);
}

describe("-> stream params", () => {
  it("are whole while the method runs; a large chunk kept past its return is empty, a copy is intact", async () => {
    const kept: Uint8Array[] = [];
    const copies: Uint8Array[] = [];
    const seenWhole: boolean[] = [];
    let allDone!: () => void;
    const finished = new Promise<void>((resolve) => (allDone = resolve));
    const svc = pair(
      TestService,
      sinkService(async (chunk) => {
        kept.push(chunk);
        await new Promise((resolve) => setImmediate(resolve)); // still ours while the method runs
        copies.push(chunk.slice());
        seenWhole.push(chunk.byteLength > 0);
        if (copies.length === 4) allDone();
      }),
    );
    using sink = (await svc.sink({})).sink!;
    const sent = [pattern(64 * 1024, 1), pattern(64 * 1024, 2), pattern(64 * 1024, 3), pattern(1000, 4)];
    for (const chunk of sent) await sink.write({ chunk });
    await sink.done({});
    await finished;
    // The last method returned just now: its release follows once the dispatch settles.
    await new Promise((resolve) => setImmediate(resolve));
    expect(seenWhole).toEqual([true, true, true, true]);
    expect(same(copies, sent)).toBe(true);
    // The large chunks' memory went back for reuse: the views the server kept are detached.
    expect(kept.slice(0, 3).map((c) => c.byteLength)).toEqual([0, 0, 0]);
    expect(inboundSegmentPoolBytes()).toBeGreaterThan(64 * 1024);
    // A small call is left to the collector: what the server kept stays readable.
    expect(same([kept[3]!], [sent[3]!])).toBe(true);
  });

  it("reuse the segments for later chunks without mixing their bytes", async () => {
    const received: Uint8Array[] = [];
    const svc = pair(TestService, sinkService((chunk) => void received.push(chunk.slice())));
    using sink = (await svc.sink({})).sink!;
    const sent = Array.from({ length: 40 }, (_, i) => pattern(48 * 1024 + (i % 3) * 8, i));
    for (const chunk of sent) await sink.write({ chunk });
    await sink.done({});
    expect(same(received, sent)).toBe(true);
  });

  it("of other methods are not released: large Data a server keeps stays whole", async () => {
    let kept: Uint8Array | null = null;
    const svc = pair(
      TestService,
      TestService.server({
        echo: ({ text, data, n }: { text: string; data: Uint8Array; n: bigint }) => {
          kept = data;
          return { text, data, n };
        },
      } as never),
    );
    const data = pattern(64 * 1024, 9);
    const out = await svc.echo({ text: "x", data, n: 1n });
    expect(same([out.data, kept!], [data, data])).toBe(true);
  });
});

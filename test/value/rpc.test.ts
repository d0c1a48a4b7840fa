// A value through real RPC calls over real sockets: a capability inside it
// is called by the receiver and comes back, and the receiver applies the
// value limits to what a peer sent.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  CapabilityClient,
  connect,
  ErrorValue,
  fromValue,
  generateIdentity,
  listen,
  toValue,
  type ConnectOptions,
  type Listener,
  type Capability,
  type ListenOptions,
  type Session,
  type Value,
} from "../../src/index.js";
import { Counter } from "../../src/gen/demo.js";
import { Transformer, type TransformerServer } from "./helpers.js";

/** Describes what it received and, given a counter, adds to it and hands it back. */
const transformer: TransformerServer = {
  async transform({ value }) {
    const x = fromValue(value) as Record<string, unknown>;
    const out: Record<string, unknown> = {
      keys: Object.keys(x),
      big: typeof x.big === "bigint" ? x.big * 2n : null,
      bytes: x.bytes instanceof Uint8Array ? x.bytes.length : null,
      nested: x.nested,
      error: x.error instanceof ErrorValue ? `${x.error.code}: ${x.error.message}` : null,
    };
    if (x.counter instanceof CapabilityClient) {
      const counter = x.counter.castAs(Counter);
      out.total = (await counter.add({ by: 2 })).total;
      out.counter = counter; // passed back: the results take their own reference
    }
    return { value: toValue(out) };
  },
};

const dir = mkdtempSync(join(tmpdir(), "capmesh-value-"));
const open: (Listener | Session)[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let sockets = 0;
const server = generateIdentity();
const client = generateIdentity();
const CASES: [string, () => string, ListenOptions, ConnectOptions][] = [
  ["a unix socket", () => `unix:${join(dir, `v-${++sockets}.sock`)}`, {}, {}],
  ["TCP with the secret handshake", () => "tcp://127.0.0.1:0", { identity: server }, { identity: client, remoteKey: server.id }],
];

describe.each(CASES)("values over %s", (_name, address, serve, dial) => {
  async function session(): Promise<Transformer> {
    const listener = await listen(address(), { ...serve, bootstrap: Transformer.server(transformer) });
    open.push(listener);
    const s = await connect(listener.address, dial);
    open.push(s);
    return s.bootstrap(Transformer);
  }

  it("carries a value with a capability in it there and back", async () => {
    const t = await session();
    let count = 10;
    const counter = Counter.server({ add: ({ by }) => ({ total: (count += by) }), get: () => ({ total: count }) });
    const sent = {
      big: 2n ** 60n + 1n,
      bytes: new Uint8Array(1000).subarray(10, 20),
      nested: { list: [1, -0.5, "two", null, [true, false]], "odd key": { "": "" } },
      error: new ErrorValue("not found", { code: "ENOENT" }),
      counter,
    };
    const { value } = await t.transform({ value: toValue(sent) });
    const got = fromValue(value) as Record<string, unknown>;
    expect(got).toMatchObject({
      keys: ["big", "bytes", "nested", "error", "counter"],
      big: 2n ** 61n + 2n,
      bytes: 10,
      nested: sent.nested,
      error: "ENOENT: not found",
      total: 12,
    });
    expect(count).toBe(12);
    // The capability came back through the server: calling it reaches our counter.
    const back = (got.counter as CapabilityClient).castAs(Counter);
    expect((await back.add({ by: 1 })).total).toBe(13);
    back.release();
    (got.counter as Capability).release();
    counter.release();
  });

  it("carries a value nested to the limit within Cap'n Proto's nesting limit, both ways", async () => {
    const t = await session();
    // {nested: …} plus 31 levels of alternating records and lists: 32 levels.
    let inner: unknown = "bottom";
    for (let i = 0; i < 31; i++) inner = i % 2 === 0 ? [inner] : { r: inner };
    const { value } = await t.transform({ value: toValue({ nested: inner }) });
    expect((fromValue(value) as { nested: unknown }).nested).toEqual(inner);
  });

  it("makes the receiver refuse a value past the limits, whatever the sender built", async () => {
    const t = await session();
    // Built by hand, past toValue's checks: 40 levels of lists.
    let deep: Value = { which: "null", null: true };
    for (let i = 0; i < 40; i++) deep = { which: "list", list: [deep] };
    const record: Value = { which: "record", record: { names: ["deep"], values: [deep] } };
    await expect(t.transform({ value: record })).rejects.toThrow(/value\.deep(\[0\]){31}: the received value nests deeper than maxDepth \(32\) levels/);
    // The connection is still usable.
    const { value } = await t.transform({ value: toValue({ ok: 1 }) });
    expect(fromValue(value)).toMatchObject({ keys: ["ok"] });
  });
});

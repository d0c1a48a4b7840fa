// A value through real RPC calls over real sockets: a capability inside it
// is called by the receiver and comes back, and the receiver applies the
// value limits to what a peer sent.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  CapabilityClient,
  checkFields,
  connect,
  defineInterface,
  defineStruct,
  ErrorValue,
  fieldError,
  fromValue,
  generateIdentity,
  listen,
  readStructField,
  toValue,
  Value$codec,
  writeStructField,
  type CallContext,
  type Capability,
  type Codec,
  type ConnectOptions,
  type Init,
  type Listener,
  type ListenOptions,
  type RpcPromise,
  type Session,
  type Value,
} from "../../src/index.js";
import { Counter } from "../../src/gen/demo.js";

// The codecs and interface generated code would produce for
//   interface Transformer { transform @0 (value :Value) -> (value :Value); }
// (written out here because the generator's jobs map one schema directory to
// one output directory, and a test schema importing schema/value.capnp would
// need the generated import to point into src/gen/).
type Holder = { value: Value };
const Holder$codec: Codec<Holder> = defineStruct<Holder>({
  name: "Transformer$Holder",
  dataWords: 0,
  pointers: 1,
  fields: ["value"],
  read(v, caps) {
    return { value: readStructField(v, 0, Value$codec, caps) };
  },
  write(x, v, caps) {
    let n = 0;
    try {
      if (x.value != null) {
        n++;
        writeStructField(v, 0, Value$codec, x.value, caps);
      }
    } catch (e) {
      throw fieldError(e, "value");
    }
    let k = 0;
    for (const _ in x) k++;
    if (k !== n) checkFields(x, n, Holder$codec);
  },
});

interface Transformer extends Capability {
  transform(params: Init<Holder>): RpcPromise<Holder>;
}
interface TransformerServer {
  transform(params: Holder, ctx: CallContext): Promise<Init<Holder>> | Init<Holder>;
}
const Transformer = defineInterface<Transformer, TransformerServer>({
  name: "Transformer",
  id: 0xb6f1c0d2e3a4f501n,
  methods: [{ name: "transform", ordinal: 0, params: Holder$codec, results: Holder$codec, stream: false }],
  superclasses: [],
});

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

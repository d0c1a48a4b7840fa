// The engine (schema/engine.capnp) with a hub in this process and peers over
// its unix socket: configuration sections, the environment the policy
// exposes, plugin log lines, closures (made from functions, called like
// functions, evaluated by the engine, with streams), call contexts, and an
// embedding service's engine that extends Engine.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { startHub, type HubOptions, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type JoinOptions, type MeshPeer } from "../../src/mesh/join.js";
import { callable, closure, withCallContext, type ClosureCall, type PluginLogLine } from "../../src/engine/index.js";
import { Closure, Engine } from "../../src/gen/engine.js";
import { Counter } from "../../src/gen/demo.js";
import { fromValue, toValue } from "../../src/value/index.js";
import { fromValueSource, toValueSource } from "../../src/stream/index.js";
import { parseConfig, ConfigError } from "../../src/mesh/config.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { ShopEngine } from "./schema/shop.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-engine-"));
const pluginKey: Identity = generateIdentity();
const lines: PluginLogLine[] = [];
let hub: MeshHub;
const peers: MeshPeer[] = [];

process.env.CAPMESH_TEST_EXPOSED = "visible";
process.env.CAPMESH_TEST_LANG_A = "a";
process.env.CAPMESH_TEST_SECRET = "hidden";

function hubOptions(): HubOptions {
  return {
    home,
    socket: join(home, "hub.sock"),
    identity: generateIdentity(),
    plugins: { tool: { greeting: "hi", sizes: [1, 2, 3] } },
    policy: {
      env: [{ peer: pluginKey.id, names: ["CAPMESH_TEST_EXPOSED", "CAPMESH_TEST_LANG_*"] }],
      register: [{ peer: "*", names: ["secret.*"], allow: false }],
    },
    pluginLog: (line) => void lines.push(line),
  };
}

beforeAll(async () => {
  hub = await startHub(hubOptions());
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  lines.length = 0;
});

afterAll(async () => {
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

async function peer(options: Partial<JoinOptions> = {}, on: MeshHub = hub): Promise<MeshPeer> {
  const p = await joinMesh({ hub: on.address, hubId: on.id, networkKey: on.networkKey, handleSignals: false, ...options });
  peers.push(p);
  return p;
}

const counter = () => Counter.server({ add: () => ({ total: 0 }), get: () => ({ total: 0 }) });

describe("configuration and environment", () => {
  it("a plugin reads its own section; a client's engine has none", async () => {
    const tool = await peer({ name: "tool", provide: counter(), identity: pluginKey });
    expect(fromValue((await tool.engine.config()).config)).toEqual({ greeting: "hi", sizes: [1, 2, 3] });
    const other = await peer({ name: "other", provide: counter() });
    expect(fromValue((await other.engine.config()).config)).toBeNull();
    const client = await peer();
    expect(fromValue((await client.engine.config()).config)).toBeNull();
  });

  it("an engine for a name the caller neither holds nor may register is refused", async () => {
    const client = await peer();
    const engineOf = (name: string) => Engine.fromPromise(client.hub.engine({ name }).then(({ engine }) => engine as Engine));
    await expect(engineOf("secret.db").config()).rejects.toThrow(
      /may not register "secret\.db": refused by policy\.register\[0\], and it does not hold "secret\.db": no engine for that plugin/,
    );
    // Held by another identity, but free to register: allowed (the config is not secret per identity).
    await peer({ name: "tool", provide: counter(), identity: pluginKey });
    expect(fromValue((await engineOf("tool").config()).config)).toMatchObject({ greeting: "hi" });
  });

  it("the environment: exposed entries only, a clear refusal otherwise", async () => {
    const tool = await peer({ name: "tool", provide: counter(), identity: pluginKey });
    const { entries } = await tool.engine.env({ names: ["CAPMESH_TEST_EXPOSED", "CAPMESH_TEST_LANG_A", "CAPMESH_TEST_LANG_UNSET"] });
    expect(entries).toEqual([
      { name: "CAPMESH_TEST_EXPOSED", value: "visible" },
      { name: "CAPMESH_TEST_LANG_A", value: "a" },
    ]);
    const all = (await tool.engine.env({ names: [] })).entries.map((e) => e.name);
    expect(all).toEqual(["CAPMESH_TEST_EXPOSED", "CAPMESH_TEST_LANG_A"]);
    await expect(tool.engine.env({ names: ["CAPMESH_TEST_EXPOSED", "CAPMESH_TEST_SECRET"] })).rejects.toThrow(
      `${pluginKey.id} may not read the environment entry "CAPMESH_TEST_SECRET": refused by the default (no environment entry is exposed unless a rule in policy.env names it)`,
    );
    // Another identity (same unix socket) gets nothing: the default refuses.
    const other = await peer();
    await expect(other.engine.env({ names: ["CAPMESH_TEST_EXPOSED"] })).rejects.toThrow(/may not read the environment entry "CAPMESH_TEST_EXPOSED"/);
    expect((await other.engine.env({ names: [] })).entries).toEqual([]);
  });

  it("the plugins config key is checked", () => {
    expect(parseConfig({ plugins: { tool: { a: 1 }, "b.c": [1] } }).plugins).toEqual({ tool: { a: 1 }, "b.c": [1] });
    expect(() => parseConfig({ plugins: [1] })).toThrow(ConfigError);
    expect(() => parseConfig({ plugins: { "Bad/Name": 1 } })).toThrow(/plugins\.Bad\/Name: invalid plugin name/);
    expect(parseConfig({ policy: { env: [{ peer: "*", names: ["LANG*"] }] } }).policy?.env).toEqual([{ peer: "*", names: ["LANG*"] }]);
  });
});

describe("log and progress", () => {
  it("lines reach the hub's log tagged with the plugin's name and identity", async () => {
    const tool = await peer({ name: "tool", provide: counter(), identity: pluginKey });
    await tool.engine.log({ level: "warn", message: "disk almost full", fields: toValue({ free: 12 }) });
    await tool.engine.progress({ message: "indexing", done: 3, total: 10 });
    expect(lines).toEqual([
      { plugin: "tool", peer: pluginKey.id, level: "warn", message: "disk almost full", fields: { free: 12 } },
      { plugin: "tool", peer: pluginKey.id, level: "info", message: "indexing", progress: { done: 3, total: 10 } },
    ]);
  });
});

describe("closures", () => {
  it("a function where a Closure goes, called through the engine", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    const { result } = await tool.engine.eval({ closure: (a: number, b: number) => a + b, args: [toValue(2), toValue(40)] });
    expect(fromValue(result)).toBe(42);
  });

  it("callable(): args and results converted, errors carried, streams both ways", async () => {
    const client = await peer();
    const add = callable(closure((a: number, b: number) => a * b));
    expect(await add(6, 7)).toBe(42);
    const fails = callable(closure(() => {
      throw new Error("no such row");
    }));
    await expect(fails()).rejects.toThrow("no such row");
    // Input and output streams: the closure maps its input.
    const doubler = closure(async function* (this: ClosureCall, k: number) {
      for await (const x of this.input!) yield (x as number) * k;
    });
    // Through the hub's engine, so the streams cross a connection.
    const { output } = await client.engine.eval({ closure: doubler, args: [toValue(2)], input: toValueSource([1, 2, 3]) });
    const got: unknown[] = [];
    for await (const x of fromValueSource(output!)) got.push(x);
    expect(got).toEqual([2, 4, 6]);
    const viaCallable = callable(doubler);
    const { output: out2 } = await viaCallable.invoke({ args: [10], input: [1, 2] });
    const got2: unknown[] = [];
    for await (const x of out2!) got2.push(x);
    expect(got2).toEqual([10, 20]);
    for (const c of [add, fails, viaCallable]) c.release();
    doubler.release();
  });

  it("toValue serves a function inside a value as a Closure; the receiver calls it", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    const v = toValue({ name: "x", onItem: (n: number) => `item ${n}` });
    expect(v.which === "record" && v.record.values[1]!.which).toBe("capability");
    // A closure that receives a closure in its args and calls it (the engine between).
    const apply = (f: Closure, x: unknown) => callable(f)(x);
    const { result } = await tool.engine.eval({ closure: apply, args: [toValue((n: number) => n + 1), toValue(41)] });
    expect(fromValue(result)).toBe(42);
  });
});

describe("call contexts", () => {
  it("valid during the call, refused with a clear message after; the hub drops it", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    let kept: Engine | null = null;
    const results = await withCallContext(tool.engine, "run #1", async (ctx) => {
      expect(await ctx.info()).toEqual({ plugin: "tool", label: "run #1" });
      await ctx.log({ level: "info", message: "inside" });
      kept = ctx.dup();
      return { total: 1 };
    });
    expect(results).toEqual({ total: 1 });
    expect(lines).toContainEqual(expect.objectContaining({ plugin: "tool", call: "run #1", message: "inside" }));
    await expect(kept!.config()).rejects.toThrow(
      /the call context "run #1" of plugin "tool" has ended \(its call returned and its streams ended\): engine calls made through it now belong to no call/,
    );
    await eventually(() => hub.stats().contexts === 0, () => `contexts: ${hub.stats().contexts}`);
    kept!.release();
  });

  it("lives until the streams its call returned have ended", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    let ctxKept: Engine | null = null;
    const results = await withCallContext(tool.engine, "stream", (ctx) => {
      ctxKept = ctx.dup();
      async function* rows() {
        yield 1;
        yield 2;
      }
      return { output: toValueSource(rows()) };
    });
    expect(hub.stats().contexts).toBe(1);
    expect(fromValue((await ctxKept!.config()).config)).toMatchObject({ greeting: "hi" }); // still open: the stream is unread
    const got: unknown[] = [];
    for await (const x of fromValueSource(results.output)) got.push(x);
    expect(got).toEqual([1, 2]);
    await eventually(() => hub.stats().contexts === 0, "the context to end with its stream");
    await expect(ctxKept!.log({ level: "info", message: "late" })).rejects.toThrow(/has ended/);
    ctxKept!.release();
  });

  it("ending a context cancels an eval running on it", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    let sawAbort = false;
    const hang = closure(function (this: ClosureCall) {
      return new Promise((_, reject) => this.signal.addEventListener("abort", () => ((sawAbort = true), reject(new Error("stopped")))));
    });
    const { context, scope } = await tool.engine.callContext({ label: "long" });
    const running = context!.eval({ closure: hang });
    await eventually(() => hub.stats().contexts === 1, "the context");
    await scope!.end();
    await expect(running).rejects.toThrow(/has ended|stopped|canceled/);
    await eventually(() => sawAbort, "the closure to see the cancellation");
    context!.release();
    scope!.release();
    hang.release();
    expect(hub.stats().contexts).toBe(0);
  });

  it("a context opened through a context ends with it", async () => {
    const tool = await peer({ name: "tool", provide: counter() });
    const outer = await tool.engine.callContext({ label: "outer" });
    const inner = await outer.context!.callContext({ label: "inner" });
    expect(await inner.context!.info()).toEqual({ plugin: "tool", label: "inner" });
    expect(hub.stats().contexts).toBe(2);
    await outer.scope!.end();
    await expect(inner.context!.info()).rejects.toThrow(/the call context "inner" of plugin "tool" has ended/);
    expect(hub.stats().contexts).toBe(0);
    for (const c of [outer.context, outer.scope, inner.context, inner.scope]) c!.release();
  });
});

describe("extension point", () => {
  it("an embedding service's engine extends Engine", async () => {
    const shopHome = mkdtempSync(join(tmpdir(), "capmesh-shop-"));
    const shop = await startHub({
      ...hubOptions(),
      home: shopHome,
      socket: join(shopHome, "hub.sock"),
      engine: (base, who) => ShopEngine.server({ ...base, price: ({ item }) => ({ cents: item.length * 100 + (who.name === "tool" ? 1 : 0) }) }),
    });
    try {
      const tool = await peer({ name: "tool", provide: counter() }, shop);
      const mine = tool.engineAs(ShopEngine);
      expect((await mine.price({ item: "tea" })).cents).toBe(301);
      // The Engine methods are still there, on the same capability.
      expect(fromValue((await mine.config()).config)).toMatchObject({ greeting: "hi" });
      mine.release();
      // A peer that knows only Engine uses it as one.
      expect(fromValue((await tool.engine.config()).config)).toMatchObject({ greeting: "hi" });
      await tool.close();
    } finally {
      await shop.close();
      rmSync(shopHome, { recursive: true, force: true });
    }
  });
});

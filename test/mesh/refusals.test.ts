// Bad input and faults against a hub over real sockets: the policy over a
// TCP listener (every rule kind, `*` and per-identity rules, an identity
// refused outright), a peer of another network key, the default quotas
// under floods of pipelined requests, names of 1 MiB and of bad characters,
// protocol versions a peer invents, and a watcher that stops answering.
// Each refusal is checked for its exact reason, and the hub for being
// undisturbed afterwards: another peer still lists, connects and calls, and
// the hub's tables are back to their baseline.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { Greeter } from "../../src/gen/demo.js";
import { Observer, type Event, type HubStats } from "../../src/gen/mesh.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { show } from "./helpers/events.js";
import { parseConfig } from "../../src/mesh/config.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type JoinOptions, type MeshPeer } from "../../src/mesh/join.js";
import { DEFAULT_QUOTAS } from "../../src/mesh/policy.js";
import { MAX_WATCHER_BACKLOG } from "../../src/mesh/registry.js";
import { start, TSX } from "./helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-refusals-"));
const networkKey = randomBytes(32).toString("base64");
const hubIdentity = generateIdentity();
/** May register alice.* over TCP, list and watch, and connect to alice.* and public.*. */
const alice = generateIdentity();
/** No rule of its own: only what `*` rules allow. */
const bob = generateIdentity();
/** Refused by rules of its own before the `*` rules. */
const eve = generateIdentity();
/** Refused outright (policy.join). */
const mallory = generateIdentity();

/** As capmesh.config.json would say it (checked by parseConfig, as `capmesh serve` does). */
const config = {
  socket: join(home, "hub.sock"),
  listen: ["tcp://127.0.0.1:0"],
  networkKey,
  policy: {
    join: [{ peer: mallory.id, allow: false }],
    register: [
      { peer: "*", names: ["hub.*"], allow: false },
      { peer: alice.id, names: ["alice.*"], via: "tcp" },
    ],
    watch: [
      { peer: eve.id, allow: false },
      { peer: alice.id, via: "tcp" },
    ],
    connect: [
      { peer: eve.id, allow: false },
      { peer: "*", names: ["public.*"] },
      { peer: alice.id, names: ["alice.*"] },
    ],
  },
};

let hub: MeshHub;
let tcpAddress: string;
/** A plugin on the unix socket that every check of "undisturbed" calls. */
let greeterPlugin: MeshPeer;
let baseline: HubStats;
const peers: MeshPeer[] = [];

const greeter = (from: string) => Greeter.server({ greet: ({ name }) => ({ greeting: `hello ${name} from ${from}` }), room: () => ({}) });

beforeAll(async () => {
  hub = await startHub({ ...parseConfig(config), home, identity: hubIdentity });
  tcpAddress = hub.addresses.find((a) => a.startsWith("tcp://"))!;
  greeterPlugin = await joinMesh({ ...over(hub.address), name: "public.greeter", provide: greeter("public.greeter") });
  baseline = hub.stats();
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
});

afterAll(async () => {
  await greeterPlugin?.close();
  await hub?.close();
  rmSync(home, { recursive: true, force: true });
});

function over(address: string, identity?: Identity): JoinOptions {
  return { hub: address, hubId: hubIdentity.id, networkKey, handleSignals: false, reconnect: false, ...(identity ? { identity } : {}) };
}

async function peer(address: string, identity?: Identity): Promise<MeshPeer> {
  const p = await joinMesh(over(address, identity));
  peers.push(p);
  return p;
}

const tcpPeer = (identity: Identity) => peer(tcpAddress, identity);
const unixPeer = (identity?: Identity) => peer(hub.address, identity);

/** The rejection of `promise` (fails the test if it resolves). */
async function refusal(promise: PromiseLike<unknown>): Promise<Error & { type?: string }> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    return error as Error & { type?: string };
  }
  if (typeof (value as MeshPeer | undefined)?.close === "function") await (value as MeshPeer).close();
  throw new Error("expected a refusal, but it succeeded");
}

/**
 * The hub is undisturbed: a fresh peer on the unix socket lists the greeter,
 * connects to it and calls it, and once the test's peers are gone the hub's
 * tables are back to their baseline.
 */
async function undisturbed(): Promise<void> {
  const witness = await joinMesh(over(hub.address));
  try {
    expect((await witness.list()).map((e) => e.name)).toContain("public.greeter");
    expect((await witness.connect("public.greeter", Greeter).greet({ name: "witness" })).greeting).toBe(
      "hello witness from public.greeter",
    );
  } finally {
    await witness.close();
  }
  for (const p of peers.splice(0)) await p.close();
  await eventually(
    () => {
      const now = hub.stats();
      return (
        now.connections === baseline.connections && now.registrations === baseline.registrations && now.watchers === baseline.watchers
      );
    },
    () => `tables back to ${show({ ...baseline, peers: undefined })}: ${show(hub.stats())}`,
  );
  const plugin = () => hub.stats().peers.find((p) => p.id === greeterPlugin.id)!;
  const before = baseline.peers.find((p) => p.id === greeterPlugin.id)!;
  await eventually(
    () => {
      const now = plugin();
      return now.imports === before.imports && now.exports === before.exports && now.questions === 0 && now.answers === 0;
    },
    () => `the plugin's tables back to ${show(before)}: ${show(plugin())}`,
  );
}

describe("policy over a TCP listener", () => {
  it("refuses each action a rule refuses, naming the rule, and what no rule allows, naming the default", async () => {
    const a = await tcpPeer(alice);
    const b = await tcpPeer(bob);
    const e = await tcpPeer(eve);
    const cap = greeter("tcp");
    const register = (p: MeshPeer, name: string) => p.hub.register({ name, cap, info: {}, replace: false });

    // register: by name pattern, a `*` rule before a rule for one identity.
    const { registration } = await register(a, "alice.svc");
    expect(await refusal(register(a, "hub.admin"))).toMatchObject({
      type: "failed",
      message: `${alice.id} may not register "hub.admin": refused by policy.register[0]`,
    });
    expect((await refusal(register(a, "other"))).message).toBe(
      `${alice.id} may not register "other": refused by the default (over TCP only what a rule in policy.register allows)`,
    );
    expect((await refusal(register(b, "alice.fake"))).message).toBe(
      `${bob.id} may not register "alice.fake": refused by the default (over TCP only what a rule in policy.register allows)`,
    );
    // The same `*` rule holds on the unix socket too (it names no listener).
    const local = await unixPeer();
    expect((await refusal(register(local, "hub.x"))).message).toBe(`${local.id} may not register "hub.x": refused by policy.register[0]`);

    // list and watch (one rule list, policy.watch, covers list, lookup and watch).
    expect((await a.list()).map((x) => x.name)).toEqual(["alice.svc", "public.greeter"]);
    expect(await refusal(e.list())).toMatchObject({ type: "failed", message: `${eve.id} may not list: refused by policy.watch[0]` });
    expect((await refusal(b.list())).message).toBe(
      `${bob.id} may not list: refused by the default (over TCP only what a rule in policy.watch allows)`,
    );
    expect((await refusal(b.hub.lookup({ name: "public.greeter" }))).message).toBe(
      `${bob.id} may not lookup: refused by the default (over TCP only what a rule in policy.watch allows)`,
    );
    expect((await refusal(e.watch(() => {}))).message).toBe(`${eve.id} may not watch: refused by policy.watch[0]`);
    expect((await refusal(b.watch(() => {}))).message).toBe(
      `${bob.id} may not watch: refused by the default (over TCP only what a rule in policy.watch allows)`,
    );

    // connect: the `*` rule lets every peer reach public.*, except eve, whose own rule comes first.
    expect((await b.connect("public.greeter", Greeter).greet({ name: "bob" })).greeting).toBe("hello bob from public.greeter");
    expect((await a.connect("alice.svc", Greeter).greet({ name: "alice" })).greeting).toBe("hello alice from tcp");
    expect(await refusal(e.connect("public.greeter", Greeter).greet({}))).toMatchObject({
      type: "failed",
      message: `${eve.id} may not connect "public.greeter": refused by policy.connect[0]`,
    });
    expect((await refusal(b.connect("alice.svc", Greeter).greet({}))).message).toBe(
      `${bob.id} may not connect "alice.svc": refused by the default (over TCP only what a rule in policy.connect allows)`,
    );
    // A refused connect to a name that does not exist yet is refused at once, not after the wait.
    const started = Date.now();
    expect((await refusal(b.connect("alice.later", Greeter, { wait: 60_000 }).greet({}))).message).toMatch(/refused by the default/);
    expect(Date.now() - started).toBeLessThan(5_000);

    // admin: nothing allows it over TCP.
    expect((await refusal(a.hub.admin().admin.stats())).message).toBe(
      `${alice.id} may not admin: refused by the default (over TCP only what a rule in policy.admin allows)`,
    );

    registration!.release();
    cap.release();
    await undisturbed();
  });

  it("refuses an identity the policy refuses outright as it connects, with the reason", async () => {
    const error = await refusal(joinMesh(over(tcpAddress, mallory)));
    expect(error).toMatchObject({ type: "disconnected" });
    expect(error.message).toContain(`${mallory.id} may not join this mesh: refused by policy.join[0]`);
    // Over the unix socket too: policy.join[0] names no listener.
    expect((await refusal(joinMesh(over(hub.address, mallory)))).message).toContain(
      `${mallory.id} may not join this mesh: refused by policy.join[0]`,
    );
    // Others of the same listener are let in.
    const b = await tcpPeer(bob);
    expect((await b.connect("public.greeter", Greeter).greet({ name: "b" })).greeting).toBe("hello b from public.greeter");
    await undisturbed();
  });

  it("refuses a peer of another network key at the handshake, and keeps serving", async () => {
    const otherKey = randomBytes(32).toString("base64");
    for (const address of [tcpAddress, hub.address]) {
      const error = await refusal(joinMesh({ ...over(address, bob), networkKey: otherKey }));
      expect(error.name).toBe("NetworkKeyMismatchError");
      expect(error.message).toBe(
        "shs client: the server closed the connection without answering our hello: it uses a different network key (or refuses connections)",
      );
    }
    const b = await tcpPeer(bob);
    expect((await b.connect("public.greeter", Greeter).greet({ name: "b" })).greeting).toBe("hello b from public.greeter");
    await undisturbed();
  });
});

describe("quotas, on by default", () => {
  it("refuses the names past quotas.registrations of 10,000 pipelined registrations, naming the quota and its key", async () => {
    const me = await unixPeer();
    const cap = greeter("flood");
    const calls = Array.from({ length: 10_000 }, (_, i) => me.hub.register({ name: `flood-${i}`, cap, info: {}, replace: false }));
    const settled = await Promise.allSettled(calls);
    // Done with the calls: their answers (kept for pipelining until then) go too.
    for (const c of calls) c[Symbol.dispose]();
    const won = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value.registration!] : []));
    const lost = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : []));
    expect(won).toHaveLength(DEFAULT_QUOTAS.registrations);
    expect(lost).toHaveLength(10_000 - DEFAULT_QUOTAS.registrations);
    expect(new Set(lost.map((e) => e.message))).toEqual(
      new Set([
        `${me.id} holds ${DEFAULT_QUOTAS.registrations} names already, its quota: release one, or raise quotas.registrations in the hub's config`,
      ]),
    );
    // Bounded: the hub holds the names within quota, one import of the plugin's capability, no call in flight.
    const mine = () => hub.stats().peers.find((p) => p.id === me.id)!;
    expect(hub.stats().registrations).toBe(baseline.registrations + DEFAULT_QUOTAS.registrations);
    await eventually(() => mine().answers === 0, () => show(mine()));
    expect(mine()).toMatchObject({ registrations: DEFAULT_QUOTAS.registrations, questions: 0, imports: 1 });
    // Within quota again once some are released.
    for (const r of won.splice(0, 2)) r.release();
    await eventually(() => hub.stats().registrations === baseline.registrations + DEFAULT_QUOTAS.registrations - 2, () => show(hub.stats()));
    won.push((await me.hub.register({ name: "flood-again", cap, info: {}, replace: false })).registration!);
    for (const r of won) r.release();
    cap.release();
    await undisturbed();
  });

  it("refuses the watches past quotas.watchers of 10,000 pipelined watches", async () => {
    const me = await unixPeer();
    let snapshots = 0;
    const observer = Observer.server({ event: ({ event }) => void (event.which === "snapshot" && snapshots++) });
    const calls = Array.from({ length: 10_000 }, () => me.hub.watch({ observer }));
    const settled = await Promise.allSettled(calls);
    for (const c of calls) c[Symbol.dispose]();
    const won = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value.watch!] : []));
    const lost = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : []));
    expect(won).toHaveLength(DEFAULT_QUOTAS.watchers);
    expect(new Set(lost.map((e) => e.message))).toEqual(
      new Set([
        `${me.id} has ${DEFAULT_QUOTAS.watchers} watches open already, its quota: release one, or raise quotas.watchers in the hub's config`,
      ]),
    );
    await eventually(() => snapshots === DEFAULT_QUOTAS.watchers, () => `${snapshots} snapshots`);
    expect(hub.stats().watchers).toBe(baseline.watchers + DEFAULT_QUOTAS.watchers);
    const mine = () => hub.stats().peers.find((p) => p.id === me.id)!;
    await eventually(() => mine().answers === 0 && mine().questions === 0, () => show(mine()));
    expect(mine()).toMatchObject({ watchers: DEFAULT_QUOTAS.watchers, imports: 1 });
    for (const w of won) w.release();
    observer.release();
    await undisturbed();
  });

  it("refuses connections past quotas.connections of one identity, telling the peer why", async () => {
    const me = generateIdentity();
    const attempts = DEFAULT_QUOTAS.connections + 6;
    const settled = await Promise.allSettled(Array.from({ length: attempts }, () => joinMesh(over(hub.address, me))));
    const won = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    peers.push(...won);
    const lost = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error & { type?: string }] : []));
    expect(won).toHaveLength(DEFAULT_QUOTAS.connections);
    expect(lost).toHaveLength(6);
    for (const error of lost) {
      expect(error.type).toBe("disconnected");
      expect(error.message).toContain(
        `${me.id} has ${DEFAULT_QUOTAS.connections} connections open to this hub already, its quota: close one, or raise quotas.connections in the hub's config`,
      );
    }
    expect(hub.stats().connections).toBe(baseline.connections + DEFAULT_QUOTAS.connections);
    // Another identity is not affected, and this one gets in again once one closes.
    const other = await unixPeer();
    expect((await other.connect("public.greeter", Greeter).greet({ name: "o" })).greeting).toBe("hello o from public.greeter");
    await won[0]!.close();
    await eventually(() => hub.stats().connections === baseline.connections + DEFAULT_QUOTAS.connections, () => show(hub.stats()));
    peers.push(await joinMesh(over(hub.address, me)));
    await undisturbed();
  });
});

describe("names", () => {
  const grammar = 'plugin names are 1 to 128 characters from a-z, 0-9, ".", "_" and "-", starting with a letter or digit';

  it("refuses a 1 MiB name by its length, at no more cost than the refusal, in every request that takes a name", async () => {
    const me = await unixPeer();
    const cap = greeter("big");
    const huge = "a".repeat(1 << 20);
    const expected = `invalid plugin name "${"a".repeat(40)}…": it is ${1 << 20} characters long (at most 128 characters); ${grammar}`;
    const started = performance.now();
    for (const error of [
      await refusal(me.hub.register({ name: huge, cap, info: {}, replace: false })),
      await refusal(me.hub.connect({ name: huge, waitMs: 0 })),
      await refusal(me.hub.lookup({ name: huge })),
    ]) {
      expect(error).toMatchObject({ type: "failed", message: expected });
    }
    // Three 1 MiB messages there and three short refusals back.
    expect(performance.now() - started).toBeLessThan(3_000);
    cap.release();
    await undisturbed();
  });

  it.each([
    ["", 'invalid plugin name "": it is empty'],
    ["Greeter", 'invalid plugin name "Greeter": it contains "G"'],
    ["a b", 'invalid plugin name "a b": it contains " "'],
    ["a/b", 'invalid plugin name "a/b": it contains "/"'],
    ["../etc", 'invalid plugin name "../etc": it starts with "."'],
    ["-x", 'invalid plugin name "-x": it starts with "-"'],
    ["_x", 'invalid plugin name "_x": it starts with "_"'],
    ["café", 'invalid plugin name "café": it contains "é"'],
    ["a\nb", 'invalid plugin name "a\\nb": it contains "\\n"'],
    ["x".repeat(129), `invalid plugin name "${"x".repeat(40)}…": it is 129 characters long (at most 128 characters)`],
  ])("refuses the name %j over the wire, with the grammar", async (name, problem) => {
    const me = await unixPeer();
    const cap = greeter("bad");
    const error = await refusal(me.hub.register({ name, cap, info: {}, replace: false }));
    expect(error).toMatchObject({ type: "failed", message: `${problem}; ${grammar}` });
    expect((await refusal(me.hub.connect({ name, waitMs: 0 }))).message).toBe(`${problem}; ${grammar}`);
    cap.release();
    // Names at the edges of the grammar are taken.
    for (const good of ["0", "x".repeat(128), "a.b_c-d9"]) {
      const { registration } = await me.hub.register({ name: good, cap: greeter(good), info: {}, replace: false });
      registration!.release();
    }
    await undisturbed();
  });
});

describe("protocol versions", () => {
  it("refuses a version a peer invents, naming both, over the wire; accepts one it serves, ignoring unknown features", async () => {
    const me = await unixPeer();
    const invented = { protocolVersion: 999, features: ["teleport", "x".repeat(200)], software: "from-the-future/9.9" };
    expect(await refusal(me.hub.hello({ hello: invented }))).toMatchObject({
      type: "failed",
      message: "mesh protocol version 999 is not supported by this hub, which speaks 1: upgrade the side that is older",
    });
    const cap = greeter("v999");
    expect(
      await refusal(me.hub.register({ name: "future", cap, info: { protocolVersion: 999, features: ["teleport"] }, replace: false })),
    ).toMatchObject({
      type: "failed",
      message: 'register "future": mesh protocol version 999 is not supported by this hub, which speaks 1: upgrade the side that is older',
    });
    // Version 1 (what this hub serves) with features the hub has never heard of.
    const answer = await me.hub.hello({ hello: { protocolVersion: 1, features: ["teleport"], software: "older/0.0.1" } });
    expect(answer.hub.protocolVersion).toBe(1);
    expect(answer.hub.features).toEqual(expect.arrayContaining(["watch", "provider"]));
    expect(answer.hub.features).not.toContain("teleport");
    expect(answer.you).toBe(me.id);
    // A Hello that leaves the version out (0) is taken as version 1, as skipping hello is.
    expect((await me.hub.hello({ hello: { software: "minimal" } })).hub.protocolVersion).toBe(1);
    const { registration } = await me.hub.register({ name: "present", cap, info: { protocolVersion: 1, features: ["teleport"] }, replace: false });
    expect((await me.hub.lookup({ name: "present" })).entry.info.features).toEqual(["teleport"]);
    registration!.release();
    cap.release();
    await undisturbed();
  });
});

describe("a watcher that stops answering", () => {
  it("is dropped with a bounded number of events in flight, and the other watchers get every event", async () => {
    const stuck = await unixPeer();
    let stuckCalls = 0;
    const never = Observer.server({
      event: () => {
        stuckCalls++;
        return new Promise<void>(() => {});
      },
    });
    const { watch: stuckWatch } = await stuck.hub.watch({ observer: never });
    never.release();

    const good = await unixPeer();
    const seen: string[] = [];
    using _goodWatch = await good.watch((e: Event) => {
      seen.push(e.which === "left" ? `left ${e.left.name} ${e.left.reason}` : e.which === "joined" ? `joined ${e.joined.name}` : "snapshot");
    });

    const holder = await unixPeer();
    const cap = greeter("busy");
    const { registration } = await holder.hub.register({ name: "busy", cap, info: {}, replace: false });
    cap.release();
    // Each update is two events (left, joined) for every watcher: far more
    // than the stuck watcher's stream window and backlog together.
    const updates = 3 * MAX_WATCHER_BACKLOG;
    const calls = Array.from({ length: updates }, (_, i) => registration!.update({ info: { version: String(i) } }));
    await Promise.all(calls);
    for (const c of calls) c[Symbol.dispose]();
    await eventually(() => hub.stats().watchers === baseline.watchers + 1, () => `the stuck watcher dropped: ${show(hub.stats())}`);
    // The good watcher saw everything, in order.
    const expected = ["snapshot", "joined busy"];
    for (let i = 0; i < updates; i++) expected.push("left busy updated", "joined busy");
    await eventually(() => seen.length >= expected.length, () => `${seen.length} of ${expected.length} events`);
    expect(seen).toEqual(expected);
    // Every event the stuck watcher got is one it never answered: the stream
    // window (256 KiB at first, about a thousand of these events) held the rest back.
    expect(stuckCalls).toBeGreaterThan(0);
    expect(stuckCalls).toBeLessThanOrEqual(2 * MAX_WATCHER_BACKLOG);
    // Dropped, its calls in flight are canceled: the hub's questions to it drain.
    await eventually(
      () => hub.stats().peers.find((x) => x.id === stuck.id)!.questions === 0,
      () => `the stuck watcher's calls canceled: ${show(hub.stats().peers.find((x) => x.id === stuck.id))}`,
    );
    stuckWatch!.release();
    registration!.release();
    await undisturbed();
  });

  it("through the SDK, watches again on its own once dropped: a fresh snapshot covers what it missed", async () => {
    const watcher = start(process.execPath, [...TSX, "test/mesh/slow-watcher-child.ts", "2500"], {
      env: { ...process.env, ...hub.env },
      stdin: "pipe",
    });
    const out = () => watcher.output() + watcher.errors();
    try {
      await watcher.waitFor(/^watching$/m, "the watcher to start", 30_000);
      const holder = await unixPeer();
      const cap = greeter("flood");
      const { registration } = await holder.hub.register({ name: "flood", cap, info: {}, replace: false });
      cap.release();
      const calls = Array.from({ length: 3 * MAX_WATCHER_BACKLOG }, (_, i) => registration!.update({ info: { version: String(i) } }));
      await Promise.all(calls);
      for (const c of calls) c[Symbol.dispose]();
      // Stalled past the hub's patience, it was dropped; once it runs again
      // it hears so (its observer released) and watches anew.
      const snapshots = () => watcher.output().split("\n").filter((line) => line.startsWith("snapshot"));
      await eventually(() => snapshots().length === 2, () => `a second snapshot: ${out().slice(-400)}`, 30_000);
      // The new snapshot lists what is registered now: the greeter and the flood.
      expect(snapshots()[1]).toBe(`snapshot ${baseline.registrations + 1}`);
      await eventually(() => hub.stats().watchers === baseline.watchers + 1, () => `one watcher again: ${show(hub.stats())}`);
      registration!.release();
    } finally {
      watcher.child.stdin!.end();
      await watcher.exited;
    }
    await undisturbed();
  });
});

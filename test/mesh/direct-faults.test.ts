// Direct peer paths when something goes wrong, between real processes
// (docs/design/level3.md, increment 9): the hub in this process, plugins as
// children (test/mesh/direct-child.ts: a Counter that prints every call and
// the connection it came over), clients in this process.
//   - Fallback per cause: whatever keeps client A from picking plugin B's
//     capability up directly, a burst of calls (pipelined before the
//     capability arrives, and after) reaches B once each, in order, through
//     the hub; A's pathOf names the cause and its stats count the fallback.
//   - Crafted Accepts against a real plugin: a raw Level 3 peer dials B's
//     direct listener and presents forged, replayed, expired and misdirected
//     completions; each gets an exception naming why, and nothing else moves.
//   - A capability handed back to its own host, and back to its introducer.
// Frame gates (test/helpers/frame-gate.ts) sit on the links the tests must
// see or hold: a plugin's hub link, a host's direct address.
import { closedPort, silentListener as listenSilently } from "../helpers/ports.js";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { Greeter, Listener } from "../../src/gen/demo.js";
import type { ThirdPartyCompletion } from "../../src/gen/network.js";
import { startHub, type HubOptions, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh, type JoinOptions, type MeshPeer } from "../../src/mesh/join.js";
import { buildCppPeers, requireCppOrSkip } from "../helpers/cpp.js";
import { FrameGate, type FrameEntry } from "../helpers/frame-gate.js";
import { L3RawPeer, outcomeOf } from "../helpers/l3-raw-peer.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { Counter } from "../rpc/fixtures.js";
import { show } from "./helpers/events.js";
import { calls, childStats, DIRECT_CHILD, printed } from "./helpers/direct-child.js";
import { killLeftAndWait, PLUGIN_CHILD, run, startRegistered, startTsPlugin, type Registered } from "./helpers/processes.js";

/** A listener that accepts connections and never says a word (no handshake), closed after the test. */
async function silentListener(): Promise<{ address: string; readonly accepted: number }> {
  const listener = await listenSilently(join(home, `silent-${randomBytes(3).toString("hex")}.sock`));
  undo.push(() => listener.close());
  return listener;
}

const home = mkdtempSync(join(tmpdir(), "capmesh-dfaults-"));
let hub: MeshHub;
const children: ChildProcess[] = [];
const peers: MeshPeer[] = [];
/** What a test started besides peers and children (gates, hubs, listeners, raw peers), undone last first. */
const undo: (() => unknown)[] = [];

beforeAll(async () => {
  hub = await startHub({ home, socket: join(home, "hub.sock"), identity: generateIdentity() });
});

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  await stopChildren();
  for (const u of undo.splice(0).reverse()) await u();
});

afterAll(async () => {
  await hub?.close();
  // Every peer's direct socket and every gate's went with it: only the hub's own files are left.
  const left = readdirSync(home).filter((f) => f.endsWith(".sock"));
  rmSync(home, { recursive: true, force: true });
  expect(left).toEqual([]);
});

/**
 * SIGTERM first, so that plugins leave as they would and remove their
 * direct-path sockets (the hub only sweeps those of killed plugins that
 * advertise where they listen; several here advertise elsewhere); SIGKILL
 * what is left after a deadline.
 */
async function stopChildren(): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = running.map((c) => new Promise<void>((resolve) => c.once("exit", () => resolve())));
  for (const c of running) c.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(exited), new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
  clearTimeout(timer);
  await killLeftAndWait(children);
}

const CHILD = DIRECT_CHILD;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** B's running totals after adding 1..n. */
const totals = (n: number) => range(1, n).map((k) => BigInt((k * (k + 1)) / 2));

async function extraHub(name: string, options: Partial<HubOptions>): Promise<MeshHub> {
  const h = await startHub({ home, socket: join(home, `${name}.sock`), identity: generateIdentity(), ...options });
  undo.push(() => h.close());
  return h;
}

/** A direct-child plugin on `on` (or on the hub link `via`, e.g. a gate's address), stdin open for --stats. */
function plugin(name: string, args: string[] = [], on: MeshHub = hub, via?: string): Promise<Registered> {
  const env = { ...process.env, ...on.env, ...(via ? { CAPMESH_HUB: via } : {}) };
  return startTsPlugin(name, { script: CHILD, args: [...args, "--stats"], env, children, stdin: "pipe" });
}

async function client(options: Partial<JoinOptions> = {}, on: MeshHub = hub): Promise<MeshPeer> {
  const peer = await joinMesh({ hub: on.address, hubId: on.id, networkKey: on.networkKey, handleSignals: false, ...options });
  peers.push(peer);
  return peer;
}

async function gate(target: string, name?: string): Promise<FrameGate> {
  const g = await FrameGate.start({ target, dir: home, ...(name ? { name } : {}) });
  undo.push(() => g.close());
  return g;
}




/** Waits until plugin `p` holds no Level 3 state as host or recipient: no provision, no waiting Accept, no dial, no pending handoff. */
async function hostDrained(p: Registered): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { directPaths, handoffs } = await childStats(p);
    const left = { provisions: directPaths.provisions, acceptsWaiting: directPaths.acceptsWaiting, dials: directPaths.dials, pending: handoffs.pending };
    if (Object.values(left).every((n) => n === 0)) return;
    if (Date.now() > deadline) throw new Error(`${p.id} still holds Level 3 state: ${JSON.stringify(left)}`);
  }
}

/** Where a plugin's direct listener really is (it may advertise something else). */
async function listeningOf(p: Registered): Promise<string> {
  const listening = (await childStats(p)).directPaths.listening;
  expect(listening.length).toBeGreaterThan(0);
  return listening[0]!;
}

type Tables = { id: string; pr: number; v: number; q: number; a: number; i: number; e: number }[];
const tablesOf = (h: MeshHub): Tables =>
  h.stats().peers.map((p) => ({ id: p.id, pr: p.provisions, v: p.vines, q: p.questions, a: p.answers, i: p.imports, e: p.exports }));

/** The hub's tables once set-up calls are done (no questions or answers in flight). */
async function atRest(h: MeshHub = hub): Promise<Tables> {
  await eventually(() => h.stats().peers.every((p) => p.questions === 0 && p.answers === 0), () => show(h.stats()));
  return tablesOf(h);
}

/** Waits until each of the hub's peers in `base` has the tables it had (provisions and vines 0 included). */
async function drained(base: Tables, h: MeshHub = hub): Promise<void> {
  const same = () => base.every((b) => tablesOf(h).some((n) => JSON.stringify(n) === JSON.stringify(b)));
  await eventually(same, () => `hub tables back to ${JSON.stringify(base)}; now ${JSON.stringify(tablesOf(h))}`);
  expect(base.every((b) => b.pr === 0 && b.v === 0)).toBe(true);
}

interface Burst {
  readonly cap: Counter;
  readonly results: Promise<bigint[]>;
}

/**
 * A connects to `name` and calls add(1..n): the first half pipelined before
 * the capability arrives, `during()` once it has (A may still be picking it
 * up), then the rest, the last ones after it settled.
 */
async function burst(a: MeshPeer, name: string, n: number, during?: () => Promise<void>): Promise<Burst> {
  const cap = a.connect(name, Counter);
  const half = Math.floor(n / 2);
  const made = range(1, half).map((k) => cap.add({ delta: BigInt(k) }));
  // Arrived: a handoff began (whenResolved would wait for it to end), or the hub's capability came as it is.
  const { pending, accepted, fellBack } = a.stats().handoffs;
  const began = () => {
    const h = a.stats().handoffs;
    return h.pending + h.accepted + h.fellBack > pending + accepted + fellBack;
  };
  await eventually(() => began() || a.pathOf(cap).path !== "pending", () => `${name} to arrive: ${show(a.pathOf(cap))}`);
  await during?.();
  made.push(...range(half + 1, n - 2).map((k) => cap.add({ delta: BigInt(k) })));
  await cap.whenResolved();
  made.push(...range(n - 1, n).map((k) => cap.add({ delta: BigInt(k) })));
  return { cap, results: Promise.all(made).then((rs) => rs.map((r) => r.value)) };
}

/** Every call of the burst reached B once, in order, through `through` (the hub), with its running total. */
async function inOrderThrough(b: Registered, { results }: Burst, n: number, through: string): Promise<void> {
  expect(await results).toEqual(totals(n));
  await printed(b, n);
  expect(calls(b).map((c) => c.delta)).toEqual(range(1, n));
  expect(calls(b).map((c) => c.via)).toEqual(Array(n).fill(through));
}

/** A fell back for `reason`: its capability goes through the hub, and it counted the fallback. */
function fellBack(a: MeshPeer, cap: Counter, on: MeshHub, reason: RegExp): void {
  const path = a.pathOf(cap);
  expect(path).toMatchObject({ path: "hub", peer: on.id });
  expect(path.reason).toMatch(reason);
  expect(a.stats().handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 1 });
}

describe("direct paths between processes: fallback per cause, no call lost or reordered", () => {
  const N = 20;

  it("no listener: B advertises a unix socket nobody listens on", async () => {
    const b = await plugin("df-nolisten", ["--advertise", `unix:${join(home, "nobody.sock")}`]);
    const a = await client();
    const base = await atRest();
    const sent = await burst(a, "df-nolisten", N);
    await inOrderThrough(b, sent, N, hub.id);
    fellBack(a, sent.cap, hub, /^could not reach the host: cannot reach @\S+: unix:\S*nobody\.sock: nothing is listening on unix:\S*nobody\.sock/);
    sent.cap.release();
    await drained(base);
    await hostDrained(b);
  });

  it("unreachable: B advertises a loopback TCP port that was just closed", async () => {
    const port = await closedPort();
    const b = await plugin("df-closed", ["--advertise", `tcp://127.0.0.1:${port}`]);
    const a = await client();
    const base = await atRest();
    const sent = await burst(a, "df-closed", N);
    await inOrderThrough(b, sent, N, hub.id);
    fellBack(a, sent.cap, hub, new RegExp(`^could not reach the host: cannot reach @\\S+: tcp://127\\.0\\.0\\.1:${port}: nothing is listening`));
    sent.cap.release();
    await drained(base);
    await hostDrained(b);
  });

  it("a dial that times out: B's address accepts and never answers the handshake; calls made meanwhile wait in A", async () => {
    const silent = await silentListener();
    const b = await plugin("df-silent", ["--advertise", silent.address]);
    const a = await client({ directPaths: { dialTimeoutMs: 500, dialBudgetMs: 1000 } });
    const base = await atRest();
    const sent = await burst(a, "df-silent", N, async () => {
      await eventually(() => silent.accepted === 1, "A to dial B's silent address");
      // A is stuck in the handshake (for 500 ms): the calls made now wait in A; the pipelined ones went through the hub.
      expect(a.stats().handoffs).toMatchObject({ pending: 1, fellBack: 0 });
      await eventually(() => calls(b).length === N / 2, () => b.output());
    });
    await inOrderThrough(b, sent, N, hub.id);
    fellBack(a, sent.cap, hub, /^could not reach the host: cannot reach @\S+: unix:\S*silent-\w+\.sock: timed out after 500 ms$/);
    sent.cap.release();
    await drained(base);
    await hostDrained(b);
  });

  it("policy at the host: B's directPaths.authorize refuses A on its listener", async () => {
    const identity = generateIdentity();
    const b = await plugin("df-authorize", ["--refuse", identity.id]);
    const a = await client({ identity });
    const base = await atRest();
    const sent = await burst(a, "df-authorize", N);
    await inOrderThrough(b, sent, N, hub.id);
    fellBack(a, sent.cap, hub, /^could not reach the host: cannot reach @\S+: unix:\S*peer-\S+\.sock: shs client: the server hung up on our authentication/);
    sent.cap.release();
    await drained(base);
    await hostDrained(b);
    // Another peer is let in.
    const other = await client();
    const cap = other.connect("df-authorize", Counter);
    await cap.add({ delta: 100n });
    await eventually(() => other.pathOf(cap).path === "direct", () => show(other.pathOf(cap)));
    cap.release();
  });

  it("policy at the hub: policy.direct refuses A, so no Provide reaches B at all (seen on B's hub link)", async () => {
    const identity = generateIdentity();
    const strict = await extraHub("hub-strict", { policy: { direct: [{ peer: identity.id, allow: false }] } });
    const link = await gate(strict.address);
    const b = await plugin("df-policy", [], strict, link.address);
    const a = await client({ identity }, strict);
    const base = await atRest(strict);
    const sent = await burst(a, "df-policy", N);
    await inOrderThrough(b, sent, N, strict.id);
    // No handoff at all: nothing to fall back from, and the hub never asked B for one.
    expect(a.pathOf(sent.cap)).toEqual({ path: "hub", peer: strict.id });
    expect(a.stats().handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 0 });
    expect(strict.stats().introductions).toBe(0n);
    expect(link.log.filter((e) => e.kind === "provide")).toEqual([]);
    expect(link.log.filter((e) => e.kind === "call").length).toBeGreaterThanOrEqual(N);
    sent.cap.release();
    await drained(base, strict);
    await hostDrained(b);

    // The same gate does see a Provide when the hub allows the handoff.
    const allowed = await client({}, strict);
    const cap = allowed.connect("df-policy", Counter);
    await cap.add({ delta: 100n });
    await eventually(() => allowed.pathOf(cap).path === "direct", () => show(allowed.pathOf(cap)));
    expect(link.log.filter((e) => e.kind === "provide")).toHaveLength(1);
    cap.release();
  });

  it("the host refuses the Accept: A's dial to B is held until the contact expired; B says so, A falls back", async () => {
    const short = await extraHub("hub-ttl", { directPaths: { provisionTtlMs: 1500 } });
    const gateName = `gate-ttl-${randomBytes(3).toString("hex")}.sock`;
    const b = await plugin("df-expire", ["--advertise", `unix:${join(home, gateName)}`, "--limits", '{"clockSkewMs":0}'], short);
    const direct = await gate(await listeningOf(b), gateName);
    direct.hold("toTarget");
    const identity = generateIdentity();
    const a = await client({ identity }, short);
    const base = await atRest(short);
    let accept!: FrameEntry;
    const sent = await burst(a, "df-expire", N, async () => {
      accept = await direct.waitFor((e) => e.kind === "accept", { what: "A's Accept" });
      const seenAt = Date.now();
      expect(accept.state).toBe("held");
      expect(a.stats().handoffs).toMatchObject({ pending: 1 });
      // The contact was written before A dialled: 1.5 s after the Accept reached the gate it has expired.
      await eventually(() => Date.now() > seenAt + 1600, "the contact's expiry", 5000);
      // A crafted Accept from A's identity, with A's own completion, is refused as expired too.
      const raw = await rawPeer(await listeningOf(b), b, identity, short);
      expect(await refusal(raw, 1, accept.completion!)).toMatch(/^expired Accept: provision [0-9a-f]+ expired at \d{4}-\d\d-\d\dT/);
      direct.release("toTarget");
    });
    await inOrderThrough(b, sent, N, short.id);
    fellBack(a, sent.cap, short, /^the host refused the Accept: expired Accept: provision [0-9a-f]+ expired at \d{4}-/);
    sent.cap.release();
    await drained(base, short);
    await hostDrained(b);
    expect(b.child.exitCode).toBeNull();
  });

  const cpp = requireCppOrSkip();
  it.skipIf(cpp.skip)(
    cpp.skip ? `a Level-1-only peer (skipped: ${cpp.reason})` : "a Level-1-only peer (the C++ 0.9.2 mesh peer) is only ever proxied: no Provide, no thirdPartyHosted on its hub link",
    async () => {
      const meshPeer = (await buildCppPeers()).meshPeer;
      const link = await gate(hub.address);
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const key of Object.keys(env)) if (key.startsWith("CAPMESH_")) delete env[key];
      Object.assign(env, { CAPMESH_HOME: join(home, "cpp-home"), XDG_RUNTIME_DIR: join(home, "cpp-run"), ...hub.env, CAPMESH_HUB: link.address });
      const greeterProcess = await startRegistered("df-cpp", meshPeer, ["register", "df-cpp"], { env, stdin: "pipe", children, what: "the C++ peer to register" });
      // A TypeScript plugin (direct paths on) for the C++ peer to call.
      await startTsPlugin("df-ts-greeter", { script: PLUGIN_CHILD, env: { ...process.env, ...hub.env }, children });
      const a = await client();
      const before = hub.stats().introductions;

      // A TypeScript client calls the C++ peer, and hands it a callback (a capability A hosts).
      const greeter = a.connect("df-cpp", Greeter);
      expect((await greeter.greet({ name: "ts" })).greeting).toBe("hello ts from df-cpp (C++)");
      const heard: string[] = [];
      const room = greeter.room({ name: "lobby" }).room;
      const ear = Listener.server({ heard: ({ who, text }) => void heard.push(`${who}: ${text}`) });
      expect((await room.join({ who: "ts", listener: ear })).members).toBe(1);
      await room.say({ who: "ts", text: "one" });
      await room.say({ who: "ts", text: "two" });
      expect(heard).toEqual(["ts: one", "ts: two"]);
      expect(a.pathOf(greeter)).toEqual({ path: "hub", peer: hub.id });

      // The C++ peer calls the TypeScript plugin by name.
      const called = await run(meshPeer, ["call", "df-ts-greeter", "c++"], { env, children, what: "mesh-peer call" });
      expect(called, called.stderr).toMatchObject({ status: 0, stdout: "hello c++ from df-ts-greeter\n" });

      // Everything went through the hub: the gate saw the calls both ways, never a Provide or a thirdPartyHosted descriptor.
      expect(link.connections).toBe(2);
      expect(link.log.filter((e) => e.kind === "call" && e.dir === "fromTarget").length).toBeGreaterThanOrEqual(4);
      expect(link.log.filter((e) => e.kind === "call" && e.dir === "toTarget").length).toBeGreaterThanOrEqual(2);
      expect(link.log.filter((e) => e.kind === "provide" || e.kind === "accept" || e.thirdPartyHosted)).toEqual([]);
      expect(link.log.filter((e) => e.kind === "unimplemented")).toEqual([]);
      expect(hub.stats().introductions).toBe(before);
      expect(a.stats().handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 0 });
      ear.release();
      room.release();
      greeter.release();
      expect(greeterProcess.child.exitCode).toBeNull();
    },
    300_000,
  );
});

/** A raw Level 3 peer on B's direct listener as `as`, on `on`'s mesh. */
async function rawPeer(address: string, b: Registered, as: Identity, on: MeshHub = hub): Promise<L3RawPeer> {
  const raw = await L3RawPeer.dial(address, { identity: as, remoteKey: b.id, networkKey: Buffer.from(on.networkKey, "base64") });
  undo.push(() => raw.close());
  return raw;
}

/** Sends an Accept as question `q` and returns its exception's reason (failing if it was not one). */
async function refusal(raw: L3RawPeer, q: number, completion: ThirdPartyCompletion): Promise<string> {
  raw.accept(q, completion, null);
  const outcome = outcomeOf(await raw.returnFor(q));
  raw.finish(q);
  if (outcome.kind !== "exception") throw new Error(`the Accept was not refused: ${outcome.kind}`);
  expect(outcome.error.type).toBe("failed");
  return outcome.error.message;
}

describe("crafted Accepts against a real plugin: each is refused with its reason, nothing else moves", () => {
  it("forged, misdirected (by recipient and by host), then replayed: B keeps serving E directly and G through the hub", async () => {
    const gateName = `gate-b-${randomBytes(3).toString("hex")}.sock`;
    const b = await plugin("df-host", ["--advertise", `unix:${join(home, gateName)}`, "--limits", '{"acceptWaitMs":300}']);
    const listening = await listeningOf(b);
    const direct = await gate(listening, gateName);
    // G calls B through the hub all along.
    const g = await client({ directPaths: false });
    const viaHub = g.connect("df-host", Counter);
    await viaHub.add({ delta: 1000n });

    // E gets B's Counter; its Accept is held at the gate, so E's provision stays open at B.
    direct.hold("toTarget");
    const eId = generateIdentity();
    const e = await client({ identity: eId });
    const cap = e.connect("df-host", Counter);
    const early = range(1, 5).map((k) => cap.add({ delta: BigInt(k) }));
    const accept = await direct.waitFor((x) => x.kind === "accept", { what: "E's Accept" });
    const real = accept.completion!;
    // The calls pipelined before the capability arrived went through the hub; they need no Accept.
    expect((await Promise.all(early)).map((r) => r.value)).toEqual(totals(5).map((t) => t + 1000n));

    const f = generateIdentity();
    const fromF = await rawPeer(listening, b, f);
    // Forged: a nonce B never got a Provide for (it waits acceptWaitMs for one), and a real nonce claimed from another introducer.
    expect(await refusal(fromF, 1, { ...real, nonce: new Uint8Array(randomBytes(32)) })).toMatch(
      /^no Provide matched this Accept within 300 ms \(forged nonce/,
    );
    expect(await refusal(fromF, 2, { ...real, introducer: f.publicKey })).toBe(
      `forged Accept: provision ${Buffer.from(real.nonce).toString("hex").slice(0, 16)} was introduced by ${hub.id}, not ${f.id}`,
    );
    // Misdirected: E's completion presented by F, and one naming another host.
    expect(await refusal(fromF, 3, real)).toMatch(new RegExp(`^misdirected Accept: provision [0-9a-f]+ is for ${escape(eId.id)}, the Accept came from ${escape(f.id)}$`));
    expect(await refusal(fromF, 4, { ...real, host: f.publicKey })).toBe(`misdirected Accept: it names host ${f.id}, this vat is ${b.id}`);
    expect(await viaHub.add({ delta: 1000n })).toEqual({ value: 2015n });

    // None of it touched E's provision: E's own Accept goes through, and E talks to B directly.
    direct.release("toTarget");
    await cap.whenResolved();
    const later = range(6, 10).map((k) => cap.add({ delta: BigInt(k) }));
    expect((await Promise.all(later)).map((r) => r.value)).toEqual(range(6, 10).map((k) => 2015n + BigInt((k * (k + 1)) / 2 - 15)));
    expect(e.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
    expect(e.stats().handoffs).toMatchObject({ accepted: 1, fellBack: 0 });

    // Replayed: E's completion again, from E's own key, over a second connection of E's to B.
    const fromE = await rawPeer(listening, b, eId);
    expect(await refusal(fromE, 1, real)).toMatch(/^replayed Accept: provision [0-9a-f]+ was already accepted/);
    // Everyone else is undisturbed: G through the hub, E directly, B still up, no Abort on the raw links.
    expect(await viaHub.add({ delta: 1000n })).toEqual({ value: 3055n });
    expect((await cap.add({ delta: 11n })).value).toBe(3066n);
    await printed(b, 14);
    const mine = calls(b).filter((c) => c.delta < 1000);
    expect(mine.map((c) => c.delta)).toEqual(range(1, 11));
    expect(mine.slice(0, 5).map((c) => c.via)).toEqual(Array(5).fill(hub.id));
    expect(mine.slice(5).map((c) => c.via)).toEqual(Array(6).fill(e.id));
    expect(calls(b).filter((c) => c.delta === 1000).map((c) => c.via)).toEqual([hub.id, hub.id, hub.id]);
    expect(fromF.received.some((m) => m._isAbort)).toBe(false);
    expect(fromE.received.some((m) => m._isAbort)).toBe(false);
    expect(b.child.exitCode).toBeNull();

    cap.release();
    viaHub.release();
    await eventually(() => hub.stats().peers.every((p) => p.provisions === 0 && p.vines === 0), () => show(hub.stats()));
    await hostDrained(b);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("a capability handed back", () => {
  it("to its own host: B gets its own object, and the call on it never leaves B", async () => {
    const b = await plugin("df-own");
    // P reaches B through the hub, A directly.
    const p = await client({ directPaths: false });
    const a = await client();
    const base = await atRest();
    const viaHub = p.connect("df-own", Counter);
    const direct = a.connect("df-own", Counter);
    await direct.whenResolved();
    expect(a.pathOf(direct)).toEqual({ path: "direct", peer: b.id });
    await direct.add({ delta: 1n });
    const introductions = hub.stats().introductions;

    // forward() tail-calls add() on the capability it is given: B's own Counter, a local call.
    expect((await viaHub.forward({ cap: viaHub, delta: 2n })).value).toBe(3n);
    expect((await direct.forward({ cap: direct, delta: 3n })).value).toBe(6n);
    const { cap: echoed } = await viaHub.echo({ cap: viaHub });
    expect((await echoed!.add({ delta: 4n })).value).toBe(10n);
    await printed(b, 4);
    expect(calls(b)).toEqual([
      { delta: 1, via: a.id },
      { delta: 2, via: "?" },
      { delta: 3, via: "?" },
      { delta: 4, via: hub.id },
    ]);
    // No handoff for it: the hub did not introduce B to itself, B made no connection to anyone.
    expect(hub.stats().introductions).toBe(introductions);
    const stats = await childStats(b);
    expect(stats.connections.map((c) => c.kind).sort()).toEqual(["direct", "hub"]);
    expect(stats.handoffs).toMatchObject({ pending: 0, accepted: 0, fellBack: 0 });
    echoed!.release();
    viaHub.release();
    direct.release();
    await drained(base);
  });

  it("to its introducer: A registers B's capability (picked up directly) at the hub, which takes it from its own link to B", async () => {
    const b = await plugin("df-back");
    const a = await client();
    const base = await atRest();
    const cap = a.connect("df-back", Counter);
    await cap.whenResolved();
    expect(a.pathOf(cap)).toEqual({ path: "direct", peer: b.id });
    await cap.add({ delta: 1n });

    const { registration } = await a.hub.register({ name: "df-back-again", cap, info: {}, replace: false });
    // A introduced the hub (the introducer of its own capability) to B.
    await eventually(() => a.stats().handoffs.introductions === 1, () => show(a.stats()));
    // Through the hub: P gets the hub's capability, which is the hub's own import from B.
    const p = await client({ directPaths: false });
    const again = p.connect("df-back-again", Counter);
    expect((await again.add({ delta: 2n })).value).toBe(3n);
    // And a peer with direct paths on is introduced to B by the hub as usual.
    const d = await client();
    const fromD = d.connect("df-back-again", Counter);
    expect((await fromD.add({ delta: 3n })).value).toBe(6n);
    await eventually(() => d.pathOf(fromD).path === "direct", () => show(d.pathOf(fromD)));
    expect((await fromD.add({ delta: 4n })).value).toBe(10n);
    await printed(b, 4);
    expect(calls(b)).toEqual([
      { delta: 1, via: a.id },
      { delta: 2, via: hub.id },
      { delta: 3, via: hub.id },
      { delta: 4, via: d.id },
    ]);
    registration!.release();
    again.release();
    fromD.release();
    cap.release();
    await p.close();
    await d.close();
    await drained(base);
  });
});

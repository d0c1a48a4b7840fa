// The frame gate (test/helpers/frame-gate.ts) on real unix sockets: a
// listener with an identity (the secret handshake, then plain frames), a
// client dialling the gate instead, and the gate's log and controls. The
// last test puts gates on the three links of a Level 3 handoff.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateIdentity, type Identity } from "../../src/auth/identity.js";
import { connect, listen, type ConnectOptions, type Listener, type ListenOptions, type Session } from "../../src/index.js";
import { Cleanup } from "../auth/helpers.js";
import { Counter, CounterImpl } from "../rpc/fixtures.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { vat as makeVat, type Vat } from "../rpc/helpers/level3-vats.js";
import { FrameGate, HANDSHAKE_BYTES, describeEntry, type FrameEntry, type FrameGateOptions, type GateDirection } from "./frame-gate.js";

const COUNTER_ID = 0xd7e3f1a0b2c4e6f8n;
const ADD = 0;

const dir = mkdtempSync(join(tmpdir(), "capmesh-gate-"));
const cleanup = new Cleanup();
afterEach(() => cleanup.run());
afterAll(() => {
  // Every gate removed its socket file when closed.
  const left = readdirSync(dir).filter((name) => name.startsWith("gate-"));
  rmSync(dir, { recursive: true, force: true });
  expect(left).toEqual([]);
});

interface Server {
  readonly identity: Identity | undefined;
  readonly listener: Listener;
  readonly impl: CounterImpl;
}

async function server(options: ListenOptions & { identity?: Identity } = { identity: generateIdentity() }): Promise<Server> {
  const impl = new CounterImpl();
  const listener = await listen(`unix:${join(dir, `t-${Math.random().toString(36).slice(2, 10)}.sock`)}`, {
    ...options,
    bootstrap: Counter.server(impl),
  });
  cleanup.add(() => listener.close());
  return { identity: options.identity, listener, impl };
}

async function gateTo(target: Server, options: Partial<FrameGateOptions> = {}): Promise<FrameGate> {
  const gate = await FrameGate.start({ target: target.listener.address, dir, ...options });
  cleanup.add(() => gate.close());
  return gate;
}

/** A client with an identity of its own, dialling `address` (the gate) with the server's key. */
async function dial(address: string, to: Server, options: ConnectOptions = {}): Promise<Session> {
  const session = await connect(address, to.identity ? { identity: generateIdentity(), remoteKey: to.identity.id, ...options } : options);
  cleanup.add(() => session.close());
  return session;
}

/** Settles to a flag the test reads: true once `promise` has settled. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const tracked = promise.finally(() => (done = true));
  return { promise: tracked, settled: () => done };
}

const isCall = (dir: GateDirection) => (e: FrameEntry) => e.dir === dir && e.kind === "call";
const frameBytes = (gate: FrameGate, dir: GateDirection) => gate.log.filter((e) => e.dir === dir).reduce((n, e) => n + e.bytes, 0);

describe("frame gate", () => {
  it("relays an authenticated link and logs bootstrap, call, return and finish with their ids", async () => {
    const s = await server();
    const gate = await gateTo(s);
    expect(gate.address).toMatch(/^unix:/);
    const session = await dial(gate.address, s);
    const counter = session.bootstrap(Counter);
    expect((await counter.add({ delta: 2n })).value).toBe(2n);
    expect(s.impl.log).toEqual([2n]);

    const boot = await gate.waitFor((e) => e.kind === "bootstrap", { what: "the Bootstrap" });
    expect(boot.dir).toBe("toTarget");
    const bootReturn = await gate.waitFor((e) => e.kind === "return" && e.answerId === boot.questionId, { what: "the Bootstrap's Return" });
    expect(bootReturn).toMatchObject({ dir: "fromTarget", returnKind: "results", descriptors: ["senderHosted"], thirdPartyHosted: false });
    const call = await gate.waitFor(isCall("toTarget"), { what: "the add() Call" });
    expect(call).toMatchObject({ interfaceId: COUNTER_ID, methodId: ADD, thirdPartyHosted: false });
    // Pipelined on the bootstrap question, or sent to the import once known.
    expect(call.target?.promisedAnswer?.questionId ?? call.target?.importedCap).toBeDefined();
    expect(call.questionId).not.toBe(boot.questionId);
    const ret = await gate.waitFor((e) => e.kind === "return" && e.answerId === call.questionId, { what: "add()'s Return" });
    expect(ret).toMatchObject({ dir: "fromTarget", returnKind: "results", descriptors: [] });
    const finish = await gate.waitFor((e) => e.kind === "finish" && e.questionId === call.questionId, { what: "add()'s Finish" });
    expect(finish.dir).toBe("toTarget");
    expect(finish.seq).toBeGreaterThan(ret.seq);
    for (const e of gate.log) {
      expect(e.conn).toBe(1);
      expect(e.state).toBe("passed");
      expect(e.bytes % 8).toBe(0);
      expect(describeEntry(e)).toContain(e.kind);
    }

    // Every byte is the handshake or a logged frame, and all of it went through.
    counter.release();
    await session.close();
    await eventually(() => gate.counters("toTarget").forwarded === HANDSHAKE_BYTES.toTarget + frameBytes(gate, "toTarget"), () => gate.summary());
    for (const d of ["toTarget", "fromTarget"] as const) {
      const c = gate.counters(d);
      expect(c.forwarded).toBe(HANDSHAKE_BYTES[d] + frameBytes(gate, d));
      expect(c.received).toBe(c.forwarded);
      expect(c.frames).toBe(gate.log.filter((e) => e.dir === d).length);
      expect(c.held).toBe(0);
      expect(gate.bytes[d]).toBe(c.forwarded);
    }
    expect(HANDSHAKE_BYTES).toEqual({ toTarget: 64 + 112, fromTarget: 64 + 80 });
    expect(gate.errors).toEqual([]);
  });

  it("holds a direction's frames in order and delays the Return until released", async () => {
    const s = await server();
    const gate = await gateTo(s);
    const counter = (await dial(gate.address, s)).bootstrap(Counter);
    await counter.add({ delta: 0n });
    const start = gate.log.length;

    // Calls held on the way in: the server runs none until release, then all in order.
    gate.hold("toTarget");
    const calls = [1n, 2n, 3n].map((delta) => counter.add({ delta }));
    const heldCalls = () => gate.held("toTarget").filter(isCall("toTarget")).length;
    await gate.waitFor(() => heldCalls() === 3, { what: "three held calls" });
    expect(gate.held("toTarget").filter((e) => e.kind === "call")).toHaveLength(3);
    expect(gate.counters("toTarget").held).toBeGreaterThanOrEqual(3);
    expect(s.impl.log).toEqual([0n]);
    gate.release("toTarget");
    expect((await Promise.all(calls)).map((r) => r.value)).toEqual([1n, 3n, 6n]);
    expect(s.impl.log).toEqual([0n, 1n, 2n, 3n]);
    expect(gate.log.filter((e) => e.seq >= start && isCall("toTarget")(e)).map((e) => e.state)).toEqual(["released", "released", "released"]);

    // A Return held on the way out: the server answered, the caller has not heard.
    gate.hold("fromTarget");
    const pending = track(counter.add({ delta: 10n }));
    const call = await gate.waitFor((e) => isCall("toTarget")(e) && e.seq >= start && e.state === "passed", { what: "the passed call" });
    const held = await gate.waitFor((e) => e.kind === "return" && e.answerId === call.questionId, { what: "the held Return", after: call.seq });
    expect(held.state).toBe("held");
    expect(s.impl.log).toEqual([0n, 1n, 2n, 3n, 10n]);
    // Let the client's event loop run: nothing but the held frame could settle it.
    await new Promise((resolve) => setImmediate(resolve));
    expect(pending.settled()).toBe(false);
    gate.release("fromTarget");
    expect((await pending.promise).value).toBe(16n);
    expect(held.state).toBe("released");
    expect(gate.counters("fromTarget").held).toBe(0);
  });

  it("holdAfter passes up to the matching frame and holds what follows", async () => {
    const s = await server();
    const gate = await gateTo(s);
    const counter = (await dial(gate.address, s)).bootstrap(Counter);
    await counter.add({ delta: 0n });
    const start = gate.log.length;

    gate.holdAfter("toTarget", (e) => isCall("toTarget")(e) && e.seq >= start);
    const first = counter.add({ delta: 1n });
    const second = track(counter.add({ delta: 2n }));
    expect((await first).value).toBe(1n);
    const heldCall = await gate.waitFor((e) => isCall("toTarget")(e) && e.state === "held", { what: "the second call, held" });
    expect(gate.log.filter((e) => e.seq >= start && isCall("toTarget")(e)).map((e) => e.state)).toEqual(["passed", "held"]);
    expect(s.impl.log).toEqual([0n, 1n]);
    expect(second.settled()).toBe(false);
    gate.release("toTarget");
    expect((await second.promise).value).toBe(3n);
    expect(s.impl.log).toEqual([0n, 1n, 2n]);
    expect(heldCall.state).toBe("released");
  });

  it("holdConnections(2) keeps the first dial (handshake included) waiting until the second arrives", async () => {
    const s = await server();
    const gate = await gateTo(s);
    const barrier = gate.holdConnections(2);
    const first = track(dial(gate.address, s));
    await eventually(() => gate.waitingConnections === 1, "the first connection to wait at the gate");
    expect(gate.bytes).toEqual({ toTarget: 0, fromTarget: 0 });
    expect(s.listener.sessions.size).toBe(0);
    expect(first.settled()).toBe(false);
    expect(barrier.arrived).toBe(1);

    const second = dial(gate.address, s);
    const sessions = await Promise.all([first.promise, second]);
    expect(barrier.open).toBe(true);
    expect(gate.waitingConnections).toBe(0);
    const values = await Promise.all(sessions.map((session) => session.bootstrap(Counter).add({ delta: 1n })));
    expect(values.map((v) => v.value).sort()).toEqual([1n, 2n]);
    expect(new Set(gate.log.map((e) => e.conn))).toEqual(new Set([1, 2]));
    expect(s.listener.sessions.size).toBe(2);

    // Once open, later connections pass at once.
    const third = await dial(gate.address, s);
    expect((await third.bootstrap(Counter).add({ delta: 0n })).value).toBe(2n);
  });

  it("a shared barrier holds connections across two gates", async () => {
    const s = await server();
    const [g1, g2] = [await gateTo(s), await gateTo(s)];
    const barrier = FrameGate.barrier(2);
    g1.holdConnections(barrier);
    g2.holdConnections(barrier);
    const first = track(dial(g1.address, s));
    await eventually(() => g1.waitingConnections === 1, "the dial through gate 1 to wait");
    expect(first.settled()).toBe(false);
    const both = await Promise.all([first.promise, dial(g2.address, s)]);
    expect(both).toHaveLength(2);
    expect([g1.connections, g2.connections]).toEqual([1, 1]);
  });

  it("waitFor names what it waited for and what the gate saw; close removes the socket and ends the relayed link", async () => {
    const s = await server();
    const gate = await FrameGate.start({ target: s.listener.address, dir, name: "gate-close-test.sock" });
    const path = join(dir, "gate-close-test.sock");
    expect(existsSync(path)).toBe(true);
    const session = await dial(gate.address, s);
    const counter = session.bootstrap(Counter);
    await counter.add({ delta: 1n });
    await expect(gate.waitFor((e) => e.kind === "provide", { timeoutMs: 50, what: "a Provide" })).rejects.toThrow(
      /waiting for a Provide\. Gate log \(1 connections, \d+ frames\):\n {2}#0 c1 toTarget bootstrap/,
    );
    const never = gate.waitFor((e) => e.kind === "abort", { what: "an Abort" });
    gate.hold("toTarget");
    const lost = counter.add({ delta: 1n });
    await gate.waitFor((e) => e.state === "held", { what: "a held frame" });
    await gate.close();
    expect(existsSync(path)).toBe(false);
    await expect(never).rejects.toThrow(/closed while waiting/);
    await expect(lost).rejects.toThrow();
    expect(gate.log.filter((e) => e.state === "held")).toEqual([]);
    expect(gate.log.some((e) => e.state === "dropped")).toBe(true);
    await eventually(() => s.listener.sessions.size === 0, "the server to see the relayed connection close");
    await expect(connect(gate.address, { identity: generateIdentity(), remoteKey: s.identity!.id })).rejects.toThrow(/nothing is listening/);
  });

  it("cuts a large frame that arrives in many chunks exactly, and holds it whole", async () => {
    const s = await server();
    const gate = await gateTo(s);
    const counter = (await dial(gate.address, s)).bootstrap(Counter);
    await counter.add({ delta: 0n });
    gate.hold("toTarget");
    const reason = "x".repeat(300_000);
    const failing = counter.fail({ reason });
    failing.catch(() => {});
    const big = await gate.waitFor((e) => isCall("toTarget")(e) && e.methodId === 3, { what: "the large fail() call" });
    expect(big.bytes).toBeGreaterThan(300_000);
    expect(big.state).toBe("held");
    gate.release("toTarget");
    await expect(failing).rejects.toThrow(/x{100}/);
    const ret = await gate.waitFor((e) => e.kind === "return" && e.answerId === big.questionId, { what: "fail()'s Return", after: big.seq });
    expect(ret.returnKind).toBe("exception");
    // The call after it is still read right: the frame boundaries held.
    expect((await counter.add({ delta: 4n })).value).toBe(4n);
    await gate.waitFor((e) => e.kind === "finish" && e.seq > ret.seq, { what: "a later Finish" });
    expect(gate.counters("toTarget").forwarded).toBe(HANDSHAKE_BYTES.toTarget + frameBytes(gate, "toTarget"));
    expect(gate.errors).toEqual([]);
  });

  it("relays plain Cap'n Proto with handshake: false", async () => {
    const s = await server({ plain: true });
    const gate = await gateTo(s, { handshake: false });
    const counter = (await dial(gate.address, s)).bootstrap(Counter);
    expect((await counter.add({ delta: 5n })).value).toBe(5n);
    expect(gate.log[0]).toMatchObject({ dir: "toTarget", kind: "bootstrap" });
    expect(gate.counters("toTarget").forwarded).toBe(frameBytes(gate, "toTarget"));
    expect(gate.errors).toEqual([]);
  });
});

describe("frame gate on a Level 3 handoff", () => {
  it("shows the Provide on the introducer's host link, the thirdPartyHosted Return to the recipient, and the Accept on the direct link", async () => {
    // Host B, introducer C, recipient A (test/rpc/helpers/level3-vats.ts),
    // every link through a gate: C -> B, A -> C, and B's direct address as
    // C advertises it to A.
    const b = await makeVat("b", dir, cleanup);
    const c = await makeVat("c", dir, cleanup);
    const a = await makeVat("a", dir, cleanup);
    const vatGate = async (to: Vat) => {
      const gate = await FrameGate.start({ target: to.address, dir });
      cleanup.add(() => gate.close());
      return gate;
    };
    const hostLink = await vatGate(b);
    const recipientLink = await vatGate(c);
    const directLink = await vatGate(b);

    /** `from` dials `to` through `gate`; both record that the other takes part in direct paths. */
    const link = async (from: Vat, to: Vat, gate: FrameGate, advertised: string) => {
      const session = await from.system.connect(gate.address, { remoteKey: to.identity.id });
      const boot = session.bootstrap(Counter);
      cleanup.add(() => boot.release());
      await boot.add({ delta: 0n });
      await eventually(() => to.system.liveConnection(from.identity.id) !== null, `${to.name} to adopt ${from.name}'s connection`);
      from.tp.advertise(from.system.liveConnection(to.identity.id)!, { level3: true, addresses: [advertised] });
      to.tp.advertise(to.system.liveConnection(from.identity.id)!, { level3: true, addresses: [from.address] });
      return boot;
    };
    const held = await link(c, b, hostLink, directLink.address);
    c.node.offer = () => held.dup();
    const intro = await link(a, c, recipientLink, c.address);

    // Pipelined on next(): this call goes by the vine (through C), and
    // makes A's pickup need the embargo.
    const cap = intro.next().counter;
    expect((await cap.add({ delta: 7n })).value).toBe(7n);
    await cap.whenResolved();
    expect((await cap.add({ delta: 1n })).value).toBe(8n);
    expect(b.node.log).toEqual([0n, 7n, 1n]); // link's add(0), then A's calls

    const provide = await hostLink.waitFor((e) => e.kind === "provide", { what: "C's Provide to B" });
    expect(provide.dir).toBe("toTarget");
    expect((provide.questionId! >>> 31) & 1).toBe(1);
    const handoff = await recipientLink.waitFor((e) => e.kind === "return" && e.thirdPartyHosted, { what: "a Return with a thirdPartyHosted descriptor" });
    expect(handoff).toMatchObject({ dir: "fromTarget", returnKind: "results", descriptors: ["thirdPartyHosted"] });
    const accept = await directLink.waitFor((e) => e.kind === "accept", { what: "A's Accept at B" });
    expect(accept).toMatchObject({ dir: "toTarget", conn: 1 });
    expect(accept.embargo).toMatch(/^[0-9a-f]{32}$/);
    // The embargo's Disembargo went A -> C -> B; the pipelined call through C too, the later one direct.
    const disembargo = await hostLink.waitFor((e) => e.kind === "disembargo" && e.context === "accept", { what: "the Disembargo C forwards" });
    expect(disembargo.embargoId).toBe(accept.embargo);
    expect(disembargo.target?.promisedAnswer?.questionId).toBe(provide.questionId);
    await directLink.waitFor((e) => isCall("toTarget")(e) && e.methodId === ADD, { what: "add() on the direct link" });
    expect(directLink.log.filter(isCall("toTarget"))).toHaveLength(1);
    cap.release();
    await hostLink.waitFor((e) => e.kind === "finish" && e.questionId === provide.questionId, { what: "the Provide's Finish" });
  });
});

// The engine across real processes: a hub (test/engine/hub-child.ts) and
// plugins (test/engine/plugin-child.ts) each a child process, this process a
// client. The re-entrant chain engine → P → closure → P → engine completes;
// a plugin's log line shows in the hub's output with its name; a closure
// whose owner was killed fails with `disconnected`; the hub's tables return
// to their baseline.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { joinMesh, type MeshPeer } from "../../src/mesh/join.js";
import { callable } from "../../src/engine/closure.js";
import { CallContext as EngineCallContext, Closure } from "../../src/gen/engine.js";
import type { CapabilityClient } from "../../src/rpc/typed.js";
import type { HubStats } from "../../src/gen/mesh.js";
import { RpcError } from "../../src/rpc/errors.js";
import { eventually } from "../rpc/helpers/raw-peer.js";
import { killLeftAndWait, start, startTsPlugin, TSX, type Started } from "../mesh/helpers/processes.js";

const home = mkdtempSync(join(tmpdir(), "capmesh-engine-procs-"));
const children: ChildProcess[] = [];
let hub: Started;
let hubEnv: Record<string, string>;
let client: MeshPeer;

beforeAll(async () => {
  hub = start(process.execPath, [...TSX, "test/engine/hub-child.ts", home, join(home, "hub.sock"), JSON.stringify({ p: { greeting: "hello from config" } })], {
    children,
  });
  hubEnv = JSON.parse((await hub.waitFor(/^hub (.*)$/m, "the hub to start"))[1]!) as Record<string, string>;
  client = await joinMesh({ handleSignals: false, hub: hubEnv.CAPMESH_HUB, hubId: hubEnv.CAPMESH_HUB_ID, networkKey: hubEnv.CAPMESH_NETWORK_KEY });
});

afterAll(async () => {
  await client?.close();
  await killLeftAndWait(children);
  rmSync(home, { recursive: true, force: true });
});

async function stats(): Promise<HubStats> {
  using pending = client.hub.admin();
  return (await pending.admin.stats()).stats;
}

function plugin(name: string, ...args: string[]) {
  return startTsPlugin(name, { script: "test/engine/plugin-child.ts", args, env: { ...process.env, ...hubEnv }, children });
}

/** The hub's tables for one peer, without what varies with the calls that read them. */
function tablesOf(s: HubStats, id: string) {
  const p = s.peers.find((x) => x.id === id);
  return p && { imports: p.imports, exports: p.exports, registrations: p.registrations };
}

describe("the engine across processes", () => {
  it("re-entrant chain: engine → P → closure → P → engine, no deadlock", async () => {
    const p = await plugin("p");
    const pCap = client.connect("p", Closure);
    const callP = callable(pCap);
    expect(await callP("ping")).toBe("p:ping");
    // Settled where it will stay (picked up over a direct path, or kept on the hub's).
    await pCap.whenResolved();
    await client.engine.whenResolved();
    const before = await stats();

    let sawMessage: unknown = null;
    // This process's closure: the engine calls it (from P's running call), and it calls P again.
    const reenter = async (message: unknown) => {
      sawMessage = message;
      return `via client: ${String(await callP("inner"))}`;
    };
    const answer = await callP("outer", reenter);
    expect(sawMessage).toBe("asked by p");
    expect(answer).toBe("outer(via client: inner(hello from config))");

    // P's log line, in the hub's output, tagged with P's name and identity.
    await eventually(() => hub.errors().includes('"event":"inner ran"'), () => `the log line; hub stderr: ${hub.errors()}`);
    const line = hub
      .errors()
      .split("\n")
      .find((l) => l.includes('"event":"inner ran"'))!;
    expect(JSON.parse(line)).toMatchObject({ ns: "capmesh:plugin", level: "info", plugin: "p", peer: p.id, fields: { depth: 2 } });

    // Many chains at once: P serves them in parallel.
    const many = await Promise.all(Array.from({ length: 20 }, () => callP("outer", reenter)));
    expect(new Set(many)).toEqual(new Set(["outer(via client: inner(hello from config))"]));

    // Back to baseline: nothing left held for the closures, no context open.
    let after: HubStats | null = null;
    for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
      after = await stats();
      if (JSON.stringify(tablesOf(after, p.id)) === JSON.stringify(tablesOf(before, p.id)) && after.contexts === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(tablesOf(after!, p.id)).toEqual(tablesOf(before, p.id));
    expect(tablesOf(after!, client.id)).toEqual(tablesOf(before, client.id));
    expect(after!.contexts).toBe(0);
    callP.release();
    pCap.release();
  });

  it("the same chain into a sequential P fails at once with a clear error instead of deadlocking; P carries on", async () => {
    await plugin("pseq", "--sequential");
    const callP = callable(client.connect("pseq", Closure));
    // The engine's eval and the closure's call back carry P's turn token (sequential.ts).
    const reenter = async () => {
      try {
        return await callP("inner");
      } catch (err) {
        return `caught: ${(err as Error).message}`;
      }
    };
    const answer = String(await callP("outer", reenter));
    expect(answer).toMatch(/^outer\(caught: Closure\.call re-entered sequential capability Closure from inside its own running call Closure\.call, through another vat: /);
    expect(await callP("inner")).toBe("inner(no config)");
    callP.release();
  });

  it("a call context kept past its call fails with a message that says so; the hub drops it", async () => {
    await plugin("q");
    const q = callable(client.connect("q", Closure));
    const kept = (await q("context")) as CapabilityClient;
    await eventually(() => hub.errors().includes('"event":"in context"'), "the context's log line");
    const line = hub
      .errors()
      .split("\n")
      .find((l) => l.includes('"event":"in context"'))!;
    expect(JSON.parse(line)).toMatchObject({ plugin: "q", call: "context call" });
    const ctx = kept.castAs(EngineCallContext);
    await expect(ctx.config()).rejects.toThrow(/the call context "context call" of plugin "q" has ended/);
    await expect(ctx.info()).rejects.toThrow(/has ended/);
    expect((await stats()).contexts).toBe(0);
    ctx.release();
    kept.release();
    q.release();
  });

  it("a closure called after its owner left fails with disconnected", async () => {
    const owner = await plugin("owner");
    const cap = client.connect("owner", Closure);
    const f = callable(cap);
    expect(await f(1)).toBe("owner:1");
    owner.child.kill("SIGKILL");
    await owner.exited;
    const error = await f(2).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).type).toBe("disconnected");
    f.release();
    cap.release();
    // The hub forgets the owner: its registration and connection go.
    let s = await stats();
    for (const deadline = Date.now() + 5000; s.peers.some((x) => x.id === owner.id) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      s = await stats();
    }
    expect(s.peers.some((x) => x.id === owner.id)).toBe(false);
  });
});

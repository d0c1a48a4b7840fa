// Self-test of the C++ reference peers: interop-peer's client scenarios
// against interop-peer's own server, and bench-peer's figures against
// bench-peer's server. This pins down the peers before they are used to
// check capmesh's RPC engine.

import { mkdtempSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  buildCppPeers,
  INTEROP_SCENARIOS,
  requireCppOrSkip,
  runCppClient,
  startCppServer,
  type CppPeers,
  type CppServer,
} from "../helpers/cpp.js";

const SCENARIOS = INTEROP_SCENARIOS;

const BUILD_TIMEOUT = 300_000;
const gate = requireCppOrSkip();

describe.skipIf(gate.skip)(gate.skip ? `C++ reference peers (skipped: ${gate.reason})` : "C++ reference peers", () => {
  let peers: CppPeers;
  let dir: string;
  const servers: CppServer[] = [];

  const serve = async (binary: string, address: string) => {
    const server = await startCppServer(binary, address);
    servers.push(server);
    return server;
  };

  beforeAll(async () => {
    peers = await buildCppPeers();
    dir = mkdtempSync(path.join(tmpdir(), "capmesh-cpp-"));
  }, BUILD_TIMEOUT);

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("build is cached and shared by concurrent callers", async () => {
    const [a, b] = await Promise.all([buildCppPeers(), buildCppPeers()]);
    expect(a).toEqual(peers);
    expect(b).toEqual(peers);
    expect(existsSync(peers.interopPeer)).toBe(true);
    expect(existsSync(peers.benchPeer)).toBe(true);
  });

  describe("interop-peer client vs interop-peer server (unix socket)", () => {
    for (const scenario of SCENARIOS) {
      it(scenario, async () => {
        const server = await serve(peers.interopPeer, `unix:${path.join(dir, `${scenario}.sock`)}`);
        const r = await runCppClient(peers.interopPeer, server.address, scenario, 60_000);
        expect(r.timedOut, `timed out\n${r.stderr}`).toBe(false);
        expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
        expect(r.stdout.trim().split("\n")).toEqual([`ok ${scenario}`]);
      });
    }

    it("all (one connection, every scenario in sequence)", async () => {
      const server = await serve(peers.interopPeer, `unix:${path.join(dir, "all.sock")}`);
      const r = await runCppClient(peers.interopPeer, server.address, "all", 120_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split("\n")).toEqual([...SCENARIOS.map((s) => `ok ${s}`), "ok all"]);
    });
  });

  describe("interop-peer over TCP", () => {
    it("port 0 reports the bound port; `all` passes over tcp://", async () => {
      const server = await serve(peers.interopPeer, "tcp://127.0.0.1:0");
      const m = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(server.address);
      expect(m, server.address).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(0);
      const r = await runCppClient(peers.interopPeer, server.address, "all", 120_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("ok all");
    });

    it("accepts the kj spelling host:port", async () => {
      const server = await serve(peers.interopPeer, "127.0.0.1:0");
      const hostPort = server.address.replace(/^tcp:\/\//, "");
      const r = await runCppClient(peers.interopPeer, hostPort, "echo", 30_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe("ok echo");
    });
  });

  describe("process behaviour", () => {
    it("server exits 0 when stdin closes and the socket file is removed", async () => {
      const sock = path.join(dir, "lifetime.sock");
      const server = await serve(peers.interopPeer, `unix:${sock}`);
      expect(existsSync(sock)).toBe(true);
      server.closeStdin();
      const { code } = await server.exited;
      expect(code).toBe(0);
      expect(existsSync(sock)).toBe(false);
    });

    it("server exits 0 on SIGTERM", async () => {
      const sock = path.join(dir, "sigterm.sock");
      const server = await serve(peers.interopPeer, `unix:${sock}`);
      process.kill(server.pid, "SIGTERM");
      const { code } = await server.exited;
      expect(code).toBe(0);
      expect(existsSync(sock)).toBe(false);
    });

    it("client reports a connection failure with a non-zero exit", async () => {
      const r = await runCppClient(peers.interopPeer, `unix:${path.join(dir, "nobody.sock")}`, "echo", 30_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error echo: /);
    });

    it("client rejects an unknown scenario with exit code 2", async () => {
      const server = await serve(peers.interopPeer, `unix:${path.join(dir, "usage.sock")}`);
      const r = await runCppClient(peers.interopPeer, server.address, "no-such-scenario", 30_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("unknown scenario");
    });
  });

  describe("bench-peer client vs bench-peer server", () => {
    const figures: Record<string, string[]> = {
      seq: ["rps", "p50us", "p99us"],
      inflight: ["cps"],
      stream: ["mbps"],
      chain: ["pipelinedUs", "awaitedUs"],
    };
    for (const [figure, keys] of Object.entries(figures)) {
      it(figure, async () => {
        const server = await serve(peers.benchPeer, `unix:${path.join(dir, `bench-${figure}.sock`)}`);
        const r = await runCppClient(peers.benchPeer, server.address, [figure, "0.2"], 60_000);
        expect(r.code, r.stderr).toBe(0);
        const lines = r.stdout.trim().split("\n");
        expect(lines).toHaveLength(1);
        const json = JSON.parse(lines[0]!) as Record<string, unknown>;
        expect(Object.keys(json).sort()).toEqual([...keys].sort());
        for (const k of keys) {
          expect(typeof json[k], k).toBe("number");
          expect(json[k] as number, k).toBeGreaterThan(0);
        }
      });
    }

    it("works over tcp:// with port 0", async () => {
      const server = await serve(peers.benchPeer, "tcp://127.0.0.1:0");
      const r = await runCppClient(peers.benchPeer, server.address, ["chain", "0.1"], 60_000);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).pipelinedUs).toBeGreaterThan(0);
    });
  });
});

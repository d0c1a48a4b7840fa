// `capmesh call` against a live hub and a TypeScript plugin process serving
// the interop TestService, which publishes its schema through joinMesh: the
// CLI has no generated code for it. Listing methods, calls with JSON in and
// out, and the documented exit codes: 1 for a failed call, 2 for usage, 3
// without a hub. The command runs in this process for the detailed checks
// (it is the same function the binary runs), and as `capmesh` processes for
// the exit codes as users see them.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { call } from "../../src/cli/call.js";
import { loadSchema } from "../../src/codegen/dynamic.js";
import { startHub, type MeshHub } from "../../src/mesh/hub.js";
import { joinMesh } from "../../src/mesh/join.js";
import { TestService } from "../interop/schema/interop.js";
import { fnv1a } from "../interop/test-service.js";
import { killLeft, PLUGIN_CHILD, runCapmesh, runHere, startTsPlugin, type Result } from "./helpers/processes.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-call-"));
let hub: MeshHub;
let env: NodeJS.ProcessEnv;
const savedEnv = { ...process.env };
const running: ChildProcess[] = [];

/** A plugin process; resolves once it printed that it registered. */
async function plugin(script: string, name: string, args: string[] = []): Promise<void> {
  await startTsPlugin(name, { script, args, env, children: running, deadlineMs: 60_000 });
}

/** `capmesh <args>` as a process (several may run at once); stdin holds `input`, or nothing. */
function capmesh(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return runCapmesh(args, { env: { ...env, ...options.env }, input: options.input ?? "", children: running });
}

/** `capmesh call <args>` in this process (the hub's environment is set for the whole file): its exit code and what it printed. */
function callHere(...args: string[]): Promise<Result> {
  return runHere(call, args);
}

beforeAll(async () => {
  hub = await startHub({ socket: join(dir, "hub.sock"), home: join(dir, "home") });
  env = { ...process.env, ...hub.env, CAPMESH_HOME: join(dir, "home"), DEBUG: "" };
  // For the command run in this process: it finds the hub as the binary does.
  Object.assign(process.env, hub.env);
  // svc publishes its schema; bare grants per caller and names its interface, but has no schema.
  await Promise.all([plugin("test/mesh/call-plugin.ts", "svc"), plugin(PLUGIN_CHILD, "bare", ["grants"])]);
}, 90_000);

afterAll(async () => {
  killLeft(running);
  for (const key of Object.keys(hub?.env ?? {})) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("capmesh call", () => {
  it("lists a plugin's methods from the schema it published, which joinMesh filled in", async () => {
    const list = await callHere("svc");
    expect(list.status, list.stderr).toBe(0);
    const lines = list.stdout.trim().split("\n");
    expect(lines[0]).toBe("svc (TestService):");
    expect(lines).toContain("  TestService.echo(text :Text, data :Data, n :Int64) -> (text :Text, data :Data, n :Int64)");
    expect(lines).toContain("  TestService.fail(kind :FailKind, reason :Text) -> ()");
    expect(lines).toContain("  TestService.nested(start :Int64) -> (outer :Outer)");
    // The plugin gave neither: joinMesh took both from the TestService it provides.
    await using client = await joinMesh({ handleSignals: false, reconnect: false });
    const listed = (await client.list()).find((e) => e.name === "svc")!;
    expect(listed.info.interfaces).toEqual([{ id: TestService.id, name: "TestService" }]);
    // list() leaves schemas out (they are kilobytes each); lookup has the whole entry.
    expect(listed.info.schema.byteLength).toBe(0);
    const { info } = (await client.hub.lookup({ name: "svc" })).entry;
    expect(info.interfaces).toEqual([{ id: TestService.id, name: "TestService" }]);
    expect(loadSchema(info.schema).interfaces.get("TestService")!.methods.map((m) => m.name)).toEqual(TestService.methods.map((m) => m.name));
  });

  it("calls with JSON params and prints the results as JSON (64-bit integers as strings, Data as base64)", async () => {
    const big = await callHere("svc", "echo", '{"text": "héllo", "data": "AQID", "n": "-9007199254740993"}');
    expect(big.status, big.stderr).toBe(0);
    expect(JSON.parse(big.stdout)).toEqual({ text: "héllo", data: "AQID", n: "-9007199254740993" });
    const bytes = await callHere("svc", "TestService.echo", '{"data": [1, 2, 3], "n": 5}');
    expect(JSON.parse(bytes.stdout)).toEqual({ text: "", data: "AQID", n: "5" });
    const data = new Uint8Array([0, 1, 254, 255]);
    const sum = await callHere("svc", "checksum", JSON.stringify({ data: Buffer.from(data).toString("base64") }));
    expect(JSON.parse(sum.stdout)).toEqual({ sum: fnv1a(data).toString() });
    const nested = await callHere("svc", "nested", '{"start": 1}');
    expect(JSON.parse(nested.stdout)).toEqual({
      outer: {
        inner: { counter: "<capability Counter>", label: "inner" },
        list: [
          { counter: "<capability Counter>", label: "first" },
          { counter: "<capability Counter>", label: "second" },
        ],
      },
    });
  });

  it("exits 1 when the call fails, times out, or the plugin publishes no schema", async () => {
    const failed = await callHere("svc", "fail", '{"kind": "overloaded", "reason": "boom"}');
    expect([failed.status, failed.stdout, failed.stderr]).toEqual([1, "", "capmesh call: TestService.fail failed (overloaded): boom"]);
    const timedOut = await callHere("svc", "hang", "--timeout", "300");
    expect(timedOut.status).toBe(1);
    expect(timedOut.stderr).toMatch(/TestService\.hang failed: .*timed out after 300 ms/);
    const bare = await callHere("bare", "greet");
    expect(bare.status).toBe(1);
    expect(bare.stderr).toMatch(/bare publishes no schema/);
  });

  it("exits 2 for usage, saying what is known: methods, names, the params' types", async () => {
    const cases: [string[], RegExp][] = [
      [["svc", "ech"], /svc has no method "ech"[\s\S]*TestService\.echo\(text :Text, data :Data, n :Int64\)/],
      [["nobody", "echo"], /no plugin named "nobody" \(registered: bare, svc\)/],
      [["svc", "echo", "{text: 1}"], /the params are not JSON/],
      [["svc", "echo", "[1]"], /the params must be a JSON object/],
      [["svc", "echo", '{"n": 1.5, "text": "x"}'], /TestService\.echo: params\.n: expected Int64 .*got 1\.5/],
      [["svc", "echo", '{"n": 18446744073709551615}'], /params\.n: 18446744073709552000 is beyond 2\^53.*give it as a string/],
      [["svc", "echo", '{"data": "not base64!"}'], /params\.data: expected base64 or an array of bytes \(Data\)/],
      [["svc", "echo", '{"bogus": 1}'], /params\.bogus: no such field in TestService\.echo\$Params \(its fields: text, data, n\)/],
      [["svc", "fail", '{"kind": "nope"}'], /params\.kind: expected FailKind \(one of "failed", "overloaded".*got the string "nope"/],
      [["svc", "payload", '{"size": -1}'], /params\.size: expected UInt32 \(an integer in 0\.\.4294967295\), got -1/],
      [["svc", "echoCap", '{"cap": "x"}'], /params\.cap: expected null \(Counter: capabilities .* cannot be given on the command line\)/],
      [["svc", "Counter.echo"], /svc has no method "Counter\.echo"/],
      [[], /which plugin\?/],
      [["Bad Name"], /name/],
      [["svc", "echo", "{}", "extra"], /too many arguments/],
      [["svc", "echo", "--timeout", "soon"], /--timeout needs a number of milliseconds/],
    ];
    for (const [args, message] of cases) {
      const r = await callHere(...args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
    const help = await callHere("--help");
    expect([help.status, help.stdout]).toEqual([0, expect.stringMatching(/^usage: capmesh call <name>/)]);
  });

  it("as a process: 0 with results on stdout (params from stdin), 1 failed, 2 usage, 3 without a hub", async () => {
    const [ok, failed, usage, nowhere] = await Promise.all([
      capmesh(["call", "svc", "echo", "-"], { input: '{"text": "from stdin", "n": "7"}' }),
      capmesh(["call", "svc", "fail", '{"reason": "no"}']),
      capmesh(["call", "svc", "ech"]),
      capmesh(["call", "svc", "echo"], { env: { CAPMESH_HUB: `unix:${join(dir, "none.sock")}`, CAPMESH_HUB_ID: generateIdentity().id } }),
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ text: "from stdin", data: "", n: "7" });
    expect([failed.status, failed.stderr]).toEqual([1, "capmesh call: TestService.fail failed: no\n"]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/svc has no method "ech"/);
    expect(nowhere.status).toBe(3);
    expect(nowhere.stderr).toMatch(/cannot reach the hub/);
  });
});

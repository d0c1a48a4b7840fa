// The CLI against a live hub: `capmesh serve` on embedded defaults (in a
// private runtime dir and home), `ls` (table and --json), `watch` (one line
// per event), and the documented exit codes.
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateIdentity } from "../../src/auth/identity.js";
import { within } from "../rpc/helpers/raw-peer.js";
import { CLI, killLeft, PLUGIN_CHILD, start, startCapmesh, TSX, type Started } from "./helpers/processes.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-cli-"));
const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: join(dir, "run"), CAPMESH_HOME: join(dir, "home"), DEBUG: "" };
delete env.CAPMESH_HUB;
delete env.CAPMESH_HUB_ID;
delete env.CAPMESH_NETWORK_KEY;
const running: ChildProcess[] = [];

/** `capmesh <args>` running; waitFor matches its stdout. */
function capmesh(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Started {
  return startCapmesh(args, { env: { ...env, ...extraEnv }, children: running });
}

function run(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [...CLI, ...args], { env: { ...env, ...extraEnv }, encoding: "utf8", timeout: 30_000 });
}

let serve: Started;

beforeAll(async () => {
  serve = capmesh(["serve"]);
  await serve.waitFor(/export CAPMESH_NETWORK_KEY=/, "the hub to print how to join");
}, 30_000);

afterAll(async () => {
  killLeft(running);
  rmSync(dir, { recursive: true, force: true });
});

describe("capmesh serve", () => {
  it("listens on a unix socket in a private runtime dir and prints how peers connect", () => {
    const out = serve.output();
    const socket = join(dir, "run", "capmesh", "hub.sock");
    expect(out).toContain(`listening on unix:${socket}`);
    expect(out).toMatch(/^capmesh hub @[A-Za-z0-9+/]{43}=\.ed25519$/m);
    expect(out).toContain(`export CAPMESH_HUB=unix:${socket}`);
    expect(out).toContain("direct paths between peers: on");
    expect(statSync(join(dir, "run", "capmesh")).mode & 0o777).toBe(0o700);
    expect(existsSync(join(dir, "home", "secret"))).toBe(true);
    expect(existsSync(join(dir, "home", "netkey"))).toBe(true);
  });
});

describe("capmesh serve --no-direct-paths", () => {
  it("says that every call goes through the hub", async () => {
    const other = capmesh(["serve", "--no-direct-paths", "--socket", join(dir, "nodirect.sock")]);
    await other.waitFor(/export CAPMESH_NETWORK_KEY=/, "the hub to print how to join");
    expect(other.output()).toContain("direct paths between peers: off (every call goes through the hub)");
    // (Stopping gracefully is the first hub's test, below.)
    other.child.kill("SIGKILL");
    await within(other.exited, 20_000, "serve to exit");
  });
});

describe("capmesh ls and watch", () => {
  it("list the plugins (table and JSON) and print one line per event", async () => {
    const watch = capmesh(["watch", "--json"]);
    const { child: plugin } = start(process.execPath, [...TSX, PLUGIN_CHILD, "cli-demo"], { env, children: running });
    // "present" if it registered before the watch began (in the snapshot), else "joined".
    const joined = await watch.waitFor(/\{"event":"(joined|present)","name":"cli-demo"[^\n]*\n/, "the watcher to see the plugin");
    expect(JSON.parse(joined[0]!)).toMatchObject({ name: "cli-demo", version: "1.2.3", description: "test plugin cli-demo" });

    const json = run(["ls", "--json"]);
    expect(json.status, json.stderr).toBe(0);
    const listed = JSON.parse(json.stdout) as { name: string; id: string; interfaces: { name: string }[] }[];
    expect(listed.map((p) => p.name)).toEqual(["cli-demo"]);
    expect(listed[0]!.interfaces).toEqual([{ id: expect.stringMatching(/^0x/), name: "Greeter" }]);
    const table = run(["ls"]);
    expect(table.status).toBe(0);
    expect(table.stdout.split("\n")[0]).toMatch(/^NAME\s+ID\s+VERSION\s+SINCE\s+DESCRIPTION$/);
    expect(table.stdout).toMatch(new RegExp(`^cli-demo\\s+${listed[0]!.id.replace(/[+/.]/g, "\\$&")}\\s+1\\.2\\.3`, "m"));

    plugin.kill("SIGTERM");
    await watch.waitFor(/\{"event":"left","name":"cli-demo"[^\n]*\n/, "the watcher to see the plugin leave");
    watch.child.kill("SIGINT");
    expect((await within(watch.exited, 20_000, "watch to exit")).code).toBe(0);
  });

  it("exit codes: 2 for usage, 3 when the hub cannot be reached", () => {
    expect(run(["ls", "--bogus"]).status).toBe(2);
    expect(run(["serve", "--listen"]).status).toBe(2);
    const nowhere = run(["ls"], { CAPMESH_HUB: `unix:${join(dir, "none.sock")}`, CAPMESH_HUB_ID: generateIdentity().id });
    expect(nowhere.status).toBe(3);
    expect(nowhere.stderr).toMatch(/cannot reach the hub/);
    expect(run(["ls", "--help"]).stdout).toMatch(/^usage: capmesh ls/);
  });
});

describe("stopping the hub", () => {
  it("SIGINT stops it gracefully and removes its socket and discovery file", async () => {
    serve.child.kill("SIGINT");
    expect((await within(serve.exited, 20_000, "serve to exit")).code).toBe(0);
    expect(existsSync(join(dir, "run", "capmesh", "hub.sock"))).toBe(false);
    expect(existsSync(join(dir, "run", "capmesh", "hub.json"))).toBe(false);
  });
});

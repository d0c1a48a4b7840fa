// The example plugins of peers/examples/ run as the README shows them: a hub
// in this process, each example its own process joining it from the
// environment. A closure mapped over a value stream through the engine; a
// plugin's configuration read and its log line tagged with its name; a file's
// bytes copied plugin to plugin, hash checked.
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callable, joinMesh, parseConfig, startHub, type MeshHub, type PluginLogLine } from "../src/index.js";
import { Closure } from "../src/gen/engine.js";
import { killLeftAndWait, run, start, TSX, type Started } from "./mesh/helpers/processes.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-peers-examples-"));
const children: ChildProcess[] = [];
const logged: PluginLogLine[] = [];
let hub: MeshHub;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  hub = await startHub({
    home: join(dir, "home"),
    socket: join(dir, "hub.sock"),
    // The configuration the README runs `capmesh serve` with.
    plugins: parseConfig(JSON.parse(readFileSync("peers/examples/capmesh.config.json", "utf8"))).plugins,
    pluginLog: (line) => void logged.push(line),
  });
  env = { ...process.env, ...hub.env, CAPMESH_HOME: join(dir, "peer-home"), XDG_RUNTIME_DIR: join(dir, "run"), DEBUG: "" };
});

afterAll(async () => {
  await killLeftAndWait(children);
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

function plugin(file: string, args: string[] = []): Started {
  return start(process.execPath, [...TSX, `peers/examples/${file}`, ...args], { env, children });
}

function example(file: string, args: string[] = []) {
  return run(process.execPath, [...TSX, `peers/examples/${file}`, ...args], { env, children, deadlineMs: 30_000 });
}

/** SIGTERM, as Ctrl-C would: the SDK unregisters the plugin, then lets the signal end the process. */
async function stop(p: Started): Promise<void> {
  p.child.kill("SIGTERM");
  expect(await p.exited).toEqual({ code: null, signal: "SIGTERM" });
}

/** Polls `condition` until it holds, failing after a deadline. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("peers/examples", () => {
  it("are the ones the README runs, with the output it shows", () => {
    const readme = readFileSync("README.md", "utf8");
    const block = /\*\*Example plugins\*\*[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, "the README's block that runs peers/examples").toBeDefined();
    expect(block).toContain("npx capmesh serve --config peers/examples/capmesh.config.json &");
    for (const file of ["mapper.ts &", "map-client.ts", "configured.ts &", "source.ts package.json &", "sink.ts /tmp/copy.json"]) {
      expect(block).toContain(`npx tsx peers/examples/${file}`);
    }
    expect(block).toContain("# squares: 1, 4, 9, 16, 25");
    expect(block).toContain('# registered "configured" as @…; greeting with "good morning"');
  });

  it("mapper.ts maps the client's function over its value stream through the engine, streaming the results back", async () => {
    const mapper = plugin("mapper.ts");
    await mapper.waitFor(/^registered "mapper" as @\S+\.ed25519$/m, "mapper to register");
    const client = await example("map-client.ts");
    expect(client.stderr).toBe("");
    expect(client.stdout).toBe("squares: 1, 4, 9, 16, 25\n");
    expect(client.status).toBe(0);

    // The same plugin from here: the function runs in this process, called by the hub's engine for the mapper.
    await using me = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey });
    const map = callable(me.connect("mapper", Closure));
    const seen: string[] = [];
    const { output } = await map.invoke({ args: [(s: string) => (seen.push(s), s.toUpperCase())], input: ["a", "b", "c"] });
    const got: unknown[] = [];
    for await (const x of output!) got.push(x);
    expect(got).toEqual(["A", "B", "C"]);
    expect(seen).toEqual(["a", "b", "c"]);
    await expect(map.invoke({ args: [(x: unknown) => x] })).rejects.toThrow("map(fn) needs the values to map as its input stream");
    map.release();
    await stop(mapper);
  });

  it("configured.ts reads its configuration section, and its log line reaches the hub tagged with its name", async () => {
    const configured = plugin("configured.ts");
    const ready = await configured.waitFor(/^registered "configured" as (@\S+\.ed25519); greeting with "(.*)"$/m, "configured to register");
    expect(ready[2]).toBe("good morning");
    const line = logged.find((l) => l.plugin === "configured");
    expect(line).toEqual({ plugin: "configured", peer: ready[1], level: "info", message: 'greeting with "good morning"', fields: { greeting: "good morning" } });

    await using me = await joinMesh({ hub: hub.address, hubId: hub.id, networkKey: hub.networkKey });
    const greet = callable(me.connect("configured", Closure));
    expect(await greet("mesh")).toBe("good morning, mesh");
    greet.release();
    await stop(configured);
  });

  it("source.ts offers a file's bytes, and sink.ts copies them plugin to plugin and checks the hash", async () => {
    const original = join(dir, "original.bin");
    const copy = join(dir, "copy.bin");
    const data = randomBytes(3 * 1024 * 1024 + 17); // many stream chunks, not a whole number of them
    writeFileSync(original, data);
    const sha256 = createHash("sha256").update(data).digest("hex");

    const source = plugin("source.ts", [original]);
    await source.waitFor(/^registered "source" as @\S+\.ed25519; offering original\.bin/m, "source to register");
    expect(source.output()).toContain(`offering original.bin (${data.length} bytes, sha256 ${sha256})`);
    const sink = await example("sink.ts", [copy]);
    expect(sink.stderr).toBe("");
    expect(sink.stdout).toBe(`copied original.bin: ${data.length} bytes, sha256 ${sha256} (matches the source's)\n`);
    expect(sink.status).toBe(0);
    expect(readFileSync(copy).equals(data)).toBe(true);
    // It can be read again: each call streams the file afresh.
    const again = await example("sink.ts", [join(dir, "copy2.bin")]);
    expect(again.status).toBe(0);
    expect(readFileSync(join(dir, "copy2.bin")).equals(data)).toBe(true);
    await stop(source);
    await until(() => hub.stats().connections === 0, "every example's connection to the hub to close");
  });
});

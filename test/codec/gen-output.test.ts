// What `capmesh gen` writes, checked the way users consume it: in a project
// of their own (outside this repository) that installed only capmesh,
// type-checked under the strictest common compiler settings, and, with
// --js, run under plain node.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURE_DIR, REPO_ROOT, hasCapnp } from "./helpers.js";

const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const TSC = join(REPO_ROOT, "node_modules/typescript/bin/tsc");
const FIXTURES = ["codectest.capnp", "names.capnp"].map((f) => join(FIXTURE_DIR, f));
/**
 * The schemas generated into a user's project, by output directory (one
 * `capmesh gen` each): the fixtures, the public schemas, and the interop
 * tests' and the benchmark's, which use more of the schema language.
 */
const GENERATED: Record<string, string[]> = {
  "gen/fixtures": FIXTURES,
  "gen/schema": readdirSync(join(REPO_ROOT, "schema"))
    .filter((f) => f.endsWith(".capnp"))
    .map((f) => join(REPO_ROOT, "schema", f)),
  "gen/interop": [join(REPO_ROOT, "test/interop/schema/interop.capnp")],
  "gen/bench": [join(REPO_ROOT, "bench/schema/bench.capnp")],
};

/** The flags users turn on when they want everything checked. */
const STRICTEST = {
  strict: true,
  noUnusedParameters: true,
  noUnusedLocals: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
};

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "capmesh-gen-out-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function gen(cwd: string, args: string[]): void {
  const r = spawnSync(process.execPath, ["--import", TSX, join(REPO_ROOT, "src/cli/main.ts"), "gen", ...args], {
    cwd,
    encoding: "utf8",
  });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
}

/** A user's project: `"type": "module"`, nothing installed yet. */
function project(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  return dir;
}

/**
 * Runs tsc on `files` in `dir` with the strictest settings; "capmesh" is
 * this repository's source (what the package's declarations describe).
 * Returns the diagnostics for the project's own files.
 */
function typecheck(dir: string, files: string[], options: Record<string, unknown> = {}): string {
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022", "ESNext.Disposable"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        verbatimModuleSyntax: true,
        isolatedModules: true,
        noEmit: true,
        skipLibCheck: true,
        types: ["node"],
        typeRoots: [join(REPO_ROOT, "node_modules/@types")],
        paths: { capmesh: [join(REPO_ROOT, "src/index.ts")] },
        ...STRICTEST,
        ...options,
      },
      files,
    }),
  );
  const r = spawnSync(process.execPath, [TSC, "-p", dir], { cwd: dir, encoding: "utf8" });
  // Only the project's files: with skipLibCheck off, other packages' declarations are not ours to judge.
  return (r.stdout + r.stderr)
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith(" ") && !/node_modules|^\.\.\//.test(line))
    .join("\n");
}

describe.skipIf(!hasCapnp)("generated TypeScript in a user's project", () => {
  it("compiles under strict, noUnused*, exactOptionalPropertyTypes and noUncheckedIndexedAccess; imports capmesh alone", { timeout: 120_000 }, () => {
    const dir = project("strict");
    for (const [out, schemas] of Object.entries(GENERATED)) gen(dir, ["--out", out, ...schemas]);
    const generated = Object.keys(GENERATED).flatMap((out) => readdirSync(join(dir, out)).map((f) => `${out}/${f}`));
    const expected = Object.entries(GENERATED).flatMap(([out, schemas]) => schemas.map((f) => `${out}/${basename(f, ".capnp")}.ts`));
    expect(generated.sort()).toEqual(expected.sort());
    for (const file of generated) {
      const code = readFileSync(join(dir, file), "utf8");
      // Users install capmesh, not its dependencies: AnyPointer comes from capmesh too.
      const modules = [...code.matchAll(/ from "([^"]+)";/g)].map((m) => m[1]);
      expect(new Set(modules.filter((m) => !m!.startsWith(".")))).toEqual(new Set(["capmesh"]));
    }
    expect(readFileSync(join(dir, "gen/fixtures/codectest.ts"), "utf8")).toContain("anyField: AnyPointer | null;");

    // Server objects as users write them: answering with a tail call, and
    // hearing their release through [Symbol.dispose].
    writeFileSync(
      join(dir, "servers.ts"),
      `import { Greeter, Listener, Room } from "./gen/schema/demo.js";

// Answering with another call's results, from sync and async methods.
export function relay(other: Greeter, otherRoom: Room): [Greeter, Room] {
  const room = Room.server({
    join: ({ who }, ctx) => (who === "" ? ctx.tailCall(otherRoom, "join", { who: "anonymous" }) : { members: 1 }),
    say: (_params, ctx) => ctx.tailCall(otherRoom, "say", { text: "relayed" }),
  });
  const greeter = Greeter.server({
    greet: ({ name }, ctx) => ctx.tailCall(other, "greet", { name }),
    room: async (_params, ctx) => ctx.tailCall(other, "room", { name: "elsewhere" }),
  });
  return [greeter, room];
}

// A server object that hears its release, as a method and as an arrow.
export function listen(log: string[]): [Listener, Room] {
  const listener = Listener.server({
    heard: ({ who, text }) => void log.push(\`\${who}: \${text}\`),
    [Symbol.dispose]() {
      log.push("listener released");
    },
  });
  const room = Room.server({ join: () => ({ members: 0 }), say: () => {}, [Symbol.dispose]: () => log.push("room released") });
  return [listener, room];
}

export async function call(greeter: Greeter, listener: Listener): Promise<string> {
  const { greeting } = await greeter.greet({ name: "x" });
  const room = greeter.room({ name: "lobby" }).room;
  const { members } = await room.join({ who: "me", listener });
  return \`\${greeting} \${members}\`;
}
`,
    );
    expect(typecheck(dir, [...generated, "servers.ts"])).toBe("");
  });
});

describe.skipIf(!hasCapnp)("capmesh gen --js", () => {
  it("emits .js that runs under plain node against the built package, and .d.ts that type-checks", { timeout: 120_000 }, async () => {
    const dir = project("plain-js");
    // "npm install capmesh": the package as tsup builds it (JavaScript only;
    // its declarations are taken from the source below), beside its dependencies.
    const pkg = join(dir, "node_modules/capmesh");
    const { build } = await import("tsup");
    await build({
      entry: { index: join(REPO_ROOT, "src/index.ts") },
      format: ["esm"],
      outDir: join(pkg, "dist"),
      target: "node20",
      dts: false,
      sourcemap: false,
      splitting: false,
      config: false,
      silent: true,
    });
    writeFileSync(
      join(pkg, "package.json"),
      JSON.stringify({ name: "capmesh", type: "module", exports: { ".": { import: "./dist/index.js" } } }),
    );
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as Record<string, Record<string, string>>;
    for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      const target = join(REPO_ROOT, "node_modules", dep);
      try {
        readdirSync(target);
      } catch {
        continue; // an optional dependency that did not install
      }
      mkdirSync(dirname(join(dir, "node_modules", dep)), { recursive: true });
      symlinkSync(target, join(dir, "node_modules", dep), "dir");
    }

    gen(dir, ["--js", "--out", "gen", join(REPO_ROOT, "schema/demo.capnp")]);
    gen(dir, ["--js", "--out", "gen/fixtures", ...FIXTURES]);
    expect(readdirSync(join(dir, "gen")).sort()).toEqual(["demo.d.ts", "demo.js", "fixtures"]);
    expect(readdirSync(join(dir, "gen/fixtures")).sort()).toEqual(["codectest.d.ts", "codectest.js", "names.d.ts", "names.js"]);
    const js = readFileSync(join(dir, "gen/demo.js"), "utf8");
    const schemaFromProject = relative(dir, join(REPO_ROOT, "schema/demo.capnp")).split(sep).join("/");
    expect(js.split("\n")[0]).toBe(`// Generated by capmesh from ${schemaFromProject} — do not edit.`);
    expect(js).toContain('from "capmesh";');
    expect(js).not.toMatch(/import type|: Codec<|<Greeter\b/);

    writeFileSync(
      join(dir, "main.js"),
      `import { readMessage, writeMessage } from "capmesh";
import { Greeter } from "./gen/demo.js";
import { AllTypes$codec, Color, Shape$codec, answer, greeting } from "./gen/fixtures/codectest.js";

const greeter = Greeter.server({ greet: ({ name }) => ({ greeting: "hello, " + name }), room: () => ({}) });
const hello = (await greeter.greet({ name: "js" })).greeting;
let refused = "";
try {
  await greeter.greet({ name: 5 });
} catch (e) {
  refused = e.name + ": " + e.message;
}
greeter.release();
const all = readMessage(AllTypes$codec, writeMessage(AllTypes$codec, { int32Field: -5, textField: "t", enumField: "green", structList: [{ x: 1 }] }));
const shape = readMessage(Shape$codec, writeMessage(Shape$codec, { rectangle: { width: 2 } }));
console.log(JSON.stringify({ hello, refused, all: [all.int32Field, all.textField, all.enumField, all.structList], shape, answer, greeting, blue: Color.nameOf(2) }));
`,
    );
    const run = spawnSync(process.execPath, ["main.js"], { cwd: dir, encoding: "utf8", timeout: 30_000 });
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual({
      hello: "hello, js",
      refused: "TypeError: capmesh: Greeter$greet$Params.name: expected Text (a string), got 5",
      all: [-5, "t", "green", [{ x: 1, y: 0 }]],
      shape: { name: "", which: "rectangle", rectangle: { width: 2, height: 0 }, style: { color: "red", border: { which: "none", none: true } } },
      answer: 42,
      greeting: "hello",
      blue: "blue",
    });

    // The declarations describe that code, for JavaScript users' editors and TypeScript callers.
    writeFileSync(
      join(dir, "check.ts"),
      `import { readMessage, writeMessage } from "capmesh";
import { Greeter, type GreeterServer, type Greeter$greet$Results } from "./gen/demo.js";
import { AllTypes$codec, Color, answer, type AllTypes } from "./gen/fixtures/codectest.js";
import { Capability, Pointer$codec, type Pointer } from "./gen/fixtures/names.js";

const impl: GreeterServer = { greet: ({ name }) => ({ greeting: name }), room: () => ({}), [Symbol.dispose]() {} };
const greeter: Greeter = Greeter.server(impl);

export async function use(): Promise<string> {
  const r: Greeter$greet$Results = await greeter.greet({ name: "x" });
  // @ts-expect-error Text takes a string
  void greeter.greet({ name: 5 });
  const all: AllTypes = readMessage(AllTypes$codec, writeMessage(AllTypes$codec, { int32Field: 1, anyField: null }));
  const blue: Color = "blue";
  const fortyTwo: 42 = answer;
  const p: Pointer = readMessage(Pointer$codec, writeMessage(Pointer$codec, { then_: 1 }));
  return r.greeting + all.textField + blue + fortyTwo + p.catch_ + Color.ordinalOf("red") + Capability.name;
}
`,
    );
    expect(typecheck(dir, ["check.ts"], { skipLibCheck: false })).toBe("");
  });
});

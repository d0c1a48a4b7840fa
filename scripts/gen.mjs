#!/usr/bin/env node
// Regenerates the TypeScript modules generated from Cap'n Proto schemas:
//
//   npm run gen              rewrite src/gen/ (and the codec test fixture, and the
//                            message benchmark's bench/messages/shapes.ts, and
//                            the RPC tests' test/rpc/schema/trees.ts, and the
//                            interop tests' and benchmark's schemas)
//   npm run gen -- --check   write nothing; exit 1 listing out-of-date files (CI)
//
// The generator is TypeScript (src/codegen/cli.ts); it runs under tsx.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const unknown = process.argv.slice(2).filter((a) => a !== "--check");
if (unknown.length > 0) {
  console.error(`gen.mjs: unknown arguments: ${unknown.join(" ")} (only --check is accepted)`);
  process.exit(2);
}

/** Each job: schemas in one directory → one output directory. */
const jobs = [
  {
    schemaDir: "schema",
    out: "src/gen",
    runtime: "../rpc/index.js",
    codec: "../codec/runtime.js",
  },
  {
    // The codec tests' own schema; its RPC runtime is a shim (test/codec/shim.ts).
    schemaDir: "test/codec/fixtures",
    out: "test/codec/fixtures/gen",
    runtime: "../../shim.js",
    codec: "../../../../src/codec/runtime.js",
  },
  {
    // The message benchmark's shapes (bench/messages/); generated next to the schema.
    schemaDir: "bench/messages",
    out: "bench/messages",
    runtime: "../../src/rpc/index.js",
    codec: "../../src/codec/runtime.js",
  },
  {
    // The RPC tests' schema for large and hostile messages; generated next to it.
    schemaDir: "test/rpc/schema",
    out: "test/rpc/schema",
    runtime: "../../../src/rpc/index.js",
    codec: "../../../src/codec/runtime.js",
  },
  {
    // The interop tests' schema (also built into the C++ reference peer); kept
    // out of schema/ so that the npm package does not ship it.
    schemaDir: "test/interop/schema",
    out: "test/interop/schema",
    runtime: "../../../src/rpc/index.js",
    codec: "../../../src/codec/runtime.js",
  },
  {
    // The engine tests' schema: an embedding service's interface extending
    // Engine, which it imports as "/engine.capnp" (the way a service outside
    // this repository does, with -I pointing at capmesh's schema/).
    schemaDir: "test/engine/schema",
    out: "test/engine/schema",
    runtime: "../../../src/rpc/index.js",
    codec: "../../../src/codec/runtime.js",
    imports: ["schema"],
  },
  {
    // The benchmark's Bench interface, served by every system bench/ compares.
    schemaDir: "bench/schema",
    out: "bench/schema",
    runtime: "../../src/rpc/index.js",
    codec: "../../src/codec/runtime.js",
  },
];

let failed = false;
for (const job of jobs) {
  const schemas = readdirSync(join(root, job.schemaDir))
    .filter((f) => f.endsWith(".capnp"))
    .sort()
    .map((f) => `${job.schemaDir}/${f}`);
  const args = [
    "--import",
    "tsx",
    "src/codegen/cli.ts",
    "--runtime",
    job.runtime,
    "--codec",
    job.codec,
    "--out",
    job.out,
    "--src-prefix",
    job.schemaDir,
    ...(job.imports ?? []).flatMap((dir) => ["-I", dir]),
    check ? "--check" : "--clean",
    ...schemas,
  ];
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (result.error) throw result.error;
  if (result.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);

// A plugin process for the engine tests: joins the hub named by the
// CAPMESH_* environment and registers argv[2], serving a Closure made from a
// function. Its calls:
//   ("outer", f)  evaluates the closure f through the engine, while this call
//                 runs (f may call back into this plugin), and answers with
//                 what f returned
//   ("inner")     reads its configuration section through the engine, logs
//                 a line, and answers with the configured greeting
//   ("context")   answers with the context of its own call (ended by then)
//   (x)           anything else: answers "<name>:<x>"
// With --sequential (argv[3]) it is a sequential plugin: one call at a time.
import { joinMesh } from "../../src/mesh/join.js";
import { closure } from "../../src/engine/closure.js";
import { withCallContext } from "../../src/engine/context.js";
import { fromValue, toValue } from "../../src/value/index.js";
import type { Capability } from "../../src/rpc/types.js";
import type { Closure } from "../../src/gen/engine.js";

const name = process.argv[2]!;
let engine: () => import("../../src/gen/engine.js").Engine = () => {
  throw new Error("not joined yet");
};
const serve = closure(async (kind: unknown, f?: Capability) => {
  if (kind === "outer") {
    const { result } = await engine().eval({ closure: f as Closure, args: [toValue(`asked by ${name}`)] });
    return `outer(${String(fromValue(result))})`;
  }
  if (kind === "inner") {
    const config = fromValue((await engine().config()).config) as { greeting?: string } | null;
    await engine().log({ level: "info", message: "inner ran", fields: toValue({ depth: 2 }) });
    return `inner(${config?.greeting ?? "no config"})`;
  }
  if (kind === "context") {
    // Hands out its call's context: the caller keeps it past the call's end.
    return withCallContext(engine(), "context call", async (ctx) => {
      await ctx.log({ level: "info", message: "in context" });
      return ctx.dup();
    });
  }
  return `${name}:${String(kind)}`;
});
const peer = await joinMesh({ name, provide: serve, sequential: process.argv[3] === "--sequential", handleSignals: true });
engine = () => peer.engine;
// Asked for now, so that the hub's tables the tests compare already hold it.
await peer.engine.whenResolved();
console.log(`registered ${name} as ${peer.id}`);

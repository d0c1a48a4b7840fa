// A plugin: registers "mapper", a closure that maps a function over a stream
// of values. It is called as map(fn) with the values as its input stream, and
// answers with a stream of fn(value), each computed by its engine's `eval`:
// the engine calls fn wherever it lives (here, in the caller's process).
import { closure, fromValue, joinMesh, toValue } from "../../src/index.js";
import type { Closure } from "../../src/gen/engine.js";

const map = closure(function (fn: Closure) {
  const input = this.input; // `function`, not an arrow: `this` is the call
  if (input === null) throw new Error("map(fn) needs the values to map as its input stream");
  const f = fn.dup(); // arguments are lent for the call; the output stream outlives it
  return (async function* () {
    try {
      for await (const value of input) {
        const { result } = await mesh.engine.eval({ closure: f, args: [toValue(value)] });
        yield fromValue(result);
      }
    } finally {
      f.release(); // the stream ended, or its reader stopped
    }
  })();
});

const mesh = await joinMesh({
  name: "mapper",
  provide: map,
  info: { version: "1.0.0", description: "map(fn) over an input stream of values" },
});
console.log(`registered "mapper" as ${mesh.id}`);

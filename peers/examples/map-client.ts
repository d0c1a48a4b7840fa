// A client of "mapper": sends it a function and a stream of numbers, and
// reads the stream of results back as they come.
import { callable, joinMesh } from "../../src/index.js";
import { Closure } from "../../src/gen/engine.js";

{
  await using mesh = await joinMesh();
  const map = callable(mesh.connect("mapper", Closure, { wait: 5_000 }));
  const numbers = (async function* () {
    for (let n = 1; n <= 5; n++) yield n; // any async iterable, ReadableStream or Readable
  })();
  // The function stays here: the mapper's engine calls back into this process for each value.
  const { output } = await map.invoke({ args: [(n: number) => n * n], input: numbers });
  const squares: unknown[] = [];
  for await (const square of output!) squares.push(square);
  console.log(`squares: ${squares.join(", ")}`);
  map.release();
}

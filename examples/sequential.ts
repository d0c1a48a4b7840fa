import { joinMesh, startHub } from "../src/index.js";
import { Counter } from "../src/gen/demo.js";

const hub = await startHub();
// The count is read, then written after an await (say, a database round trip):
// calls that ran at once would all read the same total and lose each other's updates.
let total = 0;
const later = <T>(value: T) => new Promise<T>((resolve) => setImmediate(() => resolve(value)));
const plugin = await joinMesh({
  name: "counter",
  provide: Counter.server({ add: async ({ by }) => ({ total: (total = (await later(total)) + by) }), get: () => ({ total }) }),
  sequential: true, // one call at a time, in arrival order
});
const client = await joinMesh();
const counter = client.connect("counter", Counter);
await Promise.all(Array.from({ length: 100 }, () => counter.add({ by: 1 })));
console.log(`total ${(await counter.get()).total}`); // without `sequential`: total 1
for (const peer of [client, plugin, hub]) await peer.close();

import { joinMesh, startHub } from "../src/index.js";
import { Counter } from "../src/gen/demo.js";

await using hub = await startHub();
let total = 0;
await using plugin = await joinMesh({
  name: "counter",
  provide: Counter.server({ add: ({ by }) => ({ total: (total += by) }), get: () => ({ total }) }),
});
await using client = await joinMesh();
const counter = client.connect("counter", Counter);
await counter.add({ by: 1 }); // made before the capability arrived: through the hub
await counter.whenResolved(); // picked up from the plugin itself
const { path, peer } = client.pathOf(counter);
console.log(`${path}, to the plugin: ${peer === plugin.id}`);
for (let i = 0; i < 100; i++) await counter.add({ by: 1 });
console.log(`total ${(await counter.get()).total}, forwarded by the hub: ${hub.stats().forwardedCalls}`);

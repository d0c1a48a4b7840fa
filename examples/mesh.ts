import { joinMesh, startHub } from "../src/index.js";
import { Greeter } from "../src/gen/demo.js";

// A hub on embedded defaults (those of `capmesh serve`), in this process.
await using hub = await startHub();

// A plugin registers a name with its capability; a client finds it by name.
await using plugin = await joinMesh({
  name: "greeter",
  provide: Greeter.server({ greet: ({ name }) => ({ greeting: `hello, ${name}` }), room: () => ({}) }),
  info: { version: "1.0.0", description: "says hello" },
});
await using client = await joinMesh();
const greeter = client.connect("greeter", Greeter); // usable at once (pipelined)
console.log((await greeter.greet({ name: "mesh" })).greeting);
console.log((await client.list()).map((p) => `${p.name} ${p.info.version}`).join(", "));
console.log(`${hub.stats().connections} peers connected`);
await plugin.close(); // leaving unregisters its name
console.log(`${(await client.list()).length} plugins after it left`);

// A plugin that comes and goes: registers "visitor", says hi in the
// greeter's #lobby (every member hears it through its callback), and
// leaves; watchers see it join and leave.
import { joinMesh } from "../../src/index.js";
import { Greeter } from "../../src/gen/demo.js";

{
  await using mesh = await joinMesh({
    name: "visitor",
    provide: Greeter.server({ greet: ({ name }) => ({ greeting: `hi ${name}, bye ${name}` }), room: () => ({}) }),
    info: { version: "1.0.0", description: "drops by #lobby, then leaves" },
  });
  console.log(`registered "visitor" as ${mesh.id}`);
  const lobby = mesh.connect("greeter", Greeter).room({ name: "lobby" }).room; // pipelined: one round trip
  await lobby.say({ who: "visitor", text: "hi all, just passing through" });
  console.log("said hi in #lobby; leaving");
} // `await using`: leaving the block unregisters "visitor" and disconnects
console.log("left");

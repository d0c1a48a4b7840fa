// A plugin: registers "counter", one count shared by every caller. Try it
// from another terminal: npx capmesh call counter add '{"by": 2}'
import { joinMesh } from "../../src/index.js";
import { Counter } from "../../src/gen/demo.js";

let total = 0;
const counter = Counter.server({
  add: ({ by }) => {
    total += by;
    console.log(`add ${by}: total ${total}`);
    return { total };
  },
  get: () => ({ total }),
});

const mesh = await joinMesh({
  name: "counter",
  provide: counter,
  info: { version: "1.0.0", description: "a count shared by every caller" },
});
console.log(`registered "counter" as ${mesh.id}`);

// A plugin process for the mesh tests: joins the hub named by the CAPMESH_*
// environment, registers argv[2] and serves demo.capnp's Greeter. With
// argv[3] "grants" it grants per caller: each caller's greeting names it.
// greet({ name: "wait" }) never answers (a call in flight when it is killed).
import { joinMesh } from "../../src/mesh/join.js";
import { Greeter } from "../../src/gen/demo.js";

const name = process.argv[2]!;
const grants = process.argv[3] === "grants";
const greeter = (greeting: (who: string) => string) =>
  Greeter.server({
    greet: ({ name: who }) => (who === "wait" ? new Promise<never>(() => {}) : { greeting: greeting(who) }),
    room: () => ({}),
  });

const peer = await joinMesh({
  name,
  provide: grants ? (caller) => greeter(() => `hello ${caller}`) : greeter((who) => `hello ${who} from ${name}`),
  info: { version: "1.2.3", description: `test plugin ${name}`, interfaces: [{ id: Greeter.id, name: "Greeter" }] },
  replace: process.argv.includes("--replace"),
});
console.log(`registered ${name} as ${peer.id}`);

// A client (no name of its own): watches who comes and goes, lists the
// plugins, reaches them by name, and passes the greeter's #lobby a callback.
import { joinMesh } from "../../src/index.js";
import { Counter, Greeter, Listener } from "../../src/gen/demo.js";

const mesh = await joinMesh(); // the hub from $CAPMESH_HUB…, else this machine's hub.json

// Watch: who is there now, then one event per plugin that joins or leaves.
await mesh.watch((event) => {
  if (event.which === "snapshot") console.log(`watch: present: ${event.snapshot.map((p) => p.name).join(", ")}`);
  if (event.which === "joined") console.log(`watch: ${event.joined.name} joined`);
  if (event.which === "left") console.log(`watch: ${event.left.name} left (${event.left.reason})`);
});

// List: every registration, with what each plugin says about itself.
const plugins = await mesh.list();
for (const p of plugins) console.log(`list: ${p.name} ${p.info.version}: ${p.info.description}`);

// Connect by name: usable at once, the calls go out pipelined.
const greeter = mesh.connect("greeter", Greeter);
console.log(`greeter.greet: ${(await greeter.greet({ name: "client" })).greeting}`);
if (plugins.some((p) => p.name === "greeter-cpp")) {
  // The C++ mesh peer (peers/cpp/mesh-peer.c++), when the demo runs it: the same Greeter, another language.
  console.log(`greeter-cpp.greet: ${(await mesh.connect("greeter-cpp", Greeter).greet({ name: "client" })).greeting}`);
}

// A callback: `ear` lives in this process; the greeter calls it whenever someone speaks in #lobby.
const ear = Listener.server({ heard: ({ who, text }) => console.log(`callback from the greeter: <${who}> ${text}`) });
const lobby = greeter.room({ name: "lobby" }).room;
const { members } = await lobby.join({ who: "client", listener: ear });
console.log(`joined #lobby (${members} member${members === 1 ? "" : "s"})`);
await lobby.say({ who: "client", text: "hello, lobby" });

const counter = mesh.connect("counter", Counter);
console.log(`counter.add: total ${(await counter.add({ by: 1 })).total}`);
console.log("ready: watching the mesh (Ctrl-C to stop)");
// The watch keeps this process running; SIGINT/SIGTERM close the connection, then exit.

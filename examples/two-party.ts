import { connect, listen } from "../src/index.js";
import { Greeter, Listener, Room } from "../src/gen/demo.js";

// Serve a typed interface on a unix socket.
const lobby = Room.server({
  join: ({ who, listener }) => (listener?.heard({ who: "room", text: `welcome, ${who}` }), { members: 1 }),
  say: () => {},
});
const server = await listen("unix:/tmp/capmesh-example.sock", {
  bootstrap: Greeter.server({ greet: ({ name }) => ({ greeting: `hello, ${name}` }), room: () => ({ room: lobby.dup() }) }),
});

const session = await connect("unix:/tmp/capmesh-example.sock");
const greeter = session.bootstrap(Greeter);
console.log((await greeter.greet({ name: "world" })).greeting); // a typed call
const room = greeter.room({ name: "lobby" }).room; // pipelined: not here yet, callable already
const ear = Listener.server({ heard: ({ who, text }) => console.log(`${who}: ${text}`) }); // a callback
console.log(`members: ${(await room.join({ who: "me", listener: ear })).members}`);
await session.close();
await server.close();

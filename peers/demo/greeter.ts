// A plugin: registers "greeter" with the hub and serves demo.capnp's Greeter.
// Its chat rooms call back every member: a member joins with a Listener, a
// capability that lives in the member's process, and `say` calls it.
import { joinMesh } from "../../src/index.js";
import { Greeter, Listener, Room } from "../../src/gen/demo.js";

function chatRoom(name: string): Room {
  const members = new Set<Listener>();
  return Room.server({
    join: ({ who, listener }) => {
      if (listener) members.add(listener.dup()); // params are lent for the call: keep a reference of our own
      console.log(`${who} joined #${name}`);
      return { members: members.size };
    },
    say: async ({ who, text }) => {
      console.log(`#${name} <${who}> ${text}`);
      await Promise.all(
        [...members].map((member) =>
          member.heard({ who, text }).catch(() => {
            members.delete(member); // its process has gone
            member.release();
          }),
        ),
      );
    },
  });
}

const rooms = new Map<string, Room>();
const greeter = Greeter.server({
  greet: ({ name }) => ({ greeting: `hello, ${name}` }),
  room: ({ name }) => {
    if (!rooms.has(name)) rooms.set(name, chatRoom(name));
    return { room: rooms.get(name)!.dup() }; // results are handed over: give a reference away, keep ours
  },
});

// Stays registered until the process is stopped (SIGINT/SIGTERM unregister it first).
const mesh = await joinMesh({
  name: "greeter",
  provide: greeter,
  info: { version: "1.0.0", description: "says hello; keeps chat rooms" },
});
console.log(`registered "greeter" as ${mesh.id}`);

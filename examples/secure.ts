import { connect, generateIdentity, listen } from "../src/index.js";
import { Greeter } from "../src/gen/demo.js";

// Long-term ed25519 identities (in real use, key files: `capmesh keygen`).
const serverKey = generateIdentity();
const alice = generateIdentity();

// Every peer must pass the secret handshake; what it gets may depend on who it is.
const server = await listen("tcp://127.0.0.1:0", {
  identity: serverKey,
  bootstrap: (peer) => Greeter.server({ greet: () => ({ greeting: `hello, ${peer.id === alice.id ? "alice" : "stranger"}` }), room: () => ({}) }),
});

// The dialler names the key it expects: anyone else fails the handshake. TCP is encrypted.
const session = await connect(server.address, { identity: alice, remoteKey: serverKey.id });
console.log(session.remoteId === serverKey.id, session.peer.encrypted); // true true
console.log((await session.bootstrap(Greeter).greet({})).greeting); // hello, alice
await session.close();
await server.close();

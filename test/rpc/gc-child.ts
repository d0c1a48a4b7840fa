// Run by typed-api.test.ts with --expose-gc: a client dropped without
// release() must still be released once it is garbage collected.
import { RpcConnection } from "../../src/rpc/connection.js";
import { Session } from "../../src/rpc/index.js";
import { memoryStreamPair } from "../../src/transport/message-stream.js";
import { Counter, CounterImpl } from "./fixtures.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");
const [a, b] = memoryStreamPair();
const peer = { id: "x", authenticated: false, address: "memory" };
const server = new Session(new RpcConnection(a), peer, Counter.server(new CounterImpl()));
const client = new Session(new RpcConnection(b), peer, null);
const root = client.bootstrap(Counter);
const child = new CounterImpl();
await (async () => {
  // A capability the server hands out; our only reference is dropped here.
  const made = await root.echo({ cap: Counter.server(child) });
  void made;
})();
let disposed = false;
for (let i = 0; i < 200 && !child.disposed; i++) {
  gc();
  await new Promise((r) => setTimeout(r, 5));
}
disposed = child.disposed;
// Results holding capabilities that nobody awaited are released with their promise.
const before = server.connection.stats().exports;
for (let i = 0; i < 20; i++) void root.next();
await root.add({ delta: 0n });
const exported = server.connection.stats().exports - before;
for (let i = 0; i < 200 && server.connection.stats().exports > before; i++) {
  gc();
  await new Promise((r) => setTimeout(r, 5));
}
const unawaitedReleased = exported === 20 && server.connection.stats().exports === before;
console.log(disposed && unawaitedReleased ? "disposed after gc" : `still alive (child disposed: ${disposed}, exported ${exported}, left ${server.connection.stats().exports - before})`);
await client.close();
await server.close();

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
console.log(disposed ? "disposed after gc" : "still alive");
await client.close();
await server.close();

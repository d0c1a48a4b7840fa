// Plugin B of the engine bench: one closure registered with the hub, whose
// first argument says what the caller wants of it:
//
//   ("echo", n)              -> n          the closure A has its engine evaluate
//   ("bytes", <byte stream>) -> bytes read  a byte stream from A, read to its end
//   ("values") + input       -> items read  A's value stream (the call's input), read to its end
//
//   bench/engine/plugin.ts <name>   (the hub from CAPMESH_HUB, _HUB_ID, _NETWORK_KEY)
//
// `cpu` reports B's CPU time so far and what it has taken: echo calls, stream
// chunks (byte writes as its reader saw them) and items.
import { closure, joinMesh, readStreamValue, StreamValue } from "../../src/index.js";
import { childMain, cpuUs, emit, serveCommands } from "../mesh/child.js";

/**
 * A reader of the byte stream in an argument: fromValue gives a received
 * stream as a reader (async iterable), or, in older versions, as a
 * StreamValue that readStreamValue reads.
 */
function byteReader(arg: unknown): AsyncIterable<Uint8Array> {
  if (arg instanceof StreamValue && arg.kind === "bytes") return readStreamValue(arg as StreamValue & { kind: "bytes" });
  if (typeof arg === "object" && arg !== null && Symbol.asyncIterator in arg) return arg as AsyncIterable<Uint8Array>;
  throw new Error(`plugin.ts: "bytes" wants a byte stream, got ${typeof arg === "object" ? String(arg?.constructor?.name) : typeof arg}`);
}

await childMain(async () => {
  const [name] = process.argv.slice(2);
  if (name === undefined) throw new Error("usage: plugin.ts <name>");
  const counts = { echoes: 0, chunks: 0, items: 0 };
  const serve = closure(async function (mode: unknown, arg: unknown) {
    switch (mode) {
      case "echo":
        counts.echoes++;
        return arg;
      case "bytes": {
        let bytes = 0;
        for await (const chunk of byteReader(arg)) {
          bytes += chunk.byteLength;
          counts.chunks++;
        }
        return bytes;
      }
      case "values": {
        if (this.input === null) throw new Error('plugin.ts: "values" wants the values as the call\'s input stream');
        let items = 0;
        for await (const item of this.input) {
          if (item === undefined) throw new Error("plugin.ts: an undefined item");
          items++;
        }
        counts.items += items;
        return items;
      }
      default:
        throw new Error(`plugin.ts: unknown mode ${JSON.stringify(mode)} (want echo, bytes or values)`);
    }
  });
  const peer = await joinMesh({ name, provide: serve, handleSignals: false, reconnect: false });
  serveCommands({ cpu: () => ({ cpuUs: cpuUs(), ...counts }) }, () => peer.close());
  emit({ ready: true, id: peer.id });
});

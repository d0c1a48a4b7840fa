// capmesh serving schema/bench.capnp.
import { formatAddress, parseAddress } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { Bench, type BenchServer, type BenchSinkServer } from "../../../src/gen/bench.js";
import { listen } from "../../../src/rpc/index.js";

class SinkImpl implements BenchSinkServer {
  bytes = 0n;
  write({ chunk }: { chunk: Uint8Array }): void {
    this.bytes += BigInt(chunk.length);
  }
  done() {
    return { bytes: this.bytes };
  }
}

class BenchImpl implements BenchServer {
  constructor(readonly depth: number) {}
  ping({ n }: { n: number }) {
    return { n: this.depth === 0 ? n : this.depth };
  }
  // A server object placed where the schema has a capability is passed by
  // reference: no client wrapper is needed to return one.
  next({ depth }: { depth: number }) {
    return { next: new BenchImpl(depth) };
  }
  sink() {
    return { sink: new SinkImpl() };
  }
}

await runServer(async (address) => {
  // Plain Cap'n Proto, as every other system here: the handshake is measured in bench/auth.
  const listener = await listen(formatAddress(address), { bootstrap: Bench.server(new BenchImpl(0)), plain: true });
  return parseAddress(listener.address);
});

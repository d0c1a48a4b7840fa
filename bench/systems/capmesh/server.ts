// capmesh serving schema/bench.capnp.
import { formatAddress, parseAddress } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { Bench, BenchSink, type BenchServer, type BenchSinkServer } from "../../../src/gen/bench.js";
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
  next({ depth }: { depth: number }) {
    return { next: Bench.server(new BenchImpl(depth)) };
  }
  sink() {
    return { sink: BenchSink.server(new SinkImpl()) };
  }
}

await runServer(async (address) => {
  const listener = await listen(formatAddress(address), { bootstrap: Bench.server(new BenchImpl(0)) });
  return parseAddress(listener.address);
});

// bench/schema/bench.capnp served by capmesh (both bench runners use it).
import type { BenchServer, BenchSinkServer } from "../../schema/bench.js";

class SinkImpl implements BenchSinkServer {
  bytes = 0n;
  write({ chunk }: { chunk: Uint8Array }): void {
    this.bytes += BigInt(chunk.length);
  }
  done() {
    return { bytes: this.bytes };
  }
}

export class BenchImpl implements BenchServer {
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

// The capability the fuzzed server offers: the interop TestService (so that
// replayed recordings call real methods), with the service's OWN work bounded.
// A fuzzed `payload(size: 4e9)` or a checksum over 15 MiB must not be charged
// to the engine: the rule being checked is about the engine's handling of
// messages (reading, dispatching, building, forwarding), not about an
// application method's loop over its input.
import { ByteSink, type Counter } from "../../interop/schema/interop.js";
import { fnv1a, TestServiceImpl } from "../../interop/test-service.js";

/** The most of any input the service itself looks at. */
const MAX_WORK = 64 * 1024;
const MAX_COUNTERS = 64;
const MAX_CALL_MANY = 16;

export class BoundedTestService extends TestServiceImpl {
  override payload({ size }: { size: number }) {
    return super.payload({ size: Math.min(size, MAX_WORK) });
  }
  override checksum({ data }: { data: Uint8Array }) {
    return super.checksum({ data: data.subarray(0, MAX_WORK) });
  }
  override counters({ n }: { n: number }) {
    return super.counters({ n: Math.min(n, MAX_COUNTERS) });
  }
  override sumCounters({ list }: { list: (Counter | null)[] }) {
    return super.sumCounters({ list: list.slice(0, MAX_COUNTERS) });
  }
  override callMany(p: Parameters<TestServiceImpl["callMany"]>[0]) {
    return super.callMany({ ...p, times: Math.min(p.times, MAX_CALL_MANY) });
  }
  override sink() {
    let bytes = 0n;
    let hash = 0xcbf29ce484222325n;
    return {
      sink: ByteSink.server({
        write({ chunk }) {
          bytes += BigInt(chunk.length);
          hash = fnv1a(chunk.subarray(0, MAX_WORK), hash);
        },
        done: () => ({ bytes, checksum: hash }),
      }),
    };
  }
}

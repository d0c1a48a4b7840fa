// Flow control for `-> stream` methods: how many bytes of calls may be
// unacknowledged before the caller's next write waits. The window adapts to
// the path like a bandwidth-delay product (twice the measured throughput
// times the smallest round trip seen, as BBR sizes its window): small on a
// local socket, where a big window only means more memory in flight, and
// large enough to fill a long, fast link.
import { toRpcError, type RpcError } from "./errors.js";

const MIN_WINDOW = 256 * 1024;
const MAX_WINDOW = 16 * 1024 * 1024;
/** How often the throughput estimate is refreshed. */
const SAMPLE_MS = 50;

let fixedWindow: number | null = null;

/** Fixes the window of every stream at `bytes`; null returns to adapting. */
export function setStreamWindow(bytes: number | null): void {
  if (bytes !== null && !(bytes > 0)) throw new RangeError("stream window must be a positive number of bytes, or null to adapt");
  fixedWindow = bytes;
}

export class FlowController {
  inFlight = 0;
  error: RpcError | null = null;
  private waiters: { resolve: () => void; reject: (e: RpcError) => void }[] = [];
  private adaptive = MIN_WINDOW;
  private minRttMs = Infinity;
  private sampleStart = 0;
  private sampleBytes = 0;

  get window(): number {
    return fixedWindow ?? this.adaptive;
  }

  /** Accounts for one sent call of `bytes`; resolves when the caller may send more. */
  track(bytes: number, done: Promise<unknown>): Promise<void> {
    const sentAt = performance.now();
    if (this.inFlight === 0 && this.sampleBytes === 0) this.sampleStart = sentAt;
    this.inFlight += bytes;
    done.then(
      () => this.ack(bytes, sentAt),
      (err: unknown) => {
        this.error ??= toRpcError(err);
        this.ack(bytes, sentAt);
      },
    );
    if (this.inFlight < this.window) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private ack(bytes: number, sentAt: number): void {
    this.inFlight -= bytes;
    this.measure(bytes, sentAt);
    if (this.error) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.reject(this.error);
      return;
    }
    while (this.waiters.length > 0 && this.inFlight < this.window) this.waiters.shift()!.resolve();
  }

  private measure(bytes: number, sentAt: number): void {
    const now = performance.now();
    this.minRttMs = Math.min(this.minRttMs, now - sentAt);
    this.sampleBytes += bytes;
    const elapsed = now - this.sampleStart;
    if (elapsed < SAMPLE_MS) return;
    const bytesPerMs = this.sampleBytes / elapsed;
    const bdp = bytesPerMs * this.minRttMs;
    this.adaptive = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, 2 * bdp));
    this.sampleStart = now;
    this.sampleBytes = 0;
  }
}

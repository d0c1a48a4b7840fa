// Loaded into a capmesh server or client of the memory bench (node --import):
// counts the bytes the process allocates on the JS heap, from V8's GC
// profiler (what each collection freed, plus the growth from start to end),
// and writes them with the process's own samples to $BENCH_MEMORY_REPORT when
// it exits. ArrayBuffer and Buffer memory outside the heap is not counted:
// V8's GC statistics do not see it whole (they missed 9 bytes in 10 of it in a
// check), so the RSS figures stand for it.
//
// Samples every 100 ms: [Date.now(), rss, heapUsed, heap bytes allocated so far]. The runner
// samples RSS from /proc as well, for every system alike.
import { writeFileSync } from "node:fs";
import { PerformanceObserver } from "node:perf_hooks";
import { GCProfiler, getHeapStatistics } from "node:v8";

const out = process.env.BENCH_MEMORY_REPORT;
if (out !== undefined && out !== "") {
  // One profiler for the whole run (restarting it every sample made RSS grow
  // by several MiB a second); it gives the bytes each collection freed, in
  // order, and a performance observer the time each one ended, in the same
  // order: zipped at exit into the heap bytes allocated up to each sample.
  const profiler = new GCProfiler();
  profiler.start();
  const ends: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) ends.push(performance.timeOrigin + e.startTime + e.duration);
  });
  observer.observe({ entryTypes: ["gc"] });
  const start = getHeapStatistics().used_heap_size;
  const samples: [number, number, number, number?][] = [];
  const sample = (): void => {
    const m = process.memoryUsage();
    samples.push([Date.now(), m.rss, m.heapUsed]);
  };
  setInterval(sample, 100).unref();
  process.on("exit", () => {
    sample();
    const stats = profiler.stop()?.statistics ?? [];
    observer.disconnect();
    // The observer's last entries may not have been delivered yet: zip what both have.
    const n = Math.min(stats.length, ends.length);
    let gc = 0;
    let freed = 0;
    for (const s of samples) {
      while (gc < n && ends[gc]! <= s[0]) {
        const { beforeGC, afterGC } = stats[gc++]!;
        freed += Math.max(0, beforeGC.heapStatistics.usedHeapSize - afterGC.heapStatistics.usedHeapSize);
      }
      s[3] = freed + s[2] - start;
    }
    writeFileSync(out, JSON.stringify({ samples, gcs: stats.length, timed: ends.length }));
  });
}

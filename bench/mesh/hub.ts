// The hub of the mesh bench, in a process of its own so that its memory can
// be measured alone: `startHub` on a socket and home the runner chose (the
// runner wrote the identity and network key there, so it knows them).
//
//   node --expose-gc --import tsx bench/mesh/hub.ts <home> <socket>
//
// Commands: `memory` collects garbage and reports process.memoryUsage() and
// the hub's table sizes; `cpu` reports the CPU time the hub has used (so
// that the runner can tell what the hub itself spent on a figure, however
// loaded the machine is; with `calls: true`, also the calls it forwarded and
// its Level 3 introductions); `snapshot {path}` writes a V8 heap snapshot.
import { writeHeapSnapshot } from "node:v8";
import { startHub } from "../../src/mesh/hub.js";
import { childMain, cpuUs, emit, serveCommands } from "./child.js";

await childMain(async () => {
  const [home, socket] = process.argv.slice(2);
  if (home === undefined || socket === undefined) throw new Error("usage: hub.ts <home> <socket>");
  const hub = await startHub({ home, socket });
  const gc = (globalThis as { gc?: () => void }).gc;
  serveCommands(
    {
      memory: async () => {
        if (gc === undefined) throw new Error("run the hub with node --expose-gc");
        // Twice, and again after a moment: objects that finalizers and
        // pending callbacks free go in the later passes.
        gc();
        gc();
        await new Promise((resolve) => setTimeout(resolve, 200));
        gc();
        const stats = hub.stats();
        return {
          ...process.memoryUsage(),
          connections: stats.connections,
          registrations: stats.registrations,
          watchers: stats.watchers,
          forwardedCalls: Number(stats.forwardedCalls),
        };
      },
      // CPU time the hub has used so far (user + system, µs), and what it has forwarded.
      cpu: ({ calls }) => {
        // Stats walk every session: only when asked, and before the clock is read.
        const stats = calls === true ? hub.stats() : null;
        return { cpuUs: cpuUs(), forwardedCalls: stats && Number(stats.forwardedCalls), introductions: stats && Number(stats.introductions) };
      },
      snapshot: ({ path }) => {
        gc?.();
        return { path: writeHeapSnapshot(String(path)) };
      },
    },
    () => hub.close(),
  );
  emit({ ready: true, address: hub.address, id: hub.id });
});

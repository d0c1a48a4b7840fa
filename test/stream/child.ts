// A process on one end of a stream, for test/stream/processes.test.ts.
//
//   serve DIR [WINDOW]        serves Tasks on DIR/tasks.sock (streaming with a fixed
//                             flow-control window of WINDOW bytes, if given); prints
//                             "listening <address>". Samples its own memory (run with
//                             --expose-gc) for the "memory" op.
//   slow-read ADDRESS SIZE    downloads SIZE bytes from ADDRESS slowly (a 1 ms timer per
//                             64 KiB chunk), sampling its memory; prints one JSON line
//                             with both processes' figures.
//   read-endless ADDRESS      reads an endless stream from ADDRESS, printing "reading"
//                             after the first chunks, until it is killed.
import { join } from "node:path";
import { connect, fromByteSource, fromValue, listen, setStreamWindow, toValue } from "../../src/index.js";
import { Tasks, tasks } from "./tasks.js";

const gc = (globalThis as { gc?: () => void }).gc;

/** Live memory (after a collection): the JS heap and the ArrayBuffers outside it. */
function live(): { heap: number; buffers: number; rss: number } {
  // Twice: buffers found dead by the first are freed by the time the second is done.
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers, rss: m.rss };
}

/** The largest growth over a baseline, sampled every 200 ms (each sample collects first: costly). */
function sampler() {
  let base = live();
  let peak = { heap: 0, buffers: 0, rss: 0 };
  const timer = setInterval(() => {
    const now = live();
    peak = {
      heap: Math.max(peak.heap, now.heap - base.heap),
      buffers: Math.max(peak.buffers, now.buffers - base.buffers),
      rss: Math.max(peak.rss, now.rss - base.rss),
    };
  }, 200);
  timer.unref();
  return {
    reset() {
      base = live();
      peak = { heap: 0, buffers: 0, rss: 0 };
    },
    peak: () => peak,
  };
}

const [role, arg, size] = process.argv.slice(2);
switch (role) {
  case "serve": {
    if (size !== undefined) setStreamWindow(Number(size));
    const memory = sampler();
    const listener = await listen(`unix:${join(arg!, "tasks.sock")}`, {
      bootstrap: Tasks.server({
        run: (params, ctx) => {
          const op = (fromValue(params.value) as { op?: string }).op;
          if (op === "download") memory.reset();
          if (op === "memory") return { value: toValue(memory.peak()) };
          return tasks.run(params, ctx);
        },
      }),
    });
    console.log(`listening ${listener.address}`);
    break;
  }
  case "slow-read": {
    const session = await connect(arg!);
    const remote = session.bootstrap(Tasks);
    const memory = sampler();
    const { bytes } = await remote.run({ value: toValue({ op: "download", size: Number(size), seed: 5 }) });
    let received = 0;
    const started = performance.now();
    for await (const chunk of fromByteSource(bytes!)) {
      received += chunk.byteLength;
      // The slow consumer: a timer per chunk (at most ~64 MB/s), far slower than the producer.
      await new Promise((r) => setTimeout(r, 1));
    }
    const ms = performance.now() - started;
    bytes!.release();
    const consumer = memory.peak();
    const producer = fromValue((await remote.run({ value: toValue({ op: "memory" }) })).value);
    console.log(JSON.stringify({ received, ms: Math.round(ms), consumer, producer }));
    remote.release();
    await session.close();
    break;
  }
  case "read-endless": {
    const session = await connect(arg!);
    const remote = session.bootstrap(Tasks);
    const { bytes } = await remote.run({ value: toValue({ op: "endless", name: "child-reader" }) });
    let chunks = 0;
    for await (const _ of fromByteSource(bytes!)) {
      if (++chunks === 4) console.log("reading");
      await new Promise((r) => setTimeout(r, 1));
    }
    break;
  }
  default:
    throw new Error(`child.ts: unknown role ${role}`);
}

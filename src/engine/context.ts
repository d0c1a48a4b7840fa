// Serving a call "in the context of" it: a CallContext (schema/engine.capnp)
// that lives as long as the call and the streams it returned.
import { ByteSource, ValueSource } from "../gen/stream.js";
import type { CallContext, Engine } from "../gen/engine.js";
import { interfaceOf } from "../rpc/typed.js";
import type { Capability } from "../rpc/types.js";

/**
 * Runs `serve(context)` with a new CallContext of `engine` (labelled
 * `label` in the hub's log) and ends the context before returning, or, when
 * the results hold ByteSources or ValueSources (top-level fields), once each
 * has been read to its end (or released unread). After that, every engine
 * call through the context fails, saying the context has ended.
 *
 *   run: (params) => withCallContext(peer.engine, "run", async (ctx) => {
 *     await ctx.log({ level: "info", message: "running" });
 *     return { output: toValueSource(rows()) };
 *   })
 */
export async function withCallContext<T>(engine: Engine, label: string, serve: (context: CallContext) => T | Promise<T>): Promise<T> {
  const opened = await engine.callContext({ label });
  const { context, scope } = opened;
  if (!context || !scope) throw new Error("capmesh: Engine.callContext returned no context");
  let open = 1;
  let ended: Promise<void> | null = null;
  const done = () => {
    if (--open === 0) {
      // The scope's release ends the context too; end() says so at once.
      ended = scope.end().then(
        () => scope.release(),
        () => scope.release(),
      );
    }
  };
  try {
    const results = await serve(context);
    if (typeof results === "object" && results !== null) {
      const out = results as Record<string, unknown>;
      for (const key of Object.keys(out)) {
        const source = out[key];
        if (typeof source !== "object" || source === null) continue;
        const iface = interfaceOf(source as Capability);
        if (iface === ValueSource || iface === ByteSource) {
          open++;
          out[key] = watched(source as ValueSource, iface === ValueSource ? ValueSource : ByteSource, once(done));
        }
      }
    }
    return results;
  } finally {
    context.release();
    done();
    // With no stream left open, the context has ended before the call returns:
    // whoever got it cannot slip an engine call in after the results.
    if (ended) await ended;
  }
}

function once(f: () => void): () => void {
  let called = false;
  return () => {
    if (!called) {
      called = true;
      f();
    }
  };
}

/** A source that forwards to `inner` and calls `finished` when its stream is over or it is released. */
function watched(inner: ValueSource | ByteSource, iface: typeof ValueSource | typeof ByteSource, finished: () => void): Capability {
  const server = {
    async pipeTo({ sink }: { sink: unknown }) {
      try {
        // Same shape for both kinds: pipeTo(sink) -> ().
        await (inner as ValueSource).pipeTo({ sink: sink as never });
      } finally {
        finished();
      }
    },
    [Symbol.dispose]() {
      inner.release();
      finished();
    },
  };
  return iface === ValueSource ? ValueSource.server(server) : ByteSource.server(server);
}

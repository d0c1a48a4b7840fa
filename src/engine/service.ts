// The hub's side of the engine (schema/engine.capnp): the Engine each peer
// gets from `Hub.engine`, the CallContexts opened on it, and the line a
// plugin's log and progress calls print in the hub's log.
import { CallContext, ContextScope, Engine, type CallContextServer, type EngineServer, type LogLevel } from "../gen/engine.js";
import type { Value } from "../gen/value.js";
import { writeLogLine } from "../log.js";
import { RpcError } from "../rpc/errors.js";
import type { CallContext as RpcCallContext, Capability } from "../rpc/types.js";
import { fromValue } from "../value/decode.js";
import { toValue } from "../value/encode.js";
import type { Policy, Via } from "../mesh/policy.js";

/** One log or progress line from a plugin, as the hub's `pluginLog` receives it. */
export interface PluginLogLine {
  /** The plugin the engine was asked for ("" for a client's engine). */
  readonly plugin: string;
  /** The peer's proven identity. */
  readonly peer: string;
  readonly level: "debug" | "info" | "warn" | "error";
  readonly message: string;
  /** Structured fields (a record), when given. */
  readonly fields?: unknown;
  /** The call context's label, when the line came through one. */
  readonly call?: string;
  /** For progress lines. */
  readonly progress?: { readonly done: number; readonly total: number };
}

/** Who an engine is for, as an embedding service's `engine` option sees it. */
export interface EnginePeer {
  /** The peer's proven identity ("anonymous" where allowed without one). */
  readonly id: string;
  /** The plugin name the engine was asked for ("" for a client). */
  readonly name: string;
  /** The listener it came in by. */
  readonly via: Via;
}

/**
 * The extension point: returns the capability `Hub.engine` hands `peer`,
 * typically of an interface that extends Engine, served by an object that
 * spreads `base` (the hub's own Engine methods, bound) and adds its own:
 * `(base, peer) => MyEngine.server({ ...base, myMethod: () => ... })`.
 */
export type EngineFactory = (base: EngineServer, peer: EnginePeer) => Engine | Capability;

/** What the engines of one hub share. */
export interface EngineCore {
  readonly policy: Policy;
  /** Configuration sections by plugin name (the `plugins` key). */
  readonly plugins: Readonly<Record<string, unknown>>;
  /** Where plugin log lines go. */
  readonly log: (line: PluginLogLine) => void;
  /** Open call contexts (HubStats.contexts). */
  readonly contexts: Set<object>;
  /** Read by `Engine.env`. */
  readonly environment: NodeJS.ProcessEnv;
}

const LEVELS = ["debug", "info", "warn", "error"] as const;
function levelOf(level: LogLevel): PluginLogLine["level"] {
  if (typeof level === "number") return LEVELS[level] ?? "info";
  return level;
}

/** The default `pluginLog`: a JSON line on stderr (ns capmesh:plugin), shown by `capmesh serve`. */
export function printPluginLine(line: PluginLogLine): void {
  const { level, message, ...rest } = line;
  writeLogLine("capmesh:plugin", level, message, rest, level !== "debug");
}

/** Longest message and label kept in a log line, in characters. */
const MAX_TEXT = 8192;
function clip(s: string): string {
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}… (${s.length - MAX_TEXT} more characters)` : s;
}

function fieldsOf(v: Value | null): unknown {
  if (!v || v.which === "null") return undefined;
  try {
    return fromValue(v);
  } catch (error) {
    return { unreadable: (error as Error).message };
  }
}

/** Forwards a call's cancellation (and an ended context's) to the call the engine makes. */
function signalOf(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const live = signals.filter((s): s is AbortSignal => s !== undefined);
  return live.length <= 1 ? live[0] : AbortSignal.any(live);
}

/**
 * The Engine methods for `peer`, bound (so that `{ ...base, more }` serves
 * them). `connect` is the peer's Hub.connect (same policy). `scope` is set for
 * a CallContext's engine: its log lines carry the label, and its evals stop
 * when it ends.
 */
export function engineMethods(
  core: EngineCore,
  peer: EnginePeer,
  connect: (p: { name: string; waitMs: number }, ctx: RpcCallContext) => Promise<{ cap: Capability }>,
  scope?: { label: string; signal: AbortSignal },
): EngineServer {
  const line = (l: Omit<PluginLogLine, "plugin" | "peer">) =>
    core.log({ plugin: peer.name, peer: peer.id, ...(scope ? { call: scope.label } : {}), ...l });
  return {
    config: () => ({ config: toValue(peer.name === "" ? null : (core.plugins[peer.name] ?? null)) }),
    env: ({ names }) => {
      const env = core.environment;
      const exposed = (name: string) => core.policy.explainRefusal("env", peer.id, peer.via, name, "read the environment entry");
      if (names.length === 0) {
        const entries = Object.keys(env)
          .filter((name) => env[name] !== undefined && exposed(name) === null)
          .sort()
          .map((name) => ({ name, value: env[name]! }));
        return { entries };
      }
      for (const name of names) {
        const refusal = exposed(name);
        if (refusal !== null) throw RpcError.failed(`${refusal}; the hub's policy.env lists the entries each peer may read`);
      }
      return { entries: names.filter((n) => env[n] !== undefined).map((name) => ({ name, value: env[name]! })) };
    },
    connect: (p, ctx) => connect(p, ctx),
    eval: async ({ closure, args, input }, ctx) => {
      if (!closure) throw RpcError.failed("Engine.eval needs a closure");
      const signal = signalOf(ctx.signal, scope?.signal);
      // The params' capabilities are lent for this call; the call below takes references of its own.
      return await closure.call({ args, input }, signal ? { signal } : {});
    },
    log: ({ level, message, fields }) => {
      const f = fieldsOf(fields);
      line({ level: levelOf(level), message: clip(message), ...(f !== undefined ? { fields: f } : {}) });
    },
    progress: ({ message, done, total }) => {
      line({ level: "info", message: clip(message), progress: { done, total } });
    },
    callContext: ({ label }) => openContext(core, peer, connect, clip(label), scope?.signal),
  };
}

/** A new CallContext and the scope that ends it. */
function openContext(
  core: EngineCore,
  peer: EnginePeer,
  connect: Parameters<typeof engineMethods>[2],
  label: string,
  parent?: AbortSignal,
): { context: CallContext; scope: ContextScope } {
  const ended = new AbortController();
  const record = { peer: peer.id, label };
  core.contexts.add(record);
  const end = () => {
    if (ended.signal.aborted) return;
    core.contexts.delete(record);
    parent?.removeEventListener("abort", end);
    ended.abort(RpcError.failed(endedMessage(peer, label)));
  };
  // A context opened through another ends with it at the latest.
  parent?.addEventListener("abort", end, { once: true });
  const inner = engineMethods(core, peer, connect, { label, signal: ended.signal });
  // Every method, inherited ones too, first checks that the context is open.
  const guarded = {} as Record<string, unknown>;
  for (const [name, method] of Object.entries(inner) as [string, (p: unknown, c: RpcCallContext) => unknown][]) {
    guarded[name] = (p: unknown, c: RpcCallContext) => {
      if (ended.signal.aborted) throw RpcError.failed(endedMessage(peer, label));
      return method(p, c);
    };
  }
  const server: CallContextServer = {
    ...(guarded as unknown as EngineServer),
    info: () => {
      if (ended.signal.aborted) throw RpcError.failed(endedMessage(peer, label));
      return { plugin: peer.name, label };
    },
    // Nobody holds the context any more: nothing can use it, so it is over.
    [Symbol.dispose]: end,
  };
  return {
    context: CallContext.server(server),
    scope: ContextScope.server({ end, [Symbol.dispose]: end }),
  };
}

function endedMessage(peer: EnginePeer, label: string): string {
  return (
    `the call context "${label}"${peer.name ? ` of plugin "${peer.name}"` : ""} has ended (its call returned and its streams ended): ` +
    "engine calls made through it now belong to no call; use the plugin's own Engine, or a context of a call still running"
  );
}

/** The Engine capability for `peer`: the hub's, or the embedding service's (`factory`). */
export function engineFor(
  core: EngineCore,
  peer: EnginePeer,
  connect: Parameters<typeof engineMethods>[2],
  factory?: EngineFactory,
): Capability {
  const base = engineMethods(core, peer, connect);
  return factory ? factory(base, peer) : Engine.server(base);
}

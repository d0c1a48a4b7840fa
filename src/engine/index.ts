// The engine (schema/engine.capnp): engine services a hub offers each peer,
// closures, and call contexts.
export { closure, callable, type CallableClosure, type ClosureCall, type ClosureFunction } from "./closure.js";
export { withCallContext } from "./context.js";
export { printPluginLine, type EngineFactory, type EnginePeer, type PluginLogLine } from "./service.js";
export { Engine, Closure, CallContext as EngineCallContext, ContextScope, LogLevel, type EngineServer, type ClosureServer, type CallContextServer as EngineCallContextServer, type EnvEntry } from "../gen/engine.js";

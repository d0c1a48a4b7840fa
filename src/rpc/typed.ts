// The typed API over CapHooks: client proxies generated per interface,
// promises that can be pipelined on, and server objects dispatched by
// method ordinal. Generated code (src/gen) calls `defineInterface`.
import type { Pointer } from "capnp-es";
import type { CapTableReader, CapTableWriter, InterfaceDef, MethodDef, StructCodec } from "../codec/types.js";
import { RpcError, canceledBy, toRpcError } from "./errors.js";
import {
  BrokenHook,
  NULL_CAP_ERROR,
  innermost,
  isTailCall,
  type CallResult,
  type Cancelable,
  type CapHook,
  type PipelineSource,
  type Response,
  type TailCallRequest,
} from "./hook.js";
import {
  capFromResponse,
  LocalServerHook,
  neverAborted,
  OwnedResponse,
  QueuedHook,
  type ServerCallContext,
  type ServerDispatch,
} from "./local.js";
import { badCapIndex, capTableOf, initStructIn, newPayloadMessage, readStructIn, releaseCapTable } from "./payload.js";
import { Codec, readPointer, SchemaTypeError, writePointer } from "../codec/runtime.js";
import type { CallContext, CallOptions, Capability, TailCall } from "./types.js";
import { FlowController } from "./flow.js";
import { releaseInboundMessage } from "../transport/framing.js";
import { registerInterface } from "./registry.js";
import { functionServerFor } from "../codec/function-caps.js";
import { CallQueue } from "./sequential.js";
import type { Message } from "capnp-es";

const kHook = Symbol("capmesh.hook");
const kIface = Symbol("capmesh.iface");

/** Releases a client's hook if the program drops the client without releasing it. */
const safetyNet = new FinalizationRegistry<CapHook>((hook) => {
  try {
    hook.release();
  } catch {
    // Runs outside any caller: nothing could handle an error here.
  }
});

/** Names that would shadow Capability members get a trailing underscore. */
const RESERVED = new Set(["release", "dup", "whenResolved", "then", "catch", "finally", "constructor", "castAs"]);
export function methodPropertyName(name: string): string {
  return RESERVED.has(name) || name.startsWith("$") ? `${name}_` : name;
}

/** The base of every client proxy. */
export class CapabilityClient implements Capability {
  [kHook]: CapHook | null;
  readonly [kIface]: InterfaceDef | null;

  constructor(hook: CapHook, iface: InterfaceDef | null) {
    this[kHook] = hook;
    this[kIface] = iface;
    safetyNet.register(this, hook, this);
  }

  release(): void {
    const hook = this[kHook];
    if (!hook) return;
    this[kHook] = null;
    safetyNet.unregister(this);
    hook.release();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  dup(): this {
    return wrapHook(liveHook(this).addRef(), this[kIface]) as this;
  }

  /**
   * Resolves once this reference no longer points at an unresolved promise;
   * rejects with the exception if it settled broken (as C++'s
   * Capability::Client::whenResolved()), so a broken promise shows without
   * making a call.
   */
  async whenResolved(): Promise<void> {
    let hook = liveHook(this);
    for (;;) {
      // A settled promise may have settled to one still pending (a Level 3
      // handoff being picked up): follow it.
      const next = hook.resolved();
      if (next && next !== hook) {
        hook = next;
        continue;
      }
      const more = hook.whenMoreResolved();
      if (!more) break;
      hook = await more;
    }
    hook = innermost(hook);
    if (hook.brokenReason) throw hook.brokenReason;
  }

  /** A view of this capability as another interface (same reference count). */
  castAs<C>(iface: InterfaceDef & { readonly __client?: C }): C {
    return wrapHook(liveHook(this).addRef(), iface) as C;
  }

  get [Symbol.toStringTag](): string {
    return `Capability ${this[kIface]?.name ?? "(any)"}${this[kHook] ? "" : " (released)"}`;
  }
}

function liveHook(client: CapabilityClient): CapHook {
  const hook = client[kHook];
  if (!hook) throw new RpcError("failed", `this ${client[kIface]?.name ?? "capability"} reference was already released`);
  return hook;
}

/** True once release() was called on this client. */
export function isReleasedClient(client: Capability): boolean {
  return client instanceof CapabilityClient && client[kHook] === null;
}

/** The interface a client is typed as (null for an untyped one, or not a capmesh client). */
export function interfaceOf(client: Capability): InterfaceDef | null {
  return client instanceof CapabilityClient ? client[kIface] : null;
}

/** The engine-level hook behind a client (for tools and the mesh layers). */
export function hookOf(client: Capability): CapHook {
  if (!(client instanceof CapabilityClient)) throw new TypeError("not a capmesh capability client");
  return liveHook(client);
}

const clientClasses = new WeakMap<InterfaceDef, new (hook: CapHook) => CapabilityClient>();

/** Wraps a hook (taking ownership of the reference) in a typed client. */
export function wrapHook(hook: CapHook, iface: InterfaceDef | null): CapabilityClient {
  if (!iface) return new CapabilityClient(hook, null);
  return new (clientClassFor(iface))(hook);
}

function allMethods(iface: InterfaceDef, out = new Map<string, { iface: InterfaceDef; method: MethodDef }>()) {
  for (const method of iface.methods) {
    const name = methodPropertyName(method.name);
    if (!out.has(name)) out.set(name, { iface, method });
  }
  for (const sup of iface.superclasses) allMethods(sup, out);
  return out;
}

function clientClassFor(iface: InterfaceDef): new (hook: CapHook) => CapabilityClient {
  let cls = clientClasses.get(iface);
  if (cls) return cls;
  const Client = class extends CapabilityClient {
    constructor(hook: CapHook) {
      super(hook, iface);
    }
  };
  Object.defineProperty(Client, "name", { value: `${iface.name}Client` });
  for (const [name, { iface: owner, method }] of allMethods(iface)) {
    const fn = method.stream
      ? function (this: CapabilityClient, params?: unknown, opts?: CallOptions) {
          return streamCall(this, owner, method, params, opts);
        }
      : function (this: CapabilityClient, params?: unknown, opts?: CallOptions) {
          return callMethod(this, owner, method, params, opts);
        };
    Object.defineProperty(Client.prototype, name, { value: fn, writable: true, configurable: true });
  }
  clientClasses.set(iface, Client);
  cls = Client;
  return cls;
}

// ---------------------------------------------------------------------------
// Cap tables as the codecs see them

function capWriter(message: Message, moved?: CapabilityClient[]): CapTableWriter {
  return {
    add(value: unknown, iface: InterfaceDef | null): number {
      if (value === null || value === undefined) return -1;
      if (moved && value instanceof CapabilityClient) moved.push(value);
      return capTableOf(message).push(toHook(value, iface)) - 1;
    },
  };
}

/** A new reference to whatever the user put where a capability goes. */
export function toHook(value: unknown, iface: InterfaceDef | null): CapHook {
  if (value instanceof CapabilityClient) return liveHook(value).addRef();
  // A function where the interface takes one (a Closure): served as it says.
  const adapt = typeof value === "function" ? functionServerFor(iface) : undefined;
  if (adapt) return serverHook(adapt(value as () => unknown), iface!);
  if (typeof value === "object" && value !== null) {
    if (!iface) {
      throw new TypeError("a plain object cannot be passed where the schema has an untyped capability; wrap it with Interface.server(obj)");
    }
    return serverHook(value, iface);
  }
  throw new TypeError(`expected a ${iface?.name ?? "capability"} client or a server object, got ${typeof value}`);
}

/** Decoding: clients made here either belong to the receiver, or are borrowed for a call. */
function capReader(message: Message, borrowed: CapabilityClient[] | null): CapTableReader {
  return {
    get(index: number, iface: InterfaceDef | null): unknown {
      const table = capTableOf(message);
      if (index >= table.length) throw badCapIndex(message, index);
      const hook = table[index];
      if (!hook) return null;
      const client = wrapHook(hook.addRef(), iface);
      borrowed?.push(client);
      return client;
    },
  };
}

// ---------------------------------------------------------------------------
// Calls

/** Encodes a struct into an AnyPointer slot (generated codecs skip capnp-es's Struct objects). */
function encodeAt(slot: Pointer, codec: StructCodec<unknown>, value: unknown, caps: CapTableWriter): void {
  if (codec instanceof Codec) writePointer(codec, value ?? {}, slot, caps);
  else codec.encode(value ?? {}, initStructIn(slot, codec.size), caps);
}

/** Decodes the struct an AnyPointer slot points to. */
function decodeAt(slot: Pointer, codec: StructCodec<unknown>, caps: CapTableReader): unknown {
  return codec instanceof Codec ? readPointer(codec, slot, caps) : codec.decode(readStructIn(slot), caps);
}

function encodeCall(hook: CapHook, iface: InterfaceDef, method: MethodDef, params: unknown) {
  const out = hook.newCall(iface.id, method.ordinal);
  try {
    encodeAt(out.content, method.params, params, capWriter(out.message));
  } catch (err) {
    releaseCapTable(out.message);
    throw err;
  }
  return out;
}

function callMethod(
  client: CapabilityClient,
  iface: InterfaceDef,
  method: MethodDef,
  params: unknown,
  opts: CallOptions | undefined,
): RpcPromiseLike<unknown> {
  let result: CallResult;
  try {
    const hook = liveHook(client);
    const failed = flows.get(hook)?.error;
    if (failed) throw failed;
    result = encodeCall(hook, iface, method, params).send(opts);
  } catch (err) {
    return rejectedRpcPromise(err, method.results);
  }
  return rpcPromise(result, method.results, opts?.signal, iface, method);
}

/** Decodes a response into a plain object the caller owns; releases the response. */
function decodeResponse(response: Response, codec: StructCodec<unknown>): unknown {
  try {
    return decodeAt(response.content, codec, capReader(response.message, null));
  } finally {
    response.release();
  }
}

// ---------------------------------------------------------------------------
// Promise pipelining

export interface RpcPromiseLike<T> extends Promise<T> {}

/**
 * What an RpcPromise and its pipeline nodes share. Results that carry
 * capabilities are kept undecoded until someone awaits them: in a pipelined
 * chain nobody awaits the intermediate steps, and their capabilities are
 * then released with the promise instead of each waiting for GC in a client.
 * The promise owns them: awaiting hands them to the caller, disposing the
 * promise releases them. Clients pipelined from it hold references of their own.
 */
interface PipelineRoot {
  /**
   * Until the results arrive; then they answer pipelining themselves, and
   * dropping this lets the question be collected young instead of living
   * as long as a kept result, which only a full GC frees.
   */
  pipeline: PipelineSource | null;
  codec: StructCodec<unknown>;
  /** Arrived results with capabilities, not yet decoded. */
  response: Response | null;
  decoded: boolean;
  value: unknown;
  /** Disposed before being awaited: the results are (or will be, on arrival) released. */
  disposed: boolean;
  /** The call returned (results or exception). */
  settled: boolean;
  /** Cancels the call while it has not returned. */
  canceler: Cancelable | undefined;
  /** For the cancellation error's message. */
  iface: InterfaceDef | null;
  method: MethodDef | null;
  /** The one client per pipelined capability field, released with the promise. */
  clients: Map<string, CapabilityClient> | null;
}

const DISPOSED = "the results of this call were released (its RpcPromise was disposed) before being awaited";

/** Releases the kept results of an RpcPromise dropped without being awaited. */
const unawaited = new FinalizationRegistry<Response>((response) => {
  try {
    response.release();
  } catch {
    // Runs outside any caller: nothing could handle an error here.
  }
});

function materialize(root: PipelineRoot): unknown {
  if (!root.decoded) {
    const response = root.response;
    if (!response) throw new RpcError("failed", DISPOSED);
    root.response = null;
    unawaited.unregister(root);
    root.value = decodeResponse(response, root.codec);
    root.decoded = true;
  }
  return root.value;
}

/** What `arrived` resolves to when the results were kept undecoded. */
const KEPT = Symbol("capmesh.kept");

type RpcPromiseCtor = new (arrived: Promise<unknown>, root: PipelineRoot, signal: AbortSignal | undefined) => RpcPromiseBase;
const promiseClasses = new WeakMap<StructCodec<unknown>, RpcPromiseCtor>();
const nodeClasses = new WeakMap<StructCodec<unknown>, new (root: PipelineRoot, ops: number[], path: string[]) => object>();

class RpcPromiseBase implements Promise<unknown>, Disposable {
  private materialized: Promise<unknown> | null = null;
  constructor(
    /** Resolves to the decoded results, or to KEPT when they wait undecoded in root. */
    private readonly arrived: Promise<unknown>,
    protected readonly root: PipelineRoot,
    private readonly signal: AbortSignal | undefined,
  ) {}
  /** The decoded results (decoded on first use). */
  private results(): Promise<unknown> {
    if (!this.materialized) {
      let p = this.arrived.then((v) => (v === KEPT ? materialize(this.root) : v));
      if (this.signal) p = abortable(p, this.signal);
      this.materialized = p;
    }
    return this.materialized;
  }
  then<A = unknown, B = never>(
    onfulfilled?: ((value: unknown) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    if (this.signal) return this.results().then(onfulfilled, onrejected);
    // One reaction on `arrived`, decoding inside it: awaiting costs no extra hop.
    const root = this.root;
    return this.arrived.then((v) => {
      let value: unknown;
      try {
        value = v === KEPT ? materialize(root) : v;
      } catch (err) {
        if (onrejected) return onrejected(err);
        throw err;
      }
      return (onfulfilled ? onfulfilled(value) : value) as A;
    }, onrejected);
  }
  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<unknown> {
    return this.results().catch(onrejected);
  }
  finally(onfinally?: (() => void) | null): Promise<unknown> {
    return this.results().finally(onfinally);
  }
  /**
   * Releases what the promise holds: the clients read from its capability
   * fields (one per field), and, unless it was awaited, the capabilities in
   * its results, now or when they arrive, instead of at GC. A call that has
   * not returned yet is canceled. Awaiting it afterwards rejects. After an
   * await, the decoded results stay the caller's.
   */
  [Symbol.dispose](): void {
    const root = this.root;
    const pipelined = root.clients !== null && root.clients.size > 0;
    if (root.clients) {
      for (const client of root.clients.values()) client.release();
      root.clients = null;
    }
    if (root.decoded || root.disposed) return;
    root.disposed = true;
    if (!root.settled && root.canceler) {
      // Dropping an unreturned call cancels it, as dropping the promise does
      // in C++: Finish goes out and the server's ctx.signal fires. If
      // capabilities pipelined on it are still held (dup()ed), it runs on.
      const label = root.iface && root.method ? `${root.iface.name}.${root.method.name}` : "the call";
      const reason = new RpcError("failed", `${label} was canceled: its RpcPromise was disposed before the results arrived`);
      if (!pipelined) root.canceler.cancel(reason);
      else root.canceler.abandon?.(reason);
    }
    const response = root.response;
    if (response) {
      root.response = null;
      unawaited.unregister(root);
      response.release();
    }
  }
  get [Symbol.toStringTag](): string {
    return "RpcPromise";
  }
}

function definePipelineGetters(proto: object, codec: StructCodec<unknown>, base: "root" | "node"): void {
  for (const [name, field] of Object.entries(codec.pipeline)) {
    if (name === "then" || name === "catch" || name === "finally") continue;
    Object.defineProperty(proto, name, {
      configurable: true,
      get(this: { root: PipelineRoot; ops?: number[]; path?: string[] }) {
        const ops = base === "root" ? [] : this.ops!;
        const path = base === "root" ? [] : this.path!;
        const root = this.root;
        if (field.kind === "interface") return pipelinedClient(root, [...ops, field.pointer], [...path, name], field.iface);
        const nextOps = field.kind === "struct" ? [...ops, field.pointer] : ops;
        return new (nodeClassFor(field.codec))(root, nextOps, [...path, name]);
      },
    });
  }
}

function nodeClassFor(codec: StructCodec<unknown>) {
  let cls = nodeClasses.get(codec);
  if (!cls) {
    cls = class PipelineNode {
      constructor(
        readonly root: PipelineRoot,
        readonly ops: number[],
        readonly path: string[],
      ) {}
    };
    definePipelineGetters(cls.prototype, codec, "node");
    nodeClasses.set(codec, cls);
  }
  return cls;
}

function promiseClassFor(codec: StructCodec<unknown>) {
  let cls = promiseClasses.get(codec);
  if (!cls) {
    cls = class RpcPromise extends RpcPromiseBase {};
    definePipelineGetters(cls.prototype, codec, "root");
    promiseClasses.set(codec, cls);
  }
  return cls;
}

/**
 * The client for a capability field of a promise: one per field, owned by
 * the promise (released when it is disposed or collected). Reading the
 * field again gives the same client; dup() one to keep it longer.
 */
function pipelinedClient(root: PipelineRoot, ops: number[], path: string[], iface: InterfaceDef | null): CapabilityClient {
  const key = path.join(".");
  const existing = root.clients?.get(key);
  if (existing && existing[kHook]) return existing;
  const client = newPipelinedClient(root, ops, path, iface);
  (root.clients ??= new Map()).set(key, client);
  return client;
}

function newPipelinedClient(root: PipelineRoot, ops: number[], path: string[], iface: InterfaceDef | null): CapabilityClient {
  if (root.response) return wrapHook(capFromResponse(root.response, ops), iface);
  if (root.disposed && !root.decoded) return wrapHook(new BrokenHook(new RpcError("failed", DISPOSED)), iface);
  if (root.decoded) {
    // The results are here: take the capability from them.
    let v: unknown = root.value;
    for (const name of path) v = v == null ? undefined : (v as Record<string, unknown>)[name];
    if (v instanceof CapabilityClient) return v.dup();
    return wrapHook(new BrokenHook(NULL_CAP_ERROR), iface);
  }
  return wrapHook(root.pipeline!.getPipelinedCap(ops), iface);
}

function rpcPromise(
  result: CallResult,
  codec: StructCodec<unknown>,
  signal: AbortSignal | undefined,
  iface: InterfaceDef,
  method: MethodDef,
): RpcPromiseLike<unknown> {
  const root: PipelineRoot = {
    pipeline: result.pipeline,
    codec,
    response: null,
    decoded: false,
    value: undefined,
    disposed: false,
    settled: false,
    canceler: result.canceler,
    iface,
    method,
    clients: null,
  };
  const arrived = result.promise.then((response): unknown => {
    root.settled = true;
    if (capTableOf(response.message).length === 0) {
      root.value = decodeResponse(response, codec);
      root.decoded = true;
      root.pipeline = null;
      return root.value;
    }
    root.pipeline = null;
    if (root.disposed) {
      response.release();
      return KEPT;
    }
    root.response = response;
    unawaited.register(root, response, root);
    return KEPT;
  });
  // A call nobody awaits must not take the process down when it fails.
  arrived.catch(() => {
    root.settled = true;
  });
  return new (promiseClassFor(codec))(arrived, root, signal) as RpcPromiseLike<unknown>;
}

function rejectedRpcPromise(err: unknown, codec: StructCodec<unknown>): RpcPromiseLike<unknown> {
  const error = toRpcError(err);
  const root: PipelineRoot = {
    pipeline: { getPipelinedCap: () => new BrokenHook(error) },
    codec,
    response: null,
    decoded: false,
    value: undefined,
    disposed: false,
    settled: true,
    canceler: undefined,
    iface: null,
    method: null,
    clients: null,
  };
  const arrived = Promise.reject(err instanceof Error ? err : error);
  arrived.catch(() => {});
  return new (promiseClassFor(codec))(arrived, root, undefined) as RpcPromiseLike<unknown>;
}

/** Rejects as soon as the caller aborts, whatever the callee does (saying why: canceledBy). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(canceledBy(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(canceledBy(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Streaming (`-> stream`): flow control by bytes in flight

const flows = new WeakMap<CapHook, FlowController>();

function messageBytes(message: Message): number {
  let total = 0;
  for (const segment of message._capnp.segments) total += segment.byteLength;
  return total;
}

function streamCall(
  client: CapabilityClient,
  iface: InterfaceDef,
  method: MethodDef,
  params: unknown,
  opts: CallOptions | undefined,
): Promise<void> {
  try {
    const hook = liveHook(client);
    let flow = flows.get(hook);
    if (!flow) flows.set(hook, (flow = new FlowController()));
    if (flow.error) return Promise.reject(flow.error);
    const out = encodeCall(hook, iface, method, params);
    const bytes = messageBytes(out.message);
    const result = out.send(opts);
    return flow.track(
      bytes,
      result.promise.then((r) => r.release()),
    );
  } catch (err) {
    return Promise.reject(err);
  }
}

// ---------------------------------------------------------------------------
// Servers

const liveServers = new WeakMap<object, LocalServerHook>();

/** How `Foo.server(impl, options)` serves `impl`. */
export interface ServerOptions {
  /**
   * One call at a time (an actor): calls run in the order they arrive, the
   * next once the previous has settled, so the server's state needs no
   * locks. `true` gives the server object a queue of its own; a `CallQueue`
   * shared by several server objects makes them one actor. A call into it
   * from inside one of its own running calls fails (README, "Many calls at
   * once, or one at a time"). Once sequential, a server object stays so. Default:
   * calls run in parallel.
   */
  sequential?: boolean | CallQueue;
}

/** A new reference to the capability that serves `impl` as `iface`. */
export function serverHook(impl: object, iface: InterfaceDef, options?: ServerOptions): CapHook {
  const existing = liveServers.get(impl);
  if (existing && !existing.isReleased) {
    if (options?.sequential) setQueue(existing, options.sequential);
    return existing.addRef();
  }
  const queue = options?.sequential ? (options.sequential === true ? new CallQueue() : options.sequential) : null;
  const hook = new LocalServerHook(new TypedDispatch(impl, iface), queue);
  liveServers.set(impl, hook);
  return hook;
}

function setQueue(hook: LocalServerHook, wanted: true | CallQueue): void {
  if (hook.sequential === null) hook.sequential = wanted === true ? new CallQueue() : wanted;
  else if (wanted !== true && hook.sequential !== wanted) {
    throw new TypeError(`${hook.server.name} is sequential on another CallQueue already: a server object has one queue`);
  }
}

/**
 * Makes the server object behind `cap` sequential on `queue` (joinMesh's and
 * listen's `sequential: true`), unless it is sequential already. `cap` must
 * be served by this process: a peer's capability cannot be made sequential
 * here.
 */
export function makeSequential(cap: Capability, queue: CallQueue, where: string): void {
  const hook = innermost(hookOf(cap));
  if (!(hook instanceof LocalServerHook)) {
    throw new TypeError(
      `${where}: sequential applies to capabilities served by this process (Foo.server(impl)); ` +
        `this one is ${hook.brokenReason ? "broken" : "another vat's or not resolved yet"}`,
    );
  }
  if (hook.sequential === null) hook.sequential = queue;
}

type MethodTable = Map<bigint, Map<number, MethodDef>>;
const methodTables = new WeakMap<InterfaceDef, MethodTable>();

function methodTableFor(iface: InterfaceDef): MethodTable {
  let table = methodTables.get(iface);
  if (table) return table;
  table = new Map();
  const visit = (def: InterfaceDef) => {
    if (table!.has(def.id)) return;
    table!.set(def.id, new Map(def.methods.map((m) => [m.ordinal, m])));
    for (const sup of def.superclasses) visit(sup);
  };
  visit(iface);
  methodTables.set(iface, table);
  return table;
}

class TypedDispatch implements ServerDispatch {
  private readonly table: MethodTable;
  constructor(
    readonly impl: object,
    readonly iface: InterfaceDef,
  ) {
    this.table = methodTableFor(iface);
  }

  get name(): string {
    return this.iface.name;
  }

  async dispatch(
    interfaceId: bigint,
    methodId: number,
    params: { message: Message; content: Pointer },
    ctx: ServerCallContext,
  ): Promise<Response | TailCallRequest> {
    const methods = this.table.get(interfaceId);
    if (!methods) {
      throw RpcError.unimplemented(
        `${this.iface.name} does not implement interface 0x${interfaceId.toString(16)} (method ${methodId})`,
      );
    }
    const method = methods.get(methodId);
    if (!method) throw RpcError.unimplemented(`${this.iface.name} has no method @${methodId} in interface 0x${interfaceId.toString(16)}`);
    const fn = (this.impl as Record<string, unknown>)[methodPropertyName(method.name)];
    if (typeof fn !== "function") {
      throw RpcError.unimplemented(`method ${this.iface.name}.${method.name} is not implemented by this server`);
    }
    // Capabilities in params are lent for the duration of the call, as in
    // the C++ API: a server that keeps one calls dup().
    const borrowed: CapabilityClient[] = [];
    try {
      const decoded = decodeAt(params.content, method.params, capReader(params.message, borrowed));
      // Every method gets its context, whatever its declared arity: a method
      // written `(p = {}, ctx)` or `(...args)` has a length below 2.
      let returned: unknown = fn.call(this.impl, decoded, new ServerContext(ctx));
      if (returned instanceof Promise) returned = await returned;
      if (isTailCall(returned)) return returned;
      const { message, content } = ctx.allocResults ? ctx.allocResults() : newPayloadMessage();
      // Capabilities a server returns are moved into the results (as in the
      // C++ API): the server's clients are released once encoded. A server
      // that keeps one returns cap.dup().
      const moved: CapabilityClient[] = [];
      try {
        // A method whose results are empty ignores what its implementation
        // happens to return (`(p) => log.push(p.text)` returns a number).
        if (!hasNoFields(method.results)) encodeAt(content, method.results, returned, capWriter(message, moved));
      } catch (err) {
        releaseCapTable(message);
        throw misfitResults(err, this.iface, method);
      }
      for (const client of moved) client.release();
      return new OwnedResponse(message, content);
    } finally {
      for (const c of borrowed) c.release();
      // A `-> stream` method's params live until it returns (README,
      // "Streaming"): their large segments serve the next frames.
      if (method.stream) releaseInboundMessage(params.message);
    }
  }

  released(): void {
    liveServers.delete(this.impl);
    const dispose = (this.impl as { [Symbol.dispose]?: () => void })[Symbol.dispose];
    if (typeof dispose === "function") {
      try {
        dispose.call(this.impl);
      } catch {
        // A failing dispose must not break the connection that released it.
      }
    }
  }
}

/** True for a generated codec of a struct without fields (`-> ()`). */
function hasNoFields(codec: StructCodec<unknown>): boolean {
  return codec instanceof Codec && codec.fields !== undefined && codec.fields.length === 0;
}

/**
 * The exception for results the server returned that do not fit the schema:
 * the caller learns which method and field, and the connection lives on.
 */
function misfitResults(err: unknown, iface: InterfaceDef, method: MethodDef): unknown {
  if (!(err instanceof SchemaTypeError)) return err;
  const where = err.path.replace(/^\./, "");
  return new RpcError(
    "failed",
    `capmesh: ${iface.name}.${method.name} returned results that do not fit its schema: ` +
      `${where === "" ? "" : `${where}: `}${err.problem}`,
  );
}

/** The CallContext a server method sees. */
class ServerContext implements CallContext {
  constructor(private readonly hints: ServerCallContext) {}
  get signal(): AbortSignal {
    return this.hints.signal ?? neverAborted;
  }
  get peer(): unknown {
    return this.hints.peer;
  }
  tailCall(target: Capability, method: string, params?: unknown): TailCall {
    return prepareTailCall(target, method, params);
  }
}

function prepareTailCall(target: Capability, methodName: string, params?: unknown): TailCallRequest {
  if (!(target instanceof CapabilityClient) || !target[kIface]) {
    throw new TypeError("ctx.tailCall needs a typed capability client as its target");
  }
  const found = allMethods(target[kIface]!).get(methodName);
  if (!found || found.method.stream) throw new TypeError(`${target[kIface]!.name} has no method ${methodName} to tail-call`);
  const { message, content } = newPayloadMessage();
  try {
    encodeAt(content, found.method.params, params, capWriter(message));
  } catch (err) {
    releaseCapTable(message);
    throw err;
  }
  return {
    tail: true,
    target: liveHook(target).addRef(),
    interfaceId: found.iface.id,
    methodId: found.method.ordinal,
    params: { message, content },
  };
}

// ---------------------------------------------------------------------------
// Interfaces

export type InterfaceHandle<C extends Capability, S> = InterfaceDef & {
  /**
   * Serves `impl` as this interface: a new capability to it. Calls run in
   * parallel, unless `{ sequential: true }` (one at a time, in arrival order).
   */
  server(impl: S, options?: ServerOptions): C;
  /** Wraps an engine hook (taking ownership). */
  wrap(hook: CapHook): C;
  /**
   * A capability that stands for one not known yet: calls queue until the
   * promise settles (and fail if it rejects). Sent to a peer, it travels as
   * a promise (senderPromise) and the peer is told when it resolves.
   */
  fromPromise(promise: Promise<C>): C;
  readonly __client?: C;
  readonly __server?: S;
};

export function defineInterface<C extends Capability, S>(def: InterfaceDef): InterfaceHandle<C, S> {
  registerInterface(def);
  const handle = def as InterfaceHandle<C, S>;
  Object.defineProperty(handle, "server", {
    value: (impl: S, options?: ServerOptions) => wrapHook(serverHook(impl as object, def, options), def) as unknown as C,
  });
  Object.defineProperty(handle, "wrap", { value: (hook: CapHook) => wrapHook(hook, def) as unknown as C });
  Object.defineProperty(handle, "fromPromise", {
    value: (promise: Promise<C>) => {
      const hook = new QueuedHook(
        promise.then((client) => {
          // The promise's value is handed over: its reference becomes ours.
          const h = hookOf(client as unknown as Capability).addRef();
          (client as unknown as Capability).release();
          return h;
        }),
      );
      return wrapHook(hook, def) as unknown as C;
    },
  });
  return handle;
}

// ---------------------------------------------------------------------------
// Dynamic calls, for tools that have no generated code

export interface DynamicResponse extends Disposable {
  /** The results struct's AnyPointer slot. */
  readonly content: Pointer;
  /** Reads capabilities out of the results (each a new reference). */
  readonly caps: CapTableReader;
  release(): void;
}

/**
 * Calls a method by name with params as a plain object, on any capability,
 * given the interface's schema (`Foo` from generated code): for tools that
 * only know what to call at run time. Resolves to the results as a plain
 * object (capabilities in it are the caller's to release).
 */
export function dynamicCall(
  target: Capability,
  iface: InterfaceDef,
  method: string,
  params?: Record<string, unknown>,
  opts?: CallOptions,
): Promise<Record<string, unknown>>;
/**
 * The low-level form: interface and method by ID, params written by
 * `writeParams` into the Call, results handed over undecoded.
 */
export function dynamicCall(
  target: Capability,
  interfaceId: bigint,
  methodId: number,
  writeParams: (content: Pointer, caps: CapTableWriter) => void,
  opts?: CallOptions,
): Promise<DynamicResponse>;
export function dynamicCall(
  target: Capability,
  ifaceOrId: InterfaceDef | bigint,
  methodOrId: string | number,
  paramsOrWriter?: Record<string, unknown> | ((content: Pointer, caps: CapTableWriter) => void),
  opts?: CallOptions,
): Promise<unknown> {
  if (typeof ifaceOrId === "bigint") {
    return rawDynamicCall(target, ifaceOrId, methodOrId as number, paramsOrWriter as (c: Pointer, w: CapTableWriter) => void, opts);
  }
  return callByName(target, ifaceOrId, methodOrId as string, paramsOrWriter as Record<string, unknown> | undefined, opts);
}

function callByName(
  target: Capability,
  iface: InterfaceDef,
  name: string,
  params: Record<string, unknown> | undefined,
  opts: CallOptions | undefined,
): Promise<Record<string, unknown>> {
  const found = allMethods(iface).get(methodPropertyName(name)) ?? allMethods(iface).get(name);
  if (!found) {
    const known = [...allMethods(iface).values()].map((m) => m.method.name).join(", ");
    return Promise.reject(new TypeError(`${iface.name} has no method "${name}" (its methods: ${known})`));
  }
  const { iface: owner, method } = found;
  if (method.stream) {
    return streamCall(target as CapabilityClient, owner, method, params, opts).then(() => ({}));
  }
  if (!(target instanceof CapabilityClient)) return Promise.reject(new TypeError("dynamicCall needs a capmesh capability client"));
  const promise = callMethod(target, owner, method, params, opts);
  return Promise.resolve(promise) as Promise<Record<string, unknown>>;
}

async function rawDynamicCall(
  target: Capability,
  interfaceId: bigint,
  methodId: number,
  writeParams: (content: Pointer, caps: CapTableWriter) => void,
  opts?: CallOptions,
): Promise<DynamicResponse> {
  const hook = hookOf(target);
  const out = hook.newCall(interfaceId, methodId);
  try {
    writeParams(out.content, capWriter(out.message));
  } catch (err) {
    releaseCapTable(out.message);
    throw err;
  }
  const result = out.send(opts);
  const response = await (opts?.signal ? abortable(result.promise, opts.signal) : result.promise);
  const release = () => response.release();
  return {
    content: response.content,
    caps: capReader(response.message, null),
    release,
    [Symbol.dispose]: release,
  };
}

export type { Capability };

// The `Hub` capability each peer gets (schema/mesh.capnp), bound to the
// identity the handshake proved: every request is checked against the
// policy and the quotas as that identity.
import { RpcError } from "../rpc/errors.js";
import type { CallContext, Capability } from "../rpc/types.js";
import type { PeerInfo } from "../rpc/vat-network.js";
import type { Session } from "../rpc/system.js";
import {
  Admin,
  Hub,
  Registration,
  Watch,
  protocolVersion,
  type Entry,
  type Hello,
  type HubServer,
  type HubStats,
  type Observer,
  type PluginInfo,
  type Provider,
  type RegistrationServer,
  type WatchServer,
} from "../gen/mesh.js";
import { nameProblem } from "./names.js";
import { engineFor, type EngineCore, type EngineFactory } from "../engine/service.js";
import type { Policy, Via } from "./policy.js";
import { MeshRegistry, entryOf, type Registered, type Watcher } from "./registry.js";

/** Mesh protocol versions this hub serves. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [protocolVersion];
/** Optional protocol features this hub implements (Hello.features). */
export const HUB_FEATURES: readonly string[] = ["watch", "provider", "lookup", "admin", "engine"];
/** The longest a connect() may wait for a name. */
export const MAX_CONNECT_WAIT_MS = 10 * 60 * 1000;

/** What every peer's Hub shares: the registry, the policy, who the hub is. */
export interface HubCore {
  readonly registry: MeshRegistry;
  readonly policy: Policy;
  readonly hubId: string;
  readonly software: string;
  stats(): HubStats;
  /** Optional features the hub adds to HUB_FEATURES ("direct-paths" when on). */
  readonly features: readonly string[];
  /** Where the hub listens for direct connections (its Hello.addresses). */
  addresses(): readonly string[];
  /** A peer's Hello arrived over `session` (records its direct-path addresses). */
  greeted(session: Session, hello: Hello): void;
  /** What every peer's Engine shares (src/engine/service.ts). */
  readonly engine: EngineCore;
  /** The embedding service's Engine, if it extends it. */
  readonly engineFactory?: EngineFactory;
}

function refuse(reason: string | null): void {
  if (reason !== null) throw RpcError.failed(reason);
}

/** A new `Hub` capability for `peer`, which came in `via` over `session`. */
export function hubFor(core: HubCore, peer: PeerInfo, session: Session, via: Via): Hub {
  return Hub.server(new HubService(core, peer, session, via));
}

class HubService implements HubServer {
  readonly #id: string;

  constructor(
    private readonly core: HubCore,
    peer: PeerInfo,
    private readonly session: Session,
    private readonly via: Via,
  ) {
    // An anonymous peer (plain Cap'n Proto, where allowed) acts as "anonymous".
    this.#id = peer.authenticated ? peer.id : "anonymous";
  }

  hello({ hello }: { hello: Hello }) {
    // 0 is a Hello that leaves the version out: version 1, as skipping hello is.
    if (hello.protocolVersion !== 0 && !SUPPORTED_PROTOCOL_VERSIONS.includes(hello.protocolVersion)) {
      throw RpcError.failed(
        `mesh protocol version ${hello.protocolVersion} is not supported by this hub, which speaks ` +
          `${SUPPORTED_PROTOCOL_VERSIONS.join(", ")}: upgrade the side that is older`,
      );
    }
    try {
      this.core.greeted(this.session, hello);
    } catch (error) {
      throw RpcError.failed(`hello: ${(error as Error).message}`);
    }
    return {
      hub: {
        protocolVersion,
        features: [...HUB_FEATURES, ...this.core.features],
        software: this.core.software,
        addresses: [...this.core.addresses()],
      },
      hubId: this.core.hubId,
      you: this.#id,
    };
  }

  register(p: { name: string; cap: Capability | null; provider: Provider | null; info: PluginInfo; replace: boolean }) {
    const { name, info } = p;
    refuse(nameProblem(name));
    if ((p.cap === null) === (p.provider === null)) {
      throw RpcError.failed(`register "${name}": give exactly one of cap and provider`);
    }
    if (info.protocolVersion !== 0 && !SUPPORTED_PROTOCOL_VERSIONS.includes(info.protocolVersion)) {
      throw RpcError.failed(
        `register "${name}": mesh protocol version ${info.protocolVersion} is not supported by this hub, which speaks ` +
          `${SUPPORTED_PROTOCOL_VERSIONS.join(", ")}: upgrade the side that is older`,
      );
    }
    const policy = this.core.policy;
    refuse(policy.explainRefusal("register", this.#id, this.via, name));
    const registry = this.core.registry;
    const holder = registry.get(name);
    if (holder && !p.replace) {
      throw RpcError.failed(`the name "${name}" is taken (by ${holder.id}); choose another, or register with replace where the policy allows it`);
    }
    // An identity may always replace its own registration (a plugin back from a dropped connection).
    if (holder && holder.id !== this.#id) refuse(policy.explainRefusal("replace", this.#id, this.via, name));
    if (!holder && registry.countHeldBy(this.#id) >= policy.quotas.registrations) {
      throw RpcError.failed(policy.quotaRefusal("registrations", this.#id));
    }

    let end!: (reason: string) => void;
    const ended = new Promise<string>((resolve) => (end = resolve));
    const registered: Registered = {
      name,
      id: this.#id,
      info,
      since: Date.now(),
      target: p.cap ? { cap: p.cap.dup() } : { provider: p.provider!.dup() },
      ended,
      end,
    };
    if (holder) {
      const reason = `replaced by ${this.#id}`;
      holder.end(reason);
      registry.remove(holder, reason);
    }
    registry.add(registered);
    return { registration: Registration.server(new RegistrationImpl(registry, registered)) };
  }

  list() {
    refuse(this.core.policy.explainRefusal("watch", this.#id, this.via, undefined, "list"));
    return { plugins: this.core.registry.list() };
  }

  watch({ observer }: { observer: Observer | null }) {
    if (!observer) throw RpcError.failed("watch needs an observer capability");
    const policy = this.core.policy;
    refuse(policy.explainRefusal("watch", this.#id, this.via));
    const registry = this.core.registry;
    if (registry.watchersOf(this.#id) >= policy.quotas.watchers) {
      throw RpcError.failed(policy.quotaRefusal("watchers", this.#id));
    }
    const watcher: Watcher = { observer: observer.dup(), id: this.#id, backlog: 0, dropped: false, onDrop: () => {} };
    registry.watch(watcher);
    return { watch: Watch.server(new WatchImpl(() => registry.unwatch(watcher))) };
  }

  async connect({ name, waitMs }: { name: string; waitMs: number }, ctx: CallContext) {
    refuse(nameProblem(name));
    refuse(this.core.policy.explainRefusal("connect", this.#id, this.via, name));
    const registered = await this.#find(name, waitMs, ctx.signal);
    if ("cap" in registered.target) return { cap: registered.target.cap.dup() };
    // Per-caller grants: the provider learns who asks, as the hub proved it.
    const { cap } = await registered.target.provider.provide({ caller: this.#id });
    if (!cap) throw RpcError.failed(`the plugin "${name}" provided nothing for ${this.#id}`);
    return { cap };
  }

  async lookup({ name }: { name: string }, ctx: CallContext): Promise<{ entry: Entry }> {
    refuse(nameProblem(name));
    refuse(this.core.policy.explainRefusal("watch", this.#id, this.via, undefined, "lookup"));
    return { entry: entryOf(await this.#find(name, 0, ctx.signal)) };
  }

  admin() {
    refuse(this.core.policy.explainRefusal("admin", this.#id, this.via));
    return { admin: Admin.server({ stats: () => ({ stats: this.core.stats() }) }) };
  }

  engine({ name }: { name: string }) {
    // A plugin's engine speaks for its name: its holder's, or that of whoever may register it.
    if (name !== "") {
      refuse(nameProblem(name));
      if (this.core.registry.get(name)?.id !== this.#id) {
        const refusal = this.core.policy.explainRefusal("register", this.#id, this.via, name);
        if (refusal !== null) throw RpcError.failed(`${refusal}, and it does not hold "${name}": no engine for that plugin`);
      }
    }
    const peer = { id: this.#id, name, via: this.via };
    const connect = (p: { name: string; waitMs: number }, ctx: CallContext) => this.connect(p, ctx);
    return { engine: engineFor(this.core.engine, peer, connect, this.core.engineFactory) };
  }

  #find(name: string, waitMs: number, signal: AbortSignal): Promise<Registered> {
    const registered = this.core.registry.get(name);
    if (registered) return Promise.resolve(registered);
    if (!(waitMs > 0)) return Promise.reject(RpcError.failed(`no plugin named "${name}" is registered`));
    return this.core.registry.waitFor(name, Math.min(waitMs, MAX_CONNECT_WAIT_MS), signal);
  }
}

/** A registered name, as its holder sees it: releasing it unregisters. */
class RegistrationImpl implements RegistrationServer {
  constructor(
    private readonly registry: MeshRegistry,
    private readonly registered: Registered,
  ) {}

  update({ info }: { info: PluginInfo }): void {
    if (!this.registry.update(this.registered, info)) {
      throw RpcError.failed(`the registration of "${this.registered.name}" has ended`);
    }
  }

  async ended(_params: unknown, ctx: CallContext): Promise<{ reason: string }> {
    // A call still waiting holds this capability: it must give up when the
    // holder cancels it or disconnects, or the name would outlive its holder.
    const { signal } = ctx;
    signal.throwIfAborted();
    let onAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason ?? RpcError.failed("Registration.ended was canceled"));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return { reason: await Promise.race([this.registered.ended, aborted]) };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  [Symbol.dispose](): void {
    this.registry.remove(this.registered, "released");
    this.registered.end("released");
  }
}

/** An open watch: releasing it stops the events. */
class WatchImpl implements WatchServer {
  constructor(private readonly stop: () => void) {}
  [Symbol.dispose](): void {
    this.stop();
  }
}

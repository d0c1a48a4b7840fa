// Vats for the in-process Level 3 tests (test/rpc/level3-*.test.ts): each an
// RpcSystem with a SocketThirdParty on its own real unix socket, serving a
// Counter that records who called it. `link` dials one from another and has
// both record that the other takes part in direct paths.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { generateIdentity, type Identity } from "../../../src/auth/identity.js";
import { SocketNetwork, type AcceptOptions } from "../../../src/network/socket-network.js";
import { SocketThirdParty, type SocketThirdPartyOptions, type ThirdPartyLimits } from "../../../src/network/third-party.js";
import { RpcSystem } from "../../../src/rpc/system.js";
import type { CallContext, Capability } from "../../../src/rpc/types.js";
import type { InterfaceDef } from "../../../src/codec/types.js";
import type { PeerInfo } from "../../../src/rpc/vat-network.js";
import type { Cleanup } from "../../auth/helpers.js";
import { eventually } from "./raw-peer.js";
import { Counter, CounterImpl } from "../fixtures.js";

/** Every vat's bootstrap: a Counter that records who called add(), keeps what echo() gets, and hands out `offer()` from next(). */
export class Node extends CounterImpl {
  callers: string[] = [];
  kept: Counter[] = [];
  offer: (() => Counter) | null = null;
  override add(p: { delta: bigint }, ctx?: CallContext) {
    this.callers.push((ctx?.peer as PeerInfo | undefined)?.id ?? "?");
    return super.add(p);
  }
  override next() {
    return this.offer ? { counter: this.offer() } : super.next();
  }
  override echo({ cap }: { cap: Counter | null }) {
    if (cap) this.kept.push(cap.dup());
    return { cap: null };
  }
  releaseKept(): void {
    for (const k of this.kept.splice(0)) k.release();
  }
}

export interface Vat {
  readonly name: string;
  readonly identity: Identity;
  readonly address: string;
  readonly system: RpcSystem;
  readonly tp: SocketThirdParty;
  readonly node: Node;
}

export interface VatOptions {
  unsafeNoEmbargo?: boolean;
  /** Limits, clock and policy of the vat's SocketThirdParty (tests shrink the times). */
  thirdParty?: ThirdPartyLimits & Pick<SocketThirdPartyOptions, "allowIntroduction" | "now">;
  /** Who may connect to the vat's listener (checked after the handshake). */
  authorize?: AcceptOptions["authorize"];
  /** A Level 1 vat: its RpcSystem gets no thirdParty (`tp` exists but is not attached). */
  level1?: boolean;
  /** What the vat offers as bootstrap instead of its recording Counter (called when a peer asks). */
  offer?: () => Capability;
}

/** A vat listening on a fresh socket in `dir`; closed (and what its Counter kept released) by `cleanup`. */
export async function vat(name: string, dir: string, cleanup: Cleanup, options: VatOptions = {}): Promise<Vat> {
  const identity = generateIdentity();
  const address = `unix:${join(dir, `${name}-${randomBytes(4).toString("hex")}.sock`)}`;
  const network = new SocketNetwork({ identity }, { address, ...(options.authorize ? { authorize: options.authorize } : {}) });
  const tp = new SocketThirdParty({ ...options.thirdParty, publicKey: identity.publicKey, network, addresses: [address] });
  const node = new Node();
  const system = new RpcSystem(network, options.offer ? () => options.offer!() : Counter.server(node), {
    ...(options.level1 ? {} : { thirdParty: tp }),
    _unsafeNoEmbargo: options.unsafeNoEmbargo ?? false,
  });
  await system.accept();
  cleanup.add(async () => {
    node.releaseKept();
    await system.close();
  });
  return { name, identity, address, system, tp, node };
}

/** `from` dials `to` and gets its bootstrap; both sides record that the other takes part in direct paths. */
export async function link(from: Vat, to: Vat, cleanup: Cleanup): Promise<Counter> {
  const boot = await linkAs(from, to, cleanup, Counter);
  await boot.add({ delta: 0n });
  to.node.callers.length = 0;
  to.node.log.length = 0;
  return boot;
}

/** As link, for a vat whose bootstrap is `iface` (made with `offer`). */
export async function linkAs<C extends Capability>(from: Vat, to: Vat, cleanup: Cleanup, iface: InterfaceDef & { readonly __client?: C }): Promise<C> {
  const session = await from.system.connect(to.address, { remoteKey: to.identity.id });
  const boot = session.bootstrap(iface);
  cleanup.add(() => boot.release());
  await eventually(() => to.system.liveConnection(from.identity.id) !== null, () => `${to.name} to adopt ${from.name}'s connection`);
  from.tp.advertise(from.system.liveConnection(to.identity.id)!, { level3: true, addresses: [to.address] });
  to.tp.advertise(to.system.liveConnection(from.identity.id)!, { level3: true, addresses: [from.address] });
  return boot;
}

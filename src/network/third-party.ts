// rpc.capnp Level 3 for the socket network: who may be introduced to whom,
// the contacts an introducer writes, the recipient's dial to the host (by
// the host's key: the secret handshake fails on any other), and the host's
// table of open provisions that Accepts are matched against. The wire
// types are schema/network.capnp's; the rules are in docs/design/level3.md
// section 3.4. One SocketThirdParty serves a whole vat (every listener and
// dial of it), through the vat it is attached to (RpcSystem).
import { randomBytes } from "node:crypto";
import type { Pointer } from "capnp-es";
import { formatId } from "../auth/identity.js";
import { noCaps, readPointer, writePointer } from "../codec/runtime.js";
import {
  ThirdPartyCompletion$codec,
  ThirdPartyToAwait$codec,
  ThirdPartyToContact$codec,
  type ThirdPartyCompletion,
} from "../gen/network.js";
import { logger } from "../log.js";
import { RpcError } from "../rpc/errors.js";
import type { NetworkConnection, ThirdPartyNetwork, VatNetwork } from "../rpc/vat-network.js";

const log = logger("capmesh:handoff");

/** Limits and timeouts (docs/design/level3.md 3.4.6); tests shrink the times. */
export interface ThirdPartyLimits {
  /** How long a contact the introducer writes stays valid (default 30000 ms). */
  provisionTtlMs?: number;
  /** Host: allowance for the introducer's clock (default 5000 ms). */
  clockSkewMs?: number;
  /** Host: a provision never lives longer than this, whatever the contact says (default 120000 ms). */
  maxProvisionTtlMs?: number;
  /** Host: how long an Accept waits for its Provide (default 10000 ms). */
  acceptWaitMs?: number;
  /** Recipient: one dial attempt, connect and handshake (default 3000 ms). */
  dialTimeoutMs?: number;
  /** Recipient: all attempts for one contact (default 10000 ms, and never past its expiry). */
  dialBudgetMs?: number;
  /** Recipient: dials in flight at once; more wait (default 64). */
  maxConcurrentDials?: number;
  /** Host: open provisions introduced by one vat (default 4096). */
  maxProvisionsPerIntroducer?: number;
  /** Host: open provisions for one recipient (default 1024). */
  maxProvisionsPerRecipient?: number;
  /** Host: Accepts waiting for their Provide per connection (default 256). */
  maxWaitingAccepts?: number;
  /** Host: nonces of closed provisions remembered to name replays (default 8192). */
  recentNonces?: number;
}

export interface SocketThirdPartyOptions extends ThirdPartyLimits {
  /** This vat's long-term key (its identity's publicKey). */
  publicKey: Uint8Array;
  /** Dials a host: `connect(address, { remoteKey, signal })` (a SocketNetwork with this vat's identity). */
  network: Pick<VatNetwork, "connect">;
  /** Where this vat listens for direct connections, most preferred first (sent in completions). */
  addresses?: readonly string[];
  /** Policy: may `recipientId` be handed capabilities hosted by `hostId`? Default: yes. */
  allowIntroduction?: (recipientId: string, hostId: string) => boolean;
  /** The clock, in ms since the epoch (tests). */
  now?: () => number;
}

/** What a vat offers its network's Level 3 (RpcSystem implements it). */
export interface ThirdPartyVat {
  /** The preferred live connection to `peerId`, or null. */
  liveConnection(peerId: string): NetworkConnection | null;
  /** True while `net` is open and not superseded by another connection to the same vat. */
  isPreferred(net: NetworkConnection): boolean;
  /** Takes a connection this network dialled (both ends then have a session). */
  adopt(net: NetworkConnection): void;
  /** Provides this vat sent over `net` that are still open (their vines not yet released). */
  openProvides(net: NetworkConnection): number;
}

/** What the directory knows about the peer of one connection. */
export interface DirectoryEntry {
  /** The peer takes part in Level 3 (it advertised direct paths). */
  level3: boolean;
  /** Where the peer listens for direct connections. */
  addresses: readonly string[];
}

const KEY_BYTES = 32;
const NONCE_BYTES = 32;
const MAX_ADDRESSES = 16;
const MAX_ADDRESS_CHARS = 1024;

type ProvisionState = { kind: "open" } | { kind: "claimed" } | { kind: "refused"; reason: string };

interface Provision {
  readonly nonce: string;
  readonly from: NetworkConnection;
  readonly introducer: string;
  readonly recipient: string;
  readonly deadline: number;
  readonly value: unknown;
  state: ProvisionState;
  /** Counted in the per-introducer and per-recipient bounds. */
  counted: boolean;
}

interface Waiter {
  readonly nonce: string;
  readonly from: NetworkConnection;
  readonly completion: ThirdPartyCompletion;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: RpcError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Thrown inside a check: becomes the Accept's exception. */
function refuse(message: string): RpcError {
  return RpcError.failed(message);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A provision's name in messages: the first bytes of its nonce. */
function shortNonce(nonce: string): string {
  return nonce.slice(0, 16);
}

function checkKey(bytes: Uint8Array, field: string): void {
  if (bytes.byteLength !== KEY_BYTES) throw new Error(`${field} is ${bytes.byteLength} bytes, not a ${KEY_BYTES}-byte ed25519 key`);
}

function checkNonce(bytes: Uint8Array): void {
  if (bytes.byteLength !== NONCE_BYTES) throw new Error(`nonce is ${bytes.byteLength} bytes, not ${NONCE_BYTES}`);
}

function checkAddresses(addresses: readonly string[]): void {
  if (addresses.length > MAX_ADDRESSES) throw new Error(`${addresses.length} addresses, more than ${MAX_ADDRESSES}`);
  for (const a of addresses) {
    if (a.length > MAX_ADDRESS_CHARS) throw new Error(`an address of ${a.length} characters, more than ${MAX_ADDRESS_CHARS}`);
  }
}

/** Unix sockets first (same machine), then the rest in the host's order. */
function dialOrder(addresses: readonly string[]): string[] {
  return [...addresses.filter((a) => a.startsWith("unix:")), ...addresses.filter((a) => !a.startsWith("unix:"))];
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class SocketThirdParty implements ThirdPartyNetwork {
  private vat: ThirdPartyVat | null = null;
  readonly publicKey: Uint8Array;
  readonly id: string;
  addresses: readonly string[];
  private readonly limits: Required<ThirdPartyLimits>;
  private readonly now: () => number;
  private readonly directory = new WeakMap<NetworkConnection, DirectoryEntry>();

  // Host side.
  private readonly provisions = new Map<string, Provision>();
  private readonly provisionsFrom = new Map<NetworkConnection, Set<Provision>>();
  private readonly perIntroducer = new Map<string, number>();
  private readonly perRecipient = new Map<string, number>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly waitingOn = new Map<NetworkConnection, Set<Waiter>>();
  /** Nonces of provisions already closed, oldest first, with when they closed. */
  private readonly recent = new Map<string, number>();


  // Recipient side.
  private readonly dials = new Map<string, Promise<NetworkConnection>>();
  private dialsRunning = 0;
  private readonly dialQueue: Array<() => void> = [];

  constructor(private readonly options: SocketThirdPartyOptions) {
    checkKey(options.publicKey, "publicKey");
    this.publicKey = options.publicKey;
    this.id = formatId(options.publicKey);
    this.addresses = options.addresses ?? [];
    checkAddresses(this.addresses);
    this.now = options.now ?? Date.now;
    this.limits = {
      provisionTtlMs: options.provisionTtlMs ?? 30_000,
      clockSkewMs: options.clockSkewMs ?? 5000,
      maxProvisionTtlMs: options.maxProvisionTtlMs ?? 120_000,
      acceptWaitMs: options.acceptWaitMs ?? 10_000,
      dialTimeoutMs: options.dialTimeoutMs ?? 3000,
      dialBudgetMs: options.dialBudgetMs ?? 10_000,
      maxConcurrentDials: options.maxConcurrentDials ?? 64,
      maxProvisionsPerIntroducer: options.maxProvisionsPerIntroducer ?? 4096,
      maxProvisionsPerRecipient: options.maxProvisionsPerRecipient ?? 1024,
      maxWaitingAccepts: options.maxWaitingAccepts ?? 256,
      recentNonces: options.recentNonces ?? 8192,
    };
  }

  /** Called by the vat (RpcSystem) that owns this network's connections. */
  attach(vat: ThirdPartyVat): void {
    if (this.vat && this.vat !== vat) throw new Error("this SocketThirdParty already belongs to another vat (one per vat)");
    this.vat = vat;
  }

  private get owner(): ThirdPartyVat {
    if (!this.vat) throw new Error("SocketThirdParty is not attached to a vat: pass it to new RpcSystem(network, offer, { thirdParty })");
    return this.vat;
  }

  // -------------------------------------------------------------------
  // Directory

  /** Records what `net`'s peer advertised (mesh Hello, a completion, a contact). */
  advertise(net: NetworkConnection, entry: DirectoryEntry): void {
    checkAddresses(entry.addresses);
    this.directory.set(net, { level3: entry.level3, addresses: [...entry.addresses] });
  }

  /** What is known about `net`'s peer. */
  lookup(net: NetworkConnection): DirectoryEntry | null {
    return this.directory.get(net) ?? null;
  }

  /** The vat saw `net` close: its provisions end, Accepts waiting over it fail. */
  connectionClosed(net: NetworkConnection): void {
    const mine = this.provisionsFrom.get(net);
    if (mine) for (const p of [...mine]) this.release(p);
    const waiting = this.waitingOn.get(net);
    if (waiting) {
      for (const w of [...waiting]) this.settle(w, RpcError.disconnected("the connection the Accept came over closed"));
    }
    // Accepts that name this peer as introducer can no longer get a Provide
    // unless another connection to it lives.
    const gone = net.peer.authenticated ? net.peer.id : null;
    if (gone && !this.vat?.liveConnection(gone)) {
      for (const set of [...this.waiters.values()]) {
        for (const w of [...set]) {
          if (formatId(w.completion.introducer) === gone) {
            this.settle(w, refuse(`no Provide can arrive: introducer ${gone} disconnected from this vat`));
          }
        }
      }
    }
  }

  // -------------------------------------------------------------------
  // Introducer

  whyNotIntroduce(recipient: NetworkConnection, host: NetworkConnection): string | null {
    if (!recipient.peer.authenticated || !recipient.peer.publicKey) return "the recipient is not authenticated";
    if (!host.peer.authenticated || !host.peer.publicKey) return "the host is not authenticated";
    if (recipient.peer.id === host.peer.id) return "the recipient and the host are the same vat";
    const r = this.directory.get(recipient);
    if (!r?.level3) return `the recipient ${recipient.peer.id} did not advertise direct paths`;
    const h = this.directory.get(host);
    if (!h?.level3) return `the host ${host.peer.id} did not advertise direct paths`;
    if (h.addresses.length === 0) return `the host ${host.peer.id} advertised no address`;
    const vat = this.vat;
    if (vat && !vat.isPreferred(recipient)) return "the recipient's connection is closing or superseded";
    if (vat && !vat.isPreferred(host)) return "the host's connection is closing or superseded";
    const allow = this.options.allowIntroduction;
    if (allow && !allow(recipient.peer.id, host.peer.id)) return `policy forbids direct paths from ${recipient.peer.id} to ${host.peer.id}`;
    // The host refuses Provides beyond its own bound; this side stays under it.
    const open = vat?.openProvides(host) ?? 0;
    if (open >= this.limits.maxProvisionsPerIntroducer) {
      return `${open} introductions to ${host.peer.id} are still open (maxProvisionsPerIntroducer)`;
    }
    return null;
  }

  introduce(recipient: NetworkConnection, host: NetworkConnection, contact: Pointer, toAwait: Pointer): { label: string } {
    const hostKey = host.peer.publicKey;
    const recipientKey = recipient.peer.publicKey;
    if (!hostKey || !recipientKey) throw new Error("introduce: both connections must be authenticated (check whyNotIntroduce first)");
    const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
    const expiresAt = this.now() + this.limits.provisionTtlMs;
    const addresses = [...(this.directory.get(host)?.addresses ?? [])];
    writePointer(ThirdPartyToContact$codec, { host: hostKey, addresses, nonce, expiresAt: BigInt(expiresAt) }, contact, noCaps);
    writePointer(ThirdPartyToAwait$codec, { recipient: recipientKey, nonce, expiresAt: BigInt(expiresAt) }, toAwait, noCaps);
    // The engine logs "introduced" with this label once the Provide is sent.
    return { label: shortNonce(hex(nonce)) };
  }

  // -------------------------------------------------------------------
  // Recipient

  async connectToIntroduced(
    via: NetworkConnection,
    contactPtr: Pointer,
    signal?: AbortSignal,
  ): Promise<{ connection: NetworkConnection; writeCompletion(into: Pointer): void } | "self"> {
    const introducerKey = via.peer.publicKey;
    if (!via.peer.authenticated || !introducerKey) {
      throw refuse("a contact came over an unauthenticated connection: its introducer cannot be named in an Accept");
    }
    let contact;
    try {
      contact = readPointer(ThirdPartyToContact$codec, contactPtr, noCaps);
      checkKey(contact.host, "host");
      checkNonce(contact.nonce);
      checkAddresses(contact.addresses);
    } catch (err) {
      throw refuse(`malformed ThirdPartyToContact from ${via.peer.id}: ${messageOf(err)}`);
    }
    const expiresAt = Number(contact.expiresAt);
    const hostId = formatId(contact.host);
    if (expiresAt <= this.now()) {
      throw refuse(`expired contact for ${hostId} from ${via.peer.id}: it expired at ${new Date(expiresAt).toISOString()}`);
    }
    if (sameBytes(contact.host, this.publicKey)) return "self";
    const { host, nonce } = contact;
    const completion = {
      introducer: introducerKey,
      host,
      nonce,
      addresses: [...this.addresses],
    };
    const writeCompletion = (into: Pointer) => writePointer(ThirdPartyCompletion$codec, completion, into, noCaps);

    const live = this.owner.liveConnection(hostId);
    if (live) return { connection: live, writeCompletion };
    let dial = this.dials.get(hostId);
    if (!dial) {
      const budget = Math.min(this.limits.dialBudgetMs, expiresAt - this.now());
      dial = this.dialHost(hostId, contact.host, contact.addresses, budget);
      this.dials.set(hostId, dial);
      const forget = () => {
        if (this.dials.get(hostId) === dial) this.dials.delete(hostId);
      };
      dial.then(forget, forget);
    }
    const net = await (signal ? abortable(dial, signal) : dial);
    if (!this.directory.get(net)) this.advertise(net, { level3: true, addresses: contact.addresses });
    // A simultaneous dial from the host may have won meanwhile.
    return { connection: this.owner.liveConnection(hostId) ?? net, writeCompletion };
  }

  /** Dials the host's addresses in order, each expecting its key; the first to succeed wins. */
  private async dialHost(hostId: string, hostKey: Uint8Array, addresses: readonly string[], budgetMs: number): Promise<NetworkConnection> {
    if (addresses.length === 0) throw refuse(`cannot reach ${hostId}: its contact lists no address`);
    await this.dialSlot();
    const deadline = this.now() + budgetMs;
    const errors: string[] = [];
    try {
      for (const address of dialOrder(addresses)) {
        const left = deadline - this.now();
        if (left <= 0) {
          errors.push(`${address}: no time left of the ${budgetMs} ms budget`);
          break;
        }
        const ms = Math.min(this.limits.dialTimeoutMs, left);
        const timeout = AbortSignal.timeout(ms);
        try {
          const net = await this.options.network.connect(address, { remoteKey: hostKey, signal: timeout });
          this.owner.adopt(net);
          log.debug("dialled", { host: hostId, address });
          return net;
        } catch (err) {
          errors.push(`${address}: ${timeout.aborted ? `timed out after ${ms} ms` : messageOf(err)}`);
        }
      }
    } finally {
      this.releaseDialSlot();
    }
    throw RpcError.disconnected(`cannot reach ${hostId}: ${errors.join("; ")}`);
  }

  private dialSlot(): Promise<void> {
    if (this.dialsRunning < this.limits.maxConcurrentDials) {
      this.dialsRunning++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.dialQueue.push(resolve));
  }

  private releaseDialSlot(): void {
    const next = this.dialQueue.shift();
    if (next) next(); // the slot passes on
    else this.dialsRunning--;
  }

  // -------------------------------------------------------------------
  // Host

  awaitThirdParty<T>(from: NetworkConnection, toAwaitPtr: Pointer, value: T): { release(): void } {
    const none = { release() {} };
    let toAwait;
    try {
      toAwait = readPointer(ThirdPartyToAwait$codec, toAwaitPtr, noCaps);
      checkKey(toAwait.recipient, "recipient");
      checkNonce(toAwait.nonce);
    } catch (err) {
      log.debug("provision", { introducer: from.peer.id, refused: `malformed ThirdPartyToAwait: ${messageOf(err)}` });
      return none;
    }
    const nonce = hex(toAwait.nonce);
    if (this.provisions.has(nonce) || this.recent.has(nonce)) {
      log.debug("provision", { introducer: from.peer.id, recipient: formatId(toAwait.recipient), nonce: shortNonce(nonce), refused: "duplicate nonce" });
      return none;
    }
    const now = this.now();
    const provision: Provision = {
      nonce,
      from,
      introducer: from.peer.id,
      recipient: formatId(toAwait.recipient),
      deadline: Math.min(Number(toAwait.expiresAt) + this.limits.clockSkewMs, now + this.limits.maxProvisionTtlMs),
      value,
      state: { kind: "open" },
      counted: false,
    };
    const byIntroducer = this.perIntroducer.get(provision.introducer) ?? 0;
    const byRecipient = this.perRecipient.get(provision.recipient) ?? 0;
    if (!from.peer.authenticated) {
      provision.state = { kind: "refused", reason: `refused provision ${shortNonce(nonce)}: its Provide came over an unauthenticated connection` };
    } else if (byIntroducer >= this.limits.maxProvisionsPerIntroducer) {
      provision.state = {
        kind: "refused",
        reason: `refused provision ${shortNonce(nonce)}: introducer ${provision.introducer} already has ${byIntroducer} open provisions at this vat (maxProvisionsPerIntroducer ${this.limits.maxProvisionsPerIntroducer})`,
      };
    } else if (byRecipient >= this.limits.maxProvisionsPerRecipient) {
      provision.state = {
        kind: "refused",
        reason: `refused provision ${shortNonce(nonce)}: recipient ${provision.recipient} already has ${byRecipient} open provisions at this vat (maxProvisionsPerRecipient ${this.limits.maxProvisionsPerRecipient})`,
      };
    } else {
      provision.counted = true;
      this.perIntroducer.set(provision.introducer, byIntroducer + 1);
      this.perRecipient.set(provision.recipient, byRecipient + 1);
    }
    if (log.enabled) {
      log.debug("provision", {
        introducer: from.peer.id,
        recipient: provision.recipient,
        nonce: shortNonce(nonce),
        ...(provision.state.kind === "refused" ? { refused: provision.state.reason } : {}),
      });
    }
    this.provisions.set(nonce, provision);
    let mine = this.provisionsFrom.get(from);
    if (!mine) this.provisionsFrom.set(from, (mine = new Set()));
    mine.add(provision);
    const waiting = this.waiters.get(nonce);
    if (waiting) for (const w of [...waiting]) this.settleWith(w, provision);
    return { release: () => this.release(provision) };
  }

  private release(provision: Provision): void {
    if (this.provisions.get(provision.nonce) !== provision) return;
    this.provisions.delete(provision.nonce);
    const mine = this.provisionsFrom.get(provision.from);
    mine?.delete(provision);
    if (mine?.size === 0) this.provisionsFrom.delete(provision.from);
    if (provision.counted) {
      decrement(this.perIntroducer, provision.introducer);
      decrement(this.perRecipient, provision.recipient);
    }
    this.remember(provision.nonce);
  }

  /** Keeps a closed provision's nonce so a later Accept for it is named a replay. */
  private remember(nonce: string): void {
    const now = this.now();
    this.recent.delete(nonce);
    this.recent.set(nonce, now);
    for (const [old, at] of this.recent) {
      if (this.recent.size <= this.limits.recentNonces && now - at < this.limits.maxProvisionTtlMs) break;
      this.recent.delete(old);
    }
  }

  completeThirdParty<T>(from: NetworkConnection, completionPtr: Pointer): Promise<T> {
    let completion: ThirdPartyCompletion;
    try {
      completion = readPointer(ThirdPartyCompletion$codec, completionPtr, noCaps);
      checkKey(completion.introducer, "introducer");
      checkKey(completion.host, "host");
      checkNonce(completion.nonce);
      checkAddresses(completion.addresses);
    } catch (err) {
      return Promise.reject(refuse(`malformed ThirdPartyCompletion: ${messageOf(err)}`));
    }
    if (!sameBytes(completion.host, this.publicKey)) {
      return Promise.reject(refuse(`misdirected Accept: it names host ${formatId(completion.host)}, this vat is ${this.id}`));
    }
    const nonce = hex(completion.nonce);
    const provision = this.provisions.get(nonce);
    if (provision) {
      try {
        return Promise.resolve(this.claim(provision, from, completion) as T);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.recent.has(nonce)) {
      return Promise.reject(refuse(`replayed Accept: provision ${shortNonce(nonce)} was already accepted or closed`));
    }
    const introducerId = formatId(completion.introducer);
    if (!this.vat?.liveConnection(introducerId)) {
      return Promise.reject(refuse(`no Provide can arrive: introducer ${introducerId} is not connected to this vat`));
    }
    let waiting = this.waitingOn.get(from);
    if (waiting && waiting.size >= this.limits.maxWaitingAccepts) {
      return Promise.reject(
        refuse(`too many Accepts waiting for their Provide on this connection (maxWaitingAccepts ${this.limits.maxWaitingAccepts}); refused this one`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const ms = this.limits.acceptWaitMs;
      const timer = setTimeout(() => {
        this.settle(waiter, refuse(`no Provide matched this Accept within ${ms} ms (forged nonce, or the introducer's Provide was lost)`));
      }, ms);
      timer.unref?.();
      const waiter: Waiter = { nonce, from, completion, resolve: resolve as (v: unknown) => void, reject, timer };
      let forNonce = this.waiters.get(nonce);
      if (!forNonce) this.waiters.set(nonce, (forNonce = new Set()));
      forNonce.add(waiter);
      if (!waiting) this.waitingOn.set(from, (waiting = new Set()));
      waiting.add(waiter);
      log.debug("accept waiting for provide", { recipient: from.peer.id, nonce: shortNonce(nonce) });
    });
  }

  /**
   * The checks of an Accept against its provision (in the order 3.4.5 gives,
   * except that a refused provision says so first); claims it if all pass.
   */
  private claim(provision: Provision, from: NetworkConnection, completion: ThirdPartyCompletion): unknown {
    const name = shortNonce(provision.nonce);
    // A refused provision (its Provide came over an unauthenticated
    // connection, or past a bound) names why first: over a plain connection
    // the introducer has no key, so the check below could only say "forged".
    if (provision.state.kind === "refused") throw refuse(provision.state.reason);
    const claimedIntroducer = formatId(completion.introducer);
    if (claimedIntroducer !== provision.introducer) {
      throw refuse(`forged Accept: provision ${name} was introduced by ${provision.introducer}, not ${claimedIntroducer}`);
    }
    if (!from.peer.authenticated || from.peer.id !== provision.recipient) {
      throw refuse(`misdirected Accept: provision ${name} is for ${provision.recipient}, the Accept came from ${from.peer.id}`);
    }
    if (this.now() > provision.deadline) {
      throw refuse(`expired Accept: provision ${name} expired at ${new Date(provision.deadline).toISOString()}`);
    }
    if (provision.state.kind === "claimed") throw refuse(`replayed Accept: provision ${name} was already accepted`);
    provision.state = { kind: "claimed" };
    if (!this.directory.get(from)) this.advertise(from, { level3: true, addresses: completion.addresses });
    // The engine logs "accepted" (or "refused accept") when its Return goes out.
    return provision.value;
  }

  private settleWith(waiter: Waiter, provision: Provision): void {
    let value: unknown;
    try {
      value = this.claim(provision, waiter.from, waiter.completion);
    } catch (err) {
      this.settle(waiter, err as RpcError);
      return;
    }
    this.settle(waiter, null, value);
  }

  private settle(waiter: Waiter, error: RpcError | null, value?: unknown): void {
    const forNonce = this.waiters.get(waiter.nonce);
    if (!forNonce?.delete(waiter)) return;
    if (forNonce.size === 0) this.waiters.delete(waiter.nonce);
    const waiting = this.waitingOn.get(waiter.from);
    waiting?.delete(waiter);
    if (waiting?.size === 0) this.waitingOn.delete(waiter.from);
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error);
    else waiter.resolve(value);
  }

  generateEmbargoId(): Uint8Array {
    return new Uint8Array(randomBytes(16));
  }

  /** Table sizes, for tests and stats: all drain back to zero. */
  stats(): { provisions: number; acceptsWaiting: number; dials: number; recentNonces: number } {
    let acceptsWaiting = 0;
    for (const set of this.waiters.values()) acceptsWaiting += set.size;
    return { provisions: this.provisions.size, acceptsWaiting, dials: this.dials.size, recentNonces: this.recent.size };
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

/** `promise`, or a rejection when `signal` aborts first (the work itself goes on for others). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(RpcError.disconnected("the handoff was abandoned"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(RpcError.disconnected("the handoff was abandoned"));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

// rpc.capnp Level 3 (three-party handoff), the host's side: what a Provide
// leaves at this vat until the introducer Finishes it, and the embargoes
// (Accept.embargo / Disembargo.context.accept) that hold an Accept's Return
// until the recipient's earlier calls, travelling through the introducer,
// have all arrived. docs/design/level3.md sections 2.1 (steps 5-9) and 2.3.
import { RpcError } from "./errors.js";
import type { CapHook } from "./hook.js";

/**
 * Embargo ids one provision keeps at once. A provision is accepted once, and
 * an honest introducer forwards one Disembargo per handoff; more only cost
 * memory, so past this bound further ids are dropped (logged by the caller).
 */
export const MAX_EMBARGOES_PER_PROVISION = 16;

interface ThirdPartyEmbargo {
  readonly promise: Promise<void>;
  readonly lift: () => void;
  readonly fail: (error: RpcError) => void;
  lifted: boolean;
  /** An Accept is waiting on it (a second Accept with the same id is refused). */
  used: boolean;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * A Provide at its host: the provided capability, the network's
 * registration for the Accept to find (ThirdPartyNetwork.awaitThirdParty's
 * value), and the embargoes by id, whichever of Accept and Disembargo comes
 * first (C++ findOrCreateThirdPartyEmbargo).
 */
export class Provision {
  private hook: CapHook | null;
  private readonly embargoes = new Map<string, ThirdPartyEmbargo>();
  private closedWith: RpcError | null = null;
  /** The network's record of it (set right after construction); released on close. */
  registration: { release(): void } | null = null;

  /** Takes ownership of `hook`. */
  constructor(hook: CapHook) {
    this.hook = hook;
  }

  /** Embargo entries held (lifted or waiting), for stats. */
  get embargoCount(): number {
    return this.embargoes.size;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** A new reference to the provided capability for a completed Accept; throws once the Provide is finished. */
  take(): CapHook {
    if (this.closedWith || !this.hook) throw this.closedWith ?? closedError();
    return this.hook.addRef();
  }

  /**
   * The introducer forwarded the recipient's Disembargo: the Accept carrying
   * the same id may return (now, or as soon as it comes). False if the id
   * was dropped (the provision is closed, or holds too many ids already).
   */
  lift(id: Uint8Array): boolean {
    const embargo = this.find(id, true);
    if (!embargo) return false;
    if (!embargo.lifted) {
      embargo.lifted = true;
      embargo.lift();
    }
    return true;
  }

  /**
   * The Accept's embargo: resolves once the Disembargo with the same id has
   * come (at once if it already has), rejects with `disconnected` if the
   * Provide is finished first. Throws when another Accept already used this
   * id, or the provision holds too many ids.
   */
  awaitEmbargo(id: Uint8Array): Promise<void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const embargo = this.find(id, true);
    if (!embargo) {
      throw RpcError.failed(
        `refused Accept: its provision already holds ${MAX_EMBARGOES_PER_PROVISION} embargo IDs (each handoff uses one)`,
      );
    }
    if (embargo.used) throw RpcError.failed("refused Accept: duplicate embargo ID (another Accept already waits on it)");
    embargo.used = true;
    return embargo.promise;
  }

  /** True while the Accept with `id` waits for its Disembargo. */
  isWaiting(id: Uint8Array): boolean {
    const embargo = this.embargoes.get(hex(id));
    return embargo !== undefined && !embargo.lifted;
  }

  /**
   * The Provide is finished (or its connection is gone): the network forgets
   * it, embargoes still waiting fail with `error`, the capability is released.
   */
  close(error: RpcError = closedError()): void {
    if (this.closedWith) return;
    this.closedWith = error;
    this.registration?.release();
    this.registration = null;
    for (const embargo of this.embargoes.values()) if (!embargo.lifted) embargo.fail(error);
    this.embargoes.clear();
    const hook = this.hook;
    this.hook = null;
    hook?.release();
  }

  private find(id: Uint8Array, create: boolean): ThirdPartyEmbargo | null {
    if (this.closedWith) return null;
    const key = hex(id);
    const found = this.embargoes.get(key);
    if (found || !create) return found ?? null;
    if (this.embargoes.size >= MAX_EMBARGOES_PER_PROVISION) return null;
    let lift!: () => void;
    let fail!: (error: RpcError) => void;
    const promise = new Promise<void>((resolve, reject) => {
      lift = resolve;
      fail = reject;
    });
    // A Disembargo that came first and whose Accept never does: nobody else
    // awaits this promise when the provision closes.
    promise.catch(() => {});
    const embargo: ThirdPartyEmbargo = { promise, lift, fail, lifted: false, used: false };
    this.embargoes.set(key, embargo);
    return embargo;
  }
}

/** Why an Accept fails when its Provide ends first (C++ says the same of a lost introducing route). */
function closedError(): RpcError {
  return RpcError.disconnected(
    "the introducer finished the Provide, or its connection to this vat was lost, before the handoff completed (the Accept's embargo never cleared)",
  );
}

/** What a ProvideQuestion needs of the connection to the host it was sent on (RpcConnection). */
export interface ProvideHost {
  /** Sends Finish for `provide` (releaseResultCaps false), unless it is closed already. */
  finishProvide(provide: ProvideQuestion): void;
  /** Forwards a recipient's 3PH Disembargo to the host; false if it was dropped (Provide closed, link gone). */
  forwardThirdPartyDisembargo(provide: ProvideQuestion, embargoId: Uint8Array): boolean;
}

/**
 * The introducer's side of one handoff (docs/design/level3.md 2.1 step 1): a
 * Provide question on the connection to the host, with an ID from the high
 * range (bit 31 set, as C++ nextHigh), that never gets a Return. The vine
 * export on the recipient's connection holds it: its release (refcount 0,
 * or the recipient's connection closing) finishes the Provide.
 */
export class ProvideQuestion {
  constructor(
    readonly id: number,
    private readonly host: ProvideHost,
    /** The network's name for the handoff (nonce prefix), for logs. */
    readonly label: string,
  ) {}

  /** The vine was released: the host may forget the provision. */
  finish(): void {
    this.host.finishProvide(this);
  }

  /** The recipient's Disembargo{accept} to the vine, on its way to the host (2.1 step 7). */
  forwardDisembargo(embargoId: Uint8Array): boolean {
    return this.host.forwardThirdPartyDisembargo(this, embargoId);
  }
}

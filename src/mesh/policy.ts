// Who may do what on a hub: rules keyed by identity, per action, and quotas
// per identity. A refusal says which rule refused (or that none allowed it),
// so that whoever reads the error knows what to change in the config.
//
// Defaults: any peer that passed the handshake with this mesh's network key
// may join (stay connected); one that came in over the hub's local unix
// socket may do everything; one that came in over TCP may do only what a
// rule allows.

/**
 * `join` is being connected at all; `watch` also governs `list` and
 * `lookup`; `direct` is being handed capabilities of other peers over a
 * direct path (rule `peer` is the receiving peer, `names` the names the
 * hosting peer holds) rather than through the hub; `env` is reading
 * entries of the hub's environment through the Engine (rule `names` are
 * the entries' names), refused unless a rule allows it.
 */
export type Action = "join" | "register" | "connect" | "watch" | "admin" | "replace" | "direct" | "env";
export const ACTIONS: readonly Action[] = ["join", "register", "connect", "watch", "admin", "replace", "direct", "env"];

/** One rule: who (`*`, or an `@…ed25519` id) may do the action, on which names (patterns with `*`). */
export interface Rule {
  peer: string;
  names?: string[];
  /** Only over this kind of listener (default: both). */
  via?: "unix" | "tcp";
  /** `false` makes the rule a refusal. Default true. */
  allow?: boolean;
}

export interface Quotas {
  /** Names one identity may hold at once (default 64). */
  registrations: number;
  /** Watches one identity may have open at once (default 64). */
  watchers: number;
  /** Connections one identity may have open to the hub at once (default 64). */
  connections: number;
}

export const DEFAULT_QUOTAS: Readonly<Quotas> = Object.freeze({ registrations: 64, watchers: 64, connections: 64 });

export type PolicyRules = Partial<Record<Action, Rule[]>>;

export interface Decision {
  allowed: boolean;
  /** Which rule decided, for error messages: "policy.connect[2]", or the default. */
  by: string;
}

/** Where a peer came in. */
export type Via = "unix" | "tcp";

export class Policy {
  readonly quotas: Quotas;

  constructor(
    readonly rules: PolicyRules = {},
    quotas: Partial<Quotas> = {},
  ) {
    this.quotas = { ...DEFAULT_QUOTAS, ...quotas };
  }

  /** Whether `peer` may do `action` (on `name`, for name-scoped actions), having come in `via`. */
  decide(action: Action, peer: string, via: Via, name?: string): Decision {
    const rules = this.rules[action] ?? [];
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      if (rule.via !== undefined && rule.via !== via) continue;
      if (rule.peer !== "*" && rule.peer !== peer) continue;
      if (name !== undefined && rule.names !== undefined && !rule.names.some((p) => globMatch(p, name))) continue;
      return { allowed: rule.allow !== false, by: `policy.${action}[${i}]` };
    }
    if (action === "join") return { allowed: true, by: "the default (every peer of this network key may join)" };
    // The hub's environment may hold secrets: nothing of it is shown unless a rule says so.
    if (action === "env") return { allowed: false, by: "the default (no environment entry is exposed unless a rule in policy.env names it)" };
    // A direct path gives nobody a capability they do not hold already; it only routes the calls.
    if (action === "direct") return { allowed: true, by: "the default (direct paths wherever both peers have them)" };
    if (via === "unix") return { allowed: true, by: "the default (peers on the local unix socket may do everything)" };
    return { allowed: false, by: `the default (over TCP only what a rule in policy.${action} allows)` };
  }

  /**
   * Why `peer` may not do `action` (naming the rule that refused), or null
   * if it may. `doing` names the request when it is not the action itself
   * ("list" and "lookup" are decided by the `watch` rules).
   */
  explainRefusal(action: Action, peer: string, via: Via, name?: string, doing: string = action): string | null {
    const decision = this.decide(action, peer, via, name);
    if (decision.allowed) return null;
    const what = action === "join" ? "join this mesh" : name === undefined ? doing : `${doing} "${name}"`;
    return `${peer} may not ${what}: refused by ${decision.by}`;
  }

  /**
   * Why `recipient` may not be handed capabilities of a peer holding
   * `hostNames` over a direct path, or null if it may: every name must be
   * allowed (a host with no name is decided by the rules without `names`).
   */
  explainDirect(recipient: string, via: Via, hostNames: readonly string[]): string | null {
    for (const name of hostNames.length === 0 ? [undefined] : hostNames) {
      const refusal = this.explainRefusal("direct", recipient, via, name, "reach directly");
      if (refusal !== null) return refusal;
    }
    return null;
  }

  /** The refusal of `peer` at its quota `key`, naming the config key that raises it. */
  quotaRefusal(key: keyof Quotas, peer: string): string {
    const limit = this.quotas[key];
    const [held, undo] =
      key === "registrations"
        ? [`holds ${limit} names`, "release one"]
        : key === "watchers"
          ? [`has ${limit} watches open`, "release one"]
          : [`has ${limit} connections open to this hub`, "close one"];
    return `${peer} ${held} already, its quota: ${undo}, or raise quotas.${key} in the hub's config`;
  }
}

/** `*` matches any run of characters; everything else is literal. */
export function globMatch(pattern: string, text: string): boolean {
  if (pattern === "*") return true;
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === text;
  if (!text.startsWith(parts[0]!) || !text.endsWith(parts.at(-1)!)) return false;
  let at = parts[0]!.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = text.indexOf(parts[i]!, at);
    if (found < 0) return false;
    at = found + parts[i]!.length;
  }
  return at <= text.length - parts.at(-1)!.length;
}

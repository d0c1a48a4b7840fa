// capmesh.config.json: what `capmesh serve` (and startHub) can be told.
// Every key is documented in the README; an unknown key or a bad value is
// refused with a message naming the key, never ignored.
import { readFile } from "node:fs/promises";
import { toAddress } from "../transport/address.js";
import { resolveLimits, type TransportLimits } from "../transport/limits.js";
import type { HubOptions } from "./hub.js";
import { DIRECT_PATH_LIMITS, type DirectPathOptions } from "./direct.js";
import { nameProblem } from "./names.js";
import { ACTIONS, DEFAULT_QUOTAS, type Action, type PolicyRules, type Quotas, type Rule } from "./policy.js";

export const CONFIG_FILE = "capmesh.config.json";

/** A config that does not fit: names the key (e.g. `policy.connect[1].peer`) and what is wrong. */
export class ConfigError extends Error {
  constructor(
    readonly key: string,
    problem: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ""}${key}: ${problem}`);
    this.name = "ConfigError";
  }
}

const TOP_KEYS = ["home", "socket", "listen", "networkKey", "policy", "quotas", "limits", "directPaths", "plugins"] as const;
const RULE_KEYS = ["peer", "names", "via", "allow"] as const;
const ID = /^@[A-Za-z0-9+/]{43}=\.ed25519$/;

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyKeys(value: Record<string, Json>, allowed: readonly string[], where: string, file?: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(where ? `${where}.${key}` : key, `unknown key; the known ones are ${allowed.join(", ")}`, file);
    }
  }
}

function stringList(value: Json, key: string, file?: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) throw new ConfigError(key, "must be a list of strings", file);
  return value as string[];
}

/** Checks a parsed config object and turns it into startHub options. */
export function parseConfig(raw: Json, file?: string): HubOptions {
  if (!isObject(raw)) throw new ConfigError("(top level)", "must be a JSON object", file);
  onlyKeys(raw, TOP_KEYS, "", file);
  const out: HubOptions = {};
  if (raw.home !== undefined) {
    if (typeof raw.home !== "string" || raw.home === "") throw new ConfigError("home", "must be a directory path", file);
    out.home = raw.home;
  }
  if (raw.socket !== undefined) {
    if (raw.socket !== false && (typeof raw.socket !== "string" || raw.socket === "")) {
      throw new ConfigError("socket", "must be a socket path, or false for no unix socket", file);
    }
    out.socket = raw.socket as string | false;
  }
  if (raw.listen !== undefined) {
    const addresses = stringList(raw.listen, "listen", file);
    addresses.forEach((a, i) => {
      try {
        toAddress(a);
      } catch (error) {
        throw new ConfigError(`listen[${i}]`, (error as Error).message, file);
      }
    });
    out.listen = addresses;
  }
  if (raw.networkKey !== undefined) {
    const text = raw.networkKey;
    if (typeof text !== "string" || Buffer.from(text, "base64").length !== 32) {
      throw new ConfigError("networkKey", "must be 32 bytes in base64 (capmesh netkey makes one)", file);
    }
    out.networkKey = text;
  }
  if (raw.policy !== undefined) out.policy = parsePolicy(raw.policy, file);
  if (raw.quotas !== undefined) out.quotas = parseQuotas(raw.quotas, file);
  if (raw.directPaths !== undefined) out.directPaths = parseDirectPaths(raw.directPaths, file);
  if (raw.plugins !== undefined) out.plugins = parsePlugins(raw.plugins, file);
  if (raw.limits !== undefined) {
    try {
      out.limits = resolveLimits(raw.limits as Partial<TransportLimits>);
    } catch (error) {
      throw new ConfigError("limits", (error as Error).message, file);
    }
  }
  return out;
}

function parsePolicy(raw: Json, file?: string): PolicyRules {
  if (!isObject(raw)) throw new ConfigError("policy", "must be an object of rule lists", file);
  onlyKeys(raw, ACTIONS, "policy", file);
  const rules: PolicyRules = {};
  for (const action of Object.keys(raw) as Action[]) {
    const list = raw[action];
    if (!Array.isArray(list)) throw new ConfigError(`policy.${action}`, "must be a list of rules", file);
    rules[action] = list.map((rule, i) => parseRule(rule, `policy.${action}[${i}]`, file));
  }
  return rules;
}

function parseRule(raw: Json, key: string, file?: string): Rule {
  if (!isObject(raw)) throw new ConfigError(key, 'must be an object such as { "peer": "*", "names": ["db.*"] }', file);
  onlyKeys(raw, RULE_KEYS, key, file);
  const { peer, names, via, allow } = raw;
  if (typeof peer !== "string" || (peer !== "*" && !ID.test(peer))) {
    throw new ConfigError(`${key}.peer`, 'must be "*" (any peer of this network key) or an identity "@<base64>.ed25519"', file);
  }
  const rule: Rule = { peer };
  if (names !== undefined) rule.names = stringList(names, `${key}.names`, file);
  if (via !== undefined) {
    if (via !== "unix" && via !== "tcp") throw new ConfigError(`${key}.via`, 'must be "unix" or "tcp"', file);
    rule.via = via;
  }
  if (allow !== undefined) {
    if (typeof allow !== "boolean") throw new ConfigError(`${key}.allow`, "must be true or false", file);
    rule.allow = allow;
  }
  return rule;
}

/** Per-plugin configuration sections: any JSON value under a valid plugin name (Engine.config reads it). */
function parsePlugins(raw: Json, file?: string): Record<string, unknown> {
  if (!isObject(raw)) throw new ConfigError("plugins", 'must be an object of sections by plugin name, such as { "greeter": { "greeting": "hi" } }', file);
  for (const name of Object.keys(raw)) {
    const problem = nameProblem(name);
    if (problem !== null) throw new ConfigError(`plugins.${name}`, problem, file);
  }
  return raw;
}

function parseDirectPaths(raw: Json, file?: string): boolean | DirectPathOptions {
  if (typeof raw === "boolean") return raw;
  if (!isObject(raw)) throw new ConfigError("directPaths", "must be true, false, or an object of limits such as { \"dialTimeoutMs\": 3000 }", file);
  onlyKeys(raw, DIRECT_PATH_LIMITS, "directPaths", file);
  const out: DirectPathOptions = {};
  for (const key of DIRECT_PATH_LIMITS) {
    const v = raw[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`directPaths.${key}`, "must be a positive integer", file);
    out[key] = v;
  }
  return out;
}

function parseQuotas(raw: Json, file?: string): Partial<Quotas> {
  if (!isObject(raw)) throw new ConfigError("quotas", "must be an object", file);
  const keys = Object.keys(DEFAULT_QUOTAS) as (keyof Quotas)[];
  onlyKeys(raw, keys, "quotas", file);
  const out: Partial<Quotas> = {};
  for (const key of keys) {
    const v = raw[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`quotas.${key}`, "must be a positive integer", file);
    out[key] = v;
  }
  return out;
}

/** Reads and checks a config file. */
export async function loadConfig(file: string): Promise<HubOptions> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError("(file)", `cannot read it: ${(error as Error).message}`, file);
  }
  let raw: Json;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError("(file)", `not valid JSON: ${(error as Error).message}`, file);
  }
  return parseConfig(raw, file);
}

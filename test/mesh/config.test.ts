// capmesh.config.json and the policy: every key checked, refusals that name
// the key or the rule, glob patterns for names.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/mesh/config.js";
import { directPathsIn } from "../../src/mesh/direct.js";
import { Policy, globMatch } from "../../src/mesh/policy.js";
import { generateIdentity } from "../../src/auth/identity.js";

const alice = generateIdentity().id;
const bob = generateIdentity().id;

describe("capmesh.config.json", () => {
  it("takes every documented key", () => {
    const options = parseConfig({
      home: "/var/lib/capmesh",
      socket: "/run/capmesh/hub.sock",
      listen: ["tcp://127.0.0.1:7400"],
      networkKey: Buffer.alloc(32, 7).toString("base64"),
      policy: { connect: [{ peer: alice, names: ["db.*"], via: "tcp" }], admin: [{ peer: "*", allow: false }] },
      quotas: { registrations: 3, watchers: 2, connections: 5 },
      limits: { maxMessageBytes: 1 << 20 },
      directPaths: { dialTimeoutMs: 500, provisionTtlMs: 10_000 },
    });
    expect(options.directPaths).toEqual({ dialTimeoutMs: 500, provisionTtlMs: 10_000 });
    expect(parseConfig({ directPaths: false }).directPaths).toBe(false);
    expect(options.listen).toEqual(["tcp://127.0.0.1:7400"]);
    expect(options.policy!.connect).toEqual([{ peer: alice, names: ["db.*"], via: "tcp" }]);
    expect(options.quotas).toEqual({ registrations: 3, watchers: 2, connections: 5 });
    expect(options.limits!.maxMessageBytes).toBe(1 << 20);
  });

  it("takes the README's example once its placeholder ids are real ones", () => {
    const readme = readFileSync("README.md", "utf8");
    const block = /\*\*Configuration\*\*[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, "the README's capmesh.config.json example").toBeDefined();
    const placeholders = [...new Set(block!.match(/@\w+…=\.ed25519/g))];
    expect(placeholders.length).toBeGreaterThan(0);
    let json = block!;
    for (const placeholder of placeholders) json = json.replaceAll(placeholder, generateIdentity().id);
    const options = parseConfig(JSON.parse(json));
    expect(Object.keys(options.policy!).sort()).toEqual(Object.keys(JSON.parse(json).policy).sort());
  });

  it.each([
    [{ lisen: [] }, /^lisen: unknown key; the known ones are home, socket, listen/],
    [{ listen: ["ftp://x"] }, /^listen\[0\]: /],
    [{ networkKey: "short" }, /^networkKey: must be 32 bytes in base64/],
    [{ policy: { connect: [{ peer: "bob" }] } }, /^policy\.connect\[0\]\.peer: must be "\*"/],
    [{ policy: { conect: [] } }, /^policy\.conect: unknown key/],
    [{ policy: { register: [{ peer: "*", name: ["x"] }] } }, /^policy\.register\[0\]\.name: unknown key/],
    [{ quotas: { watchers: 0 } }, /^quotas\.watchers: must be a positive integer/],
    [{ limits: { maxFrame: 1 } }, /^limits: unknown transport limit "maxFrame"/],
    [{ directPaths: "off" }, /^directPaths: must be true, false, or an object of limits/],
    [{ directPaths: { dialTimeoutMs: 0 } }, /^directPaths\.dialTimeoutMs: must be a positive integer/],
    [{ directPaths: { listen: ["unix:/x"] } }, /^directPaths\.listen: unknown key; the known ones are provisionTtlMs/],
    [{ policy: { direct: [{ peer: "*", via: "udp" }] } }, /^policy\.direct\[0\]\.via: must be "unix" or "tcp"/],
    [[], /must be a JSON object/],
  ])("refuses %j naming the key", (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(ConfigError);
    expect(() => parseConfig(raw)).toThrow(message);
  });
});

describe("direct paths on or off", () => {
  it("are on unless an option or CAPMESH_DIRECT_PATHS says otherwise; the option wins", () => {
    expect(directPathsIn(undefined, {})).toEqual({});
    expect(directPathsIn(undefined, { CAPMESH_DIRECT_PATHS: "0" })).toBeNull();
    expect(directPathsIn(undefined, { CAPMESH_DIRECT_PATHS: "off" })).toBeNull();
    expect(directPathsIn(undefined, { CAPMESH_DIRECT_PATHS: "1" })).toEqual({});
    expect(directPathsIn(false, {})).toBeNull();
    expect(directPathsIn({ dialTimeoutMs: 5 }, { CAPMESH_DIRECT_PATHS: "0" })).toEqual({ dialTimeoutMs: 5 });
    expect(() => directPathsIn(undefined, { CAPMESH_DIRECT_PATHS: "maybe" })).toThrow(/CAPMESH_DIRECT_PATHS=maybe: expected 0 or 1/);
  });
});

describe("the policy", () => {
  it("lets peers on the local unix socket do everything by default, and TCP peers nothing", () => {
    const policy = new Policy();
    expect(policy.decide("register", alice, "unix", "x").allowed).toBe(true);
    expect(policy.explainRefusal("connect", alice, "tcp", "db.main")).toBe(
      `${alice} may not connect "db.main": refused by the default (over TCP only what a rule in policy.connect allows)`,
    );
  });

  it("applies the first matching rule, by identity, name pattern and listener, and names it when it refuses", () => {
    const policy = new Policy({
      connect: [
        { peer: bob, allow: false },
        { peer: "*", names: ["public.*"], via: "tcp" },
        { peer: alice, names: ["db.*"] },
      ],
    });
    expect(policy.decide("connect", alice, "tcp", "db.main")).toEqual({ allowed: true, by: "policy.connect[2]" });
    expect(policy.decide("connect", bob, "tcp", "public.x")).toEqual({ allowed: false, by: "policy.connect[0]" });
    expect(policy.explainRefusal("connect", bob, "unix", "public.x")).toMatch(/refused by policy\.connect\[0\]$/);
    expect(policy.decide("connect", alice, "tcp", "other").allowed).toBe(false);
    expect(policy.decide("connect", bob, "tcp", "nothing").allowed).toBe(false);
  });

  it("matches names with * anywhere", () => {
    expect(globMatch("db.*", "db.main")).toBe(true);
    expect(globMatch("db.*", "dbx")).toBe(false);
    expect(globMatch("*.svc", "a.b.svc")).toBe(true);
    expect(globMatch("a*c*e", "abcde")).toBe(true);
    expect(globMatch("a*c*e", "abde")).toBe(false);
    expect(globMatch("exact", "exact")).toBe(true);
  });
});

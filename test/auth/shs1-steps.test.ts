// Each step of shs1 checked byte for byte against vectors recorded from SSB's
// reference implementation (../shared/vectors/shs1-steps.json).

import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as shs1 from "../../src/auth/shs1.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const vectorsPath = resolve(root, "../shared/vectors/shs1-steps.json");
const inCI = process.env.CI === "true";
const present = existsSync(vectorsPath);

interface Vector {
  name: string;
  args: unknown[];
  result: unknown;
}

// The vectors use the reference's field names; the state here is camelCase.
const renames: Record<string, string> = {
  app_key: "appKey",
  kx_pk: "kxPk",
  kx_sk: "kxSk",
  app_mac: "appMac",
  a_bob: "aBob",
  b_alice: "bAlice",
};
const back = Object.fromEntries(Object.entries(renames).map(([k, v]) => [v, k]));

/** Vector JSON (hex strings) to a state with byte arrays. */
function fromVector(value: unknown): unknown {
  if (typeof value === "string") return new Uint8Array(Buffer.from(value, "hex"));
  if (Array.isArray(value)) return value.map(fromVector);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [renames[k] ?? k, fromVector(v)]));
  }
  return value;
}

/** A state back to the vectors' form, for comparison. */
function toVector(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex");
  if (Array.isArray(value)) return value.map(toVector);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [back[k] ?? k, toVector(v)]),
    );
  }
  return value;
}

function loadVectors(): Vector[] {
  return JSON.parse(readFileSync(vectorsPath, "utf8")) as Vector[];
}

type State = shs1.Shs1State;
const steps: Record<string, (args: unknown[]) => unknown> = {
  initialize: ([s]) => shs1.initialize(s as shs1.Shs1InitialState),
  createChallenge: ([s]) => shs1.createChallenge(s as State),
  verifyChallenge: ([s, p]) => shs1.verifyChallenge(s as State, p as Uint8Array),
  clientVerifyChallenge: ([s, p]) => shs1.clientVerifyChallenge(s as State, p as Uint8Array),
  clientCreateAuth: ([s]) => shs1.clientCreateAuth(s as State),
  serverVerifyAuth: ([s, p]) => shs1.serverVerifyAuth(s as State, p as Uint8Array),
  serverCreateAccept: ([s]) => shs1.serverCreateAccept(s as State),
  clientVerifyAccept: ([s, p]) => shs1.clientVerifyAccept(s as State, p as Uint8Array),
  clean: ([s]) => shs1.clean(s as State),
  toKeys: ([s]) => shs1.toKeys(s as Uint8Array | shs1.Shs1KeyPair),
};

/** The ephemeral public key a vector's state belongs to (identifies one side of one handshake). */
function kxOf(state: unknown): string | undefined {
  const local = (state as { local?: { kx_pk?: string } } | null)?.local;
  return local?.kx_pk;
}

describe.skipIf(!present && !inCI)("shs1 steps against the reference's vectors", () => {
  if (!present) {
    it("has the vectors file", () => {
      expect.fail(`CI=true but ${vectorsPath} is missing: the shs1 step vectors must be present in CI`);
    });
    return;
  }
  const vectors = loadVectors();

  it("has vectors for every step", () => {
    const names = new Set(vectors.map((v) => v.name));
    for (const step of Object.keys(steps)) expect(names, step).toContain(step);
    for (const name of names) expect(Object.keys(steps), `unknown step ${name}`).toContain(name);
  });

  vectors.forEach((vector, index) => {
    const label = `#${index} ${vector.name}${vector.result === null ? " (rejects)" : ""}`;
    if (vector.name === "clean") {
      // The reference wipes secret3 in place, so the recorded argument is the
      // state after the call; the state before it is the previous step's
      // state of the same side (server: serverCreateAccept's argument; client:
      // clientVerifyAccept's result).
      it(`${label}, from the state before it`, () => {
        const kx = kxOf(vector.args[0]);
        let before: unknown;
        for (let i = index - 1; i >= 0 && before === undefined; i--) {
          const prior = vectors[i]!;
          if (prior.name === "serverCreateAccept" && kxOf(prior.args[0]) === kx) before = prior.args[0];
          if (prior.name === "clientVerifyAccept" && kxOf(prior.result) === kx) before = prior.result;
        }
        expect(before, "a preceding state of the same side").toBeDefined();
        const result = shs1.clean(fromVector(before) as State);
        expect(toVector(result)).toEqual(vector.result);
      });
      return;
    }
    it(label, () => {
      const args = fromVector(vector.args) as unknown[];
      const result = steps[vector.name]!(args);
      expect(toVector(result)).toEqual(vector.result);
    });
  });

  // The prepare steps compute ahead what a verify step needs: with them, each
  // verify step must give the reference's result all the same.
  const prepared: Record<string, { prepare: (s: State) => State; verify: (s: State, p: Uint8Array) => State | null }> = {
    clientVerifyChallenge: { prepare: shs1.clientPrepareAuth, verify: shs1.clientVerifyChallenge },
    serverVerifyAuth: { prepare: shs1.serverPrepareAuthCheck, verify: shs1.serverVerifyAuth },
    clientVerifyAccept: { prepare: shs1.clientPrepareAcceptCheck, verify: shs1.clientVerifyAccept },
  };
  vectors.forEach((vector, index) => {
    const pair = prepared[vector.name];
    if (pair === undefined || vector.result === null) return;
    it(`#${index} ${vector.name}, its x25519 prepared ahead`, () => {
      const [state, packet] = fromVector(vector.args) as [State, Uint8Array];
      const ahead = pair.prepare(state);
      expect(ahead).not.toBe(state);
      expect(toVector(state)).toEqual(vector.args[0]); // prepare leaves its argument alone
      expect(toVector(pair.verify(ahead, packet))).toEqual(vector.result);
    });
  });

  it("box-stream keys and nonces of each completed handshake pair up", () => {
    const cleaned = vectors
      .filter((v) => v.name === "clean")
      .map((v) => shs1.boxStreamKeys(fromVector(v.result) as State));
    expect(cleaned.length).toBeGreaterThanOrEqual(2);
    // Vectors come in server/client pairs of the same handshake.
    for (let i = 0; i + 1 < cleaned.length; i += 2) {
      const [server, client] = [cleaned[i]!, cleaned[i + 1]!];
      expect(toVector(server.encryptKey)).toEqual(toVector(client.decryptKey));
      expect(toVector(server.decryptKey)).toEqual(toVector(client.encryptKey));
      expect(toVector(server.encryptNonce)).toEqual(toVector(client.decryptNonce));
      expect(toVector(server.decryptNonce)).toEqual(toVector(client.encryptNonce));
    }
  });
});

if (!present && !inCI) {
  describe("shs1 steps against the reference's vectors", () => {
    it.skip(`skipped: ${vectorsPath} is absent (it is required when CI=true)`, () => {});
  });
}

// Level 3 for capabilities wherever a message carries them: inside a
// dynamic value (schema/value.capnp), in a list and in records nested in
// it. Each one is a thirdPartyHosted descriptor of its own, and each is
// picked up from its host directly (in-process vats on real unix sockets,
// as the other level3-* tests).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { capabilityState } from "../../src/rpc/introspect.js";
import { CapabilityClient } from "../../src/rpc/typed.js";
import { fromValue, toValue } from "../../src/value/index.js";
import { Cleanup } from "../auth/helpers.js";
import { Transformer } from "../value/helpers.js";
import { Counter } from "./fixtures.js";
import { link, linkAs, vat } from "./helpers/level3-vats.js";
import { eventually } from "./helpers/raw-peer.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3nested-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe("Level 3 handoff of capabilities nested in structs and lists", () => {
  it("each capability in a value's list and records is picked up from its host directly", async () => {
    let held: Counter | null = null;
    // C hands out B's Counter three times, nested: in a list, in a record in that list, in a record.
    const c = await vat("c", dir, cleanup, {
      offer: () =>
        Transformer.server({
          transform: () => ({ value: toValue({ list: [held, { inner: held }], record: { x: held } }) }),
        }),
    });
    const b = await vat("b", dir, cleanup);
    const a = await vat("a", dir, cleanup);
    held = await link(c, b, cleanup);
    const transformer = await linkAs(a, c, cleanup, Transformer);

    const { value } = await transformer.transform({ value: toValue(null) });
    const got = fromValue(value) as { list: [CapabilityClient, { inner: CapabilityClient }]; record: { x: CapabilityClient } };
    const caps = [got.list[0], got.list[1].inner, got.record.x].map((cap) => cap.castAs(Counter));
    expect(c.system.handoffs.introductions).toBe(3);
    for (const [i, cap] of caps.entries()) await cap.add({ delta: BigInt(i + 1) });
    for (const cap of caps) await cap.whenResolved();
    for (const cap of caps) expect(capabilityState(cap)).toMatchObject({ kind: "remote", path: "direct", peer: { id: b.identity.id } });
    // Calls after the handoff come from A itself.
    await caps[0]!.add({ delta: 10n });
    expect(b.node.callers.at(-1)).toBe(a.identity.id);
    expect(a.system.handoffs).toMatchObject({ accepted: 3, fellBack: 0 });

    for (const cap of caps) cap.release();
    // C's vines and B's provisions all end once A has released what it picked up.
    const cToB = c.system.preferred(b.identity.id)!.connection;
    const cToA = c.system.preferred(a.identity.id)!.connection;
    await eventually(() => cToB.stats().provides === 0 && cToA.stats().vines === 0, () => JSON.stringify([cToB.stats(), cToA.stats()]));
    const bToC = b.system.preferred(c.identity.id)!.connection;
    await eventually(() => bToC.stats().provisions === 0, () => JSON.stringify(bToC.stats()));
  });
});

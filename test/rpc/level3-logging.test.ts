// DEBUG=capmesh:handoff (or capmesh:*) shows each step of a three-party
// handoff as one structured line: introduced (introducer), provision,
// embargo waiting / lifted, accepted and refused accept (host), accepting,
// accepted and fell back (recipient). A child does one handoff that goes
// direct and one that falls back (level3-log-child.ts).
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

type Line = Record<string, unknown>;

function runChild(debug: string): { ids: Record<string, string>; lines: Line[] } {
  const result = spawnSync(process.execPath, ["--import", "tsx", "test/rpc/level3-log-child.ts"], {
    env: { ...process.env, DEBUG: debug },
    encoding: "utf8",
    timeout: 60_000,
  });
  expect(result.status, result.stderr).toBe(0);
  const lines = result.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
  return { ids: JSON.parse(result.stdout) as Record<string, string>, lines };
}

describe("handoff logging", () => {
  it("logs each handoff step once, with who and why, under DEBUG=capmesh:handoff", () => {
    const { ids, lines } = runChild("capmesh:handoff");
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatchObject({ ns: "capmesh:handoff", level: "debug" });
    const events = (event: string) => lines.filter((l) => l.event === event);
    const nonce = expect.stringMatching(/^[0-9a-f]{16}$/);
    const ms = expect.any(Number);

    // Introducer C, once per handoff.
    expect(events("introduced")).toEqual([
      expect.objectContaining({ recipient: ids.a, host: ids.b, nonce }),
      expect.objectContaining({ recipient: ids.a, host: ids.r, nonce }),
    ]);
    // Hosts: B opens the provision, R refuses its own.
    expect(events("provision")).toEqual([
      expect.not.objectContaining({ refused: expect.anything() }),
      expect.objectContaining({ introducer: ids.c, recipient: ids.a, nonce, refused: expect.stringMatching(/maxProvisionsPerRecipient 0/) }),
    ]);
    expect(events("provision")[0]).toMatchObject({ introducer: ids.c, recipient: ids.a, nonce });
    // Recipient A sends each Accept; the first carries the embargo.
    expect(events("accepting")).toEqual([
      expect.objectContaining({ host: ids.b, via: ids.c, embargo: true }),
      expect.objectContaining({ host: ids.r, via: ids.c, embargo: false }),
    ]);
    // Host B holds A's Accept until the Disembargo comes through C.
    expect(events("embargo waiting")).toEqual([expect.objectContaining({ recipient: ids.a })]);
    expect(events("embargo lifted")).toEqual([expect.objectContaining({ recipient: ids.a })]);
    // Accepted: once at the host (B), once at the recipient (A).
    expect(events("accepted")).toEqual(
      expect.arrayContaining([expect.objectContaining({ recipient: ids.a, ms }), expect.objectContaining({ host: ids.b, via: ids.c, ms })]),
    );
    expect(events("accepted")).toHaveLength(2);
    // R refuses A's Accept with its reason; A falls back to C's vine with it.
    expect(events("refused accept")).toEqual([expect.objectContaining({ recipient: ids.a, reason: expect.stringMatching(/^refused provision /) })]);
    expect(events("fell back")).toEqual([
      expect.objectContaining({ via: ids.c, host: ids.r, reason: expect.stringMatching(/^the host refused the Accept: refused provision /) }),
    ]);
    // In the order the steps happen.
    const order = lines.map((l) => l.event);
    const at = (event: string, from = 0) => order.indexOf(event, from);
    expect(at("introduced")).toBeLessThan(at("accepting"));
    expect(at("accepting")).toBeLessThan(at("embargo waiting"));
    expect(at("embargo waiting")).toBeLessThan(at("embargo lifted"));
    expect(at("embargo lifted")).toBeLessThan(at("accepted"));
    expect(at("refused accept")).toBeLessThan(at("fell back"));
  });

  it("says nothing about handoffs unless asked", () => {
    const { lines } = runChild("capmesh:transport");
    expect(lines.filter((l) => l.ns === "capmesh:handoff")).toEqual([]);
  });
});

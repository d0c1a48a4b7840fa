// capmesh relies on a few internals of capnp-es (its Message/Segment/arena
// layout: see src/codec/message.ts and src/transport/framing.ts) and pins the
// exact version it was tested with. This test fails loudly, naming what
// changed, if an upgrade moves any of them.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, sep } from "node:path";
import { Message, Pointer } from "capnp-es";
import { describe, expect, it } from "vitest";
import { newMessage } from "../../src/codec/message.js";
import { WRAPS_SEGMENTS_IN_PLACE, decodeFrame, frameBytes } from "../../src/transport/framing.js";

const require = createRequire(import.meta.url);

describe("capnp-es internals capmesh relies on", () => {
  it("the installed capnp-es is the exact version package.json pins", () => {
    const pinned = (JSON.parse(readFileSync("package.json", "utf8")) as { dependencies: Record<string, string> }).dependencies["capnp-es"];
    expect(pinned, "capnp-es must be pinned to an exact version").toMatch(/^\d+\.\d+\.\d+$/);
    // capnp-es does not export its package.json: find it beside its entry point.
    const entry = require.resolve("capnp-es");
    const manifest = join(entry.slice(0, entry.lastIndexOf(`${sep}capnp-es${sep}`) + `${sep}capnp-es`.length), "package.json");
    const installed = (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
    expect(installed).toBe(pinned);
  });

  it("Message keeps its state in _capnp (arena, segments, traversalLimit) and grows through allocateSegment", () => {
    const probe = new Message();
    expect(Object.keys(probe)).toEqual(["_capnp"]);
    expect(probe._capnp).toHaveProperty("arena");
    expect(probe._capnp).toHaveProperty("segments");
    expect(typeof probe._capnp.traversalLimit).toBe("number");
    expect(typeof (Message.prototype as unknown as { allocateSegment?: unknown }).allocateSegment).toBe("function");
    const segment = probe.getSegment(0) as unknown as Record<string, unknown>;
    for (const member of ["replaceBuffer", "allocate", "hasCapacity"]) expect(typeof segment[member], `Segment.${member}`).toBe("function");
    expect(segment.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it("a message capmesh builds grows its one segment through capnp-es's own allocation path", () => {
    const message = newMessage(16);
    const segment = message.getSegment(0);
    // capnp-es's Segment.allocate asks the message for room: ours doubles.
    const p = segment.allocate(4096);
    expect(p).toBeInstanceOf(Pointer);
    expect(message.growths).toBe(1);
    expect(message._capnp.segments).toHaveLength(1);
    expect(segment.buffer.byteLength).toBeGreaterThanOrEqual(4096 + 8);
  });

  it("decoded frames are wrapped in place, not copied through capnp-es's fallback", () => {
    expect(WRAPS_SEGMENTS_IN_PLACE).toBe(true);
    const message = newMessage();
    message.getSegment(0).setUint32(0, 0);
    const decoded = decodeFrame(frameBytes(message));
    expect(decoded._capnp.segments[0]!.byteLength).toBe(8);
  });
});

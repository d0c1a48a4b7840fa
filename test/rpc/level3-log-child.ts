// Run by level3-logging.test.ts with DEBUG=capmesh:handoff: four vats in
// this process over unix sockets. Introducer C hands recipient A host B's
// Counter (direct, behind the 3PH embargo: B's side of the C -> B link is
// held so A's Accept waits for its Disembargo), then host R's, whose
// provision R refuses (A falls back to the vine). Prints the vats' ids on
// stdout; the log lines go to stderr.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message } from "capnp-es";
import type { NetworkConnection } from "../../src/rpc/vat-network.js";
import { readIncoming } from "../../src/rpc/wire.js";
import { Cleanup } from "../auth/helpers.js";
import { eventually } from "./helpers/raw-peer.js";
import { link, vat } from "./helpers/level3-vats.js";

/** Holds what arrives on `net` except Provides until release(). */
function hold(net: NetworkConnection): () => void {
  const deliver = net.stream.onMessage;
  const held: Message[] = [];
  let holding = true;
  net.stream.onMessage = (message) => {
    if (holding && readIncoming(message, undefined, true).kind !== "provide") held.push(message);
    else deliver(message);
  };
  return () => {
    holding = false;
    for (const message of held.splice(0)) deliver(message);
  };
}

const dir = mkdtempSync(join(tmpdir(), "capmesh-l3log-"));
const cleanup = new Cleanup();
try {
  const b = await vat("b", dir, cleanup);
  const r = await vat("r", dir, cleanup, { thirdParty: { maxProvisionsPerRecipient: 0 } });
  const c = await vat("c", dir, cleanup);
  const a = await vat("a", dir, cleanup);
  const fromB = await link(c, b, cleanup);
  const fromR = await link(c, r, cleanup);
  const intro = await link(a, c, cleanup);

  // A handoff that goes direct, with the embargo waiting and lifted.
  c.node.offer = () => fromB.dup();
  const release = hold(b.system.liveConnection(c.identity.id)!);
  const direct = intro.next().counter;
  const first = direct.add({ delta: 1n });
  await eventually(() => (b.system.preferred(a.identity.id)?.connection.stats().acceptsWaiting ?? 0) === 1, "B to hold A's Accept for its Disembargo");
  release();
  await first;
  await direct.whenResolved();

  // A handoff that falls back: R refuses the provision, so A's Accept.
  c.node.offer = () => fromR.dup();
  const { counter: vine } = await intro.next();
  await vine.whenResolved();
  await vine.add({ delta: 1n });
  direct.release();
  vine.release();
  process.stdout.write(JSON.stringify({ a: a.identity.id, b: b.identity.id, r: r.identity.id, c: c.identity.id }) + "\n");
} finally {
  await cleanup.run();
  rmSync(dir, { recursive: true, force: true });
}

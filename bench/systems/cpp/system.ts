// The C++ reference: peers/cpp/bench-peer.c++, built by test/helpers/cpp.ts.
//   bench-peer serve <address>                    prints `listening <address>`
//   bench-peer client <address> <figure> <seconds> prints the figure's JSON line
import fs from "node:fs";
import type { Launch } from "../../lib/systems.js";

type Availability = { ok: true } | { ok: false; reason: string };

interface CppHelper {
  cppPeerAvailable(): Availability | boolean | Promise<Availability | boolean>;
  buildCppPeers(): Promise<{ interopPeer: unknown; benchPeer: unknown }>;
}

function binaryPath(peer: unknown): string | undefined {
  if (typeof peer === "string") return peer;
  if (typeof peer === "object" && peer !== null) {
    const p = (peer as { path?: unknown; bin?: unknown }).path ?? (peer as { bin?: unknown }).bin;
    if (typeof p === "string") return p;
  }
  return undefined;
}

export async function prepare(): Promise<Launch> {
  // Not a static import: the helper is another engineer's and may not exist yet.
  const spec = "../../../test/helpers/cpp.js";
  let helper: CppHelper;
  try {
    helper = (await import(spec)) as CppHelper;
  } catch {
    return { unavailable: "skipped: test/helpers/cpp.ts (the C++ peer build helper) is not there yet" };
  }
  const available = await helper.cppPeerAvailable();
  const ok = typeof available === "boolean" ? available : available.ok;
  if (!ok) {
    const why = typeof available === "object" && !available.ok ? `: ${available.reason}` : "";
    return { unavailable: `skipped: C++ peer cannot be built here${why}` };
  }
  let peers: { benchPeer: unknown };
  try {
    peers = await helper.buildCppPeers();
  } catch (err) {
    return { unavailable: `C++ peer build failed: ${(err instanceof Error ? err.message : String(err)).split("\n")[0]}` };
  }
  const bin = binaryPath(peers.benchPeer);
  if (bin === undefined || !fs.existsSync(bin)) return { unavailable: "C++ bench-peer binary missing after the build" };
  return { server: [bin, "serve"], client: [bin, "client"] };
}

// capnp-es's client against the C++ server: capnp-es's own server cannot
// bootstrap (see ../capnp-es), but its client side can still be measured.
import { fileURLToPath } from "node:url";
import { tsxCommand, type Launch } from "../../lib/systems.js";
import { generate, stale } from "../capnp-es/gen.js";
import { prepare as prepareCpp } from "../cpp/system.js";

export async function prepare(): Promise<Launch> {
  const cpp = await prepareCpp();
  if ("unavailable" in cpp) return cpp;
  if (stale()) generate();
  return {
    server: cpp.server,
    client: tsxCommand(fileURLToPath(new URL("../capnp-es/client.ts", import.meta.url))),
    note: "capnp-es client against the C++ bench-peer server",
  };
}

// capnp-es: regenerate bench.ts from the schema when it is stale, then run
// server.ts/client.ts as usual.
import { defaultLaunch, type Launch } from "../../lib/systems.js";
import { generate, stale } from "./gen.js";

export async function prepare(): Promise<Launch> {
  if (stale()) generate();
  return defaultLaunch("capnp-es");
}

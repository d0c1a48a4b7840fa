// capmesh serving bench/schema/bench.capnp.
import { formatAddress, parseAddress } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { Bench } from "../../schema/bench.js";
import { listen } from "../../../src/rpc/index.js";
import { BenchImpl } from "./bench-impl.js";

await runServer(async (address) => {
  // Plain Cap'n Proto, as every other system here: the handshake is measured in bench/auth.
  const listener = await listen(formatAddress(address), { bootstrap: Bench.server(new BenchImpl(0)), plain: true });
  return parseAddress(listener.address);
});

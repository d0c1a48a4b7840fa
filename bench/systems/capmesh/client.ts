// capmesh client for the benchmark figures.
import { formatAddress } from "../../lib/address.js";
import { runClient } from "../../lib/client.js";
import { Bench } from "../../schema/bench.js";
import { connect } from "../../../src/rpc/index.js";
import { benchConnection } from "./connection.js";

await runClient(async (address) => {
  const session = await connect(formatAddress(address));
  return benchConnection(session.bootstrap(Bench), () => session.close());
});

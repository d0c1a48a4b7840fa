// capmesh. connect shs: listen with an identity (handshake required; box-stream
// on TCP, authentication only on unix, the defaults); connect plain: plain
// Cap'n Proto, no identity; box: src/auth/box-stream.ts alone (fixed keys),
// counting the bytes.
import net from "node:net";
import { formatAddress, listen as listenSocket, parseAddress, tuneAccepted } from "../../../lib/address.js";
import { runServer } from "../../../lib/server.js";
import { BenchImpl } from "../../../systems/capmesh/bench-impl.js";
import { Bench } from "../../../schema/bench.js";
import { boxStream } from "../../../../src/auth/box-stream.js";
import { listen } from "../../../../src/index.js";
import { networkKey, serverBoxKeys, serverIdentity } from "../../keys.js";
import { serveCount } from "../../streams.js";

await runServer(async (address, [figure, variant]) => {
  if (figure === "box") {
    return listenSocket(
      net.createServer((socket) => {
        tuneAccepted(socket);
        // Half-open, so the count can go back after the client's goodbye.
        serveCount(boxStream(socket, serverBoxKeys, { allowHalfOpen: true }));
      }),
      address,
    );
  }
  const bootstrap = Bench.server(new BenchImpl(0));
  const security = variant === "plain" ? { plain: true } : { identity: serverIdentity, networkKey };
  const listener = await listen(formatAddress(address), { bootstrap, ...security });
  return parseAddress(listener.address);
});

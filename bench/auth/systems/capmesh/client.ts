// capmesh. connect: connect() (with the server's key unless "plain"), one
// ping on the bootstrap Bench, close; box: src/auth/box-stream.ts alone.
import { connect as dial, formatAddress } from "../../../lib/address.js";
import { Bench } from "../../../schema/bench.js";
import { boxStream } from "../../../../src/auth/box-stream.js";
import { connect } from "../../../../src/index.js";
import { runAuthClient } from "../../harness.js";
import { clientBoxKeys, clientIdentity, networkKey, serverIdentity } from "../../keys.js";
import { readCount, writeAll } from "../../streams.js";

await runAuthClient(([variant]) => {
  const security = variant === "plain" ? {} : { identity: clientIdentity, networkKey, remoteKey: serverIdentity.publicKey };
  return {
    async connect(address) {
      const session = await connect(formatAddress(address), security);
      const bench = session.bootstrap(Bench);
      const { n } = await bench.ping({ n: 7 });
      if (n !== 7) throw new Error(`ping(7) returned ${n}`);
      return async () => {
        bench.release();
        await session.close();
      };
    },
    async push(address, chunk, count) {
      const stream = boxStream(await dial(address), clientBoxKeys);
      const reply = readCount(stream);
      await writeAll(stream, chunk, count);
      const bytes = await reply;
      stream.destroy();
      return bytes;
    },
  };
});

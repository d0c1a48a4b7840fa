// SSB's JavaScript stack: secret-handshake + one 8-byte round trip through its
// box-stream; pull-box-stream alone (fixed keys) for throughput.
import { once } from "node:events";
import { connect } from "../../../lib/address.js";
import { runAuthClient } from "../../harness.js";
import { clientBoxKeys, clientIdentity, networkKey, serverIdentity } from "../../keys.js";
import { boxes, buffer, handshake, keyPair, pull, shs, ssbCrypto, toPull, type End, type Source } from "../../ssb.js";

const hello = Buffer.from("capmesh!");
const startClient = shs.createClient(keyPair(clientIdentity), buffer(networkKey), 5000);
const serverKey = buffer(serverIdentity.publicKey);

/** Sends `hello`, then holds until `end()`, which ends the stream (the goodbye). */
function helloThenHold(): { source: Source; end(): void } {
  let sent = false;
  let ended = false;
  let waiting: ((end: End) => void) | undefined;
  return {
    source(end, cb) {
      if (end !== null) return cb(end);
      if (!sent) {
        sent = true;
        return cb(null, hello);
      }
      if (ended) return cb(true);
      waiting = cb;
    },
    end() {
      ended = true;
      waiting?.(true);
    },
  };
}

await runAuthClient(() => ({
  notes: { connect: ssbCrypto, box: ssbCrypto },
  async connect(address) {
    const socket = await connect(address);
    const secure = await handshake(socket, (cb) => startClient(serverKey, cb));
    const out = helloThenHold();
    pull(out.source, secure.sink);
    await new Promise<void>((resolve, reject) =>
      secure.source(null, (end, data) => (end || data?.length !== hello.length ? reject(end ?? new Error("short echo")) : resolve())),
    );
    return async () => {
      const closed = once(socket, "close");
      pull(secure.source, pull.drain());
      out.end();
      await closed;
    };
  },
  async push(address, chunk, count) {
    const socket = await connect(address);
    const wire = toPull.duplex(socket);
    const reply = new Promise<number>((resolve, reject) =>
      pull(
        wire.source,
        boxes.createUnboxStream(buffer(clientBoxKeys.decryptKey), buffer(clientBoxKeys.decryptNonce)),
        pull.collect((err, values) => (err ? reject(err) : resolve(Number(Buffer.concat(values).readBigUInt64LE(0))))),
      ),
    );
    const data = buffer(chunk);
    let sent = 0;
    const source: Source = (end, cb) => (end !== null ? cb(end) : sent++ < count ? cb(null, data) : cb(true));
    pull(source, boxes.createBoxStream(buffer(clientBoxKeys.encryptKey), buffer(clientBoxKeys.encryptNonce)), wire.sink);
    return reply;
  },
}));

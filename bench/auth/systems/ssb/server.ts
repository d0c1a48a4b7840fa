// SSB's JavaScript stack. connect: secret-handshake, then echo through its
// box-stream; box: pull-box-stream alone (fixed keys), counting the bytes.
import net from "node:net";
import { listen, tuneAccepted } from "../../../lib/address.js";
import { runServer } from "../../../lib/server.js";
import { networkKey, serverBoxKeys, serverIdentity } from "../../keys.js";
import { countReply } from "../../streams.js";
import { boxes, buffer, handshake, keyPair, pull, shs, toPull } from "../../ssb.js";

const startServer = shs.createServer(keyPair(serverIdentity), (_pub, cb) => cb(null, true), buffer(networkKey), 5000);

function echo(socket: net.Socket): void {
  handshake(socket, startServer).then(
    (secure) => pull(secure.source, secure.sink),
    () => socket.destroy(),
  );
}

function count(socket: net.Socket): void {
  const wire = toPull.duplex(socket);
  let bytes = 0;
  pull(
    wire.source,
    boxes.createUnboxStream(buffer(serverBoxKeys.decryptKey), buffer(serverBoxKeys.decryptNonce)),
    pull.drain(
      (data) => void (bytes += data.length),
      (err) => {
        if (err !== null && err !== true) return socket.destroy();
        pull(pull.values([countReply(bytes)]), boxes.createBoxStream(buffer(serverBoxKeys.encryptKey), buffer(serverBoxKeys.encryptNonce)), wire.sink);
      },
    ),
  );
}

await runServer((address, [figure]) =>
  listen(
    // Half-open, so the count can go back after the client's end.
    net.createServer({ allowHalfOpen: true }, (socket) => {
      tuneAccepted(socket);
      socket.on("error", () => socket.destroy());
      (figure === "box" ? count : echo)(socket);
    }),
    address,
  ),
);

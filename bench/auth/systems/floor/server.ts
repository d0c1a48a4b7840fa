// The floor: a bare socket. connect: echo; box: count the bytes.
import net from "node:net";
import { listen, tuneAccepted } from "../../../lib/address.js";
import { runServer } from "../../../lib/server.js";
import { serveCount } from "../../streams.js";

await runServer((address, [figure]) =>
  listen(
    net.createServer((socket) => {
      tuneAccepted(socket);
      socket.on("error", () => socket.destroy());
      if (figure === "box") serveCount(socket);
      else socket.pipe(socket);
    }),
    address,
  ),
);

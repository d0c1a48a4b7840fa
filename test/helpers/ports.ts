// Addresses for tests that need a dial to fail.
import * as net from "node:net";

/** A loopback TCP port that was just listened on and closed: dials to it are refused. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface SilentListener {
  readonly address: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Closes what it accepted (their dials then fail). */
  hangUp(): void;
  /** Stops listening and closes what it accepted. */
  close(): Promise<void>;
}

/**
 * A unix listener at `path` that accepts connections and never says a word
 * (no handshake): dials to it hang until their time runs out, or until
 * hangUp() closes what it accepted.
 */
export async function silentListener(path: string): Promise<SilentListener> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const hangUp = () => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    address: `unix:${path}`,
    get accepted() {
      return accepted;
    },
    hangUp,
    close: () =>
      new Promise<void>((resolve) => {
        hangUp();
        server.close(() => resolve());
      }),
  };
}

// Benchmark addresses, in the form the C++ peer (kj) also understands:
//   unix:<path>      a unix-domain socket
//   <host>:<port>    TCP, e.g. 127.0.0.1:40123 (loopback only); tcp://<host>:<port> too
import net from "node:net";
import fs from "node:fs";

export type Address =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number };

export function parseAddress(address: string): Address {
  let text = address;
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (path.length === 0) throw new Error(`empty unix socket path in "${text}"`);
    return { kind: "unix", path };
  }
  // The C++ peer reports TCP addresses as tcp://host:port.
  if (text.startsWith("tcp://")) text = text.slice("tcp://".length);
  const colon = text.lastIndexOf(":");
  if (colon <= 0) throw new Error(`bad address "${text}": want unix:<path> or <host>:<port>`);
  let host = text.slice(0, colon);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(text.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port in "${text}"`);
  return { kind: "tcp", host, port };
}

export function formatAddress(a: Address): string {
  if (a.kind === "unix") return `unix:${a.path}`;
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Options for `net.connect`. */
export function connectOptions(a: Address): net.NetConnectOpts {
  return a.kind === "unix" ? { path: a.path } : { host: a.host, port: a.port, noDelay: true };
}

/** Connects and resolves once the socket is open. */
export function connect(a: Address): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(connectOptions(a));
    const onError = (err: Error): void => reject(err);
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      if (a.kind === "tcp") socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/**
 * Listens on `a` with `server`; removes a stale unix socket file first and
 * again at process exit.
 */
export function listen(server: net.Server, a: Address): Promise<Address> {
  if (a.kind === "unix") {
    try {
      fs.unlinkSync(a.path);
    } catch {
      // not there: fine
    }
    process.once("exit", () => {
      try {
        fs.unlinkSync(a.path);
      } catch {
        // already gone
      }
    });
  }
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const done = (): void => {
      server.off("error", reject);
      if (a.kind === "tcp") {
        const info = server.address();
        const port = typeof info === "object" && info !== null ? info.port : a.port;
        resolve({ kind: "tcp", host: a.host, port });
      } else {
        resolve(a);
      }
    };
    if (a.kind === "unix") server.listen(a.path, done);
    else server.listen(a.port, a.host, done);
  });
}

/** Sets TCP_NODELAY on accepted TCP sockets (a no-op on unix sockets). */
export function tuneAccepted(socket: net.Socket): void {
  if (socket.remoteFamily !== undefined) socket.setNoDelay(true);
}

// The rows of the auth bench: which system, with which arguments, in which figures.
import type { AuthFigure } from "./harness.js";

export type Transport = "unix" | "tcp";

/** Issue 3: connect + handshake + first call under 2 ms median on loopback. */
export const TARGET_CONNECT_US = 2000;

export interface Row {
  /** Name on the command line (--systems) and in the notes. */
  key: string;
  /** Directory under bench/auth/systems/ holding server.ts and client.ts. */
  dir: string;
  /** Arguments both programs get before their own (server: after the figure). */
  options: string[];
  figures: AuthFigure[];
  /** What the row measures, for the notes. */
  description: string;
}

export const ROWS: Row[] = [
  {
    key: "floor",
    dir: "floor",
    options: [],
    figures: ["connect", "box"],
    description: "a bare Node socket: connect is dial + one 8-byte echo; box is the bytes written straight to the socket.",
  },
  {
    key: "capmesh",
    dir: "capmesh",
    options: ["shs"],
    figures: ["connect", "box"],
    description:
      "connect: `connect()` with the server's key (shs1 handshake; then box-stream on TCP, the bare socket on unix: the defaults), " +
      "one `ping` on the bootstrap Bench, then `await session.close()`, which resolves once both ends have closed (the goodbyes too), as ssb's client waits for its socket to close; the server is `listen()` with an identity. " +
      "box: `boxStream(socket, keys)` from src/auth/box-stream.ts on both ends.",
  },
  {
    key: "capmesh-plain",
    dir: "capmesh",
    options: ["plain"],
    figures: ["connect"],
    description: "`connect()` without a key to a `listen({ plain: true })` server: plain Cap'n Proto, no handshake; one `ping`, close.",
  },
  {
    key: "ssb",
    dir: "ssb",
    options: [],
    figures: ["connect", "box"],
    description:
      "SSB's JavaScript stack over net sockets via stream-to-pull-stream. connect: secret-handshake's client and server, then " +
      "one 8-byte round trip through its box-stream (an echo), then the goodbyes, until the socket closes. box: pull-box-stream on both ends.",
  },
];

export function rowLabel(row: Row, figure: AuthFigure, transport: Transport): string {
  switch (row.key) {
    case "floor":
      return figure === "box" ? "plain TCP (floor)" : `plain ${transport === "unix" ? "unix socket" : "TCP"}: dial + echo (floor)`;
    case "capmesh":
      if (figure === "box") return "capmesh box-stream";
      return transport === "unix" ? "capmesh, shs (authentication only)" : "capmesh, shs + box-stream";
    case "capmesh-plain":
      return "capmesh, plain Cap'n Proto";
    case "ssb":
      return figure === "box" ? "SSB pull-box-stream" : "SSB secret-handshake + box-stream";
    default:
      return row.key;
  }
}

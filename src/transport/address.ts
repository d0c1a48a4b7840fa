// Transport addresses: where a vat listens or what it dials.
//
// Accepted spellings:
//   unix:/abs/path        unix:relative/path
//   tcp://host:port       tcp://[v6addr]:port
//   host:port             [v6addr]:port        (the C++ tools' bare form)
// `*` as a host means "all interfaces" (as in the C++ tools) and becomes
// 0.0.0.0. Canonical output is `unix:<path>` or `tcp://host:port`.

import { isIPv6 } from "node:net";

export type Address =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; host: string; port: number };

export const ACCEPTED_ADDRESS_FORMS =
  "unix:/path/to/socket, unix:relative/path, tcp://host:port, tcp://[ipv6]:port, host:port or [ipv6]:port";

/** A string that is not a transport address. */
export class AddressError extends Error {
  readonly input: string;
  constructor(input: string, problem: string) {
    super(`invalid address ${JSON.stringify(input)}: ${problem}; expected one of ${ACCEPTED_ADDRESS_FORMS}`);
    this.name = "AddressError";
    this.input = input;
  }
}

const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;
const PORT = /^[0-9]{1,5}$/;

function parsePort(input: string, text: string): number {
  if (text === "") throw new AddressError(input, "the port is missing");
  if (!PORT.test(text)) throw new AddressError(input, `port ${JSON.stringify(text)} is not a decimal number`);
  const port = Number(text);
  if (port > 65535) throw new AddressError(input, `port ${port} is out of range (0-65535)`);
  return port;
}

function parseHostPort(input: string, text: string): Address {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw new AddressError(input, "an IPv6 address is missing its closing ']'");
    const host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (!isIPv6(host)) throw new AddressError(input, `${JSON.stringify(host)} is not an IPv6 address`);
    if (!rest.startsWith(":")) throw new AddressError(input, "expected ':port' after the bracketed IPv6 address");
    return { kind: "tcp", host, port: parsePort(input, rest.slice(1)) };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw new AddressError(input, "the port is missing");
  const host = text.slice(0, colon);
  if (host.includes(":")) {
    throw new AddressError(input, "IPv6 addresses must be written in brackets, e.g. [::1]:4000");
  }
  const port = parsePort(input, text.slice(colon + 1));
  if (host === "") throw new AddressError(input, "the host is missing");
  if (host === "*") return { kind: "tcp", host: "0.0.0.0", port };
  if (!HOSTNAME.test(host) || host.includes("..")) {
    throw new AddressError(input, `${JSON.stringify(host)} is not a valid host name or IPv4 address`);
  }
  return { kind: "tcp", host, port };
}

/** Parses an address string. Throws AddressError saying what is wrong. */
export function parseAddress(s: string): Address {
  if (typeof s !== "string") throw new TypeError(`an address must be a string, got ${typeof s}`);
  if (s === "") throw new AddressError(s, "it is empty");
  if (s.startsWith("unix:")) {
    const path = s.slice("unix:".length);
    if (path === "") throw new AddressError(s, "the socket path is missing");
    if (path.includes("\0")) throw new AddressError(s, "the socket path contains a NUL byte");
    return { kind: "unix", path };
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(s);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== "tcp") {
      throw new AddressError(s, `unsupported scheme "${scheme[1]}"`);
    }
    const rest = s.slice(scheme[0].length);
    if (/[/?#@]/.test(rest)) {
      throw new AddressError(s, "a tcp address is only host:port (no path, query or user part)");
    }
    return parseHostPort(s, rest);
  }
  if (s.startsWith("tcp:")) throw new AddressError(s, 'write "tcp://host:port" (with two slashes)');
  if (s.startsWith("/") || s.startsWith("./")) {
    throw new AddressError(s, `a unix socket path needs the "unix:" prefix, e.g. unix:${s}`);
  }
  if (/[/?#@\s]/.test(s)) throw new AddressError(s, "it is not host:port");
  return parseHostPort(s, s);
}

/** The canonical spelling: `unix:<path>` or `tcp://host:port` (IPv6 bracketed). */
export function formatAddress(a: Address): string {
  if (a.kind === "unix") return `unix:${a.path}`;
  const host = a.host.includes(":") ? `[${a.host}]` : a.host;
  return `tcp://${host}:${a.port}`;
}

/** Accepts either form; returns a validated Address. */
export function toAddress(address: string | Address): Address {
  if (typeof address === "string") return parseAddress(address);
  if (address && (address.kind === "unix" || address.kind === "tcp")) {
    // Round-trip so an Address object gets the same validation as a string.
    return parseAddress(formatAddress(address));
  }
  throw new TypeError("expected an address string or an Address object");
}

import { describe, expect, it } from "vitest";
import { AddressError, formatAddress, parseAddress, toAddress } from "../../src/transport/index.js";

describe("parseAddress", () => {
  it.each([
    ["unix:/tmp/capmesh.sock", { kind: "unix", path: "/tmp/capmesh.sock" }],
    ["unix:relative/dir/sock", { kind: "unix", path: "relative/dir/sock" }],
    ["unix:sock", { kind: "unix", path: "sock" }],
    ["tcp://127.0.0.1:4000", { kind: "tcp", host: "127.0.0.1", port: 4000 }],
    ["tcp://localhost:0", { kind: "tcp", host: "localhost", port: 0 }],
    ["tcp://example.com:65535", { kind: "tcp", host: "example.com", port: 65535 }],
    ["TCP://host-1.internal:80", { kind: "tcp", host: "host-1.internal", port: 80 }],
    ["tcp://[::1]:4000", { kind: "tcp", host: "::1", port: 4000 }],
    ["tcp://[fe80::1:2]:1", { kind: "tcp", host: "fe80::1:2", port: 1 }],
    ["127.0.0.1:4000", { kind: "tcp", host: "127.0.0.1", port: 4000 }],
    ["localhost:1234", { kind: "tcp", host: "localhost", port: 1234 }],
    ["[::1]:4000", { kind: "tcp", host: "::1", port: 4000 }],
    ["[::]:0", { kind: "tcp", host: "::", port: 0 }],
    ["*:4000", { kind: "tcp", host: "0.0.0.0", port: 4000 }],
  ])("accepts %s", (input, expected) => {
    expect(parseAddress(input)).toEqual(expected);
  });

  it.each([
    ["", /empty/],
    ["unix:", /socket path is missing/],
    ["unix:/a\0b", /NUL/],
    ["/tmp/sock", /needs the "unix:" prefix, e.g. unix:\/tmp\/sock/],
    ["./sock", /needs the "unix:" prefix/],
    ["http://host:80", /unsupported scheme "http"/],
    ["tcp:host:80", /two slashes/],
    ["tcp://host", /port is missing/],
    ["tcp://host:", /port is missing/],
    ["tcp://:80", /host is missing/],
    ["tcp://host:http", /not a decimal number/],
    ["tcp://host:65536", /out of range/],
    ["tcp://host:-1", /not a decimal number/],
    ["tcp://host:80/path", /only host:port/],
    ["tcp://user@host:80", /only host:port/],
    ["tcp://::1:80", /must be written in brackets/],
    ["::1:80", /must be written in brackets/],
    ["tcp://[::1:80", /closing '\]'/],
    ["tcp://[::1]80", /expected ':port'/],
    ["tcp://[not-v6]:80", /not an IPv6 address/],
    ["tcp://bad host:80", /not a valid host name/],
    ["tcp://a..b:80", /not a valid host name/],
    ["hostonly", /port is missing/],
    ["host :80", /not host:port/],
  ])("rejects %j", (input, message) => {
    let err: unknown;
    try {
      parseAddress(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AddressError);
    expect((err as Error).message).toMatch(message);
    // Every error lists what is accepted.
    expect((err as Error).message).toMatch(/unix:\/path\/to\/socket.*tcp:\/\/host:port.*\[ipv6\]:port/);
  });

  it("rejects non-strings with a TypeError", () => {
    expect(() => parseAddress(42 as unknown as string)).toThrow(TypeError);
  });
});

describe("formatAddress", () => {
  it.each([
    ["unix:/tmp/x.sock", "unix:/tmp/x.sock"],
    ["unix:rel/x", "unix:rel/x"],
    ["tcp://127.0.0.1:80", "tcp://127.0.0.1:80"],
    ["127.0.0.1:80", "tcp://127.0.0.1:80"],
    ["[::1]:80", "tcp://[::1]:80"],
    ["tcp://[::1]:80", "tcp://[::1]:80"],
  ])("%s -> %s, and round-trips", (input, canonical) => {
    const a = parseAddress(input);
    expect(formatAddress(a)).toBe(canonical);
    expect(parseAddress(formatAddress(a))).toEqual(a);
  });
});

describe("toAddress", () => {
  it("validates Address objects", () => {
    expect(toAddress({ kind: "tcp", host: "::1", port: 5 })).toEqual({ kind: "tcp", host: "::1", port: 5 });
    expect(() => toAddress({ kind: "tcp", host: "x", port: 70000 })).toThrow(AddressError);
    expect(() => toAddress({ kind: "unix", path: "" })).toThrow(AddressError);
    expect(() => toAddress({ kind: "bogus" } as never)).toThrow(TypeError);
  });
});

// The dial timeout, made deterministic: connection attempts never complete.
import { afterEach, describe, expect, it, vi } from "vitest";

const attempts: import("node:net").Socket[] = [];

vi.mock("node:net", async (importOriginal) => {
  const net = await importOriginal<typeof import("node:net")>();
  return {
    ...net,
    // A socket that is never connected: neither 'connect' nor 'error' comes.
    createConnection: () => {
      const s = new net.Socket();
      attempts.push(s);
      return s;
    },
  };
});

const { SocketError, dialSocket } = await import("../../src/transport/index.js");

afterEach(() => {
  for (const s of attempts.splice(0)) s.destroy();
});

describe("dialSocket timeout", () => {
  it("gives up after timeoutMs with a clear error and destroys the attempt", async () => {
    const started = Date.now();
    const err = await dialSocket("tcp://127.0.0.1:4000", { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(err).toBeInstanceOf(SocketError);
    expect((err as InstanceType<typeof SocketError>).code).toBe("ETIMEDOUT");
    expect((err as Error).message).toBe("timed out after 50 ms connecting to tcp://127.0.0.1:4000");
    expect(attempts[0]!.destroyed).toBe(true);
  });

  it("abort while connecting destroys the attempt", async () => {
    const ac = new AbortController();
    const p = dialSocket("unix:/nowhere.sock", { signal: ac.signal });
    setTimeout(() => ac.abort(), 10);
    const err = await p.catch((e: unknown) => e);
    expect((err as InstanceType<typeof SocketError>).code).toBe("ABORT_ERR");
    expect(attempts[0]!.destroyed).toBe(true);
  });
});

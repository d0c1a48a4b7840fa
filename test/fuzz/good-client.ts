// The well-behaved client that checks, after every batch, that hostile
// connections cost the server nothing it owes others: a long-lived session
// opened before the batch and fresh ones (plain, and through the secret
// handshake and box-stream) must get correct answers within the deadline.
import { TestService } from "../interop/schema/interop.js";
import { connect, type Session } from "../../src/rpc/index.js";
import type { Target } from "./target/target.js";
import { errorText, within } from "./util.js";

export const GOOD_CLIENT_DEADLINE_MS = 2000;

async function exercise(svc: TestService, token: number): Promise<void> {
  const text = `good client ${token}`;
  const data = Uint8Array.from({ length: 64 }, (_, i) => (i * 31 + token) & 0xff);
  const echoed = await svc.echo({ text, data, n: BigInt(token) });
  if (echoed.text !== text || echoed.n !== BigInt(token) || Buffer.compare(echoed.data, data) !== 0) {
    throw new Error(`echo answered wrongly: ${JSON.stringify({ text: echoed.text, n: String(echoed.n) })}`);
  }
  // Pipelined: a call on a capability that has not arrived yet.
  const created = svc.newCounter({ start: BigInt(token) });
  let value: bigint;
  try {
    value = (await created.counter.add({ delta: 1n })).value;
  } finally {
    // Releases the pipelined client and whatever the results hold.
    created[Symbol.dispose]();
  }
  if (value !== BigInt(token) + 1n) throw new Error(`newCounter(${token}).add(1) answered ${value}`);
}

export class GoodClient {
  #session: Session | null = null;
  #svc: TestService | null = null;

  constructor(private readonly target: Target) {}

  /** Opens the long-lived session. */
  async open(): Promise<void> {
    this.#session = await connect(this.target.plainAddress);
    this.#svc = this.#session.bootstrap(TestService);
    await within(exercise(this.#svc, 0), GOOD_CLIENT_DEADLINE_MS * 5, "the first good call");
  }

  /**
   * Checks the server still serves correctly. Returns null when it does,
   * else what went wrong. `secure` adds a fresh session through the handshake.
   */
  async check(token: number, secure: boolean): Promise<string | null> {
    const problems: string[] = [];
    const attempt = async (what: string, run: () => Promise<void>) => {
      try {
        await within(run(), GOOD_CLIENT_DEADLINE_MS, what);
      } catch (e) {
        problems.push(`${what}: ${errorText(e)}`);
      }
    };
    if (this.#session?.connection.error) {
      problems.push(`the long-lived good session was closed: ${this.#session.connection.error.message}`);
    } else {
      await attempt("a call on the long-lived session", () => exercise(this.#svc!, token));
    }
    await attempt("a call on a fresh plain session", () => this.#fresh(this.target.plainAddress, {}, token));
    if (secure) {
      await attempt("a call on a fresh secure session", () =>
        this.#fresh(this.target.secureAddress, { remoteKey: this.target.serverKey, encrypt: true }, token),
      );
    }
    return problems.length === 0 ? null : problems.join("; ");
  }

  async #fresh(address: string, options: Parameters<typeof connect>[1], token: number): Promise<void> {
    const session = await connect(address, options);
    try {
      const svc = session.bootstrap(TestService);
      await exercise(svc, token);
      svc.release();
    } finally {
      await session.close();
    }
  }

  /** Sessions the good client keeps open on each listener (for the leak check). */
  get openSessions(): { plain: number; secure: number } {
    return { plain: this.#session && !this.#session.connection.error ? 1 : 0, secure: 0 };
  }

  async close(): Promise<void> {
    this.#svc?.release();
    this.#svc = null;
    const s = this.#session;
    this.#session = null;
    if (s) await within(s.close(), 5000, "the good session to close").catch(() => {});
  }
}

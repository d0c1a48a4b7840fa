// The server under fuzz together with its good client: started, restarted
// after a crash, and stopped as one.
import { GoodClient } from "./good-client.js";
import { runBatch, type BatchResult } from "./batch.js";
import { DEFAULT_RULES, type Rules } from "./checks.js";
import type { Case } from "./cases.js";
import { Target } from "./target/target.js";

export class FuzzServer {
  private constructor(
    public target: Target,
    public good: GoodClient,
  ) {}

  static async start(): Promise<FuzzServer> {
    const target = await Target.start();
    const good = new GoodClient(target);
    try {
      await good.open();
    } catch (e) {
      await good.close();
      await target.stop();
      throw e;
    }
    return new FuzzServer(target, good);
  }

  batch(cases: readonly Case[], token: number, rules: Rules = DEFAULT_RULES): Promise<BatchResult> {
    return runBatch(this.target, this.good, cases, token, rules);
  }

  async stop(): Promise<void> {
    await this.good.close();
    await this.target.stop();
  }
}

/** Runs `cases` once against a fresh server; returns the batch result. */
export async function replay(cases: readonly Case[], rules: Rules = DEFAULT_RULES): Promise<BatchResult> {
  const server = await FuzzServer.start();
  try {
    return await server.batch(cases, 1, rules);
  } finally {
    await server.stop();
  }
}

// Run by logging.test.ts with DEBUG set: makes one call that answers and one
// that fails over a real unix socket, so the test can read the log lines.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, listen } from "../../src/rpc/index.js";
import { Counter, CounterImpl } from "./fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-log-"));
const listener = await listen(`unix:${join(dir, "log.sock")}`, { bootstrap: Counter.server(new CounterImpl(41n)) });
const session = await connect(listener.address);
const counter = session.bootstrap(Counter);
await counter.add({ delta: 1n });
await counter.fail({ reason: "as planned" }).catch(() => {});
await session.close();
await listener.close();
rmSync(dir, { recursive: true, force: true });

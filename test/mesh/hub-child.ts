// A hub in a child process, for tests that kill the hub (the introducer)
// mid-handoff: startHub on argv[2] (its home) with its socket at argv[3],
// then one line "hub <env as JSON>" with what peers need to join.
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub } from "../../src/mesh/hub.js";

const hub = await startHub({ home: process.argv[2]!, socket: process.argv[3]!, identity: generateIdentity() });
console.log(`hub ${JSON.stringify(hub.env)}`);
process.once("SIGTERM", () => void hub.close().then(() => process.exit(0)));

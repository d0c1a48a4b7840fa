// A hub in a child process for the engine tests: startHub on argv[2] (its
// home) with its socket at argv[3] and the plugin sections in argv[4]
// (JSON), printing plugin log lines as `capmesh serve` does (stderr), then
// one line "hub <env as JSON>" with what peers need to join.
import { generateIdentity } from "../../src/auth/identity.js";
import { startHub } from "../../src/mesh/hub.js";

const hub = await startHub({
  home: process.argv[2]!,
  socket: process.argv[3]!,
  identity: generateIdentity(),
  plugins: JSON.parse(process.argv[4] ?? "{}") as Record<string, unknown>,
});
console.log(`hub ${JSON.stringify(hub.env)}`);
process.once("SIGTERM", () => void hub.close().then(() => process.exit(0)));

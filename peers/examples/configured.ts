// A plugin: registers "configured", reads its section of the hub's
// configuration (`plugins.configured` in capmesh.config.json) through its
// engine, and logs through the engine: the hub prints the line tagged with
// the plugin's name. It serves a closure: greet(name).
import { closure, fromValue, joinMesh, toValue } from "../../src/index.js";

let settings = { greeting: "hello" }; // defaults, for a hub with no section for us

const mesh = await joinMesh({
  name: "configured",
  provide: closure((name: string) => `${settings.greeting}, ${name}`),
  info: { version: "1.0.0", description: "greets as its configuration says" },
});
const { config } = await mesh.engine.config(); // null when the hub has no section for "configured"
settings = { ...settings, ...(fromValue(config) as Partial<typeof settings> | null) };
await mesh.engine.log({ level: "info", message: `greeting with "${settings.greeting}"`, fields: toValue(settings) });
console.log(`registered "configured" as ${mesh.id}; greeting with "${settings.greeting}"`);

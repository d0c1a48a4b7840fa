import { callable, closure, fromValue, joinMesh, startHub, toValue } from "../src/index.js";
import { Closure } from "../src/gen/engine.js";

// A hub with a configuration section for the plugin "tool"; its log lines printed here.
await using hub = await startHub({
  plugins: { tool: { greeting: "hello" } },
  pluginLog: (line) => console.log(`[${line.plugin}] ${line.message}`),
});

// The plugin is a closure. Inside its call it reads its configuration and logs
// through its engine, and has the engine call the function it was given.
const greet = closure(async (name: string, decorate: Closure) => {
  const { greeting } = fromValue((await tool.engine.config()).config) as { greeting: string };
  await tool.engine.log({ level: "info", message: `greeting ${name}` });
  const { result } = await tool.engine.eval({ closure: decorate, args: [toValue(`${greeting}, ${name}`)] });
  return fromValue(result);
});
await using tool = await joinMesh({ name: "tool", provide: greet });

// A client calls it like a function, and passes a function of its own.
await using client = await joinMesh();
const toolFn = callable(client.connect("tool", Closure));
console.log(await toolFn("mesh", (text: string) => `${text}!`));
console.log(`${hub.stats().connections} peers connected, ${hub.stats().contexts} call contexts open`);

// Run by idle-session.test.ts: connects, makes a call, prints "called", and
// never closes the session. argv[2] is the address; argv[3] "hold" asks the
// session to hold the process anyway.
import { connect } from "../../src/rpc/index.js";
import { Counter } from "./fixtures.js";

const session = await connect(process.argv[2]!, { holdProcess: process.argv[3] === "hold" });
const counter = session.bootstrap(Counter);
console.log("called", (await counter.add({ delta: 1n })).value);
void session.closed.then(() => console.log("closed"));

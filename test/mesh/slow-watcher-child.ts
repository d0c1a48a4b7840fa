// A watcher process for the refusal tests: joins the hub named by the
// CAPMESH_* environment and watches through the SDK, printing one line per
// event. On the first `joined` it stops its whole process for argv[2] ms (a
// consumer stuck in synchronous work), so it answers nothing while the hub's
// backlog for it grows past its bounds.
import { joinMesh } from "../../src/mesh/join.js";

const stallMs = Number(process.argv[2]);
let stalled = false;
const peer = await joinMesh({ handleSignals: false, reconnect: false });
using _watch = await peer.watch((event) => {
  console.log(event.which === "snapshot" ? `snapshot ${event.snapshot.length}` : event.which);
  if (event.which === "joined" && !stalled) {
    stalled = true;
    const until = Date.now() + stallMs;
    while (Date.now() < until) {
      // Busy: no socket is read, no event answered.
    }
  }
});
console.log("watching");
// Runs until the test closes its stdin.
process.stdin.resume();
await new Promise((resolve) => process.stdin.once("end", resolve));
await peer.close();

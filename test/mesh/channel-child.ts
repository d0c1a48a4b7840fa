// A plugin process for the channel tests: joins the hub named by the
// CAPMESH_* environment, registers argv[2], serves the RPC tests' Counter
// (so the name's ordinary capability keeps working beside channels) and
// accepts channels by protocol:
//   echo    the caller's bytes come back (a PassThrough)
//   who     answers the caller's identity as the plugin saw it, then ends
//   bye     answers "bye" and ends its side (a half close)
//   drop    the plugin destroys its end when the caller's first bytes arrive
//   refuse  refused with the reason "not today"
// Each channel prints "channel <protocol> from <caller>"; its end's close
// prints "closed <protocol>".
import { Duplex, PassThrough, Readable, Writable } from "node:stream";
import { joinMesh } from "../../src/mesh/join.js";
import { Counter, CounterImpl } from "../rpc/fixtures.js";

const name = process.argv[2]!;

const peer = await joinMesh({
  name,
  provide: Counter.server(new CounterImpl()),
  channels: ({ caller, protocol }) => {
    if (protocol === "refuse") throw new Error("not today");
    console.log(`channel ${protocol} from ${caller}`);
    let end: Duplex;
    if (protocol === "echo") end = new PassThrough();
    else if (protocol === "who") end = Duplex.from({ readable: Readable.from([caller]), writable: new Writable({ write: (_c, _e, cb) => cb() }) });
    else if (protocol === "bye") {
      end = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
      end.push("bye");
      end.push(null);
    } else if (protocol === "drop") {
      end = new Duplex({
        read() {},
        write(_c, _e, cb) {
          cb();
          this.destroy();
        },
      });
    } else throw new Error(`unknown protocol "${protocol}" (echo, who, bye, drop, refuse)`);
    end.once("close", () => console.log(`closed ${protocol}`));
    return end;
  },
});
console.log(`registered ${name} as ${peer.id}`);

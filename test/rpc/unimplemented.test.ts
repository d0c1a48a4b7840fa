// A peer that implements less than we do: it answers Bootstrap, but echoes
// Calls and Resolves back as Unimplemented (rpc.capnp: "the original sender
// can then simply release the cap to which the promise had resolved").
import { Message, utils } from "capnp-es";
import * as rpc from "capnp-es/capnp/rpc";
import { afterEach, describe, expect, it } from "vitest";
import { RpcConnection } from "../../src/rpc/connection.js";
import { RpcError, Session } from "../../src/rpc/index.js";
import { memoryStreamPair, type MessageStream } from "../../src/transport/message-stream.js";
import { Counter, CounterImpl } from "./fixtures.js";
import { until } from "./helpers/raw-peer.js";

class LimitedPeer {
  readonly seen: string[] = [];
  /** When set, Calls get an exception Return that keeps the param caps instead. */
  keepParams = false;

  constructor(private readonly stream: MessageStream) {
    stream.onMessage = (m) => this.receive(m);
    stream.onClose = () => {};
  }

  private send(build: (root: rpc.Message) => void): void {
    const m = new Message();
    build(m.initRoot(rpc.Message));
    this.stream.send(m);
  }

  private receive(m: Message): void {
    const root = m.getRoot(rpc.Message);
    switch (root.which()) {
      case rpc.Message.BOOTSTRAP: {
        const qid = root.bootstrap.questionId;
        this.seen.push("bootstrap");
        this.send((out) => {
          const ret = out._initReturn();
          ret.answerId = qid;
          ret.releaseParamCaps = false;
          const results = ret._initResults();
          utils.setInterfacePointer(0, results.content);
          results._initCapTable(1).get(0).senderHosted = 7;
        });
        return;
      }
      case rpc.Message.CALL: {
        this.seen.push("call");
        if (this.keepParams) {
          const qid = root.call.questionId;
          this.send((out) => {
            const ret = out._initReturn();
            ret.answerId = qid;
            ret.releaseParamCaps = false;
            ret._initException().reason = "kept your params";
          });
        } else {
          this.send((out) => (out.unimplemented = root));
        }
        return;
      }
      case rpc.Message.RESOLVE:
        this.seen.push("resolve");
        this.send((out) => (out.unimplemented = root));
        return;
      case rpc.Message.FINISH:
        this.seen.push("finish");
        return;
      case rpc.Message.RELEASE:
        this.seen.push(`release ${root.release.id}`);
        return;
      default:
        this.seen.push(`other ${root.which()}`);
    }
  }
}

const sessions: Session[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close();
});

function setup() {
  const [ours, theirs] = memoryStreamPair();
  const peer = new LimitedPeer(theirs);
  const session = new Session(new RpcConnection(ours, { name: "us" }), { id: "limited", authenticated: false, address: "memory" }, null);
  sessions.push(session);
  return { peer, session, counter: session.bootstrap(Counter) };
}

describe("Unimplemented coming back", () => {
  it("fails a call the peer does not implement with type unimplemented, and keeps the connection", async () => {
    const { counter, session } = setup();
    const err = await counter.add({ delta: 1n }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).type).toBe("unimplemented");
    expect(session.connection.error).toBeNull();
    // The question is gone (no Finish is owed for a call the peer never took).
    expect(session.connection.stats().questions).toBe(0);
  });

  it("releases the capabilities it had exported in the echoed call's params", async () => {
    const { counter, session } = setup();
    const mine = Counter.server(new CounterImpl());
    await counter.echo({ cap: mine }).catch(() => {});
    expect(session.connection.stats().exports).toBe(0);
    mine.release();
  });

  it("releases what a Resolve pointed at when the peer echoes the Resolve", async () => {
    const { counter, session, peer } = setup();
    peer.keepParams = true;
    let resolve!: (c: Counter) => void;
    const promised = Counter.fromPromise(new Promise<Counter>((r) => (resolve = r)));
    await expect(counter.echo({ cap: promised })).rejects.toThrow(/kept your params/);
    // The peer holds our promise export.
    expect(session.connection.stats().exports).toBe(1);
    resolve(Counter.server(new CounterImpl()));
    await until(() => peer.seen.includes("resolve"), "the Resolve to reach the peer");
    // The Resolve exported the resolution; the echo released it again.
    await until(() => session.connection.stats().exports === 1, "the resolution's export to be released");
    expect(session.connection.error).toBeNull();
    promised.release();
  });
});

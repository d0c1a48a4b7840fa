// What a server returns is checked against the method's results as it is
// encoded: a value that does not fit fails that call (the caller hears which
// field and why) and nothing else; a method with empty results ignores what
// its implementation happens to return (`(p) => log.push(p)` is fine).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, listen, RpcError, type Listener, type Session } from "../../src/rpc/index.js";
import { Greeter, Room, type GreeterServer, type RoomServer } from "../../src/gen/demo.js";

const dir = mkdtempSync(join(tmpdir(), "capmesh-results-"));
let listener: Listener;
let session: Session;
const said: string[] = [];

/** What greet() returns for each name: some of it does not fit GreetResults. */
const answers: Record<string, unknown> = {
  number: { greeting: 5 },
  typo: { greting: "hi" },
  string: "hi",
  fine: { greeting: "hello" },
};

beforeAll(async () => {
  const room: RoomServer = {
    // Returns a number (push's new length): the results are empty, so it is ignored.
    say: ({ text }) => said.push(text),
    join: () => ({ members: 1 }),
  };
  const greeter = {
    greet: ({ name }: { name: string }) => answers[name],
    room: () => ({ room: Room.server(room) }),
  } as unknown as GreeterServer;
  listener = await listen(`unix:${join(dir, "results.sock")}`, { bootstrap: Greeter.server(greeter) });
  session = await connect(listener.address);
});

afterAll(async () => {
  await session.close();
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("results a server returns", () => {
  it("fail that call when they do not fit, naming the method, the field and the expected type; the connection lives on", async () => {
    const greeter = session.bootstrap(Greeter);
    const failure = async (name: string): Promise<RpcError> => {
      const e = await greeter.greet({ name }).then(
        () => null,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(RpcError);
      expect((e as RpcError).type).toBe("failed");
      return e as RpcError;
    };
    expect((await failure("number")).message).toMatch(/Greeter\.greet.*greeting: expected Text \(a string\), got 5/);
    expect((await failure("typo")).message).toMatch(/Greeter\.greet.*greting: no such field/);
    expect((await failure("string")).message).toMatch(/Greeter\.greet.*got the string "hi"/);
    expect(await greeter.greet({ name: "fine" })).toEqual({ greeting: "hello" });
  });

  it("are ignored when the method's results are empty", async () => {
    const { room } = await session.bootstrap(Greeter).room({ name: "r" });
    if (room === null) throw new Error("no room");
    await expect(room.say({ who: "me", text: "one" })).resolves.toEqual({});
    await expect(room.say({ who: "me", text: "two" })).resolves.toEqual({});
    expect(said).toEqual(["one", "two"]);
  });
});

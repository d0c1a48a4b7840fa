// `npm start`: a two-party demo. A server process serves a chat Greeter on a
// unix socket; a client process proves who it is and checks who the server
// is (the secret handshake), then makes a typed call, a pipelined call (on a
// room it has not received yet) and passes a callback the server calls.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Greeter, Listener, Room, type GreeterServer, type RoomServer } from "../gen/demo.js";
import { generateIdentity } from "../auth/identity.js";
import { connect, listen } from "../network/endpoints.js";

const self = fileURLToPath(import.meta.url);

function child(role: string, ...args: string[]): ChildProcess {
  // Same runtime flags (e.g. the TypeScript loader) as this process.
  const proc = spawn(process.execPath, [...process.execArgv, self, role, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  createInterface({ input: proc.stdout! }).on("line", (line) => console.log(`[${role}] ${line}`));
  return proc;
}

/** The demo's server process: one Greeter, rooms made on demand. */
async function serve(address: string): Promise<void> {
  class ChatRoom implements RoomServer {
    private listeners: Listener[] = [];
    constructor(readonly name: string) {}
    join({ who, listener }: { who: string; listener: Listener | null }) {
      if (listener) this.listeners.push(listener.dup()); // params are lent: keep our own reference
      console.log(`${who} joined #${this.name}`);
      return { members: this.listeners.length };
    }
    async say({ who, text }: { who: string; text: string }) {
      console.log(`#${this.name} <${who}> ${text}`);
      await Promise.all(this.listeners.map((l) => l.heard({ who, text })));
    }
  }
  const rooms = new Map<string, Room>();
  const greeter: GreeterServer = {
    greet: ({ name }) => ({ greeting: `hello, ${name}` }),
    room: ({ name }) => {
      let room = rooms.get(name);
      if (!room) rooms.set(name, (room = Room.server(new ChatRoom(name))));
      return { room: room.dup() };
    },
  };
  // Real deployments keep their identity in a key file (capmesh keygen).
  const identity = generateIdentity();
  const listener = await listen(address, {
    identity,
    bootstrap: Greeter.server(greeter),
    onSession: (session) => console.log(`${session.remoteId} connected (identity proven by the handshake)`),
  });
  console.log(`listening on ${listener.address} as ${identity.id}`);
  process.on("SIGTERM", () => void listener.close().then(() => process.exit(0)));
}

/** The demo's client process. */
async function client(address: string, serverId: string): Promise<void> {
  // The handshake fails unless the server holds the key of `serverId`.
  const session = await connect(address, { identity: generateIdentity(), remoteKey: serverId });
  console.log(`connected to ${session.remoteId}`);
  const greeter = session.bootstrap(Greeter);

  // 1. A typed call: plain objects in, a promise of plain objects out.
  const { greeting } = await greeter.greet({ name: "demo" });
  console.log(`greet -> ${JSON.stringify(greeting)}`);

  // 2. A pipelined call: `room` has not arrived yet, but we can call it; both
  //    calls travel together and the join runs as soon as the room exists.
  const room = greeter.room({ name: "lobby" }).room;
  const heard: string[] = [];
  const ear = Listener.server({
    // 3. A callback: the server calls this object, which lives in this process.
    heard: ({ who, text }) => {
      heard.push(text);
      console.log(`callback: heard <${who}> ${text}`);
    },
  });
  const { members } = await room.join({ who: "demo-client", listener: ear });
  console.log(`joined #lobby (pipelined) with ${members} member(s)`);
  await room.say({ who: "demo-client", text: "hi from a pipelined room" });
  console.log(heard.length === 1 ? "demo ok" : "demo FAILED: the callback was not called");
  room.release();
  ear.release();
  greeter.release();
  await session.close();
  process.exitCode = heard.length === 1 ? 0 : 1;
}

/** Runs both processes and shows their output. */
export async function demo(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "capmesh-demo-"));
  const address = `unix:${join(dir, "demo.sock")}`;
  const server = child("server", address);
  try {
    const serverId = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).on("line", (line) => {
        const listening = /^listening on \S+ as (\S+)$/.exec(line);
        if (listening) resolve(listening[1]!);
      });
      server.once("exit", (code) => reject(new Error(`demo server exited early (code ${code})`)));
    });
    const c = child("client", address, serverId);
    const code = await new Promise<number>((resolve) => c.once("exit", (code) => resolve(code ?? 1)));
    return code;
  } finally {
    server.kill("SIGTERM");
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const [role, address, serverId] = process.argv.slice(2);
if (process.argv[1] === self && address) {
  if (role === "server") await serve(address);
  else if (role === "client" && serverId) await client(address, serverId);
}

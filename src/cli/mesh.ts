// `capmesh serve`, `capmesh ls` and `capmesh watch`: a hub on embedded
// defaults, and what scripts ask of it. Exit codes: 0 ok, 1 a failed call,
// 2 usage, 3 the hub cannot be reached.
import { existsSync } from "node:fs";
import { HandshakeError } from "../auth/handshake.js";
import { SocketError } from "../transport/socket.js";
import type { Entry, Event } from "../gen/mesh.js";
import { CONFIG_FILE, ConfigError, loadConfig } from "../mesh/config.js";
import { ENV } from "../mesh/defaults.js";
import { startHub, type HubOptions } from "../mesh/hub.js";
import { joinMesh, type MeshPeer } from "../mesh/join.js";

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export const SERVE_HELP = `usage: capmesh serve [--config FILE] [--socket PATH] [--listen ADDRESS]... [--home DIR] [--no-direct-paths]

Runs a hub. With nothing configured it listens on a unix socket in the user's
runtime dir ($XDG_RUNTIME_DIR/capmesh, else the temp dir), with an identity and
a network key kept in $CAPMESH_HOME (default ~/.capmesh), made on first run.
It prints how peers connect. Ctrl-C (SIGINT) or SIGTERM stops it gracefully.

  --config FILE      settings (default ./${CONFIG_FILE} if present; see the README)
  --socket PATH      the unix socket to listen on
  --listen ADDRESS   also listen here, e.g. tcp://0.0.0.0:7400 (repeatable)
  --home DIR         where the identity and network key live
  --no-direct-paths  proxy every call between peers through the hub (by default
                     peers that both support it are introduced and talk directly)`;

export const LS_HELP = `usage: capmesh ls [--json]

Lists the plugins registered with the hub ($${ENV.hub}/$${ENV.hubId}, else the
hub running on this machine's defaults): a table, or JSON with --json.
Exit codes: 0 ok, 1 the hub refused, 2 usage, 3 the hub cannot be reached.`;

export const WATCH_HELP = `usage: capmesh watch [--json]

Prints the registered plugins, then one line per plugin that joins or leaves,
until interrupted. With --json, one JSON object per line.
Exit codes: 0 ok (interrupted), 1 the hub refused, 2 usage, 3 the hub cannot be reached.`;

class Usage extends Error {}

function usage(message: string, help: string): number {
  console.error(`${message}\n\n${help}`);
  return EXIT.usage;
}

export async function serve(args: string[]): Promise<number> {
  let options: HubOptions = {};
  let configFile: string | undefined;
  const listen: string[] = [];
  let socket: string | undefined;
  let home: string | undefined;
  let noDirect = false;
  try {
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      const value = () => {
        const v = args[++i];
        if (v === undefined) throw new Usage(`capmesh serve: ${arg} needs a value`);
        return v;
      };
      if (arg === "--help" || arg === "-h") {
        console.log(SERVE_HELP);
        return EXIT.ok;
      } else if (arg === "--config") configFile = value();
      else if (arg === "--socket") socket = value();
      else if (arg === "--listen") listen.push(value());
      else if (arg === "--home") home = value();
      else if (arg === "--no-direct-paths") noDirect = true;
      else throw new Usage(`capmesh serve: unknown argument ${arg}`);
    }
  } catch (error) {
    if (error instanceof Usage) return usage(error.message, SERVE_HELP);
    throw error;
  }
  try {
    if (configFile !== undefined || existsSync(CONFIG_FILE)) options = await loadConfig(configFile ?? CONFIG_FILE);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`capmesh serve: ${error.message}`);
      return EXIT.usage;
    }
    throw error;
  }
  if (socket !== undefined) options.socket = socket;
  if (home !== undefined) options.home = home;
  if (listen.length > 0) options.listen = [...(options.listen ?? []), ...listen];
  if (noDirect) options.directPaths = false;
  const hub = await startHub(options);
  console.log(`capmesh hub ${hub.id}`);
  for (const address of hub.addresses) console.log(`listening on ${address}`);
  console.log(hub.stats().directPaths ? "direct paths between peers: on" : "direct paths between peers: off (every call goes through the hub)");
  console.log("peers join with (the SDK and the CLI read these):");
  for (const [key, value] of Object.entries(hub.env)) console.log(`  export ${key}=${shellQuote(value)}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  console.log("stopping: telling peers");
  await hub.close();
  return EXIT.ok;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9@%+=:,./_-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

function flags(args: string[], help: string, command: string): { json: boolean } | number {
  let json = false;
  for (const arg of args) {
    if (arg === "--json") json = true;
    else if (arg === "--help" || arg === "-h") {
      console.log(help);
      return EXIT.ok;
    } else return usage(`capmesh ${command}: unknown argument ${arg}`, help);
  }
  return { json };
}

/** Joins as a client; on failure prints why and returns the exit code. */
export async function reachHub(command: string): Promise<MeshPeer | number> {
  try {
    return await joinMesh({ handleSignals: false, reconnect: false });
  } catch (error) {
    const unreachable =
      error instanceof SocketError || error instanceof HandshakeError || /no hub found/.test((error as Error).message);
    console.error(`capmesh ${command}: cannot reach the hub: ${(error as Error).message}`);
    return unreachable ? EXIT.unreachable : EXIT.failed;
  }
}

function row(e: Entry): string[] {
  return [e.name, e.id, e.info.version || "-", new Date(Number(e.since)).toISOString(), e.info.description];
}

function table(rows: string[][]): string {
  const header = ["NAME", "ID", "VERSION", "SINCE", "DESCRIPTION"];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

export function entryJson(e: Entry): Record<string, unknown> {
  return {
    name: e.name,
    id: e.id,
    since: new Date(Number(e.since)).toISOString(),
    version: e.info.version,
    description: e.info.description,
    interfaces: e.info.interfaces.map((i) => ({ id: `0x${i.id.toString(16)}`, name: i.name })),
    features: e.info.features,
    addresses: e.info.addresses,
  };
}

export async function ls(args: string[]): Promise<number> {
  const parsed = flags(args, LS_HELP, "ls");
  if (typeof parsed === "number") return parsed;
  const peer = await reachHub("ls");
  if (typeof peer === "number") return peer;
  try {
    const plugins = await peer.list();
    if (parsed.json) console.log(JSON.stringify(plugins.map(entryJson)));
    else console.log(table(plugins.map(row)));
    return EXIT.ok;
  } catch (error) {
    console.error(`capmesh ls: ${(error as Error).message}`);
    return EXIT.failed;
  } finally {
    await peer.close();
  }
}

function eventLine(event: Event, json: boolean): string[] {
  switch (event.which) {
    case "snapshot":
      return event.snapshot.map((e) => (json ? JSON.stringify({ event: "present", ...entryJson(e) }) : `present ${e.name} ${e.id}`));
    case "joined":
      return [json ? JSON.stringify({ event: "joined", ...entryJson(event.joined) }) : `joined ${event.joined.name} ${event.joined.id}`];
    case "left":
      return [
        json
          ? JSON.stringify({ event: "left", name: event.left.name, id: event.left.id, reason: event.left.reason })
          : `left ${event.left.name} ${event.left.id} (${event.left.reason})`,
      ];
  }
}

export async function watch(args: string[]): Promise<number> {
  const parsed = flags(args, WATCH_HELP, "watch");
  if (typeof parsed === "number") return parsed;
  const peer = await reachHub("watch");
  if (typeof peer === "number") return peer;
  try {
    using _watch = await peer.watch((event) => {
      for (const line of eventLine(event, parsed.json)) console.log(line);
    });
    return await new Promise<number>((resolve) => {
      process.once("SIGINT", () => resolve(EXIT.ok));
      process.once("SIGTERM", () => resolve(EXIT.ok));
      void peer.lost.then((reason) => {
        console.error(`capmesh watch: lost the hub: ${reason.message}`);
        resolve(EXIT.unreachable);
      });
    });
  } catch (error) {
    console.error(`capmesh watch: ${(error as Error).message}`);
    return EXIT.failed;
  } finally {
    await peer.close();
  }
}

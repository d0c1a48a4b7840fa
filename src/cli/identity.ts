// `capmesh keygen`, `capmesh id` and `capmesh netkey`: the identity files
// that listen/connect take, and network keys for separate meshes.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { IdentityError, generateIdentity, loadIdentity, saveIdentity } from "../auth/identity.js";

/** Where an identity lives when no file is named: $CAPMESH_HOME/secret, else ~/.capmesh/secret. */
export function defaultKeyFile(): string {
  return join(process.env.CAPMESH_HOME ?? join(homedir(), ".capmesh"), "secret");
}

const HELP: Record<string, string> = {
  keygen: `usage: capmesh keygen [FILE] [--force]

Creates an ed25519 identity: writes its private key file (mode 0600) and
prints its id (@<base64>.ed25519). FILE defaults to $CAPMESH_HOME/secret, else
~/.capmesh/secret. An existing file is kept unless --force (its identity is
then lost).`,
  id: `usage: capmesh id [FILE]

Prints the id (@<base64>.ed25519) of a key file made by capmesh keygen. FILE
defaults to $CAPMESH_HOME/secret, else ~/.capmesh/secret.`,
  netkey: `usage: capmesh netkey

Prints a new random network key (32 bytes, base64). Peers and hubs with
different network keys cannot complete the handshake: a mesh of its own.`,
};

/** Prints the command's help when asked for; true if it did. */
function helped(args: string[], command: string): boolean {
  if (!args.includes("--help") && !args.includes("-h")) return false;
  console.log(HELP[command]);
  return true;
}

function parse(args: string[], command: string): { file: string; force: boolean } | string {
  let file: string | undefined;
  let force = false;
  for (const arg of args) {
    if (arg === "--force" && command === "keygen") force = true;
    else if (arg.startsWith("-")) return `capmesh ${command}: unknown option ${arg}`;
    else if (file === undefined) file = arg;
    else return `capmesh ${command}: one key file at most, got ${arg} too`;
  }
  return { file: file ?? defaultKeyFile(), force };
}

/** Writes a new key file (mode 0600) and prints its id. */
export async function keygen(args: string[]): Promise<number> {
  if (helped(args, "keygen")) return 0;
  const options = parse(args, "keygen");
  if (typeof options === "string") return usage(options);
  const identity = generateIdentity();
  await mkdir(dirname(options.file), { recursive: true, mode: 0o700 });
  try {
    await saveIdentity(options.file, identity, { overwrite: options.force });
  } catch (error) {
    if (error instanceof IdentityError && error.code === "KEY_FILE_EXISTS") {
      console.error(`capmesh keygen: ${options.file} already exists; keep it, or pass --force to replace it (its identity is then lost)`);
      return 1;
    }
    throw error;
  }
  console.error(`capmesh keygen: wrote ${options.file}`);
  console.log(identity.id);
  return 0;
}

/** Prints the id of a key file. */
export async function id(args: string[]): Promise<number> {
  if (helped(args, "id")) return 0;
  const options = parse(args, "id");
  if (typeof options === "string") return usage(options);
  try {
    console.log((await loadIdentity(options.file)).id);
    return 0;
  } catch (error) {
    if (error instanceof IdentityError) console.error(`capmesh id: ${error.message}`);
    else if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      console.error(`capmesh id: no key file at ${options.file}; create one with: capmesh keygen ${args[0] ?? ""}`.trimEnd());
    } else throw error;
    return 1;
  }
}

/** Prints a fresh random network key (base64), for a mesh of its own. */
export function netkey(args: string[]): number {
  if (helped(args, "netkey")) return 0;
  if (args.length > 0) return usage(`capmesh netkey: takes no arguments, got ${args.join(" ")}`);
  console.log(randomBytes(32).toString("base64"));
  return 0;
}

function usage(message: string): number {
  console.error(message);
  return 2;
}

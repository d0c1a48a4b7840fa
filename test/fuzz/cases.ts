// A case is what one hostile connection does. Cases are plain data, so a
// finding saves them as JSON and a regression test replays them.
//   plain      framed bytes on a unix socket, straight to the frame decoder
//              (to the plain listener, or to the secure one, which must tell
//              plain Cap'n Proto from a handshake by its first bytes), with
//              an optional responder answering what the server asks us;
//   box        a real secret handshake (the project's own client code), then
//              the bytes boxed by box-stream — with box-level tampering;
//   handshake  a broken handshake.
import { gunzipSync, gzipSync } from "node:zlib";
import { clientHandshake } from "../../src/auth/handshake.js";
import { DEFAULT_NETWORK_KEY } from "../../src/auth/channel.js";
import { identityFromSeed } from "../../src/auth/identity.js";
import { boxWrites, type BoxOp } from "./attacks/box.js";
import { describeAttack, playHandshakeAttack, type HandshakeAttack } from "./attacks/handshake.js";
import { ServerListener, type Heard, type Responder } from "./attacks/responder.js";
import type { SocketIO } from "./attacks/socket-io.js";
import type { ListenerName } from "./target/protocol.js";
import { concat } from "./frames.js";
import { encodeMessage, type MessageSpec } from "./rpc-spec.js";
import { fromBase64, toBase64 } from "./util.js";

export type Case =
  | { kind: "plain"; listener: ListenerName; writes: Uint8Array[]; responder: Responder | null; label: string }
  | { kind: "box"; writes: Uint8Array[]; ops: BoxOp[]; label: string }
  | { kind: "handshake"; attack: HandshakeAttack; label: string };

export function listenerOf(c: Case): ListenerName {
  return c.kind === "plain" ? c.listener : "secure";
}

/** Bytes the case means to send (plaintext for box cases). */
export function caseBytes(c: Case): number {
  if (c.kind === "handshake") {
    const a = c.attack;
    return a.step === "raw" ? a.bytes.length : 64 + (a.step === "auth" ? 112 : 0) + a.extra.length;
  }
  return c.writes.reduce((n, w) => n + w.length, 0);
}

export function describeCase(c: Case): string {
  const size = `${caseBytes(c)} bytes`;
  if (c.kind === "handshake") return `handshake (${describeAttack(c.attack)}): ${c.label}`;
  if (c.kind === "box") return `box-stream, ${size} in ${c.writes.length} writes, ${c.ops.length} box ops: ${c.label}`;
  return `plain→${c.listener}, ${size} in ${c.writes.length} writes${c.responder ? ", responding" : ""}: ${c.label}`;
}

/** The hostile client's identity for box cases (any key will do: the listener authorizes everyone). */
const HOSTILE = identityFromSeed(new Uint8Array(32).fill(0xba));

/** What playing a case observed. */
export interface Played {
  heard: Heard | null;
  /** The handshake of a box case failed (it should not: it is a real one). */
  handshakeError: string | null;
}

/** Plays `c` on a connected socket; resolves once everything is written (or the server stopped us). */
export async function playCase(io: SocketIO, c: Case, serverKey: Uint8Array): Promise<Played> {
  switch (c.kind) {
    case "plain": {
      const listener = new ServerListener(c.responder, (frame) => void io.write(frame));
      io.setSink((chunk) => listener.push(chunk));
      for (const w of c.writes) if (!(await io.write(w))) break;
      listener.arm();
      return { heard: listener.heard, handshakeError: null };
    }
    case "box": {
      let keys;
      try {
        keys = (
          await clientHandshake(io.socket, {
            identity: HOSTILE,
            networkKey: DEFAULT_NETWORK_KEY,
            remoteKey: serverKey,
            timeoutMs: 5000,
          })
        ).keys;
      } catch (e) {
        return { heard: null, handshakeError: e instanceof Error ? e.message : String(e) };
      }
      io.drain();
      for (const w of boxWrites(c.writes, c.ops, keys)) if (!(await io.write(w))) break;
      return { heard: null, handshakeError: null };
    }
    case "handshake":
      await playHandshakeAttack(io, c.attack, serverKey);
      io.drain();
      return { heard: null, handshakeError: null };
  }
}

// ---------------------------------------------------------------------------
// JSON: bytes as base64 (gzipped past 64 KiB), bigints as strings. Hand-written
// findings may also give bytes as rpc messages ({"$messages": [MessageSpec…]},
// see rpc-spec.ts) and long lists as {"$range": {count, template, field}}
// (count copies of template, field set to 0, 1, 2 …).

const GZIP_FROM = 64 * 1024;

function bytesToJson(bytes: Uint8Array): unknown {
  if (bytes.length < GZIP_FROM) return { $bytes: toBase64(bytes) };
  return { $gzip: toBase64(gzipSync(bytes, { level: 9 })) };
}

export function casesToJson(cases: readonly Case[]): unknown {
  return JSON.parse(
    JSON.stringify(cases, (_k, v: unknown) => {
      if (typeof v === "bigint") return { $bigint: v.toString() };
      if (v instanceof Uint8Array) return bytesToJson(v);
      // A Buffer has been through its toJSON() before the replacer sees it.
      if (v && typeof v === "object" && (v as { type?: unknown }).type === "Buffer" && Array.isArray((v as { data?: unknown }).data)) {
        return bytesToJson(Uint8Array.from((v as { data: number[] }).data));
      }
      return v;
    }),
  );
}

export function casesFromJson(json: unknown): Case[] {
  // The reviver sees inner values first: ranges and bigints are ready by the time a $messages list is encoded.
  return JSON.parse(JSON.stringify(json), (_k, v: unknown) => {
    if (!v || typeof v !== "object" || Array.isArray(v)) return v;
    const o = v as Record<string, unknown>;
    if ("$bigint" in o) return BigInt(o.$bigint as string);
    if ("$bytes" in o) return fromBase64(o.$bytes as string);
    if ("$gzip" in o) return new Uint8Array(gunzipSync(fromBase64(o.$gzip as string)));
    if ("$range" in o) {
      const { count, template, field } = o.$range as { count: number; template: Record<string, unknown>; field: string };
      return Array.from({ length: count }, (_, i) => ({ ...template, [field]: i }));
    }
    if ("$messages" in o) return concat((o.$messages as MessageSpec[]).map(encodeMessage));
    return v;
  }) as Case[];
}

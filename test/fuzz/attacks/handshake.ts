// Broken secret handshakes (shs1) against the secure listener: garbage from
// the first byte, a client hello that is edited, cut short, under another
// network key or followed by extra bytes, and a right hello followed by an
// edited client auth (or one made for another server key), sent whole or in
// small pieces. The client side is deterministic (fixed keys and ephemeral
// randomness) so that a saved finding replays the same bytes; only what
// depends on the server's random hello differs between runs.
import { DEFAULT_NETWORK_KEY } from "../../../src/auth/channel.js";
import { identityFromSeed } from "../../../src/auth/identity.js";
import {
  SERVER_HELLO_LENGTH,
  clientCreateAuth,
  clientPrepareAuth,
  clientVerifyChallenge,
  createChallenge,
  initialize,
} from "../../../src/auth/shs1.js";
import type { Rng } from "../prng.js";
import type { SocketIO } from "./socket-io.js";

export interface ByteEdit {
  at: number;
  xor: number;
}

export type HandshakeAttack =
  /** Arbitrary bytes where the hello should be. */
  | { step: "raw"; bytes: Uint8Array; piece: number }
  /** A client hello (under our network key or another), edited/cut, then `extra`. */
  | { step: "hello"; networkKey: "ours" | "other"; edits: ByteEdit[]; cut: number | null; extra: Uint8Array; piece: number }
  /** A right hello; then client auth (for the server's key or another), edited/cut, then `extra`. */
  | { step: "auth"; remoteKey: "right" | "other"; edits: ByteEdit[]; cut: number | null; extra: Uint8Array; piece: number };

const CLIENT = identityFromSeed(new Uint8Array(32).fill(0xc1));
const EPHEMERAL = new Uint8Array(32).fill(0xe7);
const OTHER_NETWORK_KEY = new Uint8Array(32).fill(0x42);
const OTHER_SERVER = identityFromSeed(new Uint8Array(32).fill(0x99));

function edit(bytes: Uint8Array, edits: readonly ByteEdit[], cut: number | null): Uint8Array {
  const out = new Uint8Array(bytes);
  for (const e of edits) out[e.at % out.length] ^= e.xor || 1;
  return cut === null ? out : out.subarray(0, Math.min(cut, out.length));
}

/** Plays `attack` on a connected socket. */
export async function playHandshakeAttack(io: SocketIO, attack: HandshakeAttack, serverKey: Uint8Array): Promise<void> {
  if (attack.step === "raw") {
    await io.writePieces(attack.bytes, attack.piece);
    return;
  }
  const state = initialize({
    appKey: attack.step === "hello" && attack.networkKey === "other" ? OTHER_NETWORK_KEY : DEFAULT_NETWORK_KEY,
    local: { publicKey: CLIENT.publicKey, secretKey: CLIENT.secretKey },
    remote: { publicKey: attack.step === "auth" && attack.remoteKey === "other" ? OTHER_SERVER.publicKey : serverKey },
    random: EPHEMERAL,
  });
  const hello = createChallenge(state);
  if (attack.step === "hello") {
    await io.writePieces(edit(hello, attack.edits, attack.cut), attack.piece);
    if (attack.extra.length > 0) await io.writePieces(attack.extra, attack.piece);
    return;
  }
  await io.writePieces(hello, attack.piece);
  const serverHello = await io.read(SERVER_HELLO_LENGTH);
  if (!serverHello) return; // the server hung up or stalled: nothing more to say
  const verified = clientVerifyChallenge(clientPrepareAuth(state), serverHello);
  if (!verified) return;
  const auth = clientCreateAuth(verified);
  await io.writePieces(edit(auth, attack.edits, attack.cut), attack.piece);
  if (attack.extra.length > 0) await io.writePieces(attack.extra, attack.piece);
}

export function randomHandshakeAttack(rng: Rng): HandshakeAttack {
  const edits = (): ByteEdit[] =>
    rng.chance(0.3) ? [] : Array.from({ length: rng.range(1, 3) }, () => ({ at: rng.int(128), xor: 1 << rng.int(8) }));
  const cut = () => (rng.chance(0.7) ? null : rng.int(120));
  const extra = () => (rng.chance(0.6) ? new Uint8Array(0) : rng.bytes(rng.range(1, 300)));
  const piece = rng.pick([0, 0, 0, 1, 3, 17]);
  return rng.weighted<HandshakeAttack>([
    [
      2,
      {
        step: "raw",
        bytes: rng.pick([
          () => rng.bytes(rng.range(1, 200)),
          () => new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
          () => Uint8Array.of(0x16, 0x03, 0x01, 0x02, 0x00, ...rng.bytes(60)),
          () => new Uint8Array(rng.range(1, 200)),
          () => new Uint8Array(rng.range(1, 200)).fill(0xff),
        ])(),
        piece,
      },
    ],
    [3, { step: "hello", networkKey: rng.chance(0.3) ? "other" : "ours", edits: edits(), cut: cut(), extra: extra(), piece }],
    [4, { step: "auth", remoteKey: rng.chance(0.3) ? "other" : "right", edits: edits(), cut: cut(), extra: extra(), piece }],
  ]);
}

export function describeAttack(a: HandshakeAttack): string {
  if (a.step === "raw") return `raw ${a.bytes.length} bytes`;
  const key = a.step === "hello" ? `networkKey=${a.networkKey}` : `remoteKey=${a.remoteKey}`;
  return `${a.step} ${key} edits=${a.edits.length} cut=${a.cut} extra=${a.extra.length} piece=${a.piece}`;
}

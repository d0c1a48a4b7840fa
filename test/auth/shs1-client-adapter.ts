// shs1-test adapter, client role (see the shs1-test package's README).
// Arguments: network key (hex), server public key (hex). Speaks the
// handshake on stdin/stdout, then writes encryption key, encryption nonce,
// decryption key and decryption nonce; exits non-zero, writing nothing more,
// on a misbehaving server.

import { Duplex } from "node:stream";
import { clientHandshake } from "../../src/auth/handshake.js";
import { generateIdentity } from "../../src/auth/identity.js";

const [networkKeyHex, serverKeyHex] = process.argv.slice(2);
const socket = Duplex.from({ readable: process.stdin, writable: process.stdout });

try {
  const { keys } = await clientHandshake(socket, {
    identity: generateIdentity(),
    networkKey: Buffer.from(networkKeyHex ?? "", "hex"),
    remoteKey: Buffer.from(serverKeyHex ?? "", "hex"),
    timeoutMs: 60_000,
  });
  const outcome = Buffer.concat([keys.encryptKey, keys.encryptNonce, keys.decryptKey, keys.decryptNonce]);
  socket.write(outcome, () => process.exit(0));
} catch (error) {
  if (process.env.SHS1_ADAPTER_DEBUG) process.stderr.write(`${String(error)}\n`);
  process.exit(1);
}

// shs1-test adapter, server role (see the shs1-test package's README).
// Arguments: network key, server secret key (64 bytes), server public key,
// all hex. Speaks the handshake on stdin/stdout, then writes encryption key,
// encryption nonce, decryption key and decryption nonce; exits non-zero,
// writing nothing more, on a misbehaving client.

import { Duplex } from "node:stream";
import { serverHandshake } from "../../src/auth/handshake.js";

const [networkKeyHex, secretKeyHex, publicKeyHex] = process.argv.slice(2);
const socket = Duplex.from({ readable: process.stdin, writable: process.stdout });

try {
  const { keys } = await serverHandshake(socket, {
    identity: { secretKey: Buffer.from(secretKeyHex ?? "", "hex"), publicKey: Buffer.from(publicKeyHex ?? "", "hex") },
    networkKey: Buffer.from(networkKeyHex ?? "", "hex"),
    timeoutMs: 60_000,
  });
  const outcome = Buffer.concat([keys.encryptKey, keys.encryptNonce, keys.decryptKey, keys.decryptNonce]);
  socket.write(outcome, () => process.exit(0));
} catch (error) {
  if (process.env.SHS1_ADAPTER_DEBUG) process.stderr.write(`${String(error)}\n`);
  process.exit(1);
}

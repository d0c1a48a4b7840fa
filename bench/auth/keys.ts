// Fixed test keys, so that server and client processes agree without passing
// keys around. Benchmark use only: anyone can read them here.
import { identityFromSeed, type Identity } from "../../src/auth/identity.js";
import type { BoxStreamKeys } from "../../src/auth/shs1.js";

const fill = (length: number, byte: number): Uint8Array => new Uint8Array(length).fill(byte);

export const networkKey = fill(32, 0x6e);
export const serverIdentity: Identity = identityFromSeed(fill(32, 0x53));
export const clientIdentity: Identity = identityFromSeed(fill(32, 0x43));

/**
 * Box-stream keys for the throughput figure, client side (the server's are
 * the mirror image): fixed, not from a handshake, since the figure measures
 * the stream alone.
 */
export const clientBoxKeys: BoxStreamKeys = {
  encryptKey: fill(32, 0xc1),
  encryptNonce: fill(24, 0xc2),
  decryptKey: fill(32, 0x51),
  decryptNonce: fill(24, 0x52),
};
export const serverBoxKeys: BoxStreamKeys = {
  encryptKey: clientBoxKeys.decryptKey,
  encryptNonce: clientBoxKeys.decryptNonce,
  decryptKey: clientBoxKeys.encryptKey,
  decryptNonce: clientBoxKeys.encryptNonce,
};

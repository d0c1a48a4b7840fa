// Secret handshake, version 1 (shs1), as Secure Scuttlebutt speaks it.
//
// Four messages (client hello 64 bytes, server hello 64, client auth 112,
// server accept 80) after which each side knows the other's long-term ed25519
// key and both hold keys and nonces for box-stream. The steps below are pure
// functions over a state record, one per step of the protocol, so that each
// can be checked on its own against recorded vectors: they never modify the
// state they are given and return a new one (verify steps return null when the
// packet must be rejected). Only `clean` overwrites: it zero-fills the secret
// byte arrays it drops, for forward secrecy.
//
// The `prepare` steps are optional: each computes, while the peer is busy
// with our last message, an x25519 that the following verify step would
// otherwise compute once the peer's reply is in. The results are the same
// either way; only the time on the handshake's critical path changes.

import { timingSafeEqual } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { curves } from "./curves.js";
import { hashes } from "./hashes.js";
import { peerCurveKey } from "./public-keys.js";
import { boxEasy, openEasy } from "./secretbox.js";

export const NETWORK_KEY_LENGTH = 32;
export const CLIENT_HELLO_LENGTH = 64;
export const SERVER_HELLO_LENGTH = 64;
export const CLIENT_AUTH_LENGTH = 112;
export const SERVER_ACCEPT_LENGTH = 80;
/** Both hellos have the same layout ("challenge" in the reference). */
export const CHALLENGE_LENGTH = 64;

/** A long-term key pair (libsodium form: 64-byte secret key = seed || public key). */
export interface Shs1KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface Shs1Local extends Shs1KeyPair {
  /** Ephemeral curve25519 public key. */
  kxPk: Uint8Array;
  /** Ephemeral curve25519 secret key; null once cleaned. */
  kxSk: Uint8Array | null;
  /** HMAC of kxPk under the network key: the first half of our hello. */
  appMac: Uint8Array;
  /** Client only: signature || our public key, the plaintext of client auth. */
  hello?: Uint8Array;
}

export interface Shs1Remote {
  /** Long-term public key: known up front by a client, learnt from client auth by a server. */
  publicKey?: Uint8Array;
  kxPk?: Uint8Array;
  appMac?: Uint8Array;
  /** Server only: the client's auth plaintext. */
  hello?: Uint8Array | null;
}

/** The handshake state, field for field as SSB's reference keeps it. */
export interface Shs1State {
  /** The network key ("app key"), 32 bytes. */
  appKey: Uint8Array;
  local: Shs1Local;
  remote: Shs1Remote;
  /** If set at initialize, the local long-term key pair is derived from it. */
  seed?: Uint8Array | null;
  /** 32 random bytes the ephemeral key pair is derived from. */
  random?: Uint8Array;
  /** x25519(ephemeral, remote ephemeral); after clean, sha256 of secret3. */
  secret?: Uint8Array | null;
  /** sha256(secret). */
  shash?: Uint8Array | null;
  /** x25519 of the client's ephemeral key and the server's long-term key. */
  aBob?: Uint8Array | null;
  /** Key of client auth: sha256(appKey || secret || aBob). */
  secret2?: Uint8Array | null;
  /** x25519 of the client's long-term key and the server's ephemeral key. */
  bAlice?: Uint8Array | null;
  /** Key of server accept: sha256(appKey || secret || aBob || bAlice). */
  secret3?: Uint8Array | null;
  /** Set by clean: box-stream key for what we send. */
  encryptKey?: Uint8Array;
  /** Set by clean: box-stream key for what we receive. */
  decryptKey?: Uint8Array;
}

/** Input of `initialize`. */
export interface Shs1InitialState {
  appKey: Uint8Array;
  /** Our long-term key pair; may be omitted when `seed` is given. */
  local?: Shs1KeyPair | null;
  /** A client sets remote.publicKey: the server it means to reach. */
  remote?: Shs1Remote;
  seed?: Uint8Array | null;
  random: Uint8Array;
}

/** Keys and starting nonces of both directions of box-stream. */
export interface BoxStreamKeys {
  encryptKey: Uint8Array;
  encryptNonce: Uint8Array;
  decryptKey: Uint8Array;
  decryptNonce: Uint8Array;
}

// ---------------------------------------------------------------------------
// Primitives

const ZERO_NONCE = new Uint8Array(24);

function concat(...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

const { sha256 } = hashes;
/** crypto_auth: HMAC-SHA-512 truncated to 32 bytes. */
const hmac = hashes.auth;

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// Our long-term key's curve25519 form, made once per key pair (the array
// that holds it) so that implementations that keep key objects find it again.
const longTermCurveSecrets = new WeakMap<Uint8Array, Uint8Array>();

function longTermCurveSecret(local: Shs1KeyPair): Uint8Array {
  let secret = longTermCurveSecrets.get(local.secretKey);
  if (secret === undefined) longTermCurveSecrets.set(local.secretKey, (secret = curves.secretToCurve(local.secretKey)));
  return secret;
}

function box(plaintext: Uint8Array, key: Uint8Array): Uint8Array {
  return boxEasy(plaintext, ZERO_NONCE, key);
}

function unbox(ciphertext: Uint8Array, key: Uint8Array): Uint8Array | null {
  return openEasy(ciphertext, ZERO_NONCE, key);
}

function checkLength(packet: Uint8Array, name: string, length: number): void {
  if (!(packet instanceof Uint8Array) || packet.length !== length) {
    const got = packet instanceof Uint8Array ? `${packet.length} bytes` : typeof packet;
    throw new RangeError(`shs1: ${name} must be ${length} bytes, got ${got}`);
  }
}

function need<T>(value: T | null | undefined, name: string): T {
  if (value === null || value === undefined) throw new Error(`shs1: handshake state lacks ${name} for this step`);
  return value;
}

// ---------------------------------------------------------------------------
// Steps

/** A long-term key pair from a 32-byte seed; a key pair is returned as it is. */
export function toKeys(seedOrKeys: Uint8Array | Shs1KeyPair): Shs1KeyPair {
  if (!(seedOrKeys instanceof Uint8Array)) return seedOrKeys;
  checkLength(seedOrKeys, "seed", 32);
  const publicKey = ed25519.getPublicKey(seedOrKeys);
  return { publicKey, secretKey: concat(seedOrKeys, publicKey) };
}

/** Both sides: derive the ephemeral key pair from `random` and our hello's MAC. */
export function initialize(state: Shs1InitialState): Shs1State {
  checkLength(state.appKey, "network key", NETWORK_KEY_LENGTH);
  checkLength(state.random, "random", 32);
  const longTerm = state.seed ? toKeys(state.seed) : need(state.local, "local key pair");
  // crypto_box_seed_keypair: the secret scalar is the first half of sha512(random).
  const kxSk = curves.secretToCurve(state.random);
  const kxPk = curves.x25519Base(kxSk);
  return {
    ...state,
    local: {
      kxPk,
      kxSk,
      publicKey: longTerm.publicKey,
      secretKey: longTerm.secretKey,
      appMac: hmac(state.appKey, kxPk),
    },
    remote: state.remote ?? {},
  };
}

/** Both sides: our hello, `appMac || kxPk` (64 bytes). */
export function createChallenge(state: Shs1State): Uint8Array {
  return concat(state.local.appMac, state.local.kxPk);
}

/** Whether a hello's MAC is right under `appKey`: it comes from a peer of this network. */
export function helloAuthenticates(appKey: Uint8Array, challenge: Uint8Array): boolean {
  checkLength(challenge, "hello", CHALLENGE_LENGTH);
  return equal(hmac(appKey, challenge.subarray(32, 64)), challenge.subarray(0, 32));
}

/**
 * Both sides: check the other's hello against the network key and derive the
 * shared ephemeral secret. Null if the MAC is wrong (other network key, or
 * not shs at all).
 */
export function verifyChallenge(state: Shs1State, challenge: Uint8Array): Shs1State | null {
  checkLength(challenge, "hello", CHALLENGE_LENGTH);
  if (!helloAuthenticates(state.appKey, challenge)) return null;
  const mac = challenge.subarray(0, 32);
  const remoteKxPk = copy(challenge.subarray(32, 64));
  const secret = curves.x25519(need(state.local.kxSk, "local.kxSk"), remoteKxPk);
  if (secret === null) return null;
  return {
    ...state,
    remote: { ...state.remote, kxPk: remoteKxPk, appMac: copy(mac) },
    secret,
    shash: sha256(secret),
  };
}

/**
 * Client: verify the server hello, then prepare client auth: our signature
 * over (network key, server key, hash of the shared secret) and our key.
 */
export function clientVerifyChallenge(state: Shs1State, challenge: Uint8Array): Shs1State | null {
  checkLength(challenge, "server hello", SERVER_HELLO_LENGTH);
  const verified = verifyChallenge(state, challenge);
  if (verified === null) return null;
  const serverKey = need(verified.remote.publicKey, "remote.publicKey (the server's key)");
  const aBob = verified.aBob ?? clientABob(verified);
  if (aBob === null) return null;
  const secret = need(verified.secret, "secret");
  const shash = need(verified.shash, "shash");
  const signature = curves.sign(concat(verified.appKey, serverKey, shash), verified.local.secretKey);
  return {
    ...verified,
    local: { ...verified.local, hello: concat(signature, verified.local.publicKey) },
    aBob,
    secret2: sha256(concat(verified.appKey, secret, aBob)),
  };
}

/** x25519 of the client's ephemeral key and the server's long-term key. */
function clientABob(state: Shs1State): Uint8Array | null {
  const serverCurve = peerCurveKey(need(state.remote.publicKey, "remote.publicKey (the server's key)"));
  return serverCurve === null ? null : curves.x25519(need(state.local.kxSk, "local.kxSk"), serverCurve);
}

/**
 * Client, after sending its hello: aBob, which needs only the server's key
 * we dialled, ahead of the server hello. Unchanged if it cannot be computed
 * (clientVerifyChallenge then rejects).
 */
export function clientPrepareAuth(state: Shs1State): Shs1State {
  const aBob = clientABob(state);
  return aBob === null ? state : { ...state, aBob };
}

/** Client: client auth, the hello boxed under secret2 (112 bytes). */
export function clientCreateAuth(state: Shs1State): Uint8Array {
  return box(need(state.local.hello, "local.hello"), need(state.secret2, "secret2"));
}

/** x25519 of the server's long-term key and the client's ephemeral key. */
function serverABob(state: Shs1State): Uint8Array | null {
  return curves.x25519(longTermCurveSecret(state.local), need(state.remote.kxPk, "remote.kxPk"));
}

/**
 * Server, after sending its hello: aBob and secret2, the key of the client
 * auth to come. Unchanged if aBob cannot be computed (serverVerifyAuth then
 * rejects).
 */
export function serverPrepareAuthCheck(state: Shs1State): Shs1State {
  const aBob = serverABob(state);
  if (aBob === null) return state;
  return { ...state, aBob, secret2: sha256(concat(state.appKey, need(state.secret, "secret"), aBob)) };
}

/**
 * Server: open client auth (only possible holding the long-term key the
 * client expects) and check the client's signature. Learns the client's key.
 */
export function serverVerifyAuth(state: Shs1State, data: Uint8Array): Shs1State | null {
  checkLength(data, "client auth", CLIENT_AUTH_LENGTH);
  const secret = need(state.secret, "secret");
  const shash = need(state.shash, "shash");
  const aBob = state.aBob ?? serverABob(state);
  if (aBob === null) return null;
  const secret2 = state.secret2 ?? sha256(concat(state.appKey, secret, aBob));
  const hello = unbox(data, secret2);
  if (hello === null) return null;
  const signature = hello.subarray(0, 64);
  const clientKey = hello.subarray(64, 96);
  const clientCurve = peerCurveKey(clientKey);
  if (clientCurve === null) return null;
  if (!curves.verify(signature, concat(state.appKey, state.local.publicKey, shash), clientKey)) return null;
  const bAlice = curves.x25519(need(state.local.kxSk, "local.kxSk"), clientCurve);
  if (bAlice === null) return null;
  return {
    ...state,
    remote: { ...state.remote, hello, publicKey: copy(clientKey) },
    aBob,
    secret2,
    bAlice,
    secret3: sha256(concat(state.appKey, secret, aBob, bAlice)),
  };
}

/** Server: server accept, our signature over the client's hello boxed under secret3 (80 bytes). */
export function serverCreateAccept(state: Shs1State): Uint8Array {
  const hello = need(state.remote.hello, "remote.hello");
  const signature = curves.sign(concat(state.appKey, hello, need(state.shash, "shash")), state.local.secretKey);
  return box(signature, need(state.secret3, "secret3"));
}

/** x25519 of the client's long-term key and the server's ephemeral key. */
function clientBAlice(state: Shs1State): Uint8Array | null {
  return curves.x25519(longTermCurveSecret(state.local), need(state.remote.kxPk, "remote.kxPk"));
}

/**
 * Client, after sending client auth: bAlice and secret3, the key of the
 * server accept to come. Unchanged if bAlice cannot be computed
 * (clientVerifyAccept then rejects).
 */
export function clientPrepareAcceptCheck(state: Shs1State): Shs1State {
  const bAlice = clientBAlice(state);
  if (bAlice === null) return state;
  const secret3 = sha256(concat(state.appKey, need(state.secret, "secret"), need(state.aBob, "aBob"), bAlice));
  return { ...state, bAlice, secret3 };
}

/** Client: open and check server accept, which proves the server holds the key we dialled. */
export function clientVerifyAccept(state: Shs1State, boxedOkay: Uint8Array): Shs1State | null {
  checkLength(boxedOkay, "server accept", SERVER_ACCEPT_LENGTH);
  const secret = need(state.secret, "secret");
  const aBob = need(state.aBob, "aBob");
  const serverKey = need(state.remote.publicKey, "remote.publicKey");
  const bAlice = state.bAlice ?? clientBAlice(state);
  if (bAlice === null) return null;
  const secret3 = state.secret3 ?? sha256(concat(state.appKey, secret, aBob, bAlice));
  const signature = unbox(boxedOkay, secret3);
  if (signature === null) return null;
  const signed = concat(state.appKey, need(state.local.hello, "local.hello"), need(state.shash, "shash"));
  if (!curves.verify(signature, signed, serverKey)) return null;
  return { ...state, bAlice, secret3 };
}

/**
 * Both sides, after the last message: derive the session secret and the
 * box-stream keys, and wipe every intermediate secret and the ephemeral
 * secret key (zero-filled in place).
 */
export function clean(state: Shs1State): Shs1State {
  const secret3 = need(state.secret3, "secret3");
  const remoteKey = need(state.remote.publicKey, "remote.publicKey");
  const secret = sha256(secret3);
  const encryptKey = sha256(concat(secret, remoteKey));
  const decryptKey = sha256(concat(secret, state.local.publicKey));
  for (const bytes of [state.shash, state.secret, state.aBob, state.bAlice, state.secret2, state.secret3, state.local.kxSk]) {
    bytes?.fill(0);
  }
  return {
    ...state,
    local: { ...state.local, kxSk: null },
    secret,
    shash: null,
    aBob: null,
    secret2: null,
    bAlice: null,
    secret3: null,
    encryptKey,
    decryptKey,
  };
}

/**
 * The box-stream keys of a cleaned state. Each direction's starting nonce is
 * the first 24 bytes of the receiver's hello MAC.
 */
export function boxStreamKeys(state: Shs1State): BoxStreamKeys {
  return {
    encryptKey: need(state.encryptKey, "encryptKey (run clean first)"),
    encryptNonce: copy(need(state.remote.appMac, "remote.appMac").subarray(0, 24)),
    decryptKey: need(state.decryptKey, "decryptKey (run clean first)"),
    decryptNonce: copy(state.local.appMac.subarray(0, 24)),
  };
}

function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

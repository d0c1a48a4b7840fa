// Authentication and encryption of capmesh connections: long-term identities,
// the shs1 secret handshake and box-stream.

export {
  IdentityError,
  formatId,
  formatKeyFile,
  generateIdentity,
  identityFromSecretKey,
  identityFromSeed,
  loadIdentity,
  loadOrCreateIdentity,
  parseId,
  parseKeyFile,
  saveIdentity,
  toPublicKey,
  type Identity,
  type IdentityErrorCode,
  type SaveIdentityOptions,
} from "./identity.js";
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  HandshakeClosedError,
  HandshakeError,
  HandshakeProtocolError,
  HandshakeTimeoutError,
  NetworkKeyMismatchError,
  UnauthorizedPeerError,
  WrongRemoteKeyError,
  clientHandshake,
  secureClient,
  secureServer,
  serverHandshake,
  type ClientHandshakeOptions,
  type HandshakeErrorCode,
  type HandshakeIdentity,
  type HandshakePhase,
  type HandshakeResult,
  type HandshakeRole,
  type SecureConnection,
  type ServerHandshakeOptions,
} from "./handshake.js";
export {
  BOX_HEADER_LENGTH,
  BoxDecoder,
  BoxEncoder,
  BoxStreamError,
  MAX_BOX_BODY,
  boxStream,
  type BoxStreamFault,
  type BoxStreamOptions,
} from "./box-stream.js";
export { DEFAULT_NETWORK_KEY, PlainPeerRefusedError, type NetworkKeyInput } from "./channel.js";
export * as shs1 from "./shs1.js";
export type { BoxStreamKeys } from "./shs1.js";

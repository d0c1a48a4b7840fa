// A capmesh mesh peer in C++, on Debian's libcapnp and libsodium: it finds
// the hub as the TypeScript SDK (src/mesh/join.ts) does, passes the secret
// handshake (shs1, as src/auth/shs1.ts) as a client, then speaks plain Cap'n
// Proto two-party RPC on the same socket. A hub's unix socket is
// "authentication only" (no box-stream: src/network/socket-network.ts
// encrypts TCP only), so after the handshake the socket is handed to kj as it is.
//
//   mesh-peer register <name> [--replace] [--identity <key file>]
//       Registers <name> with a demo.capnp Greeter (greet, and rooms that
//       call their listeners back), publishing its compiled schema as
//       joinMesh does, so that `capmesh call <name> greet` works. Prints
//       `registered <name> as <our id>` once registered; unregisters and exits 0 on SIGTERM/SIGINT or when
//       stdin (a pipe or terminal) closes; exits 1 if the hub goes away or
//       ends the registration.
//
//   mesh-peer call <name> <who> [--wait <ms>] [--identity <key file>]
//       Connects to <name> through the hub, calls Greeter.greet(<who>) and
//       prints the greeting.
//
//   mesh-peer list [--identity <key file>]
//       Prints every registered plugin: `<name> <id> <description>`.
//
// The hub is found like joinMesh finds it: CAPMESH_HUB and CAPMESH_HUB_ID,
// else the running hub's discovery file ($XDG_RUNTIME_DIR/capmesh/hub.json,
// else $TMPDIR/capmesh-<user>/hub.json); the network key is
// CAPMESH_NETWORK_KEY (base64), else $CAPMESH_HOME/netkey (~/.capmesh/netkey).
// Without --identity the peer is a fresh identity for this process; a key
// file is SSB's format, as `capmesh keygen` writes it.
//
// Exit codes: 0 done, 1 failure (reported on stderr), 2 usage.

#include "demo.capnp.h"
#include "mesh.capnp.h"
#include "peer-common.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <capnp/schema.capnp.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include <sodium.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

const char SOFTWARE[] = "capmesh-cpp-peer/0.1.0";
// The hub's own limit is 5 s (DEFAULT_HANDSHAKE_TIMEOUT_MS); ours is a bit
// longer so that the hub's verdict, when there is one, is what we report.
constexpr int HANDSHAKE_TIMEOUT_MS = 6000;

// A failure to report as it is (it already says what went wrong and what to do).
struct Failure: std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A command-line mistake: exit code 2.
struct UsageError: std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ===========================================================================
// Keys, ids and the files joinMesh reads

constexpr char ID_SUFFIX[] = ".ed25519";

std::string toBase64(const uint8_t* bytes, size_t size) {
  std::string out(sodium_base64_encoded_len(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(&out[0], out.size(), bytes, size, sodium_base64_VARIANT_ORIGINAL);
  out.resize(strlen(out.c_str()));
  return out;
}

// Decodes canonical padded base64 of exactly `size` bytes.
bool fromBase64(const std::string& text, uint8_t* out, size_t size) {
  size_t written = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out, size, text.data(), text.size(), nullptr, &written, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return false;
  }
  return written == size && end == text.data() + text.size() && toBase64(out, size) == text;
}

std::string formatId(const uint8_t publicKey[32]) {
  return "@" + toBase64(publicKey, 32) + ID_SUFFIX;
}

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void parseId(const std::string& id, uint8_t out[32], const std::string& where) {
  if (id.size() < 2 || id[0] != '@' || !endsWith(id, ID_SUFFIX) ||
      !fromBase64(id.substr(1, id.size() - 1 - strlen(ID_SUFFIX)), out, 32)) {
    throw Failure(where + " is " + id + ", not an id of the form @<base64 of 32 bytes>.ed25519");
  }
  uint8_t curve[32];
  if (crypto_sign_ed25519_pk_to_curve25519(curve, out) != 0) {
    throw Failure(where + " is " + id + ", which is not a usable ed25519 public key");
  }
}

// The string value of `key` in a JSON object as JSON.stringify writes it
// (the discovery file, SSB key files); no nesting is needed for those.
std::optional<std::string> jsonString(const std::string& text, const std::string& key) {
  const std::string needle = "\"" + key + "\"";
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    size_t i = pos + needle.size();
    while (i < text.size() && isspace(static_cast<unsigned char>(text[i]))) i++;
    if (i >= text.size() || text[i] != ':') continue;
    i++;
    while (i < text.size() && isspace(static_cast<unsigned char>(text[i]))) i++;
    if (i >= text.size() || text[i] != '"') return std::nullopt;
    std::string value;
    for (i++; i < text.size(); i++) {
      char c = text[i];
      if (c == '"') return value;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (++i >= text.size()) return std::nullopt;
      switch (text[i]) {
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        case '/': value += '/'; break;
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'u': {
          // Paths and ids are ASCII; other escapes are beyond this reader.
          if (i + 4 >= text.size()) return std::nullopt;
          for (size_t k = i + 1; k <= i + 4; k++) {
            if (!isxdigit(static_cast<unsigned char>(text[k]))) return std::nullopt;
          }
          unsigned code = std::stoul(text.substr(i + 1, 4), nullptr, 16);
          if (code >= 0x80) return std::nullopt;
          value += static_cast<char>(code);
          i += 4;
          break;
        }
        default: return std::nullopt;
      }
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t start = 0;
  while (start < s.size() && isspace(static_cast<unsigned char>(s[start]))) start++;
  return s.substr(start);
}

std::string envOr(const char* name, const std::string& fallback = "") {
  const char* value = getenv(name);
  return value != nullptr && value[0] != '\0' ? value : fallback;
}

// $CAPMESH_HOME, else ~/.capmesh (src/mesh/defaults.ts meshHome).
std::string meshHome() {
  std::string home = envOr("CAPMESH_HOME");
  if (!home.empty()) return home;
  std::string user = envOr("HOME");
  if (user.empty()) {
    struct passwd* pw = getpwuid(getuid());
    if (pw != nullptr && pw->pw_dir != nullptr) user = pw->pw_dir;
  }
  return user + "/.capmesh";
}

// $XDG_RUNTIME_DIR/capmesh, else <tmp>/capmesh-<user> (defaults.ts runtimeDir,
// with Node's os.tmpdir(): $TMPDIR without a trailing slash, else /tmp).
std::string runtimeDir() {
  std::string xdg = envOr("XDG_RUNTIME_DIR");
  if (!xdg.empty()) return xdg + "/capmesh";
  std::string tmp = envOr("TMPDIR", "/tmp");
  while (tmp.size() > 1 && tmp.back() == '/') tmp.pop_back();
  std::string user;
  struct passwd* pw = getpwuid(getuid());
  if (pw != nullptr && pw->pw_name != nullptr) user = pw->pw_name;
  for (char& c: user) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) c = '_';
  }
  if (user.empty()) user = std::to_string(getuid());
  return tmp + "/capmesh-" + user;
}

struct HubTarget {
  std::string address;
  std::string hubId;
  uint8_t hubKey[32];
  uint8_t networkKey[32];
};

HubTarget findHub() {
  HubTarget target;
  target.address = envOr("CAPMESH_HUB");
  target.hubId = envOr("CAPMESH_HUB_ID");
  std::string idWhere = "CAPMESH_HUB_ID";
  if (target.address.empty() || target.hubId.empty()) {
    std::string file = runtimeDir() + "/hub.json";
    if (target.hubId.empty()) idWhere = "the hub id in " + file;
    if (auto text = readFile(file)) {
      auto address = jsonString(*text, "address");
      auto hubId = jsonString(*text, "hubId");
      if (address && hubId) {
        if (target.address.empty()) target.address = *address;
        if (target.hubId.empty()) target.hubId = *hubId;
      }
    }
  }
  if (target.address.empty() || target.hubId.empty()) {
    throw Failure(
        "no hub found: set CAPMESH_HUB and CAPMESH_HUB_ID (capmesh serve prints them), or start a hub "
        "on this machine's defaults with `capmesh serve`");
  }
  parseId(target.hubId, target.hubKey, idWhere);

  std::string keyText = envOr("CAPMESH_NETWORK_KEY");
  std::string where = "CAPMESH_NETWORK_KEY";
  if (keyText.empty()) {
    where = meshHome() + "/netkey";
    auto text = readFile(where);
    if (!text) {
      throw Failure("no network key: set CAPMESH_NETWORK_KEY (capmesh serve prints it), or run where the hub's " +
                    where + " is readable");
    }
    keyText = trim(*text);
  }
  if (!fromBase64(keyText, target.networkKey, 32)) {
    throw Failure(where + ": a network key is 32 bytes in base64 (44 characters); make one with `capmesh netkey`");
  }
  return target;
}

struct KeyPair {
  uint8_t publicKey[32];
  uint8_t secretKey[64];  // libsodium form: seed || public key
  std::string id() const { return formatId(publicKey); }
};

KeyPair freshIdentity() {
  KeyPair keys;
  crypto_sign_keypair(keys.publicKey, keys.secretKey);
  return keys;
}

// An SSB key file (src/auth/identity.ts parseKeyFile): "#" lines are comments.
KeyPair loadIdentity(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    throw Failure("no key file at " + path + " (" + strerror(errno) + "); create one with: capmesh keygen " + path);
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", st.st_mode & 0777);
    throw Failure("key file " + path + " has mode " + mode +
                  ": it is accessible to group or others, which must not be for a secret key; fix it with: chmod 600 " + path);
  }
  auto text = readFile(path);
  if (!text) throw Failure("cannot read key file " + path + ": " + strerror(errno));
  std::string json;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] == '#') continue;
    json += line + "\n";
  }
  auto curve = jsonString(json, "curve");
  if (!curve || *curve != "ed25519") throw Failure(path + ": \"curve\" must be \"ed25519\"");
  auto secret = jsonString(json, "private");
  KeyPair keys;
  if (!secret || !endsWith(*secret, ID_SUFFIX) ||
      !fromBase64(secret->substr(0, secret->size() - strlen(ID_SUFFIX)), keys.secretKey, 64)) {
    throw Failure(path + ": \"private\" must be the base64 of 64 bytes followed by \".ed25519\"");
  }
  uint8_t check[64];
  crypto_sign_seed_keypair(keys.publicKey, check, keys.secretKey);
  sodium_memzero(check, sizeof(check));
  if (sodium_memcmp(keys.publicKey, keys.secretKey + 32, 32) != 0) {
    throw Failure(path + ": the secret key's second half is not the public key of its seed");
  }
  auto id = jsonString(json, "id");
  if (id && *id != keys.id()) throw Failure(path + ": \"id\" " + *id + " does not match the key (expected " + keys.id() + ")");
  return keys;
}

// ===========================================================================
// The secret handshake, client side (shs1: SSB's protocol guide, and
// src/auth/shs1.ts step for step), on a blocking socket.

using Clock = std::chrono::steady_clock;

class HandshakeSocket {
public:
  HandshakeSocket(int fd, Clock::time_point deadline): fd(fd), deadline(deadline) {}

  void writeAll(const uint8_t* data, size_t size, const char* what) {
    while (size > 0) {
      ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Failure(std::string("the handshake failed sending the ") + what + ": " + strerror(errno));
      data += n;
      size -= n;
    }
  }

  // Reads `size` bytes; returns fewer only if the hub closed the connection.
  size_t readExactly(uint8_t* out, size_t size, const char* what) {
    size_t got = 0;
    while (got < size) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) {
        throw Failure(std::string("the handshake timed out waiting for the ") + what + " (" + std::to_string(got) + " of " +
                      std::to_string(size) + " bytes received): the hub stalled");
      }
      struct pollfd p = {fd, POLLIN, 0};
      int ready = poll(&p, 1, left);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) continue;
      ssize_t n = recv(fd, out + got, size - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == ECONNRESET) return got;
      if (n < 0) throw Failure(std::string("the handshake failed reading the ") + what + ": " + strerror(errno));
      if (n == 0) return got;
      got += n;
    }
    return got;
  }

private:
  int fd;
  Clock::time_point deadline;
};

// Wipes the secrets of one handshake however it ends (forward secrecy).
struct Secrets {
  uint8_t kxSk[32], aBob[32], secret[32], shash[32], secret2[32], longTermCurve[32], bAlice[32], secret3[32];
  ~Secrets() { sodium_memzero(this, sizeof(*this)); }
};

void sha256Of(uint8_t out[32], std::initializer_list<kj::ArrayPtr<const uint8_t>> parts) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  for (auto part: parts) crypto_hash_sha256_update(&state, part.begin(), part.size());
  crypto_hash_sha256_final(&state, out);
}

kj::ArrayPtr<const uint8_t> bytes(const uint8_t* data, size_t size) { return kj::arrayPtr(data, size); }

void clientHandshake(int fd, const HubTarget& hub, const KeyPair& me) {
  static const uint8_t ZERO_NONCE[crypto_secretbox_NONCEBYTES] = {0};
  const uint8_t* K = hub.networkKey;
  const uint8_t* B = hub.hubKey;
  HandshakeSocket io(fd, Clock::now() + std::chrono::milliseconds(HANDSHAKE_TIMEOUT_MS));
  Secrets s;

  // Client hello: hmac_K(ephemeral pk) || ephemeral pk.
  uint8_t kxPk[32];
  crypto_box_keypair(kxPk, s.kxSk);
  uint8_t hello[64];
  crypto_auth(hello, kxPk, 32, K);
  memcpy(hello + 32, kxPk, 32);
  io.writeAll(hello, sizeof(hello), "client hello");

  // While the hub checks it: a·B, our ephemeral key with the hub's long-term key.
  uint8_t hubCurve[32];
  if (crypto_sign_ed25519_pk_to_curve25519(hubCurve, B) != 0 || crypto_scalarmult(s.aBob, s.kxSk, hubCurve) != 0) {
    throw Failure("the hub id " + hub.hubId + " is not a usable ed25519 key");
  }

  // Server hello: proves the hub knows the network key.
  uint8_t serverHello[64];
  size_t got = io.readExactly(serverHello, sizeof(serverHello), "server hello");
  if (got == 0) {
    throw Failure(
        "the hub closed the connection without answering our hello: it uses a different network key "
        "(check CAPMESH_NETWORK_KEY, or $CAPMESH_HOME/netkey) or refuses connections");
  }
  if (got < sizeof(serverHello)) {
    throw Failure("the connection closed in the middle of the handshake (" + std::to_string(got) +
                  " of 64 bytes of the server hello received)");
  }
  if (crypto_auth_verify(serverHello, serverHello + 32, 32, K) != 0) {
    throw Failure(
        "the server hello does not authenticate under our network key: the hub uses a different network key "
        "(check CAPMESH_NETWORK_KEY, or $CAPMESH_HOME/netkey), or it does not speak shs");
  }
  const uint8_t* remoteKx = serverHello + 32;
  if (crypto_scalarmult(s.secret, s.kxSk, remoteKx) != 0) {
    throw Failure("the server hello carries an invalid ephemeral key");
  }
  crypto_hash_sha256(s.shash, s.secret, 32);
  sha256Of(s.secret2, {bytes(K, 32), bytes(s.secret, 32), bytes(s.aBob, 32)});

  // Client auth: our signature over (K, hub key, hash of the shared secret)
  // and our key, boxed so that only the holder of the hub's key opens it.
  uint8_t signedByUs[96];
  memcpy(signedByUs, K, 32);
  memcpy(signedByUs + 32, B, 32);
  memcpy(signedByUs + 64, s.shash, 32);
  uint8_t auth[96];  // signature || our public key
  crypto_sign_detached(auth, nullptr, signedByUs, sizeof(signedByUs), me.secretKey);
  memcpy(auth + 64, me.publicKey, 32);
  uint8_t boxedAuth[96 + crypto_secretbox_MACBYTES];
  crypto_secretbox_easy(boxedAuth, auth, sizeof(auth), ZERO_NONCE, s.secret2);
  io.writeAll(boxedAuth, sizeof(boxedAuth), "client auth");

  // While the hub checks it: A·b, our long-term key with the hub's ephemeral key.
  crypto_sign_ed25519_sk_to_curve25519(s.longTermCurve, me.secretKey);
  if (crypto_scalarmult(s.bAlice, s.longTermCurve, remoteKx) != 0) {
    throw Failure("the server hello carries an invalid ephemeral key");
  }
  sha256Of(s.secret3, {bytes(K, 32), bytes(s.secret, 32), bytes(s.aBob, 32), bytes(s.bAlice, 32)});

  // Server accept: the hub's signature over our auth, which proves it holds B.
  uint8_t accept[64 + crypto_secretbox_MACBYTES];
  got = io.readExactly(accept, sizeof(accept), "server accept");
  if (got == 0) {
    throw Failure("the hub hung up on our authentication: it is not " + hub.hubId +
                  " (check CAPMESH_HUB_ID), or it does not accept us (policy, or too many connections)");
  }
  if (got < sizeof(accept)) {
    throw Failure("the connection closed in the middle of the handshake (" + std::to_string(got) +
                  " of 80 bytes of the server accept received)");
  }
  uint8_t signature[64];
  uint8_t signedByHub[32 + 96 + 32];
  memcpy(signedByHub, K, 32);
  memcpy(signedByHub + 32, auth, 96);
  memcpy(signedByHub + 128, s.shash, 32);
  if (crypto_secretbox_open_easy(signature, accept, sizeof(accept), ZERO_NONCE, s.secret3) != 0 ||
      crypto_sign_verify_detached(signature, signedByHub, sizeof(signedByHub), B) != 0) {
    throw Failure("the hub's accept does not verify: the hub is not " + hub.hubId + " (check CAPMESH_HUB_ID)");
  }
  // Authentication only: no box-stream keys are derived, the socket stays plain.
}

// Dials the hub's unix socket and runs the handshake; returns the socket.
int dialHub(const HubTarget& hub, const KeyPair& me) {
  peer::Address address;
  try {
    address = peer::parseAddress(hub.address);
  } catch (const std::exception& e) {
    throw Failure(std::string("the hub address ") + e.what());
  }
  if (!address.isUnix) {
    throw Failure("the hub address " + hub.address +
                  " is TCP, where the hub encrypts with box-stream, which this peer does not implement: use the hub's "
                  "unix socket (CAPMESH_HUB=unix:/path, as `capmesh serve` prints it)");
  }
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (address.unixPath.size() >= sizeof(sun.sun_path)) {
    throw Failure("the hub's socket path is too long for a unix socket: " + address.unixPath);
  }
  memcpy(sun.sun_path, address.unixPath.c_str(), address.unixPath.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Failure(std::string("socket(): ") + strerror(errno));
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&sun), sizeof(sun)) != 0) {
    int error = errno;
    close(fd);
    throw Failure("cannot reach the hub at " + hub.address + ": " + strerror(error) +
                  (error == ENOENT || error == ECONNREFUSED ? " (is it running? start one with `capmesh serve`)" : ""));
  }
  try {
    clientHandshake(fd, hub, me);
  } catch (...) {
    close(fd);
    throw;
  }
  return fd;
}

// ===========================================================================
// The demo Greeter this peer serves

class RoomImpl final: public Room::Server {
public:
  kj::Promise<void> join(JoinContext context) override {
    auto params = context.getParams();
    listeners.add(params.getListener());
    context.getResults().setMembers(listeners.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> say(SayContext context) override {
    auto params = context.getParams();
    auto sends = kj::heapArrayBuilder<kj::Promise<void>>(listeners.size());
    for (auto& listener: listeners) {
      auto req = listener.heardRequest();
      req.setWho(params.getWho());
      req.setText(params.getText());
      // A listener that is gone does not fail the speaker.
      sends.add(req.send().ignoreResult().catch_([](kj::Exception&&) {}));
    }
    return kj::joinPromises(sends.finish());
  }

private:
  kj::Vector<Listener::Client> listeners;
};

class GreeterImpl final: public Greeter::Server {
public:
  explicit GreeterImpl(std::string name): name(kj::mv(name)) {}

  kj::Promise<void> greet(GreetContext context) override {
    std::string who = context.getParams().getName();
    context.getResults().setGreeting("hello " + who + " from " + name + " (C++)");
    return kj::READY_NOW;
  }

  kj::Promise<void> room(RoomContext context) override {
    std::string roomName = context.getParams().getName();
    auto it = rooms.find(roomName);
    if (it == rooms.end()) it = rooms.emplace(roomName, Room::Client(kj::heap<RoomImpl>())).first;
    context.getResults().setRoom(it->second);
    return kj::READY_NOW;
  }

private:
  std::string name;
  std::map<std::string, Room::Client> rooms;
};

// ===========================================================================
// What the peer publishes about its interfaces: PluginInfo.interfaces and
// PluginInfo.schema, as joinMesh fills them (src/mesh/describe.ts,
// src/codegen/nodes.ts), from the schemas compiled into this binary.

struct Published {
  // The interfaces served and their superclasses, each once.
  std::vector<capnp::InterfaceSchema> interfaces;
  // A CodeGeneratorRequest, standard framing, not packed.
  kj::Array<capnp::word> schema;
};

// A node's name in its file ("Greeter", "Outer.Inner"): InterfaceInfo.name
// as TypeScript gives it.
std::string schemaName(capnp::Schema schema) {
  std::string display = schema.getProto().getDisplayName();
  size_t colon = display.find(':');
  return colon == std::string::npos ? display : display.substr(colon + 1);
}

// The nodes `roots` need to be encoded and decoded: the interfaces, their
// superclasses, method params and results, and the struct, enum and
// interface types of fields (in lists too) and groups, transitively; no file
// or annotation nodes (names come from display names, not scopes). Each node
// is copied without its annotations; no requestedFiles, no source info.
Published publish(std::initializer_list<capnp::InterfaceSchema> roots) {
  Published out;
  std::vector<capnp::Schema> nodes;
  std::set<uint64_t> seen;
  std::vector<capnp::Schema> queue(roots.begin(), roots.end());
  auto push = [&](capnp::Type type) {
    while (type.isList()) type = type.asList().getElementType();
    if (type.isStruct()) queue.push_back(type.asStruct());
    else if (type.isEnum()) queue.push_back(type.asEnum());
    else if (type.isInterface()) queue.push_back(type.asInterface());
  };
  // Breadth first, so that the roots and their superclasses come first.
  for (size_t next = 0; next < queue.size(); next++) {
    capnp::Schema schema = queue[next];
    if (!seen.insert(schema.getProto().getId()).second) continue;
    nodes.push_back(schema);
    auto proto = schema.getProto();
    if (proto.isStruct()) {
      // A group's type is its own struct node.
      for (auto field: schema.asStruct().getFields()) push(field.getType());
    } else if (proto.isInterface()) {
      auto iface = schema.asInterface();
      for (auto method: iface.getMethods()) {
        queue.push_back(method.getParamType());
        queue.push_back(method.getResultType());
      }
      for (auto superclass: iface.getSuperclasses()) queue.push_back(superclass);
    }
  }

  // PluginInfo.interfaces: the roots and their superclasses.
  std::set<uint64_t> listed;
  std::vector<capnp::InterfaceSchema> pending(roots.begin(), roots.end());
  for (size_t next = 0; next < pending.size(); next++) {
    auto iface = pending[next];
    if (!listed.insert(iface.getProto().getId()).second) continue;
    out.interfaces.push_back(iface);
    for (auto superclass: iface.getSuperclasses()) pending.push_back(superclass);
  }

  capnp::MallocMessageBuilder draft;
  auto list = draft.initRoot<capnp::schema::CodeGeneratorRequest>().initNodes(nodes.size());
  for (size_t i = 0; i < nodes.size(); i++) {
    list.setWithCaveats(i, nodes[i].getProto());
    list[i].disownAnnotations();
  }
  // Copied once more, so that the dropped annotations leave no zeroed words behind.
  capnp::MallocMessageBuilder message;
  message.setRoot(draft.getRoot<capnp::schema::CodeGeneratorRequest>().asReader());
  out.schema = capnp::messageToFlatArray(message);
  return out;
}

// ===========================================================================
// The mesh session: RPC over the authenticated socket, the Hub as bootstrap

struct MeshSession {
  MeshSession(kj::AsyncIoContext& io, int fd)
      : stream(io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT),
        rpc(capnp::makeRpcClient(network)),
        hub(bootstrap()) {}

  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  Hub::Client hub;

private:
  Hub::Client bootstrap() {
    capnp::MallocMessageBuilder message(8);
    auto vatId = message.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vatId).castAs<Hub>();
  }
};

// Hub.hello: checks the protocol version and that the hub authenticated us
// as the identity we hold.
void hello(MeshSession& session, const KeyPair& me, kj::WaitScope& ws) {
  auto req = session.hub.helloRequest();
  auto h = req.initHello();
  h.setProtocolVersion(PROTOCOL_VERSION);
  h.initFeatures(0);
  h.setSoftware(SOFTWARE);
  auto reply = req.send().wait(ws);
  std::string you = reply.getYou();
  if (you != me.id()) throw Failure("the hub took us for " + you + ", not " + me.id());
}

std::string describe(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  // What the hub refused, without the transport's prefix.
  const std::string prefix = "remote exception: ";
  if (text.rfind(prefix, 0) == 0) text = text.substr(prefix.size());
  return text;
}

// SIGTERM/SIGINT go to the event loop; stdin EOF (a pipe, socket or
// terminal) is turned into SIGTERM by a thread, so both end the same way.
void captureStopSignals() {
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  signal(SIGPIPE, SIG_IGN);
}

void watchStdin() {
  struct stat st;
  if (fstat(STDIN_FILENO, &st) != 0) return;
  if (!(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(STDIN_FILENO))) return;
  // Started after captureStopSignals: this thread keeps them blocked, so they
  // reach the event loop.
  std::thread([]() {
    char buf[256];
    for (;;) {
      ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EINTR)) {
        kill(getpid(), SIGTERM);
        return;
      }
    }
  }).detach();
}

struct Outcome {
  enum Kind { STOP, LOST, ENDED } kind;
  std::string detail;
};

int runRegister(const std::string& name, bool replace, const KeyPair& me, const HubTarget& target) {
  captureStopSignals();
  watchStdin();
  int fd = dialHub(target, me);
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  MeshSession session(io, fd);
  hello(session, me, ws);

  auto req = session.hub.registerRequest();
  req.setName(name);
  req.setCap(Greeter::Client(kj::heap<GreeterImpl>(name)));
  auto info = req.initInfo();
  info.setVersion("0.1.0");
  info.setDescription("C++ mesh peer (libcapnp " + std::to_string(CAPNP_VERSION_MAJOR) + "." +
                      std::to_string(CAPNP_VERSION_MINOR) + "." + std::to_string(CAPNP_VERSION_MICRO) + ", libsodium " +
                      sodium_version_string() + ")");
  Published published = publish({capnp::Schema::from<Greeter>()});
  auto interfaces = info.initInterfaces(published.interfaces.size());
  for (size_t i = 0; i < published.interfaces.size(); i++) {
    interfaces[i].setId(published.interfaces[i].getProto().getId());
    interfaces[i].setName(schemaName(published.interfaces[i]));
  }
  info.setSchema(published.schema.asBytes());
  info.setProtocolVersion(PROTOCOL_VERSION);
  req.setReplace(replace);
  kj::Maybe<Registration::Client> registration = req.send().wait(ws).getRegistration();

  std::string ready = "registered " + name + " as " + me.id() + "\n";
  fwrite(ready.data(), 1, ready.size(), stdout);
  fflush(stdout);

  auto stop = io.unixEventPort.onSignal(SIGTERM)
                  .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                  .then([](siginfo_t) { return Outcome{Outcome::STOP, ""}; });
  auto lost = session.network.onDisconnect().then([]() { return Outcome{Outcome::LOST, "the connection closed"}; });
  auto ended = KJ_ASSERT_NONNULL(registration)
                   .endedRequest()
                   .send()
                   .then([](capnp::Response<Registration::EndedResults>&& r) {
                     return Outcome{Outcome::ENDED, r.getReason()};
                   },
                         [](kj::Exception&& e) { return Outcome{Outcome::LOST, describe(e)}; });
  Outcome outcome = stop.exclusiveJoin(kj::mv(lost)).exclusiveJoin(kj::mv(ended)).wait(ws);

  switch (outcome.kind) {
    case Outcome::STOP: {
      // Unregister: release the Registration (watchers see `left` with
      // "released"), then a round trip to the hub so that the Release has
      // gone out before the connection closes.
      registration = nullptr;
      auto flushed = kj::evalLater([&session]() { return session.hub.listRequest().send().ignoreResult(); })
                         .catch_([](kj::Exception&&) {});
      flushed.exclusiveJoin(io.provider->getTimer().afterDelay(2 * kj::SECONDS)).wait(ws);
      return 0;
    }
    case Outcome::LOST:
      fprintf(stderr, "mesh-peer register: lost the hub (%s); exiting\n", outcome.detail.c_str());
      return 1;
    case Outcome::ENDED:
      fprintf(stderr, "mesh-peer register: the hub ended the registration of \"%s\": %s\n", name.c_str(),
              outcome.detail.c_str());
      return 1;
  }
  return 1;
}

int runCall(const std::string& name, const std::string& who, uint32_t waitMs, const KeyPair& me, const HubTarget& target) {
  int fd = dialHub(target, me);
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  MeshSession session(io, fd);
  hello(session, me, ws);
  auto connect = session.hub.connectRequest();
  connect.setName(name);
  connect.setWaitMs(waitMs);
  // Pipelined: greet goes out with connect, before the capability is back.
  auto greeter = connect.send().getCap().castAs<Greeter>();
  auto greet = greeter.greetRequest();
  greet.setName(who);
  auto reply = greet.send().wait(ws);
  printf("%s\n", reply.getGreeting().cStr());
  fflush(stdout);
  return 0;
}

int runList(const KeyPair& me, const HubTarget& target) {
  int fd = dialHub(target, me);
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  MeshSession session(io, fd);
  hello(session, me, ws);
  auto reply = session.hub.listRequest().send().wait(ws);
  for (auto entry: reply.getPlugins()) {
    printf("%s %s %s\n", entry.getName().cStr(), entry.getId().cStr(), entry.getInfo().getDescription().cStr());
  }
  fflush(stdout);
  return 0;
}

[[noreturn]] void usage(const std::string& problem) {
  throw UsageError(problem +
                   "\nusage: mesh-peer register <name> [--replace] [--identity <key file>]\n"
                   "       mesh-peer call <name> <who> [--wait <ms>] [--identity <key file>]\n"
                   "       mesh-peer list [--identity <key file>]");
}

int run(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string identityFile;
  bool replace = false;
  uint32_t waitMs = 0;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--replace") {
      replace = true;
    } else if (arg == "--identity" || arg == "--wait") {
      if (i + 1 >= argc) usage(arg + " needs a value");
      std::string value = argv[++i];
      if (arg == "--identity") {
        identityFile = value;
      } else {
        if (value.empty() || value.size() > 9 || value.find_first_not_of("0123456789") != std::string::npos) {
          usage("--wait takes a number of milliseconds, got " + value);
        }
        waitMs = static_cast<uint32_t>(std::stoul(value));
      }
    } else if (arg.rfind("--", 0) == 0) {
      usage("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) usage("no command given");
  const std::string& command = positional[0];
  if (command == "register") {
    if (positional.size() != 2) usage("register takes one name");
  } else if (command == "call") {
    if (positional.size() != 3) usage("call takes a name and who to greet");
  } else if (command == "list") {
    if (positional.size() != 1) usage("list takes no arguments");
  } else {
    usage("unknown command " + command);
  }
  if (replace && command != "register") usage("--replace is for register");
  if (waitMs != 0 && command != "call") usage("--wait is for call");

  if (sodium_init() < 0) throw Failure("libsodium failed to initialize");
  HubTarget target = findHub();
  KeyPair me = identityFile.empty() ? freshIdentity() : loadIdentity(identityFile);
  if (command == "register") return runRegister(positional[1], replace, me, target);
  if (command == "call") return runCall(positional[1], positional[2], waitMs, me, target);
  return runList(me, target);
}

}  // namespace

int main(int argc, char** argv) {
  const char* command = argc > 1 ? argv[1] : "";
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fprintf(stderr, "mesh-peer: %s\n", e.what());
    return 2;
  } catch (const Failure& e) {
    fprintf(stderr, "mesh-peer %s: %s\n", command, e.what());
    return 1;
  } catch (const kj::Exception& e) {
    fprintf(stderr, "mesh-peer %s: %s\n", command, describe(e).c_str());
    return 1;
  } catch (const std::exception& e) {
    fprintf(stderr, "mesh-peer %s: %s\n", command, e.what());
    return 1;
  }
}

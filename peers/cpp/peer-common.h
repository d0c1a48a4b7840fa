// Shared plumbing for the C++ reference peers (interop-peer, bench-peer):
// address translation, the `serve` loop with its stdout protocol, process
// lifetime (SIGTERM, stdin EOF) and FNV-1a 64.
//
// Address forms accepted everywhere:
//   unix:/path/to/socket     unix domain socket (capmesh and kj spelling)
//   tcp://host:port          capmesh spelling of a TCP address
//   host:port                kj spelling of a TCP address
// Port 0 asks the kernel for a free port; the `listening` line reports the
// real one.

#pragma once

#include <capnp/ez-rpc.h>
#include <capnp/message.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/string.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

namespace peer {

constexpr uint64_t FNV_OFFSET = 0xcbf29ce484222325ull;
constexpr uint64_t FNV_PRIME = 0x100000001b3ull;

inline uint64_t fnv1a(uint64_t hash, const kj::byte* data, size_t size) {
  for (size_t i = 0; i < size; i++) {
    hash ^= data[i];
    hash *= FNV_PRIME;
  }
  return hash;
}

inline uint64_t fnv1a(kj::ArrayPtr<const kj::byte> data) {
  return fnv1a(FNV_OFFSET, data.begin(), data.size());
}

// Generous limits: the interop scenarios move 8 MiB single messages.
inline capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 28;  // 2 GiB worth of words
  options.nestingLimit = 128;
  return options;
}

struct Address {
  bool isUnix = false;
  std::string unixPath;  // when isUnix
  std::string host;      // when !isUnix (may be a bracketed IPv6 literal)
  std::string port;      // when !isUnix

  // The string handed to kj / EzRpc.
  std::string forKj() const {
    return isUnix ? "unix:" + unixPath : host + ":" + port;
  }
  // The capmesh spelling, used in the `listening` line.
  std::string forCapmesh(unsigned realPort) const {
    return isUnix ? "unix:" + unixPath : "tcp://" + host + ":" + std::to_string(realPort);
  }
};

inline Address parseAddress(const std::string& text) {
  Address a;
  if (text.rfind("unix:", 0) == 0) {
    a.isUnix = true;
    a.unixPath = text.substr(5);
    if (a.unixPath.empty()) throw std::runtime_error("empty unix socket path in " + text);
    return a;
  }
  std::string rest = text;
  if (rest.rfind("tcp://", 0) == 0) rest = rest.substr(6);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    throw std::runtime_error("address must be unix:/path, tcp://host:port or host:port, got: " + text);
  }
  a.host = rest.substr(0, colon);
  a.port = rest.substr(colon + 1);
  for (char c: a.port) {
    if (c < '0' || c > '9') throw std::runtime_error("bad port in address: " + text);
  }
  return a;
}

// ---------------------------------------------------------------------------
// Process lifetime for `serve`.

namespace detail {
inline char socketToRemove[512] = {0};

inline void removeSocketAndExit(int code) {
  if (socketToRemove[0] != '\0') unlink(socketToRemove);
  _exit(code);
}

inline void onTerminate(int) { removeSocketAndExit(0); }
}  // namespace detail

// SIGTERM / SIGINT / SIGHUP: remove our unix socket (if any) and exit 0.
// stdin EOF (when stdin is a pipe, socket or terminal): the same. A stdin
// that is a regular file or /dev/null is not watched, so the server can
// also be run detached.
inline void installLifetimeHandlers(const Address& address) {
  if (address.isUnix && address.unixPath.size() < sizeof(detail::socketToRemove)) {
    strncpy(detail::socketToRemove, address.unixPath.c_str(), sizeof(detail::socketToRemove) - 1);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = &detail::onTerminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  struct stat st;
  if (fstat(STDIN_FILENO, &st) == 0 &&
      (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(STDIN_FILENO))) {
    std::thread([]() {
      char buf[256];
      for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n == 0) detail::removeSocketAndExit(0);
        if (n < 0 && errno != EINTR) detail::removeSocketAndExit(0);
      }
    }).detach();
  }
}

// A stale socket file left by a killed server would make bind() fail.
inline void removeStaleSocket(const Address& address) {
  if (!address.isUnix) return;
  struct stat st;
  if (lstat(address.unixPath.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    unlink(address.unixPath.c_str());
  }
}

// Runs an EzRpc server with `mainCap` as bootstrap until killed. Prints
// exactly one line `listening <capmesh-address>` to stdout once accepting.
inline int serve(capnp::Capability::Client mainCap, const std::string& addressText) {
  Address address = parseAddress(addressText);
  installLifetimeHandlers(address);
  removeStaleSocket(address);
  capnp::EzRpcServer server(kj::mv(mainCap), address.forKj().c_str(), 0, readerOptions());
  auto& ws = server.getWaitScope();
  unsigned port = server.getPort().wait(ws);
  std::string line = "listening " + address.forCapmesh(port) + "\n";
  fwrite(line.data(), 1, line.size(), stdout);
  fflush(stdout);
  kj::NEVER_DONE.wait(ws);
}

// One line for an error report: type, description and origin, no stack.
inline std::string describe(const kj::Exception& e) {
  return std::string(kj::str(e.getType()).cStr()) + ": " + e.getDescription().cStr() + " (" +
         e.getFile() + ":" + std::to_string(e.getLine()) + ")";
}

// Throws a FAILED kj::Exception carrying a formatted message.
#define PEER_CHECK(cond, ...)                                                             \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, \
                                            kj::str("check failed: " #cond ": ", __VA_ARGS__))); \
    }                                                                                     \
  } while (0)

}  // namespace peer

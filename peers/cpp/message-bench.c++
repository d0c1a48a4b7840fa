// C++ reference for the message build/read benchmark (bench/messages/):
// builds and reads the shapes of bench/messages/shapes.capnp with libcapnp's
// MallocMessageBuilder and FlatArrayMessageReader, the way a C++ program
// would, and prints timings. bench/messages/run.ts builds it (cached, see
// bench/messages/cpp.ts) and runs it beside capmesh's worker, which speaks the
// same protocol.
//
//   message-bench <shape> <count> <repeat> [<seconds>]
//
//   shape   blob   Blob { data :Data } with <count> bytes of data
//           words  Words { values :List(UInt64) } with <count> values 0, 1, 2, …
//           tree   Node { id, value, name, children } with <count> nodes: node i
//                  has id i, value i/2, name "n" + i as 6 hex digits, and children
//                  4i+1 … 4i+4 (those below <count>); leaves have no children list
//
// Output, one JSON object per line on stdout:
//   {"ready":true,"bytes":B,"segments":S}  set-up done; B = the flat message's size
//                                          (segment table included), S its segments
//   {"start":"read","rep":R}               a timed repetition begins (the runner's
//                                          time limit counts from here)
//   {"op":"read","rep":R,"ns":N}           …and took N ns
// The reads, then the builds: at least <repeat> runs of each, more (up to
// 10 × <repeat>) while they add up to under 0.5 s, and none after they add up to
// more than <seconds> (default: no limit). On failure: `error: …` on stderr, exit 1.
//
// build = MallocMessageBuilder (default options), fill every field from data
//         prepared beforehand, messageToFlatArray (the bytes one would send);
//         the builder's memory is freed after the clock stops.
// read  = FlatArrayMessageReader over those bytes (traversal limit 2^28 words),
//         then every getter of every field: ids, values, list elements and the
//         bytes of each name are summed and checked; Data is only located
//         (getData() copies nothing).

#include "shapes.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& message) {
  fprintf(stderr, "error: %s\n", message.c_str());
  exit(1);
}

void check(bool ok, const std::string& what) {
  if (!ok) die("check failed: " + what);
}

void line(const std::string& json) {
  fputs(json.c_str(), stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 28;  // 2 GiB worth of words
  options.nestingLimit = 64;
  return options;
}

// What a shape needs to be built: prepared once, outside the clock.
struct Source {
  std::string shape;
  uint64_t count = 0;
  std::vector<kj::byte> blob;
  std::vector<uint64_t> words;
  std::vector<char> names;  // 8 bytes per node: 7 characters and a NUL
};

Source prepare(const std::string& shape, uint64_t count) {
  Source s;
  s.shape = shape;
  s.count = count;
  if (shape == "blob") {
    s.blob.resize(count);
    for (uint64_t i = 0; i < count; i++) s.blob[i] = kj::byte(i * 7 + 3);
  } else if (shape == "words") {
    s.words.resize(count);
    for (uint64_t i = 0; i < count; i++) s.words[i] = i;
  } else if (shape == "tree") {
    check(count >= 1 && count <= 0xffffff, "tree node count between 1 and 2^24 - 1");
    s.names.resize(count * 8);
    for (uint64_t i = 0; i < count; i++) snprintf(&s.names[i * 8], 8, "n%06llx", (unsigned long long)i);
  } else {
    die("unknown shape " + shape);
  }
  return s;
}

void fillNode(Node::Builder node, uint32_t i, const Source& s) {
  node.setId(i);
  node.setValue(i * 0.5);
  node.setName(capnp::Text::Reader(&s.names[size_t(i) * 8], 7));
  uint64_t first = uint64_t(i) * 4 + 1;
  if (first < s.count) {
    uint32_t n = uint32_t(s.count - first < 4 ? s.count - first : 4);
    auto children = node.initChildren(n);
    for (uint32_t k = 0; k < n; k++) fillNode(children[k], uint32_t(first + k), s);
  }
}

void fill(capnp::MallocMessageBuilder& message, const Source& s) {
  if (s.shape == "blob") {
    message.initRoot<Blob>().setData(kj::arrayPtr(s.blob.data(), s.blob.size()));
  } else if (s.shape == "words") {
    auto list = message.initRoot<Words>().initValues(uint32_t(s.count));
    for (uint32_t i = 0; i < s.count; i++) list.set(i, s.words[i]);
  } else {
    fillNode(message.initRoot<Node>(), 0, s);
  }
}

struct Sums {
  uint64_t nodes = 0;
  uint64_t ids = 0;
  double values = 0;
  uint64_t nameBytes = 0;
};

void visit(Node::Reader node, Sums& sums) {
  sums.nodes++;
  sums.ids += node.getId();
  sums.values += node.getValue();
  auto name = node.getName();
  for (char c : name) sums.nameBytes += uint8_t(c);
  for (auto child : node.getChildren()) visit(child, sums);
}

// Reads every value of the message; checks what it read.
void read(kj::ArrayPtr<const capnp::word> flat, const Source& s) {
  capnp::FlatArrayMessageReader reader(flat, readerOptions());
  if (s.shape == "blob") {
    auto data = reader.getRoot<Blob>().getData();
    check(data.size() == s.count, "blob size");
    check(s.count == 0 || data[s.count - 1] == s.blob[s.count - 1], "blob's last byte");
  } else if (s.shape == "words") {
    auto list = reader.getRoot<Words>().getValues();
    check(list.size() == s.count, "words count");
    uint64_t sum = 0;
    for (uint64_t v : list) sum += v;
    check(sum == s.count * (s.count - 1) / 2, "words sum");
  } else {
    Sums sums;
    visit(reader.getRoot<Node>(), sums);
    check(sums.nodes == s.count, "tree node count");
    check(sums.ids == s.count * (s.count - 1) / 2, "tree id sum");
    check(sums.values == double(s.count) * double(s.count - 1) / 4, "tree value sum");
    check(sums.nameBytes > 0, "tree names");
  }
}

uint64_t nsSince(Clock::time_point start) {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

void start(const char* op, int rep) {
  line(std::string("{\"start\":\"") + op + "\",\"rep\":" + std::to_string(rep) + "}");
}

void done(const char* op, int rep, uint64_t ns) {
  line(std::string("{\"op\":\"") + op + "\",\"rep\":" + std::to_string(rep) + ",\"ns\":" + std::to_string(ns) + "}");
}

void run(const std::string& shape, uint64_t count, int repeat, double budgetSeconds) {
  const uint64_t budget = budgetSeconds > 0 ? uint64_t(budgetSeconds * 1e9) : UINT64_MAX;
  auto more = [&](int rep, uint64_t total) {
    return total <= budget && (rep <= repeat || (total < 500000000u && rep <= repeat * 10));
  };
  Source s = prepare(shape, count);

  // The bytes every read starts from (and a warm-up of both paths).
  kj::Array<capnp::word> flat;
  size_t segments;
  {
    capnp::MallocMessageBuilder message;
    fill(message, s);
    segments = message.getSegmentsForOutput().size();
    flat = capnp::messageToFlatArray(message);
  }
  read(flat, s);
  line("{\"ready\":true,\"bytes\":" + std::to_string(flat.asBytes().size()) +
       ",\"segments\":" + std::to_string(segments) + "}");

  uint64_t total = 0;
  for (int rep = 1; more(rep, total); rep++) {
    start("read", rep);
    auto t0 = Clock::now();
    read(flat, s);
    uint64_t ns = nsSince(t0);
    total += ns;
    done("read", rep, ns);
  }
  total = 0;
  for (int rep = 1; more(rep, total); rep++) {
    start("build", rep);
    uint64_t ns;
    size_t bytes;
    {
      auto t0 = Clock::now();
      capnp::MallocMessageBuilder message;
      fill(message, s);
      kj::Array<capnp::word> out = capnp::messageToFlatArray(message);
      ns = nsSince(t0);
      bytes = out.asBytes().size();
    }
    check(bytes == flat.asBytes().size(), "every build makes a message of the same size");
    total += ns;
    done("build", rep, ns);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) die("usage: message-bench blob|words|tree <count> <repeat> [<seconds>]");
  char* end = nullptr;
  unsigned long long count = strtoull(argv[2], &end, 10);
  if (*argv[2] == '\0' || *end != '\0' || count > 0x1fffffff) die("bad count");
  int repeat = atoi(argv[3]);
  if (repeat < 1) die("bad repeat");
  double seconds = argc == 5 ? atof(argv[4]) : 0;
  try {
    run(argv[1], count, repeat, seconds);
  } catch (const kj::Exception& e) {
    die(std::string(e.getDescription().cStr()));
  }
  return 0;
}

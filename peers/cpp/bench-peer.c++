// C++ reference peer for bench/schema/bench.capnp (EzRpc), used by the benchmark
// both as a server and as a load generator. Only standard protocol features
// are used, so either side can face a capmesh implementation.
//
//   bench-peer serve <address>
//       Serves Bench as the bootstrap capability; prints `listening <address>`
//       once accepting; exits 0 on SIGTERM/SIGINT or when stdin closes.
//
//   bench-peer client <address> <figure> <seconds>
//       Runs one figure for about <seconds> (fractions allowed) and prints
//       one JSON object on one line to stdout:
//         seq       {"rps":N,"p50us":N,"p99us":N}   sequential ping calls
//         inflight  {"cps":N}                        100 pings always in flight
//         stream    {"mbps":N}                       64 KiB BenchSink.write stream;
//                                                    mbps = megabytes (10^6 B) per second
//         chain     {"pipelinedUs":N,"awaitedUs":N}  10 x next() then ping(),
//                                                    median per chain
//       On failure prints `error <figure>: <description>` to stderr, exits 1.
//
// Server semantics: the bootstrap Bench has depth 0 and ping(n) returns n.
// next(depth) returns a Bench of that depth, whose ping returns its depth
// (the client always pings the end of a depth-10 chain with n = 10, so it
// does not depend on which of the two readings a server follows).

#include "bench.capnp.h"
#include "peer-common.h"

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A JSON number with three decimals.
std::string num(double v) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

// ===========================================================================
// Server

class BenchSinkImpl final: public BenchSink::Server {
public:
  kj::Promise<void> write(WriteContext context) override {
    bytes += context.getParams().getChunk().size();
    return kj::READY_NOW;
  }
  kj::Promise<void> done(DoneContext context) override {
    context.getResults().setBytes(bytes);
    return kj::READY_NOW;
  }

private:
  uint64_t bytes = 0;
};

class BenchImpl final: public Bench::Server {
public:
  explicit BenchImpl(uint32_t depth): depth(depth) {}

  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setN(depth == 0 ? context.getParams().getN() : depth);
    return kj::READY_NOW;
  }
  kj::Promise<void> next(NextContext context) override {
    context.getResults().setNext(kj::heap<BenchImpl>(context.getParams().getDepth()));
    return kj::READY_NOW;
  }
  kj::Promise<void> sink(SinkContext context) override {
    context.getResults().setSink(kj::heap<BenchSinkImpl>());
    return kj::READY_NOW;
  }

private:
  uint32_t depth;
};

// ===========================================================================
// Client figures

struct Client {
  Bench::Client bench;
  kj::WaitScope& ws;
  double seconds;
};

uint32_t pingNow(Client& c, Bench::Client& target, uint32_t n) {
  auto req = target.pingRequest();
  req.setN(n);
  return req.send().wait(c.ws).getN();
}

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t idx = size_t(p * double(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

std::string figureSeq(Client& c) {
  for (uint32_t i = 0; i < 200; i++) pingNow(c, c.bench, i);  // warm-up
  std::vector<double> latencies;
  auto start = Clock::now();
  uint32_t i = 0;
  while (secondsSince(start) < c.seconds || latencies.size() < 10) {
    auto t0 = Clock::now();
    uint32_t got = pingNow(c, c.bench, i);
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    PEER_CHECK(got == i, "ping(", i, ") returned ", got);
    i++;
  }
  double elapsed = secondsSince(start);
  std::sort(latencies.begin(), latencies.end());
  return "{\"rps\":" + num(latencies.size() / elapsed) +
         ",\"p50us\":" + num(percentile(latencies, 0.50)) +
         ",\"p99us\":" + num(percentile(latencies, 0.99)) + "}";
}

struct InflightState {
  Bench::Client bench;
  Clock::time_point deadline;
  uint64_t completed = 0;
};

kj::Promise<void> inflightLane(InflightState& s, uint32_t n) {
  auto req = s.bench.pingRequest();
  req.setN(n);
  return req.send().then([&s, n](capnp::Response<Bench::PingResults>&& resp) -> kj::Promise<void> {
    PEER_CHECK(resp.getN() == n, "ping(", n, ") returned ", resp.getN());
    s.completed++;
    if (Clock::now() >= s.deadline) return kj::READY_NOW;
    return inflightLane(s, n + 1);
  });
}

std::string figureInflight(Client& c) {
  constexpr int LANES = 100;
  for (uint32_t i = 0; i < 200; i++) pingNow(c, c.bench, i);  // warm-up
  auto start = Clock::now();
  InflightState s{c.bench,
                  start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(c.seconds))};
  auto lanes = kj::heapArrayBuilder<kj::Promise<void>>(LANES);
  for (int i = 0; i < LANES; i++) lanes.add(inflightLane(s, uint32_t(i) * 1000000u));
  kj::joinPromises(lanes.finish()).wait(c.ws);
  double elapsed = secondsSince(start);
  return "{\"cps\":" + num(s.completed / elapsed) + "}";
}

std::string figureStream(Client& c) {
  constexpr size_t CHUNK = 64 * 1024;
  BenchSink::Client sink = c.bench.sinkRequest().send().getSink();
  auto chunk = kj::heapArray<kj::byte>(CHUNK);
  for (size_t i = 0; i < CHUNK; i++) chunk[i] = kj::byte(i * 7 + 3);
  uint64_t sent = 0;
  auto start = Clock::now();
  while (secondsSince(start) < c.seconds || sent < 16 * CHUNK) {
    auto req = sink.writeRequest();
    req.setChunk(chunk);
    req.send().wait(c.ws);  // resolves when flow control admits the next write
    sent += CHUNK;
  }
  uint64_t received = sink.doneRequest().send().wait(c.ws).getBytes();
  double elapsed = secondsSince(start);
  PEER_CHECK(received == sent, "sink received ", received, " of ", sent, " bytes");
  return "{\"mbps\":" + num(double(sent) / elapsed / 1e6) + "}";
}

constexpr uint32_t CHAIN = 10;

void chainOnce(Client& c, bool pipelined) {
  Bench::Client cur = c.bench;
  for (uint32_t d = 1; d <= CHAIN; d++) {
    auto req = cur.nextRequest();
    req.setDepth(d);
    if (pipelined) {
      cur = req.send().getNext();
    } else {
      cur = req.send().wait(c.ws).getNext();
    }
  }
  uint32_t got = pingNow(c, cur, CHAIN);
  PEER_CHECK(got == CHAIN, "ping at the end of the chain returned ", got);
}

double medianChainUs(Client& c, bool pipelined, double seconds) {
  for (int i = 0; i < 20; i++) chainOnce(c, pipelined);  // warm-up
  std::vector<double> samples;
  auto start = Clock::now();
  while (secondsSince(start) < seconds || samples.size() < 5) {
    auto t0 = Clock::now();
    chainOnce(c, pipelined);
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  return percentile(samples, 0.5);
}

std::string figureChain(Client& c) {
  double pipelined = medianChainUs(c, true, c.seconds / 2);
  double awaited = medianChainUs(c, false, c.seconds / 2);
  return "{\"pipelinedUs\":" + num(pipelined) + ",\"awaitedUs\":" + num(awaited) + "}";
}

int runClient(const std::string& addressText, const std::string& figure, double seconds) {
  std::string (*run)(Client&) = nullptr;
  if (figure == "seq") run = figureSeq;
  if (figure == "inflight") run = figureInflight;
  if (figure == "stream") run = figureStream;
  if (figure == "chain") run = figureChain;
  if (run == nullptr) {
    fprintf(stderr, "unknown figure '%s'; known: seq inflight stream chain\n", figure.c_str());
    return 2;
  }
  try {
    peer::Address address = peer::parseAddress(addressText);
    signal(SIGPIPE, SIG_IGN);
    capnp::EzRpcClient ez(address.forKj().c_str(), 0, peer::readerOptions());
    Client c{ez.getMain<Bench>(), ez.getWaitScope(), seconds};
    std::string json = run(c);
    printf("%s\n", json.c_str());
    fflush(stdout);
  } catch (kj::Exception& e) {
    fprintf(stderr, "error %s: %s\n", figure.c_str(), peer::describe(e).c_str());
    fflush(stderr);
    _exit(1);
  } catch (std::exception& e) {
    fprintf(stderr, "error %s: %s\n", figure.c_str(), e.what());
    fflush(stderr);
    _exit(1);
  }
  return 0;
}

void usage() {
  fprintf(stderr,
          "usage:\n"
          "  bench-peer serve <address>\n"
          "  bench-peer client <address> <seq|inflight|stream|chain> <seconds>\n"
          "address: unix:/path | tcp://host:port | host:port\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve" && argc == 3) {
    try {
      return peer::serve(kj::heap<BenchImpl>(0), argv[2]);
    } catch (kj::Exception& e) {
      fprintf(stderr, "error serve: %s\n", peer::describe(e).c_str());
      return 1;
    } catch (std::exception& e) {
      fprintf(stderr, "error serve: %s\n", e.what());
      return 1;
    }
  }
  if (mode == "client" && argc == 5) {
    char* end = nullptr;
    double seconds = strtod(argv[4], &end);
    if (end == argv[4] || *end != '\0' || !(seconds > 0)) {
      fprintf(stderr, "seconds must be a positive number, got '%s'\n", argv[4]);
      return 2;
    }
    return runClient(argv[2], argv[3], seconds);
  }
  usage();
  return 2;
}

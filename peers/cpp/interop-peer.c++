// C++ reference peer for test/interop/schema/interop.capnp, built on the Cap'n Proto
// C++ implementation (EzRpc). Used to check that capmesh's own RPC engine
// interoperates with the reference implementation, in both directions.
//
//   interop-peer serve <address>
//       Serves TestService as the bootstrap capability. Prints one line
//       `listening <address>` (port 0 replaced by the real port) once it
//       accepts connections. Exits 0 on SIGTERM/SIGINT or when stdin closes.
//
//   interop-peer client <address> <scenario>
//       Connects to a TestService server and runs one scenario (or `all`).
//       Prints `ok <scenario>` per passed scenario and exits 0; on failure
//       prints `error <scenario>: <description>` to stderr and exits 1.
//       Usage errors exit 2.

#include "interop.capnp.h"
#include "peer-common.h"

#include <capnp/capability.h>
#include <capnp/ez-rpc.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using peer::fnv1a;

// ===========================================================================
// Objects shared by both sides

class CounterImpl: public Counter::Server {
public:
  explicit CounterImpl(int64_t start): value(start) {}

  kj::Promise<void> add(AddContext context) override {
    int64_t delta = context.getParams().getDelta();
    value += delta;
    deltas.push_back(delta);
    context.getResults().setValue(value);
    return kj::READY_NOW;
  }

  kj::Promise<void> next(NextContext context) override {
    context.getResults().setCounter(kj::heap<CounterImpl>(value + 1));
    return kj::READY_NOW;
  }

  int64_t value;
  std::vector<int64_t> deltas;  // every add() delta, in arrival order
};

// ===========================================================================
// Server

struct ServerState {
  uint32_t canceled = 0;
  uint32_t liveTracked = 0;
  struct Pending {
    int64_t start;
    kj::Own<kj::PromiseFulfiller<Counter::Client>> fulfiller;
  };
  std::vector<Pending> later;
};

// Lives for the whole process: objects destroyed during shutdown may still
// touch it.
ServerState& state() {
  static ServerState* s = new ServerState;
  return *s;
}

class TrackedCounter final: public CounterImpl {
public:
  TrackedCounter(): CounterImpl(0) { state().liveTracked++; }
  ~TrackedCounter() noexcept(false) { state().liveTracked--; }
};

class ByteSinkImpl final: public ByteSink::Server {
public:
  kj::Promise<void> write(WriteContext context) override {
    auto chunk = context.getParams().getChunk();
    bytes += chunk.size();
    hash = fnv1a(hash, chunk.begin(), chunk.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    auto results = context.getResults();
    results.setBytes(bytes);
    results.setChecksum(hash);
    return kj::READY_NOW;
  }

private:
  uint64_t bytes = 0;
  uint64_t hash = peer::FNV_OFFSET;
};

kj::Promise<int64_t> addRepeatedly(Counter::Client cap, uint32_t remaining, int64_t last) {
  if (remaining == 0) return last;
  auto req = cap.addRequest();
  req.setDelta(1);
  return req.send().then([cap, remaining](capnp::Response<Counter::AddResults>&& resp) mutable {
    return addRepeatedly(kj::mv(cap), remaining - 1, resp.getValue());
  });
}

class TestServiceImpl final: public TestService::Server {
public:
  kj::Promise<void> echo(EchoContext context) override {
    auto params = context.getParams();
    auto results = context.getResults();
    results.setText(params.getText());
    results.setData(params.getData());
    results.setN(params.getN());
    return kj::READY_NOW;
  }

  kj::Promise<void> newCounter(NewCounterContext context) override {
    context.getResults().setCounter(kj::heap<CounterImpl>(context.getParams().getStart()));
    return kj::READY_NOW;
  }

  kj::Promise<void> callBack(CallBackContext context) override {
    auto params = context.getParams();
    auto req = params.getCb().callRequest();
    req.setValue(params.getValue());
    return req.send().then([context](capnp::Response<Callback::CallResults>&& resp) mutable {
      context.getResults().setReply(resp.getReply());
    });
  }

  kj::Promise<void> echoCap(EchoCapContext context) override {
    context.getResults().setCap(context.getParams().getCap());
    return kj::READY_NOW;
  }

  kj::Promise<void> later(LaterContext context) override {
    auto paf = kj::newPromiseAndFulfiller<Counter::Client>();
    state().later.push_back({context.getParams().getStart(), kj::mv(paf.fulfiller)});
    context.getResults().setCounter(Counter::Client(kj::mv(paf.promise)));
    return kj::READY_NOW;
  }

  kj::Promise<void> resolveLater(ResolveLaterContext) override {
    auto pending = kj::mv(state().later);
    state().later.clear();
    for (auto& p: pending) {
      p.fulfiller->fulfill(Counter::Client(kj::heap<CounterImpl>(p.start)));
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> fail(FailContext context) override {
    auto params = context.getParams();
    kj::Exception::Type type = kj::Exception::Type::FAILED;
    switch (params.getKind()) {
      case FailKind::FAILED: type = kj::Exception::Type::FAILED; break;
      case FailKind::OVERLOADED: type = kj::Exception::Type::OVERLOADED; break;
      case FailKind::DISCONNECTED: type = kj::Exception::Type::DISCONNECTED; break;
      case FailKind::UNIMPLEMENTED: type = kj::Exception::Type::UNIMPLEMENTED; break;
    }
    return kj::Exception(type, __FILE__, __LINE__, kj::str(params.getReason()));
  }

  kj::Promise<void> hang(HangContext context) override {
    context.allowCancellation();
    return kj::Promise<void>(kj::NEVER_DONE).attach(kj::defer([]() { state().canceled++; }));
  }

  kj::Promise<void> canceledCount(CanceledCountContext context) override {
    context.getResults().setCount(state().canceled);
    return kj::READY_NOW;
  }

  kj::Promise<void> tracked(TrackedContext context) override {
    context.getResults().setCounter(kj::heap<TrackedCounter>());
    return kj::READY_NOW;
  }

  kj::Promise<void> liveTracked(LiveTrackedContext context) override {
    context.getResults().setCount(state().liveTracked);
    return kj::READY_NOW;
  }

  kj::Promise<void> sink(SinkContext context) override {
    context.getResults().setSink(kj::heap<ByteSinkImpl>());
    return kj::READY_NOW;
  }

  kj::Promise<void> payload(PayloadContext context) override {
    uint32_t size = context.getParams().getSize();
    auto data = context.getResults().initData(size);
    for (uint32_t i = 0; i < size; i++) data[i] = kj::byte((i * 7u + 3u) & 0xffu);
    return kj::READY_NOW;
  }

  kj::Promise<void> checksum(ChecksumContext context) override {
    context.getResults().setSum(fnv1a(context.getParams().getData()));
    return kj::READY_NOW;
  }

  kj::Promise<void> counters(CountersContext context) override {
    uint32_t n = context.getParams().getN();
    auto list = context.getResults().initList(n);
    for (uint32_t i = 0; i < n; i++) list.set(i, kj::heap<CounterImpl>(int64_t(i) + 1));
    return kj::READY_NOW;
  }

  kj::Promise<void> sumCounters(SumCountersContext context) override {
    auto list = context.getParams().getList();
    auto values = kj::heapArrayBuilder<kj::Promise<int64_t>>(list.size());
    for (auto cap: list) {
      if (capnp::ClientHook::from(Counter::Client(cap))->isNull()) {
        values.add(int64_t(0));
        continue;
      }
      auto req = cap.addRequest();
      req.setDelta(0);
      values.add(req.send().then(
          [](capnp::Response<Counter::AddResults>&& resp) { return resp.getValue(); }));
    }
    return kj::joinPromises(values.finish()).then([context](kj::Array<int64_t> all) mutable {
      int64_t total = 0;
      for (auto v: all) total += v;
      context.getResults().setTotal(total);
    });
  }

  kj::Promise<void> nested(NestedContext context) override {
    int64_t start = context.getParams().getStart();
    auto outer = context.getResults().initOuter();
    auto inner = outer.initInner();
    inner.setCounter(kj::heap<CounterImpl>(start));
    inner.setLabel("inner");
    auto list = outer.initList(2);
    list[0].setCounter(kj::heap<CounterImpl>(start + 1));
    list[0].setLabel("first");
    list[1].setCounter(kj::heap<CounterImpl>(start + 2));
    list[1].setLabel("second");
    return kj::READY_NOW;
  }

  kj::Promise<void> callMany(CallManyContext context) override {
    auto params = context.getParams();
    return addRepeatedly(params.getCap(), params.getTimes(), 0)
        .then([context](int64_t last) mutable { context.getResults().setValue(last); });
  }
};

// ===========================================================================
// Client scenarios

struct Client {
  capnp::EzRpcClient& ez;
  TestService::Client svc;
  kj::WaitScope& ws;
  kj::Timer& timer;

  void sleepMs(uint ms) { timer.afterDelay(ms * kj::MILLISECONDS).wait(ws); }

  // Polls `probe` until it returns true, sleeping `stepMs` between tries.
  bool pollUntil(const std::function<bool()>& probe, uint tries = 300, uint stepMs = 10) {
    for (uint i = 0; i < tries; i++) {
      if (probe()) return true;
      sleepMs(stepMs);
    }
    return probe();
  }
};

class CallbackImpl final: public Callback::Server {
public:
  kj::Promise<void> call(CallContext context) override {
    calls++;
    context.getResults().setReply(kj::str("reply:", context.getParams().getValue()));
    return kj::READY_NOW;
  }
  int calls = 0;
};

bool contains(kj::StringPtr haystack, kj::StringPtr needle) {
  return strstr(haystack.cStr(), needle.cStr()) != nullptr;
}

int64_t addNow(Client& c, Counter::Client cap, int64_t delta) {
  auto req = cap.addRequest();
  req.setDelta(delta);
  return req.send().wait(c.ws).getValue();
}

void scenarioEcho(Client& c) {
  struct Case {
    std::string text;
    size_t dataSize;
    int64_t n;
  };
  std::vector<Case> cases = {
      {"hello from c++ \xe2\x98\x83", 300, -42},
      {"", 0, int64_t(1) << 62},
      {std::string(10000, 'x'), 70000, INT64_MIN},
  };
  for (auto& tc: cases) {
    auto data = kj::heapArray<kj::byte>(tc.dataSize);
    for (size_t i = 0; i < data.size(); i++) data[i] = kj::byte(i * 13 + 1);
    auto req = c.svc.echoRequest();
    req.setText(tc.text.c_str());
    req.setData(data);
    req.setN(tc.n);
    auto resp = req.send().wait(c.ws);
    PEER_CHECK(resp.getText() == kj::StringPtr(tc.text.c_str()), "text differs");
    PEER_CHECK(resp.getData() == data.asPtr(), "data differs (size ", resp.getData().size(), ")");
    PEER_CHECK(resp.getN() == tc.n, resp.getN(), " != ", tc.n);
  }
}

void scenarioPipeline(Client& c) {
  auto req = c.svc.newCounterRequest();
  req.setStart(100);
  auto created = req.send();
  Counter::Client counter = created.getCounter();

  // Calls on the not-yet-returned capability.
  auto add1 = counter.addRequest();
  add1.setDelta(5);
  auto r1 = add1.send();
  auto add2 = counter.addRequest();
  add2.setDelta(7);
  auto r2 = add2.send();

  // A chain of `next` calls, each on the previous call's pipelined result.
  // E-order puts the first `next` after both adds: it sees 112.
  constexpr int STEPS = 6;
  Counter::Client cur = counter;
  for (int i = 0; i < STEPS; i++) cur = cur.nextRequest().send().getCounter();
  auto last = cur.addRequest();
  last.setDelta(0);
  auto rLast = last.send();

  int64_t v1 = r1.wait(c.ws).getValue();
  int64_t v2 = r2.wait(c.ws).getValue();
  int64_t vLast = rLast.wait(c.ws).getValue();
  PEER_CHECK(v1 == 105, "first pipelined add returned ", v1);
  PEER_CHECK(v2 == 112, "second pipelined add returned ", v2);
  PEER_CHECK(vLast == 112 + STEPS, "end of next-chain returned ", vLast, ", wanted ", 112 + STEPS);

  // The capability from the response is the same object.
  auto resp = created.wait(c.ws);
  int64_t vAfter = addNow(c, resp.getCounter(), 0);
  PEER_CHECK(vAfter == 112, "counter from response has value ", vAfter);
}

void scenarioCallback(Client& c) {
  auto impl = kj::heap<CallbackImpl>();
  auto& cb = *impl;
  Callback::Client client = kj::mv(impl);
  for (int i = 0; i < 3; i++) {
    auto req = c.svc.callBackRequest();
    req.setCb(client);
    auto value = kj::str("value-", i);
    req.setValue(value);
    auto resp = req.send().wait(c.ws);
    auto want = kj::str("reply:", value);
    PEER_CHECK(resp.getReply() == want, "reply was '", resp.getReply(), "', wanted '", want, "'");
  }
  PEER_CHECK(cb.calls == 3, "callback called ", cb.calls, " times");

  // Several callbacks in flight at once.
  kj::Vector<capnp::RemotePromise<TestService::CallBackResults>> inFlight;
  for (int i = 0; i < 5; i++) {
    auto req = c.svc.callBackRequest();
    req.setCb(client);
    req.setValue(kj::str("many-", i));
    inFlight.add(req.send());
  }
  for (int i = 0; i < 5; i++) {
    auto resp = inFlight[i].wait(c.ws);
    PEER_CHECK(resp.getReply() == kj::str("reply:many-", i), "bad reply ", resp.getReply());
  }
  PEER_CHECK(cb.calls == 8, "callback called ", cb.calls, " times");
}

// The embargo case: our own capability comes back to us as the (promised)
// result of a call; calls made on that promise before and after it resolves
// to our local object must reach the object in the order they were made.
void scenarioEchoCap(Client& c) {
  capnp::CapabilityServerSet<Counter> serverSet;
  auto impl = kj::heap<CounterImpl>(1000);
  CounterImpl& local = *impl;
  Counter::Client localCap = serverSet.add(kj::mv(impl));

  auto req = c.svc.echoCapRequest();
  req.setCap(localCap);
  auto echoed = req.send();
  Counter::Client viaPromise = echoed.getCap();

  // Deltas identify the call: 1..N via the promise, 1000+i direct.
  kj::Vector<capnp::RemotePromise<Counter::AddResults>> promised;
  kj::Vector<capnp::RemotePromise<Counter::AddResults>> direct;
  int64_t sent = 0;
  auto sendVia = [&]() {
    auto r = viaPromise.addRequest();
    r.setDelta(++sent);
    promised.add(r.send());
  };
  auto sendDirect = [&](int64_t i) {
    auto r = localCap.addRequest();
    r.setDelta(1000 + i);
    direct.add(r.send());
  };

  // Phase 1: before the echoCap response arrives (pipelined on the answer).
  for (int i = 0; i < 10; i++) {
    sendVia();
    sendDirect(i);
  }
  // Phase 2: the moment the response arrives the promise resolves to our
  // local object; phase-1 calls are still travelling through the server,
  // so these must be held back (embargo) until those have been delivered.
  auto resp = echoed.wait(c.ws);
  for (int i = 10; i < 20; i++) {
    sendVia();
    sendDirect(i);
  }
  // Phase 3: a bit later, after things have settled.
  c.sleepMs(5);
  for (int i = 20; i < 25; i++) {
    sendVia();
    sendDirect(i);
  }

  int64_t prev = INT64_MIN;
  for (size_t i = 0; i < promised.size(); i++) {
    int64_t v = promised[i].wait(c.ws).getValue();
    PEER_CHECK(v > prev, "call #", i + 1, " through the echoed capability returned ", v,
               " after an earlier one returned ", prev, ": E-order violated");
    prev = v;
  }
  for (auto& d: direct) d.wait(c.ws);

  // Arrival order at the object, restricted to the calls made through the
  // echoed capability, must be 1, 2, 3, ...
  int64_t expectNext = 1;
  for (int64_t d: local.deltas) {
    if (d >= 1000) continue;
    PEER_CHECK(d == expectNext, "calls through the echoed capability arrived out of order: got #",
               d, " when #", expectNext, " was due");
    expectNext++;
  }
  PEER_CHECK(expectNext == sent + 1, "only ", expectNext - 1, " of ", sent, " calls arrived");
  PEER_CHECK(local.deltas.size() == size_t(sent) + direct.size(), "call count mismatch");

  // The capability we got back is, in the end, our own local object.
  Counter::Client returned = resp.getCap();
  auto a = serverSet.getLocalServer(returned).wait(c.ws);
  auto b = serverSet.getLocalServer(viaPromise).wait(c.ws);
  bool aLocal = false, bLocal = false;
  KJ_IF_MAYBE(s, a) { aLocal = (s == static_cast<Counter::Server*>(&local)); }
  KJ_IF_MAYBE(s, b) { bLocal = (s == static_cast<Counter::Server*>(&local)); }
  PEER_CHECK(aLocal, "capability in the echoCap response did not resolve to the local object");
  PEER_CHECK(bLocal, "pipelined echoCap capability did not resolve to the local object");
  int64_t total = addNow(c, returned, 0);
  PEER_CHECK(total == local.value, "value mismatch");
}

void scenarioLater(Client& c) {
  auto req = c.svc.laterRequest();
  req.setStart(50);
  auto laterCall = req.send();
  Counter::Client promised = laterCall.getCounter();

  auto add = promised.addRequest();
  add.setDelta(3);
  bool settled = false;
  int64_t value = 0;
  auto addDone = add.send()
                     .then([&](capnp::Response<Counter::AddResults>&& r) {
                       settled = true;
                       value = r.getValue();
                     })
                     .eagerlyEvaluate(nullptr);

  // The `later` call itself returns at once, with a promise capability.
  auto resp = laterCall.wait(c.ws);
  Counter::Client fromResponse = resp.getCounter();
  auto add2 = fromResponse.addRequest();
  add2.setDelta(4);
  auto r2 = add2.send();

  c.sleepMs(50);
  PEER_CHECK(!settled, "call on the `later` capability completed before resolveLater");

  c.svc.resolveLaterRequest().send().wait(c.ws);
  addDone.wait(c.ws);
  PEER_CHECK(settled && value == 53, "pipelined add on the resolved promise returned ", value);
  int64_t v2 = r2.wait(c.ws).getValue();
  PEER_CHECK(v2 == 57, "add on the capability from the response returned ", v2);
  int64_t v3 = addNow(c, promised, 0);
  PEER_CHECK(v3 == 57, "value after resolution is ", v3);
}

void scenarioExceptions(Client& c) {
  struct Case {
    FailKind kind;
    kj::Exception::Type type;
    const char* name;
  };
  Case cases[] = {
      {FailKind::FAILED, kj::Exception::Type::FAILED, "failed"},
      {FailKind::OVERLOADED, kj::Exception::Type::OVERLOADED, "overloaded"},
      {FailKind::DISCONNECTED, kj::Exception::Type::DISCONNECTED, "disconnected"},
      {FailKind::UNIMPLEMENTED, kj::Exception::Type::UNIMPLEMENTED, "unimplemented"},
  };
  for (auto& tc: cases) {
    auto reason = kj::str("interop reason ", tc.name, " #", (int)tc.kind);
    auto req = c.svc.failRequest();
    req.setKind(tc.kind);
    req.setReason(reason);
    kj::Maybe<kj::Exception> caught;
    try {
      req.send().wait(c.ws);
    } catch (kj::Exception& e) {
      caught = kj::mv(e);
    }
    KJ_IF_MAYBE(e, caught) {
      PEER_CHECK(e->getType() == tc.type, tc.name, ": got exception type ", e->getType());
      PEER_CHECK(contains(e->getDescription(), reason), tc.name, ": description '",
                 e->getDescription(), "' lacks '", reason, "'");
    } else {
      PEER_CHECK(false, tc.name, ": fail() returned normally");
    }
  }
  // The connection survives all of that.
  auto req = c.svc.echoRequest();
  req.setN(7);
  PEER_CHECK(req.send().wait(c.ws).getN() == 7, "echo after exceptions failed");
}

uint32_t canceledCount(Client& c) {
  return c.svc.canceledCountRequest().send().wait(c.ws).getCount();
}

void scenarioCancel(Client& c) {
  uint32_t before = canceledCount(c);
  {
    auto hanging = c.svc.hangRequest().send();
    // Calls on one capability are delivered in order: once this echo has
    // returned, the server has received (and is running) `hang`.
    auto echo = c.svc.echoRequest();
    echo.send().wait(c.ws);
    c.sleepMs(10);
    PEER_CHECK(canceledCount(c) == before, "hang was canceled before we dropped it");
  }  // dropping the promise sends Finish: the server should cancel the call
  uint32_t now = before;
  bool seen = c.pollUntil([&]() {
    now = canceledCount(c);
    return now >= before + 1;
  });
  PEER_CHECK(seen, "canceledCount stayed at ", now, " (was ", before, ") after dropping hang()");
}

uint32_t liveTracked(Client& c) {
  return c.svc.liveTrackedRequest().send().wait(c.ws).getCount();
}

void scenarioRelease(Client& c) {
  uint32_t base = liveTracked(c);
  kj::Vector<Counter::Client> caps;
  for (int i = 0; i < 3; i++) caps.add(c.svc.trackedRequest().send().wait(c.ws).getCounter());
  for (auto& cap: caps) addNow(c, cap, 1);
  uint32_t n = liveTracked(c);
  PEER_CHECK(n == base + 3, "liveTracked is ", n, " with 3 held (base ", base, ")");

  Counter::Client keep = caps[1];
  caps.clear();
  bool ok = c.pollUntil([&]() {
    n = liveTracked(c);
    return n == base + 1;
  });
  PEER_CHECK(ok, "liveTracked is ", n, " after releasing 2 of 3 (base ", base, ")");
  PEER_CHECK(addNow(c, keep, 1) == 2, "kept counter lost its value");

  { auto drop = kj::mv(keep); }
  ok = c.pollUntil([&]() {
    n = liveTracked(c);
    return n == base;
  });
  PEER_CHECK(ok, "liveTracked is ", n, " after releasing all (base ", base, ")");
}

void scenarioStream(Client& c) {
  constexpr size_t CHUNK = 64 * 1024;
  constexpr size_t TOTAL = 64 * 1024 * 1024;
  ByteSink::Client sink = c.svc.sinkRequest().send().getSink();
  auto chunk = kj::heapArray<kj::byte>(CHUNK);
  uint64_t hash = peer::FNV_OFFSET;
  for (size_t i = 0; i < TOTAL / CHUNK; i++) {
    for (size_t j = 0; j < CHUNK; j++) chunk[j] = kj::byte((i * 31 + j * 5 + 11) & 0xff);
    hash = fnv1a(hash, chunk.begin(), chunk.size());
    auto req = sink.writeRequest();
    req.setChunk(chunk);
    // Resolves as soon as flow control allows another write.
    req.send().wait(c.ws);
  }
  auto done = sink.doneRequest().send().wait(c.ws);
  PEER_CHECK(done.getBytes() == TOTAL, "sink counted ", done.getBytes(), " bytes");
  PEER_CHECK(done.getChecksum() == hash, "sink checksum ", done.getChecksum(), " != ", hash);
}

void scenarioPayload(Client& c) {
  constexpr uint32_t SIZE = 8 * 1024 * 1024;
  auto req = c.svc.payloadRequest();
  req.setSize(SIZE);
  auto resp = req.send().wait(c.ws);
  auto data = resp.getData();
  PEER_CHECK(data.size() == SIZE, "payload size ", data.size());
  for (uint32_t i = 0; i < SIZE; i++) {
    if (data[i] != kj::byte((i * 7u + 3u) & 0xffu)) {
      PEER_CHECK(false, "payload byte ", i, " is ", (int)data[i]);
    }
  }
  uint64_t local = fnv1a(data);
  auto sumReq = c.svc.checksumRequest();
  sumReq.setData(data);
  uint64_t remote = sumReq.send().wait(c.ws).getSum();
  PEER_CHECK(remote == local, "checksum ", remote, " != ", local);
}

void scenarioCapsInLists(Client& c) {
  auto req = c.svc.countersRequest();
  req.setN(3);
  auto resp = req.send().wait(c.ws);
  auto list = resp.getList();
  PEER_CHECK(list.size() == 3, "counters(3) returned ", list.size());
  int64_t expected = 0;
  for (auto cap: list) expected += addNow(c, cap, 0);

  auto sum = c.svc.sumCountersRequest();
  auto out = sum.initList(4);
  for (uint i = 0; i < 3; i++) out.set(i, list[i]);
  // out[3] stays null
  int64_t total = sum.send().wait(c.ws).getTotal();
  PEER_CHECK(total == expected, "sumCounters returned ", total, ", wanted ", expected);

  // Our own objects in a list, too.
  auto sum2 = c.svc.sumCountersRequest();
  auto out2 = sum2.initList(2);
  out2.set(0, kj::heap<CounterImpl>(40));
  out2.set(1, kj::heap<CounterImpl>(2));
  int64_t total2 = sum2.send().wait(c.ws).getTotal();
  PEER_CHECK(total2 == 42, "sumCounters over local counters returned ", total2);
}

void scenarioNested(Client& c) {
  auto req = c.svc.nestedRequest();
  req.setStart(70);
  auto call = req.send();
  // Pipelined through two struct levels, before the result exists.
  auto add = call.getOuter().getInner().getCounter().addRequest();
  add.setDelta(0);
  auto early = add.send();

  auto resp = call.wait(c.ws);
  int64_t v = early.wait(c.ws).getValue();
  PEER_CHECK(v == 70, "outer.inner.counter.add(0) returned ", v);
  auto outer = resp.getOuter();
  auto list = outer.getList();
  PEER_CHECK(list.size() == 2, "outer.list has ", list.size(), " entries");
  std::vector<int64_t> values;
  for (auto inner: list) values.push_back(addNow(c, inner.getCounter(), 0));
  // Two distinct objects: bumping one leaves the other alone.
  int64_t bumped = addNow(c, list[0].getCounter(), 1);
  PEER_CHECK(bumped == values[0] + 1, "list[0] did not count");
  PEER_CHECK(addNow(c, list[1].getCounter(), 0) == values[1], "list[1] changed with list[0]");
  PEER_CHECK(addNow(c, outer.getInner().getCounter(), 0) == 70, "inner counter changed");
}

void scenarioCallMany(Client& c) {
  auto impl = kj::heap<CounterImpl>(0);
  CounterImpl& local = *impl;
  Counter::Client cap = kj::mv(impl);
  auto req = c.svc.callManyRequest();
  req.setCap(cap);
  req.setTimes(50);
  int64_t value = req.send().wait(c.ws).getValue();
  PEER_CHECK(value == 50, "callMany returned ", value);
  PEER_CHECK(local.value == 50 && local.deltas.size() == 50, "local counter saw ",
             local.deltas.size(), " calls");
}

using Scenario = void (*)(Client&);

const std::vector<std::pair<std::string, Scenario>>& scenarios() {
  static const std::vector<std::pair<std::string, Scenario>> list = {
      {"echo", scenarioEcho},
      {"pipeline", scenarioPipeline},
      {"callback", scenarioCallback},
      {"echo-cap", scenarioEchoCap},
      {"later", scenarioLater},
      {"exceptions", scenarioExceptions},
      {"cancel", scenarioCancel},
      {"release", scenarioRelease},
      {"stream", scenarioStream},
      {"payload", scenarioPayload},
      {"caps-in-lists", scenarioCapsInLists},
      {"nested", scenarioNested},
      {"call-many", scenarioCallMany},
  };
  return list;
}

int runClient(const std::string& addressText, const std::string& which) {
  std::vector<std::pair<std::string, Scenario>> toRun;
  for (auto& s: scenarios()) {
    if (which == "all" || which == s.first) toRun.push_back(s);
  }
  if (toRun.empty()) {
    fprintf(stderr, "unknown scenario '%s'; known: all", which.c_str());
    for (auto& s: scenarios()) fprintf(stderr, " %s", s.first.c_str());
    fprintf(stderr, "\n");
    return 2;
  }

  std::string current = which;
  try {
    peer::Address address = peer::parseAddress(addressText);
    signal(SIGPIPE, SIG_IGN);
    capnp::EzRpcClient ez(address.forKj().c_str(), 0, peer::readerOptions());
    Client c{ez, ez.getMain<TestService>(), ez.getWaitScope(), ez.getIoProvider().getTimer()};
    for (auto& s: toRun) {
      current = s.first;
      s.second(c);
      printf("ok %s\n", s.first.c_str());
      fflush(stdout);
    }
    if (which == "all") {
      printf("ok all\n");
      fflush(stdout);
    }
  } catch (kj::Exception& e) {
    fprintf(stderr, "error %s: %s\n", current.c_str(), peer::describe(e).c_str());
    fflush(stderr);
    _exit(1);
  } catch (std::exception& e) {
    fprintf(stderr, "error %s: %s\n", current.c_str(), e.what());
    fflush(stderr);
    _exit(1);
  }
  return 0;
}

void usage() {
  fprintf(stderr,
          "usage:\n"
          "  interop-peer serve <address>\n"
          "  interop-peer client <address> <scenario>\n"
          "address: unix:/path | tcp://host:port | host:port\n"
          "scenario: all");
  for (auto& s: scenarios()) fprintf(stderr, " | %s", s.first.c_str());
  fprintf(stderr, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve" && argc == 3) {
    try {
      return peer::serve(kj::heap<TestServiceImpl>(), argv[2]);
    } catch (kj::Exception& e) {
      fprintf(stderr, "error serve: %s\n", peer::describe(e).c_str());
      return 1;
    } catch (std::exception& e) {
      fprintf(stderr, "error serve: %s\n", e.what());
      return 1;
    }
  }
  if (mode == "client" && argc == 4) {
    return runClient(argv[2], argv[3]);
  }
  usage();
  return 2;
}

#include "sidecar/tracing/exporter.h"
#include "common/net/test_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::tracing {
namespace {

// A listening socket on 127.0.0.1 and a port the kernel chose.
int ListenOnLoopback(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// A one-shot HTTP collector on 127.0.0.1: accepts one connection, keeps the request, answers
// `status` (after a 100 Continue when `interim`).
class OneShotCollector {
 public:
  explicit OneShotCollector(int status, bool interim = false) {
    fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this, status, interim] {
      int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      char buffer[4096];
      while (true) {
        const ssize_t n = ::recv(conn, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request_.append(buffer, static_cast<size_t>(n));
        const size_t head_end = request_.find("\r\n\r\n");
        const size_t cl = request_.find("content-length: ");
        if (head_end != std::string::npos && cl != std::string::npos &&
            request_.size() >= head_end + 4 + std::stoul(request_.substr(cl + 16))) {
          break;
        }
      }
      const std::string answer =
          absl::StrCat(interim ? "HTTP/1.1 100 Continue\r\n\r\n" : "", "HTTP/1.1 ", status,
                       " X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      ::send(conn, answer.data(), answer.size(), 0);
      ::close(conn);
    });
  }
  ~OneShotCollector() {
    ::shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  const std::string& request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_;
};

// A collector that keeps connections open: it answers each request with 200 and an empty body
// framed by content-length. After `answers_per_connection` answers on one connection it closes
// that connection; with `close_unanswered` it also closes a connection's next request unanswered
// once (the race of a collector closing an idle connection as the request arrives).
class KeepAliveCollector {
 public:
  KeepAliveCollector(int answers_per_connection, bool close_unanswered)
      : answers_per_connection_(answers_per_connection), close_unanswered_(close_unanswered) {
    fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~KeepAliveCollector() {
    ::shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int connections() const { return connections_.load(); }
  int answered() const { return answered_.load(); }
  std::vector<std::string> bodies() const {
    MutexLock lock(&mu_);
    return bodies_;
  }

 private:
  void Serve() {
    while (true) {
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      ++connections_;
      std::string pending;
      char buffer[4096];
      int answers = 0;
      while (answers < answers_per_connection_) {
        const size_t head_end = pending.find("\r\n\r\n");
        const size_t cl = pending.find("content-length: ");
        if (head_end == std::string::npos || cl == std::string::npos ||
            pending.size() < head_end + 4 + std::stoul(pending.substr(cl + 16))) {
          const ssize_t n = ::recv(conn, buffer, sizeof(buffer), 0);
          if (n <= 0) break;
          pending.append(buffer, static_cast<size_t>(n));
          continue;
        }
        const size_t length = std::stoul(pending.substr(cl + 16));
        {
          MutexLock lock(&mu_);
          bodies_.push_back(pending.substr(head_end + 4, length));
        }
        pending.erase(0, head_end + 4 + length);
        if (close_unanswered_ && answers == 1 && !closed_unanswered_) {
          closed_unanswered_ = true;
          break;
        }
        // Counted before it is sent: the exporter may check the count as soon as it has the answer.
        ++answers;
        ++answered_;
        const std::string answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        ::send(conn, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      ::close(conn);
    }
  }

  const int answers_per_connection_;
  const bool close_unanswered_;
  bool closed_unanswered_ = false;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<int> answered_{0};
  mutable Mutex mu_;
  std::vector<std::string> bodies_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

Span TestSpan(uint64_t id) {
  Span span;
  span.trace_id = TraceId{0, 42};
  span.span_id = id;
  span.name = "GET";
  span.start_ns = absl::ToUnixNanos(absl::Now());
  span.end_ns = span.start_ns + 1'000'000;
  return span;
}

// A port that refuses connections, held for the rest of the test program.
std::string ClosedPortAddress() {
  static auto* held = new std::vector<std::unique_ptr<net::testing::RefusingPort>>();
  held->push_back(std::make_unique<net::testing::RefusingPort>());
  return held->back()->loopback();
}

// One worker's exporter on a loop the test runs.
class SpanExporterTest : public ::testing::Test {
 protected:
  SpanExporterTest() : shard_(registry_.CreateShard()) {}

  std::unique_ptr<SpanExporter> MakeExporter(const std::string& address) {
    absl::StatusOr<std::shared_ptr<CollectorAddress>> collector = CollectorAddress::Create(address);
    EXPECT_TRUE(collector.ok()) << collector.status();
    config_.collector_address = address;
    return std::make_unique<SpanExporter>(loop_, config_, "svc", *collector, *shard_,
                                          RealClock::Get());
  }
  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }
  uint64_t Exported() { return Counter("meshlet_tracing_spans_exported_total"); }
  uint64_t Errors() { return Counter("meshlet_tracing_export_errors_total"); }
  uint64_t Dropped(absl::string_view reason) {
    return Counter("meshlet_tracing_spans_dropped_total", {{"reason", std::string(reason)}});
  }
  // Runs the loop until `done` or five seconds.
  bool RunUntil(absl::FunctionRef<bool()> done) {
    return loop_.RunUntil(done, std::chrono::seconds(5));
  }
  // Hands `exporter` one span and runs the loop until the collector accepted it.
  bool ExportOne(SpanExporter& exporter, uint64_t id) {
    const uint64_t before = Exported();
    return exporter.Take(TestSpan(id)) && RunUntil([&] { return Exported() == before + 1; });
  }
  void RunFor(Duration duration) {
    loop_.RunUntil([] { return false; }, duration);
  }

  event::Loop loop_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  TracingConfig config_;
};

TEST_F(SpanExporterTest, APartialBatchGoesAfterTheFlushIntervalAsOtlpJson) {
  OneShotCollector collector(200);
  config_.flush_interval = std::chrono::milliseconds(100);
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  // Timers count from the loop's cached time, which is as old as its last turn.
  loop_.UpdateTime();
  const absl::Time start = absl::Now();
  ASSERT_TRUE(ExportOne(*exporter, 7));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(95));
  const std::string& request = collector.request();
  EXPECT_EQ(request.rfind("POST /v1/traces HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("content-type: application/json"), std::string::npos);
  EXPECT_NE(request.find(R"("spanId":"0000000000000007")"), std::string::npos);
  EXPECT_EQ(exporter->buffered(), 0u);
}

TEST_F(SpanExporterTest, ZipkinPathAndFailedExportsAreCounted) {
  OneShotCollector collector(500);
  config_.protocol = ExportProtocol::kZipkin;
  config_.batch_size = 1;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  ASSERT_TRUE(exporter->Take(TestSpan(1)));  // a full batch: sent at once
  ASSERT_TRUE(RunUntil([&] { return Errors() == 1; }));
  EXPECT_EQ(collector.request().rfind("POST /api/v2/spans HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(Dropped("export_failed"), 1u);
  EXPECT_EQ(Exported(), 0u);
}

TEST_F(SpanExporterTest, AnInterimAnswerIsFollowedByTheFinalOne) {
  OneShotCollector collector(200, /*interim=*/true);
  config_.batch_size = 1;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  ASSERT_TRUE(ExportOne(*exporter, 1));
  EXPECT_EQ(Errors(), 0u);
}

// One request in flight at a time: spans that end meanwhile wait and go in the next requests,
// each at most batch_size spans and each a whole document, over the one kept connection.
TEST_F(SpanExporterTest, SpansEndingDuringAnExportGoInTheNextBatchesOverOneConnection) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  config_.batch_size = 2;
  config_.flush_interval = std::chrono::milliseconds(100);
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  for (uint64_t id = 1; id <= 7; ++id) ASSERT_TRUE(exporter->Take(TestSpan(id)));
  // 1-2 went at once; 3-4 and 5-6 go as answers arrive; 7 after its flush interval.
  ASSERT_TRUE(RunUntil([&] { return Exported() == 7; }));
  const std::vector<std::string> bodies = collector.bodies();
  ASSERT_EQ(bodies.size(), 4u);
  for (size_t i = 0; i < bodies.size(); ++i) {
    SCOPED_TRACE(bodies[i]);
    EXPECT_EQ(bodies[i].rfind(R"({"resourceSpans":)", 0), 0u);
    EXPECT_EQ(bodies[i].substr(bodies[i].size() - 6), "]}]}]}");
    EXPECT_NE(bodies[i].find(absl::StrCat(R"("spanId":"000000000000000)", 2 * i + 1)),
              std::string::npos);
  }
  EXPECT_EQ(collector.connections(), 1);
  EXPECT_EQ(exporter->collector_connections(), 1u);
}

TEST_F(SpanExporterTest, AConnectionTheCollectorClosedIsReplaced) {
  // Closed after two answers: the third export finds it closed and opens another.
  KeepAliveCollector collector(/*answers_per_connection=*/2, /*close_unanswered=*/false);
  config_.batch_size = 1;
  config_.protocol = ExportProtocol::kOtlpProto;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(ExportOne(*exporter, i));
    RunFor(std::chrono::milliseconds(20));  // the collector's close arrives between exports
  }
  EXPECT_EQ(collector.answered(), 5);
  EXPECT_EQ(collector.connections(), 3);
  EXPECT_EQ(Errors(), 0u);
}

TEST_F(SpanExporterTest, AConnectionIdleTooLongIsReplaced) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  config_.batch_size = 1;
  config_.collector_idle_limit = std::chrono::milliseconds(50);
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  ASSERT_TRUE(ExportOne(*exporter, 1));
  ASSERT_TRUE(ExportOne(*exporter, 2));  // at once: the same connection
  RunFor(std::chrono::milliseconds(120));
  ASSERT_TRUE(ExportOne(*exporter, 3));
  EXPECT_EQ(collector.answered(), 3);
  EXPECT_EQ(collector.connections(), 2);
}

TEST_F(SpanExporterTest, ARequestAKeptConnectionLostUnansweredGoesOverANewOne) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/true);
  config_.batch_size = 1;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  for (uint64_t i = 1; i <= 3; ++i) {
    // The second is read and closed unanswered by the collector: sent again over a new one.
    ASSERT_TRUE(ExportOne(*exporter, i)) << i;
  }
  EXPECT_EQ(collector.answered(), 3);
  EXPECT_EQ(collector.connections(), 2);
  EXPECT_EQ(Errors(), 0u);
}

TEST_F(SpanExporterTest, UnreachableCollectorFailsAndTheNextBatchTriesAgain) {
  config_.batch_size = 1;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(ClosedPortAddress());
  ASSERT_TRUE(exporter->Take(TestSpan(1)));
  ASSERT_TRUE(exporter->Take(TestSpan(2)));
  ASSERT_TRUE(RunUntil([&] { return Errors() == 2; }));
  EXPECT_EQ(Dropped("export_failed"), 2u);
  EXPECT_EQ(exporter->collector_connections(), 2u);
  EXPECT_EQ(exporter->buffered(), 0u);
}

// A collector that accepts the connection (listen backlog) and never answers: spans pile up to
// queue_limit and the rest are refused (the tracer counts them as queue_full).
TEST_F(SpanExporterTest, ASilentCollectorFillsTheQueueThenSpansAreRefused) {
  int port = 0;
  const int fd = ListenOnLoopback(&port);
  config_.batch_size = 10;
  config_.queue_limit = 25;
  config_.export_timeout = std::chrono::milliseconds(300);
  std::unique_ptr<SpanExporter> exporter = MakeExporter(absl::StrCat("127.0.0.1:", port));
  int taken = 0;
  for (uint64_t i = 1; i <= 30; ++i) taken += exporter->Take(TestSpan(i)) ? 1 : 0;
  EXPECT_EQ(taken, 25);
  // The export times out: its 10 spans are dropped and room opens.
  ASSERT_TRUE(RunUntil([&] { return Errors() >= 1; }));
  EXPECT_GE(Dropped("export_failed"), 10u);
  EXPECT_TRUE(exporter->Take(TestSpan(31)));
  ::close(fd);
}

TEST_F(SpanExporterTest, ShutdownSendsWhatIsBufferedThenCallsBack) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  config_.batch_size = 4;
  config_.flush_interval = std::chrono::seconds(60);
  std::unique_ptr<SpanExporter> exporter = MakeExporter(collector.address());
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(exporter->Take(TestSpan(i)));
  bool done = false;
  exporter->Shutdown([&] { done = true; });
  EXPECT_FALSE(exporter->Take(TestSpan(11)));  // nothing is taken once shutting down
  ASSERT_TRUE(RunUntil([&] { return done; }));
  EXPECT_EQ(Exported(), 10u);
  EXPECT_EQ(collector.bodies().size(), 3u);  // 4 + 4 + the partial 2 without its flush wait
  exporter.reset();
  EXPECT_EQ(Dropped("shutdown"), 0u);
}

TEST_F(SpanExporterTest, EverySpanIsAccountedForWhenShutdownTimesOut) {
  // A collector that never answers: the connect succeeds (listen backlog), the answer never comes.
  int port = 0;
  const int fd = ListenOnLoopback(&port);
  config_.export_timeout = std::chrono::milliseconds(200);
  config_.batch_size = 10;
  config_.queue_limit = 100;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(absl::StrCat("127.0.0.1:", port));
  for (uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE(exporter->Take(TestSpan(i)));
  const absl::Time start = absl::Now();
  bool done = false;
  exporter->Shutdown([&] { done = true; });
  ASSERT_TRUE(RunUntil([&] { return done; }));
  // Shutdown did not wait for ten timeouts.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  exporter.reset();
  const uint64_t failed = Dropped("export_failed");
  const uint64_t shutdown = Dropped("shutdown");
  EXPECT_GT(shutdown, 0u);
  EXPECT_EQ(failed + shutdown, 100u);
  ::close(fd);
}

// An OTLP/gRPC trace service on the test's loop: keeps each Export's request message and answers
// the statuses queued in `answers` (OK once they run out).
class FakeTraceService {
 public:
  explicit FakeTraceService(event::Loop& loop) : server_(loop) {
    EXPECT_TRUE(
        server_
            .RegisterMethod(kTraceExportMethod,
                            [this](std::shared_ptr<http::grpc::ServerCall> call) { Serve(*call); })
            .ok());
    EXPECT_TRUE(server_.Start(*net::Address::Parse("127.0.0.1:0")).ok());
  }
  std::string address() const { return server_.address().ToString(); }
  uint64_t connections() const { return server_.counters().connections_accepted; }

  std::vector<std::string> requests;
  std::vector<std::string> paths;
  std::deque<http::grpc::StatusCode> answers;

 private:
  void Serve(http::grpc::ServerCall& call) {
    paths.push_back(call.method());
    call.OnMessage([this](std::string message) { requests.push_back(std::move(message)); });
    call.OnHalfClose([this, &call] {
      http::grpc::StatusCode code = http::grpc::StatusCode::kOk;
      if (!answers.empty()) {
        code = answers.front();
        answers.pop_front();
      }
      if (code == http::grpc::StatusCode::kOk) call.Send("");
      call.Finish(code, code == http::grpc::StatusCode::kOk ? "" : "refused by the test");
    });
  }

  http::grpc::Server server_;
};

class OtlpGrpcExportTest : public SpanExporterTest {
 protected:
  OtlpGrpcExportTest() : service_(loop_) {
    config_.protocol = ExportProtocol::kOtlpGrpc;
    config_.service_instance_id = "cart-0.shop";
    config_.batch_size = 1;
  }
  FakeTraceService service_;
};

// Each batch is one Export call whose request is the OTLP protobuf the encoder wrote, naming the
// sidecar's node in the resource; the batches share one kept connection.
TEST_F(OtlpGrpcExportTest, EachBatchIsOneExportCallOverOneConnection) {
  config_.batch_size = 2;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(service_.address());
  const Span spans[] = {TestSpan(1), TestSpan(2), TestSpan(3)};
  for (const Span& span : spans) ASSERT_TRUE(exporter->Take(span));
  ASSERT_TRUE(RunUntil([&] { return Exported() == 3; }));
  ASSERT_EQ(service_.requests.size(), 2u);
  EXPECT_EQ(service_.paths[0], "/opentelemetry.proto.collector.trace.v1.TraceService/Export");
  std::string first, second;
  EncodeSpans(ExportProtocol::kOtlpGrpc, {&spans[0], &spans[1]}, "svc", &first, "cart-0.shop");
  EncodeSpans(ExportProtocol::kOtlpGrpc, {&spans[2]}, "svc", &second, "cart-0.shop");
  EXPECT_EQ(service_.requests[0], first);
  EXPECT_EQ(service_.requests[1], second);
  EXPECT_NE(first.find("service.instance.id"), std::string::npos);
  EXPECT_NE(first.find("cart-0.shop"), std::string::npos);
  EXPECT_EQ(service_.connections(), 1u);
  EXPECT_EQ(exporter->collector_connections(), 1u);
  EXPECT_EQ(Errors(), 0u);
}

// A refused export is dropped and counted; the next batch goes over a new connection.
TEST_F(OtlpGrpcExportTest, ARefusedExportIsDroppedAndCounted) {
  service_.answers = {http::grpc::StatusCode::kPermissionDenied};
  std::unique_ptr<SpanExporter> exporter = MakeExporter(service_.address());
  ASSERT_TRUE(exporter->Take(TestSpan(1)));
  ASSERT_TRUE(RunUntil([&] { return Errors() == 1; }));
  EXPECT_EQ(Dropped("export_failed"), 1u);
  ASSERT_TRUE(ExportOne(*exporter, 2));
  EXPECT_EQ(service_.connections(), 2u);
  EXPECT_EQ(Errors(), 1u);
}

// A kept connection's certificate has expired since the sidecar renewed it: the control plane
// refuses the call as UNAUTHENTICATED, and the batch goes once more over a new connection (which
// presents the current certificate).
TEST_F(OtlpGrpcExportTest, ABatchRefusedOnAKeptConnectionGoesOnceMoreOverANewOne) {
  std::unique_ptr<SpanExporter> exporter = MakeExporter(service_.address());
  ASSERT_TRUE(ExportOne(*exporter, 1));
  service_.answers = {http::grpc::StatusCode::kUnauthenticated};
  ASSERT_TRUE(ExportOne(*exporter, 2));
  EXPECT_EQ(service_.requests.size(), 3u);
  EXPECT_EQ(service_.requests[1], service_.requests[2]);
  EXPECT_EQ(service_.connections(), 2u);
  EXPECT_EQ(Errors(), 0u);
  // Refused again over the new connection: dropped, not sent a third time.
  service_.answers = {http::grpc::StatusCode::kUnauthenticated,
                      http::grpc::StatusCode::kUnauthenticated};
  ASSERT_TRUE(exporter->Take(TestSpan(3)));
  ASSERT_TRUE(RunUntil([&] { return Errors() == 1; }));
  EXPECT_EQ(service_.requests.size(), 5u);
  EXPECT_EQ(Dropped("export_failed"), 1u);
}

// The control plane's replicas: one that cannot be reached is skipped for the next.
TEST_F(OtlpGrpcExportTest, AnUnreachableReplicaIsFollowedByTheNext) {
  config_.collector_address = "cp-0:15012,cp-1:15012";
  std::shared_ptr<CollectorAddress> address = CollectorAddress::Resolved(
      config_.collector_address,
      {*net::Address::Parse(ClosedPortAddress()), *net::Address::Parse(service_.address())});
  SpanExporter exporter(loop_, config_, "svc", address, *shard_, RealClock::Get());
  ASSERT_TRUE(ExportOne(exporter, 1));
  ASSERT_TRUE(ExportOne(exporter, 2));
  EXPECT_EQ(Errors(), 0u);
  EXPECT_EQ(service_.requests.size(), 2u);
  EXPECT_EQ(service_.connections(), 1u);
}

TEST_F(OtlpGrpcExportTest, ShutdownSendsWhatIsBuffered) {
  config_.batch_size = 100;
  std::unique_ptr<SpanExporter> exporter = MakeExporter(service_.address());
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(exporter->Take(TestSpan(id)));
  bool done = false;
  exporter->Shutdown([&] { done = true; });
  ASSERT_TRUE(RunUntil([&] { return done; }));
  EXPECT_EQ(Exported(), 3u);
  EXPECT_EQ(service_.requests.size(), 1u);
}

TEST(CollectorAddressTest, NumericAddressesAreReadyNamesWaitForResolve) {
  absl::StatusOr<std::shared_ptr<CollectorAddress>> numeric =
      CollectorAddress::Create("127.0.0.1:4318");
  ASSERT_TRUE(numeric.ok()) << numeric.status();
  EXPECT_FALSE((*numeric)->needs_resolving());
  ASSERT_EQ((*numeric)->Get().size(), 1u);
  EXPECT_EQ((*numeric)->Get()[0].ToString(), "127.0.0.1:4318");
  absl::StatusOr<std::shared_ptr<CollectorAddress>> v6 = CollectorAddress::Create("[::1]:9411");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ((*v6)->Get().size(), 1u);

  absl::StatusOr<std::shared_ptr<CollectorAddress>> name =
      CollectorAddress::Create("localhost:4318");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_TRUE((*name)->needs_resolving());
  EXPECT_TRUE((*name)->Get().empty());
  ASSERT_TRUE((*name)->Resolve().ok());
  ASSERT_FALSE((*name)->Get().empty());
  for (const net::Address& address : (*name)->Get()) EXPECT_EQ(address.port(), 4318);

  for (const char* bad : {"collector", "collector:", ":4318", "collector:0", "collector:http",
                          "collector:70000", "fd00::5:4318"}) {
    absl::StatusOr<std::shared_ptr<CollectorAddress>> address = CollectorAddress::Create(bad);
    ASSERT_FALSE(address.ok()) << bad;
    EXPECT_NE(address.status().message().find(bad), std::string::npos) << address.status();
  }
}

// A name with several addresses (IPv6 and IPv4, say): a connection tries them in turn.
TEST_F(SpanExporterTest, AnAddressThatRefusesIsFollowedByTheNameNextOne) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  config_.batch_size = 1;
  config_.collector_address = "collector:4318";
  std::shared_ptr<CollectorAddress> address = CollectorAddress::Resolved(
      config_.collector_address,
      {*net::Address::Parse(ClosedPortAddress()), *net::Address::Parse(collector.address())});
  SpanExporter exporter(loop_, config_, "svc", address, *shard_, RealClock::Get());
  ASSERT_TRUE(ExportOne(exporter, 1));
  EXPECT_EQ(Errors(), 0u);
  EXPECT_EQ(exporter.collector_connections(), 2u);
  EXPECT_EQ(collector.connections(), 1);
}

TEST_F(SpanExporterTest, ANameThatHasNotResolvedFailsTheExportWithoutBlocking) {
  config_.batch_size = 1;
  std::unique_ptr<SpanExporter> exporter = MakeExporter("collector.invalid:4318");
  ASSERT_TRUE(exporter->Take(TestSpan(1)));
  ASSERT_TRUE(RunUntil([&] { return Errors() == 1; }));
  EXPECT_EQ(exporter->collector_connections(), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

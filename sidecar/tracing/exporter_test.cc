#include "sidecar/tracing/exporter.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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
// `status`.
class OneShotCollector {
 public:
  explicit OneShotCollector(int status) {
    fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this, status] {
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
          absl::StrCat("HTTP/1.1 ", status, " X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
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
        pending.erase(0, head_end + 4 + std::stoul(pending.substr(cl + 16)));
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
  std::thread thread_;
};

SpanPtr TestSpan(uint64_t id) {
  auto span = std::make_unique<Span>();
  span->trace_id = TraceId{0, 42};
  span->span_id = id;
  span->name = "GET";
  span->start = absl::Now();
  span->end = span->start + absl::Milliseconds(1);
  return span;
}

uint64_t CounterValue(StatsRegistry& registry, absl::string_view name,
                      const LabelSet& labels = {}) {
  const StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(name, labels);
  return series == nullptr ? 0 : series->counter;
}

TEST(SpanExporterTest, ThreadSendsQueuedSpansAsOtlpJson) {
  OneShotCollector collector(200);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  config.flush_interval = std::chrono::milliseconds(10);
  {
    SpanExporter exporter(config, "svc", registry);
    SpanPtr span = TestSpan(7);
    ASSERT_TRUE(exporter.queue().TryPush(span));
    exporter.Start();
    const std::string& request = collector.request();
    EXPECT_EQ(request.rfind("POST /v1/traces HTTP/1.1\r\n", 0), 0u) << request;
    EXPECT_NE(request.find("content-type: application/json"), std::string::npos);
    EXPECT_NE(request.find(R"("spanId":"0000000000000007")"), std::string::npos);
  }
  EXPECT_EQ(CounterValue(registry, "meshlet_tracing_spans_exported_total"), 1u);
}

TEST(SpanExporterTest, ZipkinPathAndFailedExportsAreCounted) {
  OneShotCollector collector(500);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  config.protocol = ExportProtocol::kZipkin;
  SpanExporter exporter(config, "svc", registry);
  const SpanPtr span = TestSpan(1);
  EXPECT_FALSE(exporter.Export({span.get()}));
  EXPECT_EQ(collector.request().rfind("POST /api/v2/spans HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(CounterValue(registry, "meshlet_tracing_export_errors_total"), 1u);
}

TEST(SpanExporterTest, ExportsShareOneConnection) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  config.protocol = ExportProtocol::kOtlpProto;
  SpanExporter exporter(config, "svc", registry);
  const SpanPtr span = TestSpan(1);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(exporter.Export({span.get()})) << i;
  EXPECT_EQ(collector.answered(), 5);
  EXPECT_EQ(collector.connections(), 1);
  EXPECT_EQ(exporter.collector_connections(), 1u);
}

TEST(SpanExporterTest, AConnectionTheCollectorClosedIsReplaced) {
  // Closed after two answers: the third export finds it closed and opens another.
  KeepAliveCollector collector(/*answers_per_connection=*/2, /*close_unanswered=*/false);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  SpanExporter exporter(config, "svc", registry);
  const SpanPtr span = TestSpan(1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(exporter.Export({span.get()})) << i;
    absl::SleepFor(absl::Milliseconds(20));  // the collector's close arrives between exports
  }
  EXPECT_EQ(collector.answered(), 5);
  EXPECT_EQ(collector.connections(), 3);
  EXPECT_EQ(CounterValue(registry, "meshlet_tracing_export_errors_total"), 0u);
}

TEST(SpanExporterTest, AConnectionIdleTooLongIsReplaced) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/false);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  config.collector_idle_limit = std::chrono::milliseconds(50);
  SpanExporter exporter(config, "svc", registry);
  const SpanPtr span = TestSpan(1);
  EXPECT_TRUE(exporter.Export({span.get()}));
  EXPECT_TRUE(exporter.Export({span.get()}));  // at once: the same connection
  absl::SleepFor(absl::Milliseconds(120));
  EXPECT_TRUE(exporter.Export({span.get()}));
  EXPECT_EQ(collector.answered(), 3);
  EXPECT_EQ(collector.connections(), 2);
}

TEST(SpanExporterTest, ARequestAKeptConnectionLostUnansweredGoesOverANewOne) {
  KeepAliveCollector collector(/*answers_per_connection=*/100, /*close_unanswered=*/true);
  StatsRegistry registry;
  TracingConfig config;
  config.collector_address = collector.address();
  SpanExporter exporter(config, "svc", registry);
  const SpanPtr span = TestSpan(1);
  EXPECT_TRUE(exporter.Export({span.get()}));
  // The collector reads this one and closes without answering: sent again on a new connection.
  EXPECT_TRUE(exporter.Export({span.get()}));
  EXPECT_TRUE(exporter.Export({span.get()}));
  EXPECT_EQ(collector.answered(), 3);
  EXPECT_EQ(collector.connections(), 2);
  EXPECT_EQ(CounterValue(registry, "meshlet_tracing_export_errors_total"), 0u);
}

TEST(SpanExporterTest, UnreachableCollectorFailsWithinTheTimeout) {
  StatsRegistry registry;
  TracingConfig config;
  // A port nothing listens on: take one and close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  config.collector_address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  config.export_timeout = std::chrono::milliseconds(500);
  SpanExporter exporter(config, "svc", registry);
  const absl::Time start = absl::Now();
  const SpanPtr span = TestSpan(1);
  EXPECT_FALSE(exporter.Export({span.get()}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(SpanExporterTest, EverySpanIsAccountedForAtShutdown) {
  StatsRegistry registry;
  TracingConfig config;
  // A collector that never answers: the connect succeeds (listen backlog), the answer never comes.
  int port = 0;
  const int fd = ListenOnLoopback(&port);
  config.collector_address = absl::StrCat("127.0.0.1:", port);
  config.export_timeout = std::chrono::milliseconds(200);
  config.batch_size = 10;
  config.queue_limit = 100;
  const absl::Time start = absl::Now();
  {
    SpanExporter exporter(config, "svc", registry);
    for (uint64_t i = 1; i <= 100; ++i) {
      SpanPtr span = TestSpan(i);
      ASSERT_TRUE(exporter.queue().TryPush(span));
    }
    exporter.Start();
    absl::SleepFor(absl::Milliseconds(100));  // the first batch is waiting for its answer
  }
  // Shutdown did not wait for ten timeouts.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  const uint64_t failed =
      CounterValue(registry, "meshlet_tracing_spans_dropped_total", {{"reason", "export_failed"}});
  const uint64_t shutdown =
      CounterValue(registry, "meshlet_tracing_spans_dropped_total", {{"reason", "shutdown"}});
  EXPECT_GE(failed, 10u);
  EXPECT_GT(shutdown, 0u);
  EXPECT_EQ(failed + shutdown, 100u);
  ::close(fd);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

#include "sidecar/server/worker.h"
#include "common/net/test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/base/logging.h"
#include "common/base/sync.h"
#include "common/net/network_namespace_test_util.h"
#include "common/tls/client_hello_test_util.h"
#include "gtest/gtest.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/config/translate.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::server {
using stream::AccessLogSink;

namespace {

// A blocking TCP echo server on its own thread, for the proxy to forward to; it sends `banner`
// first on each connection (a server-first protocol) when not empty.
class EchoServer {
 public:
  explicit EchoServer(std::string banner = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    CHECK(::listen(fd_, 64) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, banner = std::move(banner)] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread([c, banner = banner] {
          if (!banner.empty() && ::write(c, banner.data(), banner.size()) < 0) {
            ::close(c);
            return;
          }
          char buf[4096];
          ssize_t n;
          while ((n = ::read(c, buf, sizeof(buf))) > 0) {
            if (::write(c, buf, n) != n) break;
          }
          ::close(c);
        }).detach();
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_;
  std::thread thread_;
};

// Connects to `ip`:port (IPv4); -1 if refused.
int Connect(uint16_t port, const char* ip = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  CHECK(::inet_pton(AF_INET, ip, &addr.sin_addr) == 1) << ip;
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// Writes `message` and reads the same number of bytes back.
std::string Echo(int fd, const std::string& message) {
  if (::write(fd, message.data(), message.size()) != static_cast<ssize_t>(message.size())) {
    return "<write failed>";
  }
  std::string out;
  char buf[256];
  while (out.size() < message.size()) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return out + "<eof>";
    out.append(buf, n);
  }
  return out;
}

std::shared_ptr<const config::Snapshot> SnapshotFrom(const std::string& yaml) {
  absl::StatusOr<config::BootstrapConfig> bootstrap = config::ParseBootstrap(yaml, "test", "");
  CHECK_OK(bootstrap);
  absl::StatusOr<std::shared_ptr<const config::Snapshot>> snapshot =
      config::BuildSnapshot(bootstrap->resources);
  CHECK_OK(snapshot);
  return *snapshot;
}

std::string TcpConfig(const std::string& listener, const std::string& direction,
                      uint16_t upstream_port, const std::string& listener2 = "") {
  std::string yaml = absl::StrCat(R"(
static_resources:
  listeners:
  - name: )",
                                  listener, R"(
    address: 127.0.0.1:0
    direction: )",
                                  direction, R"(
    protocol: PROTOCOL_TCP
    tcp_cluster: echo
)");
  if (!listener2.empty()) {
    absl::StrAppend(&yaml, "  - name: ", listener2,
                    "\n    address: 127.0.0.1:0\n    direction: OUTBOUND\n"
                    "    protocol: PROTOCOL_TCP\n    tcp_cluster: echo\n");
  }
  absl::StrAppend(&yaml, R"(  clusters:
  - name: echo
    load_assignment:
      endpoints:
      - address: 127.0.0.1:)",
                  upstream_port, "\n");
  return yaml;
}

// A listening socket on 127.0.0.1 without SO_REUSEPORT, so a proxy's bind of its port fails;
// -1 on error. The caller closes it.
int BusyLoopbackSocket(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 1) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

class WorkerTest : public ::testing::Test {
 protected:
  WorkerShared Shared() {
    return WorkerShared{.stats = registry_,
                        .access_logs = access_logs_,
                        .global_access_log = nullptr,
                        .connection_counts = counts_,
                        .cluster_limits = limits_};
  }

  uint16_t PortOf(const Worker& worker, absl::string_view name) {
    for (const admin::ListenerStatus& status : worker.listeners()) {
      if (status.name == name) return status.address.port();
    }
    return 0;
  }

  bool WaitFor(absl::FunctionRef<bool()> done) {
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }

  StatsRegistry registry_;
  listener::AccessLogFiles access_logs_{registry_.shared_shard()};
  ListenerConnectionCounts counts_;
  cluster::SharedClusterLimits limits_;
  EchoServer echo_;
};

TEST_F(WorkerTest, ProxiesTcp) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  const uint16_t port = PortOf(worker, "tcp");
  ASSERT_NE(port, 0);
  int fd = Connect(port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "hello"), "hello");
  EXPECT_TRUE(WaitFor([&] { return worker.active_connections() == 1; }));
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] { return worker.active_connections() == 0; }));

  std::optional<std::vector<admin::ClusterStatus>> clusters =
      worker.CollectClusters(std::chrono::seconds(5));
  ASSERT_TRUE(clusters.has_value());
  ASSERT_EQ(clusters->size(), 1u);
  EXPECT_EQ((*clusters)[0].name, "echo");
  ASSERT_EQ((*clusters)[0].hosts.size(), 1u);
  EXPECT_EQ((*clusters)[0].hosts[0].stats.rq_total, 1u);
  worker.Stop();
  const StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* accepted =
      stats.Find("meshlet_worker_cx_accepted_total", {{"worker", "0"}});
  ASSERT_NE(accepted, nullptr);
  EXPECT_EQ(accepted->counter, 1u);
}

// A worker builds a cluster when a connection first uses it: configured clusters cost it nothing
// until then, and admin /clusters still reports them (configured endpoints, the shared
// health-check results, nothing counted).
TEST_F(WorkerTest, BuildsAClusterWhenAConnectionFirstUsesIt) {
  std::string yaml = TcpConfig("tcp", "OUTBOUND", echo_.port());
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(
        &yaml, "  - name: idle-", i,
        "\n    load_assignment:\n      endpoints:\n      - address: 127.0.0.2:", 1000 + i, "\n");
  }
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(yaml)).ok());
  auto built = [&]() -> int64_t {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series = stats.Find("meshlet_worker_clusters_built", {{"worker", "0"}});
    return series == nullptr ? -1 : series->gauge;
  };
  EXPECT_EQ(built(), 0);
  const net::Address failed = *net::Address::Parse("127.0.0.2:1003");
  limits_.host_health().Set("idle-3", failed, /*healthy=*/false);
  std::optional<std::vector<admin::ClusterStatus>> clusters =
      worker.CollectClusters(std::chrono::seconds(5));
  ASSERT_TRUE(clusters.has_value());
  ASSERT_EQ(clusters->size(), 11u);
  for (const admin::ClusterStatus& cluster : *clusters) {
    EXPECT_FALSE(cluster.built) << cluster.name;
    ASSERT_EQ(cluster.hosts.size(), 1u) << cluster.name;
    EXPECT_EQ(cluster.hosts[0].stats.rq_total, 0u);
    EXPECT_EQ(cluster.hosts[0].health_flags,
              cluster.name == "idle-3" ? cluster::Host::kFailedActiveHealthCheck : 0u)
        << cluster.name;
  }

  int fd = Connect(PortOf(worker, "tcp"));
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "hello"), "hello");
  ::close(fd);
  EXPECT_EQ(built(), 1);
  clusters = worker.CollectClusters(std::chrono::seconds(5));
  ASSERT_TRUE(clusters.has_value());
  for (const admin::ClusterStatus& cluster : *clusters) {
    EXPECT_EQ(cluster.built, cluster.name == "echo") << cluster.name;
  }

  // Removing the clusters it never built leaves the one it did.
  worker.ApplySnapshot(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port())));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  EXPECT_EQ(built(), 1);
  worker.Stop();
}

// A discovered Service that ages out (ADR 0086) leaves as any removed configuration does: the
// control plane removes its ServiceRoute and then its clusters, and the worker drops the cluster
// it built on first use (ADR 0091), while a connection still open keeps that cluster until it
// closes.
TEST_F(WorkerTest, RemovedAfterIdleWhileAConnectionKeepsItsCluster) {
  EchoServer other("other:");
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  auto built = [&]() -> int64_t {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series = stats.Find("meshlet_worker_clusters_built", {{"worker", "0"}});
    return series == nullptr ? -1 : series->gauge;
  };
  const uint16_t port = PortOf(worker, "tcp");
  int fd = Connect(port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "hello"), "hello");
  EXPECT_EQ(built(), 1);

  // Cluster "echo" removed: the listener now sends new connections to "other".
  std::string without = absl::StrCat(R"(
static_resources:
  listeners:
  - name: tcp
    address: 127.0.0.1:)",
                                     port, R"(
    direction: OUTBOUND
    protocol: PROTOCOL_TCP
    tcp_cluster: other
  clusters:
  - name: other
    load_assignment:
      endpoints:
      - address: 127.0.0.1:)",
                                     other.port(), "\n");
  worker.ApplySnapshot(SnapshotFrom(without));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  EXPECT_EQ(built(), 0);
  std::optional<std::vector<admin::ClusterStatus>> clusters =
      worker.CollectClusters(std::chrono::seconds(5));
  ASSERT_TRUE(clusters.has_value());
  ASSERT_EQ(clusters->size(), 1u);
  EXPECT_EQ((*clusters)[0].name, "other");
  // The open connection still goes through the removed cluster.
  EXPECT_EQ(Echo(fd, "still there"), "still there");
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] { return worker.active_connections() == 0; }));
  // A new one takes the new configuration.
  fd = Connect(PortOf(worker, "tcp"));
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(WaitFor([&] { return built() == 1; }));
  ::close(fd);
  worker.Stop();
}

// A worker's thread carries its index in its name (what `top -H` and `ps -L` show).
TEST_F(WorkerTest, NamesItsThread) {
  Worker worker(3, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  int named = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "worker-3") ++named;
  }
  worker.Stop();
  EXPECT_EQ(named, 1);
}

TEST_F(WorkerTest, SnapshotSwapKeepsOpenConnections) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("old", "OUTBOUND", echo_.port()))).ok());
  const uint16_t old_port = PortOf(worker, "old");
  int held = Connect(old_port);
  ASSERT_GE(held, 0);
  EXPECT_EQ(Echo(held, "before"), "before");

  worker.ApplySnapshot(SnapshotFrom(TcpConfig("new", "OUTBOUND", echo_.port())));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  const uint16_t new_port = PortOf(worker, "new");
  ASSERT_NE(new_port, 0);
  EXPECT_EQ(PortOf(worker, "old"), 0);
  EXPECT_EQ(Connect(old_port), -1);  // removed listener: no longer accepting

  int fresh = Connect(new_port);
  ASSERT_GE(fresh, 0);
  EXPECT_EQ(Echo(fresh, "new"), "new");
  EXPECT_EQ(Echo(held, "after"), "after");  // accepted before the change, still served
  ::close(fresh);
  ::close(held);
  EXPECT_TRUE(WaitFor([&] { return worker.active_connections() == 0; }));
}

TEST_F(WorkerTest, UnchangedListenerKeepsItsSocket) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  const uint16_t port = PortOf(worker, "tcp");
  worker.ApplySnapshot(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port(), "extra")));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  EXPECT_EQ(PortOf(worker, "tcp"), port);  // port 0 was not re-bound to another port
  EXPECT_NE(PortOf(worker, "extra"), 0);
  int fd = Connect(port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "x"), "x");
  ::close(fd);
}

TEST_F(WorkerTest, DrainStopsInboundOnly) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("in", "INBOUND", echo_.port(), "out"))).ok());
  const uint16_t in_port = PortOf(worker, "in");
  const uint16_t out_port = PortOf(worker, "out");
  int held = Connect(in_port);
  ASSERT_GE(held, 0);
  EXPECT_EQ(Echo(held, "x"), "x");

  worker.StartDrain();
  ASSERT_TRUE(WaitFor([&] {
    for (const admin::ListenerStatus& s : worker.listeners()) {
      if (s.name == "in") return !s.accepting;
    }
    return false;
  }));
  EXPECT_EQ(Connect(in_port), -1);
  int out = Connect(out_port);
  ASSERT_GE(out, 0);
  EXPECT_EQ(Echo(out, "out"), "out");
  EXPECT_EQ(Echo(held, "still"), "still");
  ::close(out);
  ::close(held);
}

TEST_F(WorkerTest, DrainKeepsInboundAcceptingForItsAcceptTime) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("in", "INBOUND", echo_.port()))).ok());
  const uint16_t in_port = PortOf(worker, "in");
  auto accepting = [&] {
    for (const admin::ListenerStatus& s : worker.listeners()) {
      if (s.name == "in") return s.accepting;
    }
    return false;
  };
  const auto started = std::chrono::steady_clock::now();
  worker.StartDrain(std::chrono::milliseconds(400));
  // Within the accept time a caller that has not heard yet is still served.
  int late = Connect(in_port);
  ASSERT_GE(late, 0);
  EXPECT_EQ(Echo(late, "late"), "late");
  EXPECT_TRUE(accepting());
  ASSERT_TRUE(WaitFor([&] { return !accepting(); }));
  // Less a millisecond: the timer counts from the loop's time, which libuv keeps in whole
  // milliseconds (truncated), so it may be due up to 1 ms before 400 ms from `started`.
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(399));
  EXPECT_EQ(Connect(in_port), -1);
  EXPECT_EQ(Echo(late, "still"), "still");
  ::close(late);
}

TEST_F(WorkerTest, StartFailsOnBindError) {
  Worker first(0, Shared());
  ASSERT_TRUE(first.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  // Same port without SO_REUSEPORT on the holder's side cannot happen here (both reuse), so use a
  // socket that does not set it.
  uint16_t busy_port = 0;
  const int busy = BusyLoopbackSocket(&busy_port);
  ASSERT_GE(busy, 0);
  std::string yaml = absl::StrReplaceAll(TcpConfig("taken", "OUTBOUND", echo_.port()),
                                         {{"127.0.0.1:0", absl::StrCat("127.0.0.1:", busy_port)}});
  Worker second(1, Shared());
  absl::Status status = second.Start(SnapshotFrom(yaml));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("listener \"taken\""), absl::string_view::npos) << status;
  ::close(busy);
}

TEST_F(WorkerTest, ListenerThatCannotBindIsReportedUntilBound) {
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  EXPECT_TRUE(worker.unbound_listeners().empty());
  // A later snapshot names a port another socket (without SO_REUSEPORT) holds.
  uint16_t busy_port = 0;
  const int busy = BusyLoopbackSocket(&busy_port);
  ASSERT_GE(busy, 0);
  const std::string taken = absl::StrCat("127.0.0.1:", busy_port);
  std::string yaml = TcpConfig("tcp", "OUTBOUND", echo_.port(), "taken");
  // The second listener's address: the last "127.0.0.1:0" in the document.
  const size_t at = yaml.rfind("127.0.0.1:0");
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, std::string("127.0.0.1:0").size(), taken);
  worker.ApplySnapshot(SnapshotFrom(yaml));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  std::map<std::string, std::string, std::less<>> unbound = worker.unbound_listeners();
  ASSERT_EQ(unbound.size(), 1u);
  EXPECT_NE(unbound["taken"].find(absl::StrCat("listener \"taken\" (", taken, ")")),
            std::string::npos)
      << unbound["taken"];
  EXPECT_NE(PortOf(worker, "tcp"), 0);  // the other listener serves on
  // Freed and configured again: bound, nothing reported.
  ::close(busy);
  worker.ApplySnapshot(SnapshotFrom(yaml));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 3; }));
  EXPECT_TRUE(worker.unbound_listeners().empty());
  EXPECT_NE(PortOf(worker, "taken"), 0);
}

// Without a new configuration: the worker tries the unbound listener again on its own, at
// doubling intervals, and binds it once the port is free.
TEST_F(WorkerTest, UnboundListenerIsBoundOnARetryOnceThePortIsFree) {
  WorkerShared shared = Shared();
  shared.bind_retry_interval = std::chrono::milliseconds(20);
  shared.bind_retry_max = std::chrono::milliseconds(80);
  Worker worker(0, shared);
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", echo_.port()))).ok());
  uint16_t busy_port = 0;
  const int busy = BusyLoopbackSocket(&busy_port);
  ASSERT_GE(busy, 0);
  std::string yaml = TcpConfig("tcp", "OUTBOUND", echo_.port(), "taken");
  const size_t at = yaml.rfind("127.0.0.1:0");
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, std::string("127.0.0.1:0").size(), absl::StrCat("127.0.0.1:", busy_port));
  worker.ApplySnapshot(SnapshotFrom(yaml));
  ASSERT_TRUE(WaitFor([&] { return worker.snapshots_applied() == 2; }));
  // Several retries fail while the port is held; it stays reported.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(worker.unbound_listeners().count("taken"), 1u);
  EXPECT_EQ(PortOf(worker, "taken"), 0);
  ::close(busy);
  ASSERT_TRUE(WaitFor([&] { return worker.unbound_listeners().empty(); }));
  EXPECT_EQ(worker.snapshots_applied(), 2u);  // no new configuration was needed
  EXPECT_EQ(PortOf(worker, "taken"), busy_port);
  const int fd = Connect(busy_port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "retried"), "retried");
  ::close(fd);
}

TEST_F(WorkerTest, ConnectFailureClosesDownstream) {
  const net::testing::RefusingPort refusing;  // an upstream port that refuses connections
  const uint16_t dead_port = refusing.port();

  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(TcpConfig("tcp", "OUTBOUND", dead_port))).ok());
  int fd = Connect(PortOf(worker, "tcp"));
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Echo(fd, "x"), "<eof>");
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* failures =
        stats.Find("meshlet_tcp_proxy_connect_fail_total", {{"listener", "tcp"}});
    return failures != nullptr && failures->counter == 1;
  }));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// On-demand discovery (ADR 0086): captured connections wait for a lookup of their original
// destination. As root, in a network namespace of the test's own where iptables redirects the
// "service" ranges 127.10.0.0/16 and 127.20.0.0/16 to the capture listener; skipped otherwise.
// Passthrough goes to 127.0.0.1 on the original port (passthrough_host), where `direct` listens;
// the mesh's cluster is `mesh`. Each server greets with its name, so the client sees which one
// served it.

namespace {

constexpr char kService[] = "127.10.0.5";  // inside on_demand.address_ranges
constexpr char kOutside[] = "127.20.0.5";  // redirected, but outside them

// The keys a worker asked for (WorkerShared::request_lookup, called on the worker thread).
class Lookups {
 public:
  std::function<void(std::string)> Callback() {
    return [this](std::string key) {
      MutexLock lock(&mu_);
      keys_.push_back(std::move(key));
    };
  }
  std::vector<std::string> keys() {
    MutexLock lock(&mu_);
    return keys_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> keys_ ABSL_GUARDED_BY(mu_);
};

// A capture listener with on_demand for 127.10.0.0/16; with `destination_port`, the destination
// the mesh's answer adds: kService on that port, served by cluster "mesh".
std::string CaptureConfig(const std::string& unmatched, const std::string& timeout,
                          uint16_t mesh_port, uint16_t destination_port = 0) {
  std::string yaml = absl::StrCat(R"(
static_resources:
  listeners:
  - name: capture
    address: 127.0.0.1:0
    protocol: PROTOCOL_TCP
    tcp_cluster: mesh
    use_original_destination: true
    unmatched_destination: )",
                                  unmatched, "\n");
  if (unmatched == "PASSTHROUGH") absl::StrAppend(&yaml, "    passthrough_host: 127.0.0.1\n");
  absl::StrAppend(&yaml, "    on_demand: {address_ranges: [\"127.10.0.0/16\"], timeout: ", timeout,
                  "}\n");
  if (destination_port != 0) {
    absl::StrAppend(&yaml, "    destinations:\n    - {name: \"svc:", destination_port,
                    "\", addresses: [", kService, "], port: ", destination_port,
                    ", protocol: PROTOCOL_TCP, tcp_cluster: mesh}\n");
  }
  absl::StrAppend(&yaml, R"(  clusters:
  - name: mesh
    load_assignment:
      endpoints:
      - address: 127.0.0.1:)",
                  mesh_port, "\n");
  return yaml;
}

// Redirects local TCP to `range` (a CIDR) to the capture listener's port.
std::string RedirectRange(const std::string& range, uint16_t to_port) {
  return net::testing::RunTool({"iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d",
                                range, "-j", "REDIRECT", "--to-ports", absl::StrCat(to_port)});
}

// Reads until `n` bytes came or the connection ends ("<eof>" appended) or times out.
std::string Read(int fd, size_t n) {
  std::string out;
  char buf[256];
  while (out.size() < n) {
    ssize_t got = ::read(fd, buf, std::min(sizeof(buf), n - out.size()));
    if (got <= 0) return out + "<eof>";
    out.append(buf, got);
  }
  return out;
}

bool Send(int fd, absl::string_view bytes) {
  return ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
}

}  // namespace

// An east-west gateway's listener (ADR 0106): TLS routed by its ClientHello's server name to a
// TCP cluster, the bytes forwarded unchanged; anything else is closed.
TEST_F(WorkerTest, RoutesTlsByServerNameWithoutTerminatingIt) {
  EchoServer a("A");
  EchoServer b("B");
  const std::string yaml = absl::StrCat(R"(
static_resources:
  listeners:
  - name: gateway
    address: 127.0.0.1:0
    protocol: PROTOCOL_TCP
    detect_timeout: 0.3s
    destinations:
    - {name: a, server_names: [a.mesh.internal], protocol: PROTOCOL_TCP, tcp_cluster: a}
    - {name: b, server_names: ["*.b.mesh.internal"], protocol: PROTOCOL_TCP, tcp_cluster: b}
  clusters:
  - name: a
    load_assignment: {endpoints: [{address: "127.0.0.1:)",
                                        a.port(), R"("}]}
  - name: b
    load_assignment: {endpoints: [{address: "127.0.0.1:)",
                                        b.port(), R"("}]}
)");
  Worker worker(0, Shared());
  ASSERT_TRUE(worker.Start(SnapshotFrom(yaml)).ok());
  const uint16_t port = PortOf(worker, "gateway");
  ASSERT_NE(port, 0);
  using tls::testing::HandMadeClientHello;
  using tls::testing::SniExtension;

  // The backend the name picks answers (its banner), and echoes the ClientHello as sent.
  const std::string to_a = HandMadeClientHello(SniExtension("a.mesh.internal"));
  int fd = Connect(port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Send(fd, to_a));
  EXPECT_EQ(Read(fd, 1 + to_a.size()), "A" + to_a);
  ::close(fd);
  // Under the wildcard, the ClientHello arriving in two pieces.
  const std::string to_b = HandMadeClientHello(SniExtension("x.y.b.mesh.internal"));
  fd = Connect(port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Send(fd, to_b.substr(0, 20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(Send(fd, to_b.substr(20)));
  EXPECT_EQ(Read(fd, 1 + to_b.size()), "B" + to_b);
  ::close(fd);

  // Refused (closed without a byte): another name, no name, not TLS, silence.
  for (const std::string& bytes :
       {HandMadeClientHello(SniExtension("c.mesh.internal")), HandMadeClientHello(""),
        std::string("GET / HTTP/1.1\r\nHost: a.mesh.internal\r\n\r\n"), std::string()}) {
    fd = Connect(port);
    ASSERT_GE(fd, 0);
    if (!bytes.empty()) {
      ASSERT_TRUE(Send(fd, bytes));
    }
    EXPECT_EQ(Read(fd, 1), "<eof>") << bytes.size();
    ::close(fd);
  }
  worker.Stop();
  const StatsSnapshot stats = registry_.Snapshot();
  auto count = [&](const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels) {
    const SeriesSnapshot* series = stats.Find(name, labels);
    return series == nullptr ? uint64_t{0} : series->counter;
  };
  EXPECT_EQ(count("meshlet_downstream_cx_rejected_total",
                  {{"listener", "gateway"}, {"reason", "unmatched_destination"}}),
            4u);
  EXPECT_EQ(count("meshlet_downstream_cx_client_hello_total",
                  {{"listener", "gateway"}, {"result", "ok"}}),
            4u);
  EXPECT_EQ(count("meshlet_downstream_cx_client_hello_total",
                  {{"listener", "gateway"}, {"result", "not_tls"}}),
            1u);
  EXPECT_EQ(count("meshlet_downstream_cx_client_hello_total",
                  {{"listener", "gateway"}, {"result", "need_more_bytes"}}),
            1u);
}

class OnDemandWorkerTest : public WorkerTest {
 protected:
  // On the namespace's thread: the two servers and a worker whose capture listener has
  // `unmatched` and on_demand `timeout`, asking lookups_ (or, without `lookups`, nobody), with
  // both ranges redirected to it. "" or why it could not (the test is skipped).
  std::string StartCapturing(const std::string& unmatched, const std::string& timeout,
                             bool lookups = true) {
    direct_ = std::make_unique<EchoServer>("direct:");
    mesh_ = std::make_unique<EchoServer>("mesh:");
    unmatched_ = unmatched;
    timeout_ = timeout;
    WorkerShared shared = Shared();
    if (lookups) shared.request_lookup = lookups_.Callback();
    worker_ = std::make_unique<Worker>(0, std::move(shared));
    absl::Status started =
        worker_->Start(SnapshotFrom(CaptureConfig(unmatched, timeout, mesh_->port())));
    if (!started.ok()) return std::string(started.message());
    const uint16_t port = PortOf(*worker_, "capture");
    if (port == 0) return "no capture listener";
    for (const char* range : {"127.10.0.0/16", "127.20.0.0/16"}) {
      if (std::string why = RedirectRange(range, port); !why.empty()) return why;
    }
    return "";
  }
  // Runs `body` in a network namespace of its own with StartCapturing's worker (then stopped);
  // "" or why it could not.
  std::string Captured(const std::string& unmatched, const std::string& timeout,
                       const std::function<void()>& body, bool lookups = true) {
    return net::testing::InNewNetworkNamespace([&]() -> std::string {
      if (std::string why = StartCapturing(unmatched, timeout, lookups); !why.empty()) return why;
      body();
      Stop();
      return "";
    });
  }
  // What the main thread does when the mesh answers the key of kService on direct_'s port: the
  // snapshot that serves it (through cluster "mesh"), then the answer.
  void AnswerFound() {
    worker_->ApplySnapshot(
        SnapshotFrom(CaptureConfig(unmatched_, timeout_, mesh_->port(), direct_->port())));
    worker_->OnLookupAnswers({{ServiceKey(), config::LookupOutcome::kFound}});
  }
  std::string ServiceKey() const { return absl::StrCat("addr:", kService, ":", direct_->port()); }
  // A connection to `ip` on direct_'s port (redirected to the capture listener).
  int ConnectAs(const char* ip) {
    const int fd = Connect(direct_->port(), ip);
    EXPECT_GE(fd, 0) << ip;
    return fd;
  }
  // Stops the worker, then the servers.
  void Stop() {
    worker_->Stop();
    worker_.reset();
    mesh_.reset();
    direct_.reset();
  }
  uint64_t Waits(const char* result) {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series =
        stats.Find("meshlet_on_demand_waits_total", {{"kind", "address"}, {"result", result}});
    return series == nullptr ? 0 : series->counter;
  }

  std::unique_ptr<EchoServer> direct_;  // where passthrough goes
  std::unique_ptr<EchoServer> mesh_;    // the endpoint of cluster "mesh"
  std::string unmatched_;
  std::string timeout_;
  Lookups lookups_;
  std::unique_ptr<Worker> worker_;
};

// The first connection to a Service address the sidecar has not been told about waits for the
// lookup and is served by the mesh (its cluster), not passed through; what the client sent while
// it waited reaches the mesh's endpoint.
TEST_F(OnDemandWorkerTest, UnknownServiceAddressRoutedThroughTheMeshOnFirstConnection) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", "5s", [&] {
    const int fd = ConnectAs(kService);
    EXPECT_TRUE(WaitFor([&] { return !lookups_.keys().empty(); }));
    EXPECT_EQ(lookups_.keys(), std::vector<std::string>{ServiceKey()});
    EXPECT_TRUE(Send(fd, "hello"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // read while it waits
    AnswerFound();
    EXPECT_EQ(Read(fd, 10), "mesh:hello");
    ::close(fd);
    EXPECT_TRUE(WaitFor([&] { return worker_->active_connections() == 0; }));
  }));
  EXPECT_EQ(Waits("found"), 1u);
  EXPECT_EQ(lookups_.keys().size(), 1u);
}

// A server-first protocol: the client sends nothing, and the discovered Service's endpoint
// speaks first, as soon as the wait ends (no detection window on top of the wait).
TEST_F(OnDemandWorkerTest, TcpServiceDiscoveredForServerFirstProtocol) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", "5s", [&] {
    const int fd = ConnectAs(kService);
    EXPECT_TRUE(WaitFor([&] { return !lookups_.keys().empty(); }));
    AnswerFound();
    EXPECT_EQ(Read(fd, 5), "mesh:");
    ::close(fd);
  }));
  EXPECT_EQ(Waits("found"), 1u);
}

// A connection a ServiceRoute's destination serves marks the ServiceRoute used when it is served
// and again when it ends (ADR 0086: unused destinations age out, used ones stay).
TEST_F(OnDemandWorkerTest, ServedConnectionTouchesItsDestinationsUsageCell) {
  auto usage = std::make_shared<route::UsageCell>();
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", "5s", [&] {
    // The snapshot a ServiceRoute's answer brings: its destination carries the cell.
    auto snapshot = std::make_shared<config::Snapshot>(
        *SnapshotFrom(CaptureConfig(unmatched_, timeout_, mesh_->port(), direct_->port())));
    ASSERT_EQ(snapshot->listeners[0].destinations.size(), 1u);
    snapshot->listeners[0].destinations[0].usage = usage;
    worker_->ApplySnapshot(snapshot);
    ASSERT_TRUE(WaitFor([&] { return worker_->snapshots_applied() == 2; }));
    const int fd = ConnectAs(kService);
    EXPECT_TRUE(Send(fd, "hello"));
    EXPECT_EQ(Read(fd, 10), "mesh:hello");
    EXPECT_TRUE(lookups_.keys().empty());  // known: no lookup
    ASSERT_TRUE(usage->last_use().has_value());
    const MonotonicTime opened = *usage->last_use();
    // Closed in a later second: touched again.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    ::close(fd);
    EXPECT_TRUE(WaitFor([&] { return worker_->active_connections() == 0; }));
    ASSERT_TRUE(usage->last_use().has_value());
    EXPECT_GT(*usage->last_use(), opened);
  }));
}

// No answer within on_demand.timeout: passed through to the original destination, as without
// on_demand, with the bytes sent meanwhile.
TEST_F(OnDemandWorkerTest, TimeoutFallsBackToPassthrough) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", "0.1s", [&] {
    const auto start = std::chrono::steady_clock::now();
    const int fd = ConnectAs(kService);
    EXPECT_TRUE(Send(fd, "hello"));
    EXPECT_EQ(Read(fd, 12), "direct:hello");
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(90));
    EXPECT_EQ(lookups_.keys(), std::vector<std::string>{ServiceKey()});
    ::close(fd);
  }));
  EXPECT_EQ(Waits("timeout"), 1u);
}

// unmatched_destination: REFUSE: after the timeout the connection is refused, as it is at once
// without on_demand.
TEST_F(OnDemandWorkerTest, RefuseListenerRefusesAfterTimeout) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("REFUSE", "0.1s", [&] {
    const auto start = std::chrono::steady_clock::now();
    const int fd = ConnectAs(kService);
    EXPECT_TRUE(Send(fd, std::string(32, '\x01')));  // opaque bytes
    EXPECT_EQ(Read(fd, 1), "<eof>");
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(90));
    EXPECT_EQ(lookups_.keys(), std::vector<std::string>{ServiceKey()});
    ::close(fd);
  }));
  EXPECT_EQ(Waits("timeout"), 1u);
}

// Only original addresses inside on_demand.address_ranges wait; others are passed through at once.
TEST_F(OnDemandWorkerTest, AddressOutsideRangesNeverWaits) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", "5s", [&] {
    const int outside = ConnectAs(kOutside);
    EXPECT_TRUE(Send(outside, "hello"));
    EXPECT_EQ(Read(outside, 12), "direct:hello");
    EXPECT_TRUE(lookups_.keys().empty());
    // The same port inside the ranges does wait.
    const int inside = ConnectAs(kService);
    EXPECT_TRUE(WaitFor([&] { return !lookups_.keys().empty(); }));
    EXPECT_EQ(lookups_.keys(), std::vector<std::string>{ServiceKey()});
    worker_->OnLookupAnswers({{ServiceKey(), config::LookupOutcome::kNotFound}});
    EXPECT_EQ(Read(inside, 7), "direct:");
    ::close(outside);
    ::close(inside);
  }));
  EXPECT_EQ(Waits("not_found"), 1u);
}

// Without a way to look up (no control-plane stream: request_lookup null) nothing waits: served
// at once, counted disconnected.
TEST_F(OnDemandWorkerTest, NoRequestLookupMeansNoWait) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured(
      "PASSTHROUGH", "30s",
      [&] {
        const auto start = std::chrono::steady_clock::now();
        const int fd = ConnectAs(kService);
        EXPECT_EQ(Read(fd, 7), "direct:");
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
        ::close(fd);
      },
      /*lookups=*/false));
  EXPECT_EQ(Waits("disconnected"), 1u);
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP to external services routed by Host (ListenerDestination.http_hosts, ADR 0108). As
// root, in a network namespace of the test's own where iptables redirects 127.30.0.0/16 to the
// capture listener; skipped otherwise. The app's connections go to kExternal on direct_'s port:
// a registered Host is routed to cluster "partner" (an HTTP server naming itself in its answers);
// PASSTHROUGH sends anything else to 127.0.0.1 on that port (passthrough_host), where direct_
// greets with "direct:" and echoes.

namespace {

constexpr char kExternal[] = "127.30.0.5";

// A blocking HTTP/1.1 server on its own thread: answers each request (no body) with 200 and the
// body "<name> <request line> host=<Host>".
class HttpServer {
 public:
  explicit HttpServer(std::string name) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    CHECK(::listen(fd_, 64) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, name = std::move(name)] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread([c, name] {
          std::string in;
          char buf[4096];
          while (true) {
            size_t end;
            while ((end = in.find("\r\n\r\n")) == std::string::npos) {
              const ssize_t n = ::read(c, buf, sizeof(buf));
              if (n <= 0) {
                ::close(c);
                return;
              }
              in.append(buf, n);
            }
            const std::string head = in.substr(0, end + 2);
            in.erase(0, end + 4);
            const std::string lower = absl::AsciiStrToLower(head);
            std::string host;
            if (size_t at = lower.find("\r\nhost:"); at != std::string::npos) {
              at += 7;
              host = std::string(absl::StripAsciiWhitespace(
                  absl::string_view(head).substr(at, head.find("\r\n", at) - at)));
            }
            const std::string body =
                absl::StrCat(name, " ", head.substr(0, head.find("\r\n")), " host=", host);
            const std::string response =
                absl::StrCat("HTTP/1.1 200 OK\r\ncontent-length: ", body.size(), "\r\n\r\n", body);
            if (::write(c, response.data(), response.size()) !=
                static_cast<ssize_t>(response.size())) {
              break;
            }
          }
          ::close(c);
        }).detach();
      }
    });
  }
  ~HttpServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_;
  std::thread thread_;
};

// One HTTP/1.1 response (its head and a content-length body); what came, then "<eof>", if the
// connection ended first.
std::string ReadResponse(int fd) {
  std::string out;
  char buf[256];
  size_t body_at = std::string::npos;
  size_t length = 0;
  while (body_at == std::string::npos || out.size() < body_at + length) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return out + "<eof>";
    out.append(buf, n);
    if (body_at != std::string::npos) continue;
    const size_t end = out.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    body_at = end + 4;
    const std::string head = absl::AsciiStrToLower(out.substr(0, end + 2));
    if (size_t at = head.find("\r\ncontent-length:"); at != std::string::npos) {
      CHECK(absl::SimpleAtoi(
          absl::StripAsciiWhitespace(head.substr(at + 17, head.find("\r\n", at + 17) - at - 17)),
          &length));
    }
  }
  return out;
}

// The response's body.
std::string BodyOf(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "<no head>" : response.substr(end + 4);
}

}  // namespace

class HttpHostWorkerTest : public WorkerTest {
 protected:
  // The capture listener's configuration: destination "partner" for the partner's hosts on
  // direct_'s port, routed by route configuration "partner" to partner_.
  std::string Config(const std::string& unmatched) {
    std::string yaml = absl::StrCat(R"(
static_resources:
  listeners:
  - name: capture
    address: 127.0.0.1:0
    protocol: PROTOCOL_TCP
    tcp_cluster: partner
    detect_timeout: 0.3s
    use_original_destination: true
    unmatched_destination: )",
                                    unmatched, "\n");
    if (unmatched == "PASSTHROUGH") absl::StrAppend(&yaml, "    passthrough_host: 127.0.0.1\n");
    absl::StrAppend(&yaml, "    destinations:\n    - {name: partner, port: ", direct_->port(),
                    R"(, http_hosts: [api.partner.example, "*.cdn.example"],
       protocol: PROTOCOL_HTTP1, route_config_name: partner}
  routes:
  - name: partner
    virtual_hosts:
    - name: partner
      domains: [api.partner.example, "*.cdn.example"]
      routes:
      - match: {prefix: /}
        route: {cluster: partner}
  clusters:
  - name: partner
    load_assignment:
      endpoints:
      - address: 127.0.0.1:)",
                    partner_->port(), "\n");
    return yaml;
  }
  // Runs `body` in a network namespace of its own with a worker whose capture listener has
  // `unmatched` (then stopped); "" or why it could not.
  std::string Captured(const std::string& unmatched, const std::function<void()>& body) {
    return net::testing::InNewNetworkNamespace([&]() -> std::string {
      direct_ = std::make_unique<EchoServer>("direct:");
      partner_ = std::make_unique<HttpServer>("partner");
      worker_ = std::make_unique<Worker>(0, Shared());
      if (absl::Status started = worker_->Start(SnapshotFrom(Config(unmatched))); !started.ok()) {
        return std::string(started.message());
      }
      const uint16_t port = PortOf(*worker_, "capture");
      if (port == 0) return "no capture listener";
      if (std::string why = RedirectRange("127.30.0.0/16", port); !why.empty()) return why;
      body();
      worker_->Stop();
      worker_.reset();
      partner_.reset();
      direct_.reset();
      return "";
    });
  }
  // A connection the app makes to the external address on direct_'s port (captured).
  int ConnectToExternal() {
    const int fd = Connect(direct_->port(), kExternal);
    EXPECT_GE(fd, 0);
    return fd;
  }
  uint64_t HttpHosts(const char* result) {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series = stats.Find("meshlet_downstream_cx_http_host_total",
                                              {{"listener", "capture"}, {"result", result}});
    return series == nullptr ? 0 : series->counter;
  }

  std::unique_ptr<EchoServer> direct_;   // the original destination, for passthrough
  std::unique_ptr<HttpServer> partner_;  // the endpoint of cluster "partner"
  std::unique_ptr<Worker> worker_;
};

// A registered Host is routed by the destination's route table, also when its request arrives in
// pieces; any other Host, bytes that are not HTTP/1 and silence go on to the original destination
// (PASSTHROUGH) with every byte the client sent.
TEST_F(HttpHostWorkerTest, RoutesPlainHttpByHostAndPassesTheRestThrough) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("PASSTHROUGH", [&] {
    int fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "GET /a HTTP/1.1\r\nHost: api.partner.example\r\n\r\n"));
    std::string response = ReadResponse(fd);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
    EXPECT_EQ(BodyOf(response), "partner GET /a HTTP/1.1 host=api.partner.example");
    // A later request on the connection is the route table's: it knows only the partner's hosts.
    ASSERT_TRUE(Send(fd, "GET /b HTTP/1.1\r\nHost: other.example\r\n\r\n"));
    response = ReadResponse(fd);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
    ::close(fd);

    // Under the wildcard, in any case, with a port, the head arriving in three pieces.
    fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "GET /c HT"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(Send(fd, "TP/1.1\r\nHost: IMG.cdn.example:80\r\n"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(Send(fd, "\r\n"));
    response = ReadResponse(fd);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
    EXPECT_TRUE(absl::StartsWith(BodyOf(response), "partner GET /c HTTP/1.1 host=")) << response;
    ::close(fd);

    // Another host: to the original destination, the request as sent.
    const std::string other = "GET /d HTTP/1.1\r\nHost: api.elsewhere.example\r\nX-A: 1\r\n\r\n";
    fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, other));
    EXPECT_EQ(Read(fd, 7 + other.size()), "direct:" + other);
    ::close(fd);

    // Not HTTP/1: at once, as sent.
    fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "SSH-2.0-x\r\n"));
    EXPECT_EQ(Read(fd, 18), "direct:SSH-2.0-x\r\n");
    ::close(fd);

    // Silence (a server-first protocol): decided after detect_timeout.
    const auto start = std::chrono::steady_clock::now();
    fd = ConnectToExternal();
    EXPECT_EQ(Read(fd, 7), "direct:");
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
    EXPECT_EQ(Echo(fd, "hello"), "hello");
    ::close(fd);
    EXPECT_TRUE(WaitFor([&] { return worker_->active_connections() == 0; }));
  }));
  EXPECT_EQ(HttpHosts("ok"), 3u);
  EXPECT_EQ(HttpHosts("not_http1"), 1u);
  EXPECT_EQ(HttpHosts("need_more_bytes"), 1u);
  EXPECT_EQ(HttpHosts("no_host"), 0u);
}

// Under REFUSE another Host gets the local 502, per request; a registered one is still routed.
TEST_F(HttpHostWorkerTest, RefusesPlainHttpToAnUnregisteredHost) {
  MESHLET_SKIP_UNLESS_EMPTY(Captured("REFUSE", [&] {
    int fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "GET / HTTP/1.1\r\nHost: api.elsewhere.example\r\n\r\n"));
    std::string response = ReadResponse(fd);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 502")) << response;
    ::close(fd);
    // Without a Host (HTTP/1.0) too.
    fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "GET / HTTP/1.0\r\n\r\n"));
    response = ReadResponse(fd);
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 502") ||
                absl::StartsWith(response, "HTTP/1.0 502"))
        << response;
    ::close(fd);

    fd = ConnectToExternal();
    ASSERT_TRUE(Send(fd, "GET /a HTTP/1.1\r\nHost: api.partner.example\r\n\r\n"));
    response = ReadResponse(fd);
    EXPECT_EQ(BodyOf(response), "partner GET /a HTTP/1.1 host=api.partner.example") << response;
    ::close(fd);
  }));
  EXPECT_EQ(HttpHosts("ok"), 2u);
  EXPECT_EQ(HttpHosts("no_host"), 1u);
}

}  // namespace meshlet::sidecar::server

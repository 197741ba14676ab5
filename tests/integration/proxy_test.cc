// The sidecar's L7 request path end to end over real sockets on 127.0.0.1: clients (curl and the
// in-repo codecs) → HttpConnectionManager + Router → WorkerClusterManager's pools → upstream
// servers (HttpServer, a streaming upstream, a silent one, a closed port). One parameterised
// fixture runs every scenario across the downstream × upstream protocol pairs.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/clock.h"
#include "common/base/file.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/http/server.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/cluster_manager.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/listener/http_connection_manager.h"
#include "sidecar/listener/http_stats.h"
#include "sidecar/listener/worker_context.h"
#include "sidecar/route/route_table.h"
#include "sidecar/route/session.h"
#include "tests/integration/proxy_test_util.h"

namespace meshlet::sidecar {
using listener::HttpConnectionManager;
using listener::HttpStats;
using listener::WorkerContext;
using stream::AccessLogSink;

namespace {

using meshlet::testing::ClientResponse;
using meshlet::testing::CuttableRelay;
using meshlet::testing::SilentUpstream;
using meshlet::testing::StreamingUpstream;
using meshlet::testing::TestClient;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// `curl -i` output: the final response's status, headers (lowercase names) and body.
struct CurlResponse {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

CurlResponse ParseCurl(absl::string_view out) {
  CurlResponse r;
  while (absl::StartsWith(out, "HTTP/")) {
    const size_t end = out.find("\r\n\r\n");
    if (end == absl::string_view::npos) break;
    std::vector<absl::string_view> lines = absl::StrSplit(out.substr(0, end), "\r\n");
    std::vector<absl::string_view> status_line = absl::StrSplit(lines[0], ' ');
    r.status = 0;
    if (status_line.size() > 1) (void)absl::SimpleAtoi(status_line[1], &r.status);
    r.headers.clear();
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos) continue;
      r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    out.remove_prefix(end + 4);
    if (r.status >= 200) break;  // 100 Continue and friends precede the real response
  }
  r.body = std::string(out);
  return r;
}

std::string Header(const CurlResponse& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

class RecordingAccessLog : public AccessLogSink {
 public:
  void Write(absl::string_view line) override {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.emplace_back(line);
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  // The last line whose path is `path`.
  std::string ForPath(absl::string_view path) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string needle = absl::StrCat("\"path\":\"", path, "\"");
    for (auto it = lines_.rbegin(); it != lines_.rend(); ++it) {
      if (absl::StrContains(*it, needle)) return *it;
    }
    return "";
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

http::ServerResponse EchoHandler(char name, const http::ServerRequest& request) {
  const bool echo = request.method() == "POST";
  http::ServerResponse response =
      http::ServerResponse::Text(200, echo ? request.body : std::string(1, name));
  response.headers.Add("x-upstream", std::string(1, name));
  response.headers.Add("x-seen-path", request.headers.Get(":path").value_or(""));
  response.headers.Add("x-seen-protocol", http::ProtocolName(request.protocol));
  for (absl::string_view h : {"x-added", "x-remove-me", "x-request-id", "x-forwarded-for",
                              "x-forwarded-proto", "connection", "keep-alive"}) {
    response.headers.Add(absl::StrCat("x-seen-", h), request.headers.Get(h).value_or("<none>"));
  }
  return response;
}

struct ProtocolPair {
  http::Protocol downstream;
  cluster::UpstreamProtocol upstream;
};

std::string PairName(const ::testing::TestParamInfo<ProtocolPair>& info) {
  return absl::StrCat(info.param.downstream == http::Protocol::kHttp2 ? "h2" : "h1", "_to_",
                      info.param.upstream == cluster::UpstreamProtocol::kHttp2 ? "h2" : "h1");
}

class ProxyTest : public ::testing::TestWithParam<ProtocolPair> {
 protected:
  static constexpr uint64_t kBigResponse = 64ull << 20;

  void SetUp() override {
    // As the sidecar does: a peer that closed must not kill the process on write.
    ::signal(SIGPIPE, SIG_IGN);
    if (RunCommand("command -v curl").exit_code != 0) GTEST_SKIP() << "curl is missing";
    thread_ = std::thread([this] { loop_.Run(); });
    RunOnLoop([this] { StartProxy(); });
    ASSERT_NE(proxy_port_, 0);
  }

  void TearDown() override {
    refusing_.reset();
    if (!thread_.joinable()) return;
    RunOnLoop([this] {
      hcms_.clear();
      listener_.reset();
      callee_hcms_.clear();
      callee_listener_.reset();
      relay_.reset();
      clients_.clear();
      server_a_.reset();
      server_b_.reset();
      streaming_.reset();
      silent_.reset();
    });
    // Deferred deletions of the turn above have run: nothing refers to clusters any more.
    RunOnLoop([this] {
      context_.reset();
      callee_context_.reset();
      clusters_.reset();
    });
    RunOnLoop([this] { shard_.reset(); });
    loop_.Post([this] { loop_.Stop(); });
    thread_.join();
  }

  template <typename F>
  void RunOnLoop(F&& f) {
    std::promise<void> done;
    loop_.Post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  http::Protocol downstream() const { return GetParam().downstream; }
  bool h2_downstream() const { return downstream() == http::Protocol::kHttp2; }
  bool h2_upstream() const { return GetParam().upstream == cluster::UpstreamProtocol::kHttp2; }

  std::shared_ptr<const cluster::ClusterConfig> Cluster(const std::string& name,
                                                        std::vector<net::Address> endpoints) {
    auto config = std::make_shared<cluster::ClusterConfig>();
    config->name = name;
    config->lb_policy = cluster::LbPolicy::kRoundRobin;
    config->protocol = GetParam().upstream;
    for (const net::Address& address : endpoints) {
      cluster::EndpointConfig endpoint;
      endpoint.address = address;
      config->endpoints.push_back(endpoint);
    }
    return config;
  }

  static route::RouteEntry Route(const std::string& name, const std::string& prefix,
                                 const std::string& cluster) {
    route::RouteEntry route;
    route.name = name;
    route.match.path = prefix;
    route::RouteAction action;
    action.cluster = cluster;
    route.action = action;
    return route;
  }

  // Sticky sessions as sidecar/config compiles them.
  static std::shared_ptr<const route::SessionPersistence> Session(
      route::SessionPersistence::Type type, const std::string& name,
      const std::vector<std::string>& clusters, Duration absolute_timeout,
      const route::RouteMatch& match) {
    auto session = std::make_shared<route::SessionPersistence>();
    session->type = type;
    session->name = name;
    session->absolute_timeout = absolute_timeout;
    session->cookie_path = route::DefaultCookiePath(match);
    for (const std::string& cluster : clusters) {
      session->cluster_keys.push_back(cluster::SessionKey(cluster));
    }
    return session;
  }

  // A token naming `host` of `cluster`, begun `age` ago.
  static std::string SessionTokenFor(const std::string& cluster, const net::Address& host,
                                     Duration age) {
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    const int64_t created = now - std::chrono::duration_cast<std::chrono::seconds>(age).count();
    return route::EncodeSessionToken(
        {cluster::SessionKey(cluster), cluster::SessionKey(host.ToString()), created, created});
  }

  std::shared_ptr<const config::Snapshot> BuildSnapshot(uint16_t closed_port) {
    auto snapshot = std::make_shared<config::Snapshot>();
    snapshot->version = "test";
    const net::Address loopback = *net::Address::Parse("127.0.0.1:0");
    snapshot->clusters["a"] = Cluster("a", {server_a_->address()});
    snapshot->clusters["b"] = Cluster("b", {server_b_->address()});
    snapshot->clusters["stream"] = Cluster("stream", {streaming_->address()});
    snapshot->clusters["silent"] = Cluster("silent", {silent_->address()});
    // Two hosts that refuse every connect: with one loopback host only, a refused connect is
    // answered at once without retries (the app behind an inbound sidecar is not listening).
    snapshot->clusters["dead"] =
        Cluster("dead", {loopback.WithPort(closed_port),
                         net::Address::Parse("127.0.0.2:0")->WithPort(closed_port)});
    snapshot->clusters["empty"] = Cluster("empty", {});
    auto full = std::make_shared<cluster::ClusterConfig>(*Cluster("full", {server_a_->address()}));
    full->circuit_breakers.max_requests = 0;  // every request overflows
    snapshot->clusters["full"] = full;

    route::RouteConfig routes;
    routes.name = "routes";
    route::VirtualHostConfig vhost;
    vhost.name = "all";
    vhost.domains = {"*"};
    vhost.routes.push_back(Route("echo", "/echo", "a"));
    vhost.routes.push_back(Route("stream", "/stream", "stream"));
    vhost.routes.push_back(Route("dead", "/dead", "dead"));
    vhost.routes.push_back(Route("empty", "/empty", "empty"));
    vhost.routes.push_back(Route("unknown", "/unknown", "no-such-cluster"));
    vhost.routes.push_back(Route("full", "/full", "full"));
    route::RouteEntry slow = Route("slow", "/slow", "silent");
    std::get<route::RouteAction>(slow.action).timeout = milliseconds(300);
    vhost.routes.push_back(slow);

    route::RouteEntry mutate = Route("mutate", "/mutate", "a");
    std::get<route::RouteAction>(mutate.action).extras.mut().prefix_rewrite = "/rewritten";
    mutate.extras.mut().headers.request_headers_to_add.push_back({"x-added", "route", false});
    mutate.extras.mut().headers.request_headers_to_remove.push_back("x-remove-me");
    mutate.extras.mut().headers.response_headers_to_add.push_back(
        {"x-response-added", "yes", false});
    mutate.extras.mut().headers.response_headers_to_remove.push_back("x-seen-keep-alive");
    vhost.routes.push_back(mutate);

    route::RouteEntry split;
    split.name = "split";
    split.match.path = "/split";
    route::RouteAction weighted;
    weighted.weighted_clusters = {{"a", 80}, {"b", 20}};
    weighted.total_weight = 100;
    split.action = weighted;
    vhost.routes.push_back(split);

    // Sticky sessions: a cookie across a 50/50 split (an hour at most), and a header over one
    // cluster of both servers; the retry route's cluster has a host that refuses connects.
    snapshot->clusters["ab"] = Cluster("ab", {server_a_->address(), server_b_->address()});
    snapshot->clusters["half-dead"] =
        Cluster("half-dead", {loopback.WithPort(closed_port), server_a_->address()});
    route::RouteEntry sticky;
    sticky.name = "sticky";
    sticky.match.path_kind = route::RouteMatch::PathKind::kSegmentPrefix;
    sticky.match.path = "/sticky";
    route::RouteAction sticky_action;
    sticky_action.weighted_clusters = {{"a", 50}, {"b", 50}};
    sticky_action.total_weight = 100;
    sticky_action.session = Session(route::SessionPersistence::Type::kCookie, "Sticky", {"a", "b"},
                                    std::chrono::hours(1), sticky.match);
    sticky.action = sticky_action;
    vhost.routes.push_back(sticky);
    route::RouteEntry sticky_header = Route("sticky-header", "/header-session", "ab");
    std::get<route::RouteAction>(sticky_header.action).session =
        Session(route::SessionPersistence::Type::kHeader, "x-session", {"ab"}, Duration::zero(),
                sticky_header.match);
    vhost.routes.push_back(sticky_header);
    route::RouteEntry sticky_idle = Route("sticky-idle", "/idle-session", "ab");
    auto idle = std::make_shared<route::SessionPersistence>(
        *Session(route::SessionPersistence::Type::kHeader, "x-session", {"ab"},
                 std::chrono::hours(1), sticky_idle.match));
    idle->idle_timeout = seconds(60);
    std::get<route::RouteAction>(sticky_idle.action).session = std::move(idle);
    vhost.routes.push_back(sticky_idle);
    route::RouteEntry sticky_retry = Route("sticky-retry", "/retry-session", "half-dead");
    std::get<route::RouteAction>(sticky_retry.action).session =
        Session(route::SessionPersistence::Type::kHeader, "x-session", {"half-dead"},
                Duration::zero(), sticky_retry.match);
    vhost.routes.push_back(sticky_retry);

    route::RouteEntry direct;
    direct.name = "direct";
    direct.match.path = "/direct";
    direct.action = route::DirectResponseAction{201, "direct body\n"};
    vhost.routes.push_back(direct);

    route::RouteEntry redirect;
    redirect.name = "redirect";
    redirect.match.path = "/redirect";
    route::RedirectAction redirect_action;
    redirect_action.host = "example.com";
    redirect_action.path = "/moved";
    redirect_action.response_code = 302;
    redirect.action = redirect_action;
    vhost.routes.push_back(redirect);

    // Exactly "/": where asterisk-form requests (OPTIONS *) are routed.
    route::RouteEntry root = Route("root", "/", "a");
    root.match.path_kind = route::RouteMatch::PathKind::kExact;
    vhost.routes.push_back(root);

    routes.virtual_hosts.push_back(vhost);
    auto table = route::RouteTable::Create(routes);
    CHECK_OK(table);
    snapshot->route_tables["routes"] = std::shared_ptr<const route::RouteTable>(std::move(*table));
    return snapshot;
  }

  void StartProxy() {
    shard_ = registry_.CreateShard();
    auto stats = HttpStats::Create(*shard_);
    ASSERT_TRUE(stats.ok()) << stats.status();
    http_stats_ = *stats;
    clusters_ = std::make_unique<cluster::WorkerClusterManager>(loop_, random_, RealClock::Get(),
                                                                *shard_, limits_);
    http::HttpServerOptions server_options;
    server_options.max_request_body_bytes = 4 << 20;
    const net::Address any = *net::Address::Parse("127.0.0.1:0");
    server_a_ = *http::HttpServer::Create(loop_, any, server_options,
                                          [](const auto& r) { return EchoHandler('A', r); });
    server_b_ = *http::HttpServer::Create(loop_, any, server_options,
                                          [](const auto& r) { return EchoHandler('B', r); });
    streaming_ = std::make_unique<StreamingUpstream>(loop_);
    silent_ = std::make_unique<SilentUpstream>(loop_);
    // Refuses connections on 127.0.0.1 and 127.0.0.2 alike for the whole test.
    refusing_ = std::make_unique<net::testing::RefusingPort>();
    const uint16_t closed_port = refusing_->port();
    snapshot_ = BuildSnapshot(closed_port);
    clusters_->Update(snapshot_->clusters);
    context_ = std::make_unique<WorkerContext>(WorkerContext{
        {
            .loop = loop_,
            .random = random_,
            .clock = RealClock::Get(),
            .stats = *shard_,
            .access_log = &access_log_,
        },
        *clusters_,
        snapshot_,
    });
    listener_config_.name = "test";
    listener_config_.route_config_name = "routes";
    listener_config_.http.use_remote_address = true;
    net::ListenerOptions options;
    options.connection.send_buffer_bytes = 64 * 1024;
    options.connection.receive_buffer_bytes = 64 * 1024;
    auto listener = net::Listener::Create(
        loop_, any, options,
        [this](std::unique_ptr<net::Connection> connection) { Accept(std::move(connection)); });
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    proxy_port_ = listener_->address().port();
  }

  using HcmMap = std::map<HttpConnectionManager*, std::unique_ptr<HttpConnectionManager>>;

  // The test stand-in for the server's listener wiring: every connection goes to an HCM.
  void Accept(std::unique_ptr<net::Connection> connection) {
    Serve(*context_, listener_config_, downstream(), hcms_, std::move(connection));
  }

  // `connection` goes to an HCM kept in `hcms` until it closes.
  void Serve(WorkerContext& context, const config::ListenerConfig& listener,
             http::Protocol protocol, HcmMap& hcms, std::unique_ptr<net::Connection> connection) {
    HttpConnectionManager::Options options;
    options.protocol = protocol;
    auto hcm = std::make_unique<HttpConnectionManager>(
        context, http_stats_, listener, std::move(connection), net::Buffer(), options,
        [this, &hcms](HttpConnectionManager& closed) {
          auto it = hcms.find(&closed);
          if (it == hcms.end()) return;
          loop_.DeferDelete(std::move(it->second));
          hcms.erase(it);
        });
    HttpConnectionManager* raw = hcm.get();
    hcms.emplace(raw, std::move(hcm));
    raw->Start();
  }

  std::string Url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", proxy_port_, path);
  }
  std::string CurlProtocol() const {
    return h2_downstream() ? "--http2-prior-knowledge" : "--http1.1";
  }
  CurlResponse Curl(const std::string& args) {
    CommandResult r =
        RunCommand(absl::StrCat("curl -sS -i --max-time 20 ", CurlProtocol(), " ", args));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return ParseCurl(r.output);
  }

  // An in-repo client on a connection of its own to the proxy, kept until the test ends. On the
  // loop thread.
  TestClient& NewClient() {
    clients_.push_back(std::make_unique<TestClient>(
        loop_, *net::Address::Parse(absl::StrCat("127.0.0.1:", proxy_port_)), downstream()));
    return *clients_.back();
  }

  // Sends one request through a NewClient(); its response collects in the client.
  TestClient* StartRequest(const http::HeaderMap& headers, absl::string_view body = "") {
    TestClient* client = nullptr;
    RunOnLoop([&] {
      client = &NewClient();
      client->Send(headers, body);
    });
    return client;
  }

  // One request through an in-repo client; waits for its end.
  ClientResponse Fetch(http::HeaderMap headers, absl::string_view body = "") {
    TestClient* client = StartRequest(headers, body);
    WaitFor([&] { return client->done(); });
    ClientResponse response;
    RunOnLoop([&] {
      const ClientResponse& r = client->response();
      if (r.headers != nullptr) response.headers = std::make_unique<http::HeaderMap>(*r.headers);
      if (r.trailers != nullptr) response.trailers = std::make_unique<http::HeaderMap>(*r.trailers);
      response.body = r.body;
      response.reset = r.reset;
      response.complete = r.complete;
    });
    return response;
  }

  // Polls a condition evaluated on the loop thread.
  bool WaitFor(const std::function<bool()>& done, Duration timeout = seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool ok = false;
      RunOnLoop([&] { ok = done(); });
      if (ok) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  uint64_t CounterValue(absl::string_view name, const LabelSet& labels) {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  // A route table `name` whose one virtual host takes every domain to `route`.
  static std::shared_ptr<const route::RouteTable> OneRoute(const std::string& name,
                                                           const route::RouteEntry& route) {
    route::RouteConfig routes;
    routes.name = name;
    route::VirtualHostConfig vhost;
    vhost.name = "all";
    vhost.domains = {"*"};
    vhost.routes.push_back(route);
    // Exactly "/": where asterisk-form requests (OPTIONS *) are routed.
    route::RouteEntry root = Route("root", "/", "a");
    root.match.path_kind = route::RouteMatch::PathKind::kExact;
    vhost.routes.push_back(root);

    routes.virtual_hosts.push_back(vhost);
    auto table = route::RouteTable::Create(routes);
    CHECK_OK(table);
    return std::move(*table);
  }

  // A callee sidecar's inbound side on its own listener (HTTP/2, as between sidecars), with a
  // worker context of its own so that it can drain alone: every request goes to `cluster` with
  // route timeout `timeout`.
  void StartCallee(const std::string& cluster, Duration timeout) {
    auto snapshot = std::make_shared<config::Snapshot>(*snapshot_);
    route::RouteEntry route = Route("app", "/", cluster);
    std::get<route::RouteAction>(route.action).timeout = timeout;
    snapshot->route_tables["callee"] = OneRoute("callee", route);
    callee_context_ = std::make_unique<WorkerContext>(WorkerContext{
        {.loop = loop_, .random = random_, .clock = RealClock::Get(), .stats = *shard_},
        *clusters_,
        snapshot,
    });
    callee_listener_config_.name = "callee";
    callee_listener_config_.route_config_name = "callee";
    auto listener =
        net::Listener::Create(loop_, *net::Address::Parse("127.0.0.1:0"), {},
                              [this](std::unique_ptr<net::Connection> connection) {
                                Serve(*callee_context_, callee_listener_config_,
                                      http::Protocol::kHttp2, callee_hcms_, std::move(connection));
                              });
    CHECK_OK(listener);
    callee_listener_ = std::move(*listener);
  }

  // What the server does to its workers on SIGTERM, for the callee alone.
  void DrainCallee() {
    callee_context_->draining = true;
    for (auto& [raw, hcm] : callee_hcms_) hcm->Drain();
  }

  http::HeaderMap Request(absl::string_view method, absl::string_view path) const {
    return http::HeaderMap{
        {":method", method}, {":path", path}, {":scheme", "http"}, {":authority", "proxy.test"}};
  }

  event::Loop loop_;
  std::thread thread_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  HttpStats http_stats_;
  RealRandom random_{42};
  cluster::SharedClusterLimits limits_;
  std::unique_ptr<cluster::WorkerClusterManager> clusters_;
  std::unique_ptr<http::HttpServer> server_a_;
  std::unique_ptr<http::HttpServer> server_b_;
  std::unique_ptr<StreamingUpstream> streaming_;
  std::unique_ptr<SilentUpstream> silent_;
  std::unique_ptr<net::testing::RefusingPort> refusing_;  // the refusing hosts' port (SetUp)
  std::shared_ptr<const config::Snapshot> snapshot_;
  std::unique_ptr<WorkerContext> context_;
  RecordingAccessLog access_log_;
  config::ListenerConfig listener_config_;
  std::unique_ptr<net::Listener> listener_;
  HcmMap hcms_;
  std::vector<std::unique_ptr<TestClient>> clients_;
  // StartCallee().
  std::unique_ptr<WorkerContext> callee_context_;
  config::ListenerConfig callee_listener_config_;
  std::unique_ptr<net::Listener> callee_listener_;
  HcmMap callee_hcms_;
  std::unique_ptr<CuttableRelay> relay_;
  uint16_t proxy_port_ = 0;
};

TEST_P(ProxyTest, GetIsProxiedWithForwardingHeaders) {
  CurlResponse r = Curl(absl::StrCat("-H 'x-remove-me: 1' ", Url("/echo/get?q=1")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "A");
  EXPECT_EQ(Header(r, "x-seen-path"), "/echo/get?q=1");
  EXPECT_EQ(Header(r, "x-seen-protocol"), h2_upstream() ? "HTTP/2" : "HTTP/1.1");
  EXPECT_EQ(Header(r, "x-seen-x-forwarded-for"), "127.0.0.1");
  EXPECT_EQ(Header(r, "x-seen-x-forwarded-proto"), "http");
  EXPECT_EQ(Header(r, "x-seen-x-request-id").size(), 36u) << Header(r, "x-seen-x-request-id");
  EXPECT_EQ(Header(r, "x-seen-connection"), "<none>");
  EXPECT_EQ(Header(r, "x-seen-x-remove-me"), "1");  // only the mutate route removes it

  // A request id the client sent is kept.
  r = Curl(absl::StrCat("-H 'x-request-id: abc' ", Url("/echo/id")));
  EXPECT_EQ(Header(r, "x-seen-x-request-id"), "abc");

  const std::string log = access_log_.ForPath("/echo/id");
  EXPECT_TRUE(absl::StrContains(log, "\"response_code\":200")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"response_flags\":\"-\"")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"request_id\":\"abc\"")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"upstream_cluster\":\"a\"")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"route_name\":\"echo\"")) << log;
  EXPECT_TRUE(absl::StrContains(
      log, absl::StrCat("\"upstream_host\":\"", server_a_->address().ToString(), "\"")))
      << log;
  EXPECT_EQ(
      CounterValue("meshlet_http_downstream_rq_total",
                   {{"protocol", h2_downstream() ? "http2" : "http1.1"}, {"code_class", "2xx"}}),
      2u);
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_total", {{"cluster", "a"}, {"code_class", "2xx"}}),
            2u);
}

// OPTIONS * (asterisk-form) asks about the server as a whole: routed as "/", and sent upstream
// as asterisk-form again (":path: *" over HTTP/2), whatever the protocols on either side.
TEST_P(ProxyTest, OptionsAsteriskIsRoutedAsTheRootAndForwardedAsIs) {
  CurlResponse r = Curl(absl::StrCat("-X OPTIONS --request-target '*' ", Url("/")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Header(r, "x-upstream"), "A");
  EXPECT_EQ(Header(r, "x-seen-path"), "*");
}

TEST_P(ProxyTest, PostOneMegabyteBodyEchoesByteIdentical) {
  const std::string dir = ::testing::TempDir();
  const std::string in = absl::StrCat(dir, "/post-in-", getpid());
  const std::string out = absl::StrCat(dir, "/post-out-", getpid());
  std::string body(1 << 20, '\0');
  RealRandom random(7);
  for (char& c : body) c = static_cast<char>(random.Next());
  {
    std::ofstream f(in, std::ios::binary);
    f.write(body.data(), static_cast<std::streamsize>(body.size()));
  }
  CommandResult r =
      RunCommand(absl::StrCat("curl -sS --max-time 20 ", CurlProtocol(), " --data-binary @", in,
                              " -o ", out, " -w '%{http_code}' ", Url("/echo/post")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "200");
  const std::string echoed = ReadFile(out).value();
  EXPECT_EQ(echoed.size(), body.size());
  EXPECT_TRUE(echoed == body);
  unlink(in.c_str());
  unlink(out.c_str());

  // The same through the in-repo client, and through the streaming (not buffering) upstream.
  ClientResponse streamed = Fetch(Request("POST", "/stream/echo"), body);
  EXPECT_EQ(streamed.status(), 200);
  EXPECT_TRUE(streamed.body == body) << streamed.body.size();
}

TEST_P(ProxyTest, ResponseTrailersAreForwarded) {
  ClientResponse r = Fetch(Request("GET", "/stream/trailers"));
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.body, "hello");
  ASSERT_NE(r.trailers, nullptr);
  EXPECT_EQ(r.trailers->Get("x-trailer").value_or(""), "done");
  EXPECT_EQ(r.trailers->Get("grpc-status").value_or(""), "0");
}

TEST_P(ProxyTest, HeaderMutationsAndPrefixRewrite) {
  CurlResponse r =
      Curl(absl::StrCat("-H 'x-remove-me: 1' -H 'x-added: client' ", Url("/mutate/thing?x=y")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Header(r, "x-seen-x-added"), "route");
  EXPECT_EQ(Header(r, "x-seen-x-remove-me"), "<none>");
  EXPECT_EQ(Header(r, "x-response-added"), "yes");
  EXPECT_EQ(Header(r, "x-seen-keep-alive"), "");  // removed from the response by the route
  EXPECT_EQ(Header(r, "x-seen-path"), "/rewritten/thing?x=y");
  // The access log shows the path the client asked for.
  EXPECT_FALSE(access_log_.ForPath("/mutate/thing?x=y").empty());
}

// 200 requests on one connection (curl 7.88.1 cannot reuse a prior-knowledge HTTP/2 connection,
// curl issue 10634, so the in-repo client sends them).
TEST_P(ProxyTest, WeightedClustersSplitTraffic) {
  TestClient* client = nullptr;
  int a = 0, b = 0;
  for (int i = 0; i < 200; ++i) {
    RunOnLoop([&] {
      if (client == nullptr) client = &NewClient();
      client->Send(Request("GET", "/split"), "");
    });
    ASSERT_TRUE(WaitFor([&] { return client->done(); }));
    RunOnLoop([&] {
      ASSERT_TRUE(client->response().complete) << i;
      EXPECT_EQ(client->response().status(), 200) << i;
      if (client->response().body == "A") ++a;
      if (client->response().body == "B") ++b;
    });
  }
  EXPECT_EQ(a + b, 200);
  // 80/20 by weight: the binomial standard deviation over 200 draws is about 5.7.
  EXPECT_NEAR(a, 160, 30);
  // Both clusters' pools reused their upstream connections.
  EXPECT_LE(CounterValue("meshlet_upstream_cx_total", {{"cluster", "a"}}), 2u);
  EXPECT_LE(CounterValue("meshlet_upstream_cx_total", {{"cluster", "b"}}), 2u);
}

// One session: the first response sets the cookie (Path of the route's prefix, HttpOnly), and
// every request that brings it back reaches the same backend across a 50/50 split, without a new
// cookie.
TEST_P(ProxyTest, SessionCookieSticksAcrossWeightedClusters) {
  ClientResponse first = Fetch(Request("GET", "/sticky/x"));
  ASSERT_EQ(first.status(), 200);
  const std::string backend = first.body;
  ASSERT_TRUE(backend == "A" || backend == "B") << backend;
  const std::string set_cookie(first.headers->Get("set-cookie").value_or(""));
  const std::string token = SessionTokenFor(
      backend == "A" ? "a" : "b", backend == "A" ? server_a_->address() : server_b_->address(),
      Duration::zero());
  // The token's times are this second's: compare all but them.
  ASSERT_TRUE(absl::StartsWith(set_cookie, "Sticky=")) << set_cookie;
  EXPECT_TRUE(absl::EndsWith(set_cookie, "; Path=/sticky; HttpOnly")) << set_cookie;
  const std::string value = set_cookie.substr(7, route::kSessionTokenLength);
  std::optional<route::SessionToken> issued = route::DecodeSessionToken(value);
  ASSERT_TRUE(issued.has_value()) << value;
  EXPECT_EQ(issued->cluster_key, route::DecodeSessionToken(token)->cluster_key);
  EXPECT_EQ(issued->host_key, route::DecodeSessionToken(token)->host_key);

  TestClient* client = nullptr;
  constexpr int kRequests = 40;
  int same = 0;
  int cookies_set = 0;
  for (int i = 0; i < kRequests; ++i) {
    http::HeaderMap request = Request("GET", "/sticky/y");
    request.Add("cookie", absl::StrCat("theme=dark; Sticky=", value));
    RunOnLoop([&] {
      if (client == nullptr) client = &NewClient();
      client->Send(request, "");
    });
    ASSERT_TRUE(WaitFor([&] { return client->done(); }));
    RunOnLoop([&] {
      ASSERT_TRUE(client->response().complete) << i;
      EXPECT_EQ(client->response().status(), 200) << i;
      if (client->response().body == backend) ++same;
      if (client->response().headers->Has("set-cookie")) ++cookies_set;
    });
  }
  EXPECT_EQ(same, kRequests);
  EXPECT_EQ(cookies_set, 0);
  const std::string cluster = backend == "A" ? "a" : "b";
  EXPECT_EQ(
      CounterValue("meshlet_upstream_rq_session_total", {{"cluster", cluster}, {"result", "hit"}}),
      static_cast<uint64_t>(kRequests));
}

// A token past the route's absolute timeout, or one that is not a token at all, gets a balanced
// pick and a new cookie; both are counted.
TEST_P(ProxyTest, ExpiredOrGarbageSessionTokenGetsAFreshPick) {
  http::HeaderMap expired = Request("GET", "/sticky");
  expired.Add("cookie", absl::StrCat("Sticky=", SessionTokenFor("a", server_a_->address(),
                                                                std::chrono::hours(2))));
  ClientResponse r = Fetch(expired);
  EXPECT_EQ(r.status(), 200);
  std::string set_cookie(r.headers->Get("set-cookie").value_or(""));
  EXPECT_TRUE(absl::StartsWith(set_cookie, "Sticky=")) << set_cookie;
  const std::string cluster = r.body == "A" ? "a" : "b";
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_session_total",
                         {{"cluster", cluster}, {"result", "expired"}}),
            1u);

  for (const char* garbage : {"garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""}) {
    http::HeaderMap request = Request("GET", "/sticky");
    request.Add("cookie", absl::StrCat("Sticky=", garbage));
    r = Fetch(request);
    EXPECT_EQ(r.status(), 200) << garbage;
    set_cookie = std::string(r.headers->Get("set-cookie").value_or(""));
    EXPECT_TRUE(absl::StartsWith(set_cookie, "Sticky=")) << garbage << ": " << set_cookie;
    EXPECT_NE(set_cookie.substr(7, route::kSessionTokenLength), garbage);
  }
  EXPECT_EQ(
      CounterValue("meshlet_upstream_rq_session_total", {{"cluster", "a"}, {"result", "invalid"}}) +
          CounterValue("meshlet_upstream_rq_session_total",
                       {{"cluster", "b"}, {"result", "invalid"}}),
      3u);
}

// A header session within one cluster of two hosts (round robin): the token holds the request
// on its host; once that host leaves the cluster, the next request is balanced and the response
// names the host it went to.
TEST_P(ProxyTest, SessionHeaderFollowsItsHostUntilTheHostIsRemoved) {
  const std::string token_b = SessionTokenFor("ab", server_b_->address(), Duration::zero());
  for (int i = 0; i < 6; ++i) {
    http::HeaderMap request = Request("GET", "/header-session");
    request.Add("x-session", token_b);
    ClientResponse r = Fetch(request);
    EXPECT_EQ(r.body, "B") << i;
    EXPECT_FALSE(r.headers->Has("x-session")) << i;
  }
  // Without a token, round robin visits both, and each response names its host.
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    ClientResponse r = Fetch(Request("GET", "/header-session"));
    seen.insert(r.body);
    const net::Address host = r.body == "A" ? server_a_->address() : server_b_->address();
    std::optional<route::SessionToken> token =
        route::DecodeSessionToken(r.headers->Get("x-session").value_or(""));
    ASSERT_TRUE(token.has_value());
    EXPECT_EQ(token->host_key, cluster::SessionKey(host.ToString()));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"A", "B"}));

  // B leaves the cluster.
  RunOnLoop([&] {
    cluster::ClusterSet clusters = snapshot_->clusters;
    clusters["ab"] = Cluster("ab", {server_a_->address()});
    clusters_->Update(clusters);
  });
  http::HeaderMap request = Request("GET", "/header-session");
  request.Add("x-session", token_b);
  ClientResponse r = Fetch(request);
  EXPECT_EQ(r.body, "A");
  std::optional<route::SessionToken> moved =
      route::DecodeSessionToken(r.headers->Get("x-session").value_or(""));
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->host_key, cluster::SessionKey(server_a_->address().ToString()));
  EXPECT_EQ(
      CounterValue("meshlet_upstream_rq_session_total", {{"cluster", "ab"}, {"result", "hit"}}),
      6u);
  EXPECT_EQ(
      CounterValue("meshlet_upstream_rq_session_total", {{"cluster", "ab"}, {"result", "miss"}}),
      1u);
}

// With an idle timeout, every response renews the token (same session start, new last use); a
// token idle for longer than that is expired.
TEST_P(ProxyTest, IdleTimeoutRenewsTheTokenOnEveryResponse) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  const uint64_t cluster_key = cluster::SessionKey("ab");
  const uint64_t b_key = cluster::SessionKey(server_b_->address().ToString());
  http::HeaderMap request = Request("GET", "/idle-session");
  request.Add("x-session", route::EncodeSessionToken({cluster_key, b_key, now - 100, now - 50}));
  ClientResponse r = Fetch(request);
  EXPECT_EQ(r.body, "B");
  std::optional<route::SessionToken> renewed =
      route::DecodeSessionToken(r.headers->Get("x-session").value_or(""));
  ASSERT_TRUE(renewed.has_value());
  EXPECT_EQ(renewed->host_key, b_key);
  EXPECT_EQ(renewed->created_s, now - 100);
  EXPECT_GE(renewed->last_used_s, now);

  http::HeaderMap idle = Request("GET", "/idle-session");
  idle.Add("x-session", route::EncodeSessionToken({cluster_key, b_key, now - 100, now - 61}));
  r = Fetch(idle);
  std::optional<route::SessionToken> fresh =
      route::DecodeSessionToken(r.headers->Get("x-session").value_or(""));
  ASSERT_TRUE(fresh.has_value());
  EXPECT_GE(fresh->created_s, now);  // a new session
  EXPECT_EQ(
      CounterValue("meshlet_upstream_rq_session_total", {{"cluster", "ab"}, {"result", "expired"}}),
      1u);
}

// The token's host refuses connections: the retry goes to the other host, whose token the
// response carries.
TEST_P(ProxyTest, RetryAfterAFailedStickyHostMovesTheSession) {
  const net::Address dead = snapshot_->clusters.at("half-dead")->endpoints[0].address;
  http::HeaderMap request = Request("GET", "/retry-session");
  request.Add("x-session", SessionTokenFor("half-dead", dead, Duration::zero()));
  ClientResponse r = Fetch(request);
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.body, "A");
  std::optional<route::SessionToken> moved =
      route::DecodeSessionToken(r.headers->Get("x-session").value_or(""));
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->host_key, cluster::SessionKey(server_a_->address().ToString()));
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_retry_total",
                         {{"cluster", "half-dead"}, {"reason", "connect_failure"}}),
            1u);
}

TEST_P(ProxyTest, DirectResponseAndRedirect) {
  CurlResponse r = Curl(Url("/direct"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "direct body\n");
  r = Curl(Url("/redirect/x?y=1"));
  EXPECT_EQ(r.status, 302);
  // A new host without a scheme or port keeps the port the request came to (the listener's),
  // as Gateway API's RequestRedirect says.
  EXPECT_EQ(Header(r, "location"), absl::StrCat("http://example.com:", proxy_port_, "/moved?y=1"));
}

TEST_P(ProxyTest, LocalReplies) {
  CurlResponse r = Curl(Url("/nothing"));
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/nothing"), "\"response_flags\":\"NR\""));

  r = Curl(Url("/empty"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "no healthy upstream\n");
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/empty"), "\"response_flags\":\"UH\""));

  // The default retry policy tries the dead hosts three times (URX: retries exhausted).
  r = Curl(Url("/dead"));
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/dead"), "\"response_flags\":\"UF,URX\""));
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_retry_total",
                         {{"cluster", "dead"}, {"reason", "connect_failure"}}),
            2u);

  r = Curl(Url("/unknown"));
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/unknown"), "\"response_flags\":\"NC\""));

  r = Curl(Url("/full"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Header(r, "x-meshlet-overloaded"), "true");
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/full"), "\"response_flags\":\"UO\""));
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_overflow_total", {{"cluster", "full"}}), 1u);

  const auto start = std::chrono::steady_clock::now();
  r = Curl(Url("/slow"));
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(250));
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/slow"), "\"response_flags\":\"UT\""));

  EXPECT_EQ(CounterValue("meshlet_http_response_flags_total", {{"flag", "UF"}}), 1u);
  EXPECT_EQ(CounterValue("meshlet_http_response_flags_total", {{"flag", "UT"}}), 1u);
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_connect_fail_total", {{"cluster", "dead"}}), 1u);
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_timeout_total", {{"cluster", "silent"}}), 1u);
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_no_healthy_host_total", {{"cluster", "empty"}}), 1u);
}

TEST_P(ProxyTest, GrpcLocalRepliesAreTrailersOnly) {
  struct Case {
    const char* path;
    int grpc_status;
  };
  for (const Case& c :
       {Case{"/dead/svc.Method", 14}, Case{"/empty/svc.Method", 14}, Case{"/slow/svc.Method", 4},
        Case{"/nothing/svc.Method", 12}, Case{"/full/svc.Method", 14}}) {
    SCOPED_TRACE(c.path);
    http::HeaderMap request = Request("POST", c.path);
    request.Add("content-type", "application/grpc");
    request.Add("te", "trailers");
    ClientResponse r = Fetch(std::move(request), absl::string_view("\0\0\0\0\0", 5));
    ASSERT_TRUE(r.complete);
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.header("grpc-status"), absl::StrCat(c.grpc_status));
    EXPECT_EQ(r.header("content-type"), "application/grpc");
    EXPECT_FALSE(r.header("grpc-message").empty());
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.trailers, nullptr);
  }
}

TEST_P(ProxyTest, DrainEndsConnectionsAfterTheirRequests) {
  TestClient* client = StartRequest(Request("GET", "/echo/before-drain"));
  ASSERT_TRUE(WaitFor([&] { return client->done(); }));
  RunOnLoop([&] {
    EXPECT_EQ(client->response().status(), 200);
    EXPECT_FALSE(client->closed());
    for (auto& [raw, hcm] : hcms_) hcm->Drain();
  });
  ASSERT_TRUE(WaitFor([&] { return client->closed(); }));
  RunOnLoop([&] {
    // HTTP/2 announces it with GOAWAY; HTTP/1 just closes the idle connection.
    if (h2_downstream()) {
      EXPECT_TRUE(client->goaway());
    }
  });
  // HTTP/2 half-closes and waits for the client's close (kFlushThenAwaitPeer): the client may
  // be closed a turn before the sidecar has read its FIN and let the connection go.
  EXPECT_TRUE(WaitFor([&] { return hcms_.empty(); }, seconds(5)));
  EXPECT_EQ(CounterValue("meshlet_http_downstream_cx_drain_close_total", {}), 1u);
}

// A request in flight when the drain starts, whose upstream refuses every connect (the app went
// away with the pod): it gets its local reply (503 UF,URX) on the draining connection, and the
// connection then ends.
TEST_P(ProxyTest, DrainAnswersARequestInFlightWithItsLocalReply) {
  TestClient* client = StartRequest(Request("GET", "/dead/in-flight"));
  ASSERT_TRUE(
      WaitFor([&] { return hcms_.size() == 1 && hcms_.begin()->second->active_streams() == 1; }));
  RunOnLoop([&] {
    for (auto& [raw, hcm] : hcms_) hcm->Drain();
  });
  ASSERT_TRUE(WaitFor([&] { return client->done(); }, seconds(5)));
  RunOnLoop([&] {
    EXPECT_TRUE(client->response().complete);
    EXPECT_EQ(client->response().status(), 503);
    EXPECT_EQ(client->response().body, "upstream connect error\n");
    // Told to go: HTTP/2 GOAWAY, HTTP/1.1 `Connection: close` on the response.
    EXPECT_TRUE(client->goaway());
  });
  EXPECT_TRUE(
      absl::StrContains(access_log_.ForPath("/dead/in-flight"), "\"response_flags\":\"UF,URX\""));
  ASSERT_TRUE(WaitFor([&] { return client->closed(); }, seconds(5)));
  EXPECT_TRUE(
      WaitFor([&] { return hcms_.empty(); }, seconds(5)));  // as above: HTTP/2 awaits the peer
}

// A callee sidecar drains, then its pod's network is torn down under the caller's connection
// while a request it accepted is still in progress: its answer (a 504 here, 300 ms in) and its
// close never reach the caller. The caller had the callee's GOAWAY, so it watches that connection
// (a PING after 1 s without a frame, 1 s for the ACK), closes it, and retries the request on the
// cluster's other endpoint: the client gets its answer after about 2 s instead of waiting for
// its own deadline.
TEST_P(ProxyTest, CallerRetriesElsewhereWhenADrainingCalleeVanishes) {
  if (!h2_upstream()) {
    GTEST_SKIP() << "HTTP/1.1 has no PING: a callee that vanishes mid-response is noticed only "
                    "by the route or per-try timeout";
  }
  CuttableRelay* relay = nullptr;
  RunOnLoop([&] {
    StartCallee("silent", milliseconds(300));
    relay_ = std::make_unique<CuttableRelay>(loop_, callee_listener_->address());
    relay = relay_.get();
    auto snapshot = std::make_shared<config::Snapshot>(*snapshot_);
    // Round robin from the first endpoint: the request meets the callee first.
    snapshot->clusters["via-relay"] =
        Cluster("via-relay", {relay->address(), server_a_->address()});
    snapshot->route_tables["caller"] = OneRoute("caller", Route("via-relay", "/", "via-relay"));
    clusters_->Update(snapshot->clusters);
    context_->snapshot = snapshot;
    listener_config_.route_config_name = "caller";
  });
  TestClient* client = StartRequest(Request("GET", "/vanish"));
  ASSERT_TRUE(WaitFor([&] {
    return callee_hcms_.size() == 1 && callee_hcms_.begin()->second->active_streams() == 1;
  }));
  // The drain's GOAWAY reaches the caller (whose pool then retires the connection).
  RunOnLoop([&] { DrainCallee(); });
  ASSERT_TRUE(WaitFor([&] {
    cluster::Cluster* cluster = clusters_->Find("via-relay");
    cluster::Host& callee = *cluster->host_set().hosts()[0];
    return cluster->PoolFor(callee, downstream()).stats().cx_goaway == 1;
  }));
  const auto cut = std::chrono::steady_clock::now();
  RunOnLoop([&] { relay->Cut(); });
  ASSERT_TRUE(WaitFor([&] { return client->done(); }, seconds(4)))
      << "the request still waits for the vanished callee";
  const auto answered = std::chrono::steady_clock::now() - cut;
  RunOnLoop([&] {
    EXPECT_TRUE(client->response().complete);
    EXPECT_EQ(client->response().status(), 200);
    EXPECT_EQ(client->response().header("x-upstream"), "A");
  });
  EXPECT_GE(answered, milliseconds(900));
  EXPECT_EQ(CounterValue("meshlet_upstream_rq_retry_total",
                         {{"cluster", "via-relay"}, {"reason", "reset"}}),
            1u);
}

TEST_P(ProxyTest, ClientResetReleasesTheUpstreamRequest) {
  TestClient* client = StartRequest(Request("GET", "/slow/reset"));
  ASSERT_TRUE(WaitFor([&] {
    return clusters_->Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest) == 1;
  }));
  RunOnLoop([&] { client->Reset(); });
  ASSERT_TRUE(WaitFor([&] { return !access_log_.ForPath("/slow/reset").empty(); }));
  EXPECT_TRUE(absl::StrContains(access_log_.ForPath("/slow/reset"), "\"response_flags\":\"DC\""))
      << access_log_.ForPath("/slow/reset");
  RunOnLoop([&] {
    EXPECT_EQ(clusters_->Find("silent")->thresholds().Active(resilience::ResourceKind::kRequest),
              0u);
  });
}

// A client that stops reading while a 64 MiB response streams: the proxy stops reading the
// upstream, so the upstream stops producing and the proxy's buffers stay small.
TEST_P(ProxyTest, SlowReaderBoundsProxyMemory) {
  TestClient* client = nullptr;
  RunOnLoop([&] {
    client = &NewClient();
    client->set_count_only(true);
    client->SetReadDisabled(true);
    client->Send(Request("GET", absl::StrCat("/stream/big?bytes=", kBigResponse)), "");
  });
  // Wait for the upstream to stall: no progress for a while.
  uint64_t last = 0;
  int stable = 0;
  for (int i = 0; i < 200 && stable < 10; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    const uint64_t now = streaming_->big_bytes_written();
    stable = (now == last && now > 0) ? stable + 1 : 0;
    last = now;
  }
  EXPECT_EQ(stable, 10) << "the upstream never stalled; wrote " << last;
  EXPECT_LT(last, 24ull << 20) << "the upstream wrote " << last << " bytes to a stalled client";
  size_t proxy_buffered = 0;
  RunOnLoop([&] {
    for (auto& [raw, hcm] : hcms_) proxy_buffered += hcm->connection().buffered_write_bytes();
  });
  // The downstream connection's write buffer stops near its high watermark (1 MiB).
  EXPECT_LE(proxy_buffered, 3u << 20);

  RunOnLoop([&] { client->SetReadDisabled(false); });
  ASSERT_TRUE(WaitFor([&] { return client->done(); }, seconds(40)));
  uint64_t received = 0;
  bool complete = false;
  RunOnLoop([&] {
    received = client->body_bytes();
    complete = client->response().complete;
  });
  EXPECT_TRUE(complete);
  EXPECT_EQ(received, kBigResponse);
}

INSTANTIATE_TEST_SUITE_P(
    ProtocolPairs, ProxyTest,
    ::testing::Values(ProtocolPair{http::Protocol::kHttp11, cluster::UpstreamProtocol::kHttp1},
                      ProtocolPair{http::Protocol::kHttp11, cluster::UpstreamProtocol::kHttp2},
                      ProtocolPair{http::Protocol::kHttp2, cluster::UpstreamProtocol::kHttp1},
                      ProtocolPair{http::Protocol::kHttp2, cluster::UpstreamProtocol::kHttp2}),
    PairName);

}  // namespace
}  // namespace meshlet::sidecar

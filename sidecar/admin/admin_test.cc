#include "sidecar/admin/admin.h"

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/stats/exposition.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::admin {
namespace {

class FakeBackend : public AdminBackend {
 public:
  bool ready() const override { return ready_; }
  bool draining() const override { return draining_; }
  const StatsRegistry& stats() const override { return registry_; }
  std::shared_ptr<const config::Snapshot> snapshot() const override { return snapshot_; }
  std::string ClustersJson() override { return "{\"clusters\":[]}"; }
  std::string ListenersJson() override { return "{\"listeners\":[]}"; }
  std::string DecisionsJson(const std::string& request_id, const std::string& trace_id) override {
    decisions_asked_ = request_id + "|" + trace_id;
    return "{\"workers_answered\":1,\"records\":[]}";
  }
  void StartDrain() override { draining_ = true; }
  void Quit() override { ++quits_; }

  StatsRegistry registry_;
  std::shared_ptr<config::Snapshot> snapshot_;
  bool ready_ = true;
  bool draining_ = false;
  int quits_ = 0;
  std::string decisions_asked_;
};

class AdminTest : public ::testing::Test {
 protected:
  http::ServerResponse Call(absl::string_view method, absl::string_view path) {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    request.headers.Add(":authority", "localhost");
    return handler_.Handle(request);
  }

  void TearDown() override { SetLogLevel(LogLevel::kInfo); }

  FakeBackend backend_;
  AdminHandler handler_{backend_, backend_.registry_.shared_shard()};
};

TEST_F(AdminTest, ReadyFollowsState) {
  EXPECT_EQ(Call("GET", "/ready").status, 200);
  backend_.ready_ = false;
  EXPECT_EQ(Call("GET", "/ready").status, 503);
  backend_.ready_ = true;
  backend_.draining_ = true;
  http::ServerResponse response = Call("GET", "/ready");
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, "DRAINING\n");
}

TEST_F(AdminTest, StatsFormatsAndFilter) {
  absl::StatusOr<Counter> things =
      backend_.registry_.shared_shard().RegisterCounter("meshlet_test_things_total", "Things.");
  ASSERT_TRUE(things.ok());
  things->Inc(3);

  http::ServerResponse text = Call("GET", "/stats?filter=test_things");
  EXPECT_EQ(text.status, 200);
  EXPECT_EQ(text.body, "meshlet_test_things_total: 3\n");
  EXPECT_EQ(Call("GET", "/stats?filter=nothing_matches").body, "");

  http::ServerResponse json = Call("GET", "/stats?format=json&filter=test_things");
  EXPECT_EQ(json.status, 200);
  EXPECT_NE(json.body.find("\"meshlet_test_things_total\""), std::string::npos);

  http::ServerResponse prometheus = Call("GET", "/stats/prometheus");
  EXPECT_EQ(prometheus.status, 200);
  EXPECT_EQ(prometheus.headers.Get("content-type"), kPrometheusContentType);
  EXPECT_NE(prometheus.body.find("# TYPE meshlet_test_things_total counter\n"
                                 "meshlet_test_things_total 3\n"),
            std::string::npos);
  // The admin API counts its own requests.
  EXPECT_NE(prometheus.body.find("meshlet_admin_requests_total 4"), std::string::npos);
  // The process metrics follow the registry's series.
  for (const char* family : {"process_cpu_seconds_total counter", "process_open_fds gauge",
                             "process_resident_memory_bytes gauge"}) {
    EXPECT_NE(prometheus.body.find(absl::StrCat("# TYPE ", family, "\n")), std::string::npos)
        << family;
  }
  EXPECT_NE(Call("GET", "/stats?format=prometheus").body.find("# TYPE process_max_fds gauge\n"),
            std::string::npos);
}

TEST_F(AdminTest, ConfigDump) {
  EXPECT_EQ(Call("GET", "/config_dump").status, 503);  // no snapshot yet
  backend_.snapshot_ = std::make_shared<config::Snapshot>();
  backend_.snapshot_->config_dump_json = "{\"listeners\":[]}";
  http::ServerResponse response = Call("GET", "/config_dump");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "{\"listeners\":[]}");
}

TEST_F(AdminTest, ClustersAndListenersComeFromTheBackend) {
  EXPECT_EQ(Call("GET", "/clusters").body, "{\"clusters\":[]}");
  EXPECT_EQ(Call("GET", "/listeners").body, "{\"listeners\":[]}");
  // No workload certificate in this backend.
  EXPECT_EQ(Call("GET", "/certs").body, "{\"workload_certificate\":null}");
  EXPECT_EQ(Call("POST", "/certs").status, 405);
  EXPECT_EQ(Call("GET", "/hand_over").body,
            "{\"socket\":null,\"taken_over\":null,\"handed_over\":null}");
}

TEST_F(AdminTest, DecisionsSelectByRequestOrTraceId) {
  http::ServerResponse all = Call("GET", "/debug/decisions");
  EXPECT_EQ(all.status, 200);
  EXPECT_EQ(all.body, "{\"workers_answered\":1,\"records\":[]}");
  EXPECT_EQ(backend_.decisions_asked_, "|");
  EXPECT_EQ(Call("GET", "/debug/decisions?request_id=abc-1").status, 200);
  EXPECT_EQ(backend_.decisions_asked_, "abc-1|");
  EXPECT_EQ(Call("GET", "/debug/decisions?trace_id=0AF7651916CD43DD8448EB211C80319C").status, 200);
  EXPECT_EQ(backend_.decisions_asked_, "|0af7651916cd43dd8448eb211c80319c");
  http::ServerResponse bad = Call("GET", "/debug/decisions?trace_id=xyz");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body, "trace_id must be 32 hex digits\n");
}

TEST_F(AdminTest, LoggingShowsAndChangesTheLevel) {
  SetLogLevel(LogLevel::kInfo);
  EXPECT_EQ(Call("GET", "/logging").body, "level: info\n");
  http::ServerResponse response = Call("POST", "/logging?level=debug");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "level: debug\n");
  EXPECT_EQ(GetLogLevel(), LogLevel::kDebug);
  EXPECT_EQ(Call("POST", "/logging?level=chatty").status, 400);
  EXPECT_EQ(Call("POST", "/logging").status, 400);
  EXPECT_EQ(GetLogLevel(), LogLevel::kDebug);
}

TEST_F(AdminTest, MutatingEndpointsRefuseGet) {
  for (absl::string_view path : {"/drain", "/quitquitquit"}) {
    http::ServerResponse response = Call("GET", path);
    EXPECT_EQ(response.status, 405) << path;
    EXPECT_EQ(response.headers.Get("allow"), "POST");
  }
  EXPECT_EQ(Call("PUT", "/logging").status, 405);
  EXPECT_EQ(Call("POST", "/stats").status, 405);
  EXPECT_FALSE(backend_.draining_);
  EXPECT_EQ(backend_.quits_, 0);
}

TEST_F(AdminTest, DrainAndQuit) {
  EXPECT_EQ(Call("POST", "/drain").status, 200);
  EXPECT_TRUE(backend_.draining_);
  EXPECT_EQ(Call("POST", "/quitquitquit").status, 200);
  EXPECT_EQ(backend_.quits_, 1);
}

TEST_F(AdminTest, PostsFromAWebPageOfAnotherOriginAreRefused) {
  auto post = [&](absl::string_view path,
                  std::vector<std::pair<absl::string_view, absl::string_view>> fields) {
    http::ServerRequest request;
    request.headers.Add(":method", "POST");
    request.headers.Add(":path", path);
    request.headers.Add(":authority", "127.0.0.1:15000");
    for (const auto& [name, value] : fields) request.headers.Add(name, value);
    return handler_.Handle(request);
  };
  for (absl::string_view path : {"/quitquitquit", "/drain", "/logging?level=debug"}) {
    for (const auto& fields :
         std::vector<std::vector<std::pair<absl::string_view, absl::string_view>>>{
             {{"origin", "https://evil.example"}},
             {{"origin", "null"}},
             {{"origin", "http://127.0.0.1:15001"}},
             {{"sec-fetch-site", "cross-site"}},
             {{"sec-fetch-site", "same-site"}, {"origin", "http://127.0.0.1:15000"}},
         }) {
      http::ServerResponse response = post(path, fields);
      EXPECT_EQ(response.status, 403) << path << " " << fields[0].second;
      EXPECT_NE(response.body.find("another origin"), std::string::npos) << response.body;
    }
  }
  EXPECT_FALSE(backend_.draining_);
  EXPECT_EQ(backend_.quits_, 0);
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
  const StatsSnapshot snapshot = backend_.registry_.Snapshot();
  ASSERT_NE(snapshot.Find("meshlet_admin_cross_site_refused_total"), nullptr);
  EXPECT_EQ(snapshot.Find("meshlet_admin_cross_site_refused_total")->counter, 15u);
  // The admin's own page, a browser typing the URL, and clients that are not browsers.
  EXPECT_EQ(post("/logging?level=debug", {{"origin", "http://127.0.0.1:15000"}}).status, 200);
  EXPECT_EQ(post("/logging?level=info", {{"sec-fetch-site", "none"}}).status, 200);
  EXPECT_EQ(post("/drain", {}).status, 200);
  EXPECT_TRUE(backend_.draining_);
}

TEST_F(AdminTest, TheAdminPortAnswersIpAddressesLocalhostAndListedNamesOnly) {
  AdminHandler handler(backend_, backend_.registry_.shared_shard(), {"Sidecar.Local"});
  auto get = [&](absl::string_view authority, AdminHandler::Port port) {
    http::ServerRequest request;
    request.headers.Add(":method", "GET");
    request.headers.Add(":path", "/certs");
    if (!authority.empty()) request.headers.Add(":authority", authority);
    return handler.Handle(request, port);
  };
  for (absl::string_view ok :
       {"127.0.0.1:15000", "127.0.0.1", "[::1]:15000", "[::1]", "localhost:15000", "LOCALHOST",
        "localhost.:15000", "10.1.2.3:15000", "sidecar.local:15000", "SIDECAR.local",
        "sidecar.local.", "[::ffff:7f00:1]:15000", ""}) {
    EXPECT_EQ(get(ok, AdminHandler::Port::kAdmin).status, 200) << ok;
  }
  // A page on a name the attacker controls, once that name resolves to 127.0.0.1.
  for (absl::string_view refused :
       {"rebind.example:15000", "rebind.example", "localhost.rebind.example", "127.0.0.1.nip.io",
        "[::1", "sidecar.local.example:15000", "1.2.3:15000", ".", ".:15000"}) {
    http::ServerResponse response = get(refused, AdminHandler::Port::kAdmin);
    EXPECT_EQ(response.status, 403) << refused;
    EXPECT_NE(response.body.find("not for "), std::string::npos) << response.body;
  }
  const StatsSnapshot snapshot = backend_.registry_.Snapshot();
  ASSERT_NE(snapshot.Find("meshlet_admin_host_refused_total"), nullptr);
  EXPECT_EQ(snapshot.Find("meshlet_admin_host_refused_total")->counter, 9u);
  // HTTP/2 with a host field instead of :authority.
  http::ServerRequest h2;
  h2.headers.Add(":method", "GET");
  h2.headers.Add(":path", "/certs");
  h2.headers.Add("host", "rebind.example");
  EXPECT_EQ(handler.Handle(h2).status, 403);
  // The metrics port is scraped under any name.
  EXPECT_EQ(get("web-1.pods:15020", AdminHandler::Port::kMetrics).status, 200);
}

TEST_F(AdminTest, UnknownPathListsEndpoints) {
  http::ServerResponse response = Call("GET", "/statz");
  EXPECT_EQ(response.status, 404);
  for (absl::string_view path :
       {"/ready", "/stats", "/stats/prometheus", "/config_dump", "/clusters", "/listeners",
        "/certs", "/logging", "/drain", "/quitquitquit"}) {
    EXPECT_NE(response.body.find(std::string(path)), std::string::npos) << path;
  }
  EXPECT_EQ(Call("GET", "/").status, 200);
}

}  // namespace
}  // namespace meshlet::sidecar::admin

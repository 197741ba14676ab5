// The router's CORS step (route/cors.h): preflights answered by the sidecar, the Access-Control-*
// headers on the responses of allowed origins, nothing for others, the counts; against fake
// upstreams.
#include <memory>
#include <string>
#include <vector>

#include "common/base/allocation_counter.h"
#include "common/http/cors_origin.h"
#include "gtest/gtest.h"
#include "sidecar/route/cors.h"
#include "sidecar/router/cors_stats.h"
#include "sidecar/router/router.h"
#include "sidecar/router/router_test_util.h"

namespace meshlet::sidecar::router {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

route::CorsPolicy Policy(std::vector<std::string> origins) {
  route::CorsPolicy policy;
  for (const std::string& origin : origins) {
    policy.allow_origins.push_back(*http::ParseOriginPattern(origin));
  }
  return policy;
}

class RouterCorsTest : public RouterTest {
 protected:
  RouterCorsTest() : cors_stats_(*CorsStats::Create(*shard_)) { context_.cors = &cors_stats_; }

  // Routes "/cors" (with `policy`) and "/" (without) to cluster "c" on a fake upstream.
  void Serve(const route::CorsPolicy& policy) {
    FakeUpstream& up = AddUpstream();
    upstream_ = &up;
    AddCluster("c", {up.address()});
    RouteEntry cors = Routed("cors", "/cors", ToCluster("c"));
    cors.extras.mut().cors = std::make_shared<const route::CorsPolicy>(policy);
    table_ = Table({cors, Routed("plain", "/", ToCluster("c"))});
  }

  uint64_t Outcome(absl::string_view outcome) {
    StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_http_cors_total", {{"outcome", std::string(outcome)}});
    return series == nullptr ? 0 : series->counter;
  }

  CorsStats cors_stats_;
  FakeUpstream* upstream_ = nullptr;
};

TEST_F(RouterCorsTest, AnAllowedPreflightIsAnsweredWithoutTheUpstream) {
  route::CorsPolicy policy = Policy({"https://www.foo.com", "https://*.bar.com"});
  policy.allow_methods = "GET, OPTIONS";
  policy.allow_headers = "x-header-1, x-header-2";
  policy.expose_headers = "x-header-3, x-header-4";
  policy.max_age = "3600";
  policy.allow_credentials = true;
  Serve(policy);
  for (const char* origin : {"https://www.foo.com", "https://xpto.www.bar.com"}) {
    RecordingCallbacks& client =
        Send("OPTIONS", "",
             {{"origin", origin},
              {"access-control-request-method", "GET"},
              {"access-control-request-headers", "x-header-1, x-header-2"}},
             "/cors/x");
    ASSERT_TRUE(client.complete);
    EXPECT_EQ(client.status, "200");
    const http::HeaderMap& h = client.response_headers;
    EXPECT_EQ(h.GetJoined("access-control-allow-origin"), origin);
    EXPECT_EQ(h.GetJoined("access-control-allow-methods"), "GET, OPTIONS");
    EXPECT_EQ(h.GetJoined("access-control-allow-headers"), "x-header-1, x-header-2");
    EXPECT_EQ(h.GetJoined("access-control-expose-headers"), "x-header-3, x-header-4");
    EXPECT_EQ(h.GetJoined("access-control-max-age"), "3600");
    EXPECT_EQ(h.GetJoined("access-control-allow-credentials"), "true");
    EXPECT_EQ(h.GetJoined("vary"), "Origin");
    EXPECT_EQ(client.info.response_code, 200);
  }
  EXPECT_TRUE(upstream_->requests().empty());
  EXPECT_EQ(Outcome("preflight_allowed"), 2u);
  EXPECT_EQ(Outcome("preflight_refused"), 0u);
}

TEST_F(RouterCorsTest, APreflightFromAnotherOriginIsRefusedWithoutHeaders) {
  Serve(Policy({"https://www.foo.com", "https://*.bar.com"}));
  // Not an allowed origin: another host, scheme or port, the bare suffix, not an origin.
  for (const char* origin : {"https://foobar.com", "http://www.foo.com", "https://www.foo.com:8443",
                             "https://bar.com", "null"}) {
    RecordingCallbacks& client = Send(
        "OPTIONS", "", {{"origin", origin}, {"access-control-request-method", "GET"}}, "/cors");
    EXPECT_EQ(client.status, "403") << origin;
    EXPECT_FALSE(client.response_headers.Has("access-control-allow-origin")) << origin;
    EXPECT_FALSE(client.response_headers.Has("access-control-allow-methods")) << origin;
  }
  EXPECT_TRUE(upstream_->requests().empty());
  EXPECT_EQ(Outcome("preflight_refused"), 5u);
}

TEST_F(RouterCorsTest, WildcardsEchoTheOriginAndWhatThePreflightAsked) {
  route::CorsPolicy policy = Policy({"*"});
  policy.any_method = true;
  policy.any_header = true;
  Serve(policy);
  RecordingCallbacks& client = Send("OPTIONS", "",
                                    {{"origin", "https://foobar.com:12345"},
                                     {"access-control-request-method", "PUT"},
                                     {"access-control-request-headers", "x-a, x-b"}},
                                    "/cors");
  EXPECT_EQ(client.status, "200");
  const http::HeaderMap& h = client.response_headers;
  EXPECT_EQ(h.GetJoined("access-control-allow-origin"), "https://foobar.com:12345");
  EXPECT_EQ(h.GetJoined("access-control-allow-methods"), "PUT");
  EXPECT_EQ(h.GetJoined("access-control-allow-headers"), "x-a, x-b");
  EXPECT_EQ(h.GetJoined("access-control-max-age"), "5");  // the default
  EXPECT_FALSE(h.Has("access-control-allow-credentials"));
  EXPECT_FALSE(h.Has("access-control-expose-headers"));
}

TEST_F(RouterCorsTest, ResponsesOfAllowedOriginsGetTheHeadersOthersNone) {
  route::CorsPolicy policy = Policy({"https://app.example"});
  policy.allow_credentials = true;
  policy.expose_headers = "x-total";
  Serve(policy);
  RecordingCallbacks& allowed =
      Send("GET", "", {{"origin", "https://app.example"}, {"cookie", "sid=1"}}, "/cors");
  RecordingCallbacks& refused = Send("GET", "", {{"origin", "http://not-app.example"}}, "/cors");
  RecordingCallbacks& same_origin = Send("GET", "", {}, "/cors");
  // OPTIONS without Access-Control-Request-Method is no preflight: the app answers it.
  RecordingCallbacks& options = Send("OPTIONS", "", {{"origin", "https://app.example"}}, "/cors");
  ASSERT_EQ(upstream_->requests().size(), 4u);
  EXPECT_EQ(allowed.status, "200");
  EXPECT_EQ(allowed.response_headers.GetJoined("access-control-allow-origin"),
            "https://app.example");
  EXPECT_EQ(allowed.response_headers.GetJoined("access-control-allow-credentials"), "true");
  EXPECT_EQ(allowed.response_headers.GetJoined("access-control-expose-headers"), "x-total");
  EXPECT_FALSE(allowed.response_headers.Has("access-control-max-age"));  // preflights only
  EXPECT_EQ(refused.status, "200");
  for (RecordingCallbacks* client : {&refused, &same_origin}) {
    EXPECT_FALSE(client->response_headers.Has("access-control-allow-origin"));
    EXPECT_FALSE(client->response_headers.Has("access-control-allow-credentials"));
  }
  EXPECT_EQ(options.response_headers.GetJoined("access-control-allow-origin"),
            "https://app.example");
  EXPECT_EQ(Outcome("allowed"), 2u);
  EXPECT_EQ(Outcome("refused"), 1u);
  EXPECT_EQ(Outcome("preflight_allowed"), 0u);
}

TEST_F(RouterCorsTest, ARouteWithoutAPolicyLeavesCrossOriginRequestsAlone) {
  Serve(Policy({"*"}));
  RecordingCallbacks& preflight =
      Send("OPTIONS", "",
           {{"origin", "https://a.example"}, {"access-control-request-method", "GET"}}, "/x");
  EXPECT_EQ(preflight.status, "200");
  EXPECT_EQ(upstream_->requests().size(), 1u);  // the app got it
  EXPECT_FALSE(preflight.response_headers.Has("access-control-allow-origin"));
  EXPECT_EQ(Outcome("preflight_allowed") + Outcome("allowed"), 0u);
}

TEST_F(RouterCorsTest, AnAllowedCrossOriginRequestAllocatesNoMoreThanOneWithoutAPolicy) {
  Serve(Policy({"https://*.example.com"}));
  const Headers origin = {{"origin", "https://shop.example.com"}};
  callbacks_.reserve(64);
  routers_.reserve(64);
  for (int i = 0; i < 4; ++i) {  // warm up: connection, pools, header arenas, stats cells
    Send("GET", "", origin, "/cors");
    Send("GET", "", origin, "/x");
  }
  int with_policy = INT32_MAX;
  int without = INT32_MAX;
  for (int i = 0; i < 8; ++i) {
    for (const char* path : {"/cors", "/x"}) {
      AllocationScope allocations;
      RecordingCallbacks& client = Send("GET", "", origin, path);
      const int count = static_cast<int>(allocations.count());
      ASSERT_EQ(client.status, "200");
      ASSERT_EQ(client.response_headers.Has("access-control-allow-origin"), path[1] == 'c');
      int& best = path[1] == 'c' ? with_policy : without;
      best = std::min(best, count);
    }
  }
  EXPECT_GT(without, 0);  // the counter is live
  EXPECT_EQ(with_policy, without);
}

}  // namespace
}  // namespace meshlet::sidecar::router

// The router beyond retries (router_retry_test.cc): weighted cluster choice, local replies, header
// mutations and tunnels, against FakeUpstream servers and the fake line codec.
#include "sidecar/router/router.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sidecar/router/router_test_util.h"

namespace meshlet::sidecar::router {
namespace {

using http::grpc::StatusCode;

const std::vector<std::pair<std::string, std::string>> kGrpc = {
    {"content-type", "application/grpc"}};

TEST_F(RouterTest, WeightedClustersFollowTheDraw) {
  FakeUpstream& a = AddUpstream();
  FakeUpstream& b = AddUpstream();
  AddCluster("a", {a.address()});
  AddCluster("b", {b.address()});
  RouteAction split;
  split.weighted_clusters = {{"a", 1}, {"b", 3}};
  split.total_weight = 4;
  table_ = Table({Routed("split", "/", split)});
  // The fixture's first draw is the top of the range (b's); then a's quarter, then b's again.
  RecordingCallbacks& first = Send("GET");
  random_.PushDouble(0.2);
  RecordingCallbacks& second = Send("GET");
  random_.PushDouble(0.3);
  RecordingCallbacks& third = Send("GET");
  EXPECT_EQ(first.status, "200");
  EXPECT_EQ(first.info.cluster_name, "b");
  EXPECT_EQ(second.status, "200");
  EXPECT_EQ(second.info.cluster_name, "a");
  EXPECT_EQ(third.info.cluster_name, "b");
  EXPECT_EQ(a.requests().size(), 1u);
  EXPECT_EQ(b.requests().size(), 2u);
  EXPECT_EQ(first.info.route_name, "split");
}

// Gateway API backendRef filters: a weighted cluster's own header changes go with the requests
// sent to it and with their responses, after the route's (the rule's filters), and never with the
// other cluster's requests.
TEST_F(RouterTest, EachWeightedClusterHasItsOwnHeaderChangesAfterTheRoutes) {
  FakeUpstream& a = AddUpstream();
  FakeUpstream& b = AddUpstream();
  AddCluster("a", {a.address()});
  AddCluster("b", {b.address()});
  RouteAction split;
  split.weighted_clusters = {{"a", 1}, {"b", 1}};
  split.weighted_clusters[0].headers.request_headers_to_add = {{"x-backend", "a"}};
  split.weighted_clusters[0].headers.response_headers_to_add = {{"x-answered-by", "a"}};
  split.weighted_clusters[1].headers.request_headers_to_add = {{"x-backend", "b"}};
  split.weighted_clusters[1].headers.request_headers_to_remove = {"x-rule"};
  split.total_weight = 2;
  split.has_backend_headers = true;
  RouteEntry route = Routed("split", "/", split);
  route.extras.mut().headers.request_headers_to_add = {{"x-rule", "r"}, {"x-backend", "rule"}};
  route.extras.mut().headers.response_headers_to_add = {{"x-answered-by", "rule"}};
  table_ = Table({route});
  // The fixture's first draw is the top of the range (b's half); then a's.
  RecordingCallbacks& to_b = Send("GET");
  const http::HeaderMap& sent_b = *routers_.back()->request_headers();
  random_.PushDouble(0.2);
  RecordingCallbacks& to_a = Send("GET");
  const http::HeaderMap& sent_a = *routers_.back()->request_headers();
  ASSERT_EQ(to_b.status, "200");
  ASSERT_EQ(to_a.status, "200");
  EXPECT_EQ(to_b.info.cluster_name, "b");
  EXPECT_EQ(to_a.info.cluster_name, "a");
  EXPECT_EQ(a.requests().size(), 1u);
  EXPECT_EQ(b.requests().size(), 1u);
  EXPECT_EQ(sent_b.GetJoined("x-backend"), "b");
  EXPECT_FALSE(sent_b.Has("x-rule"));  // the backend's removal comes after the rule's addition
  EXPECT_EQ(to_b.response_headers.GetJoined("x-answered-by"), "rule");
  EXPECT_EQ(sent_a.GetJoined("x-backend"), "a");
  EXPECT_EQ(sent_a.GetJoined("x-rule"), "r");
  EXPECT_EQ(to_a.response_headers.GetJoined("x-answered-by"), "a");
}

TEST_F(RouterTest, NoRouteIs404OrUnimplemented) {
  AddCluster("c", {});
  table_ = Table({Routed("api", "/api", ToCluster("c"))});
  RecordingCallbacks& http = Send("GET", "", {}, "/other");
  EXPECT_EQ(http.status, "404");
  EXPECT_EQ(http.body, "no route\n");
  EXPECT_TRUE(http.info.HasFlag(ResponseFlag::kNoRoute));
  EXPECT_EQ(http.info.response_code, 404);
  RecordingCallbacks& grpc = Send("POST", "", kGrpc, "/other");
  EXPECT_EQ(grpc.status, "200");
  EXPECT_EQ(grpc.grpc_status, "12");  // UNIMPLEMENTED
  EXPECT_TRUE(grpc.body.empty());
  EXPECT_EQ(grpc.info.response_code, 200);
}

TEST_F(RouterTest, UnknownClusterIs503Nc) {
  table_ = Table({Routed("r", "/", ToCluster("missing"))});
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(client.body, "route cluster not found\n");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kNoClusterFound));
  EXPECT_EQ(client.info.cluster_name, "missing");
}

TEST_F(RouterTest, TheMissingBackendsShareIs500) {
  FakeUpstream& a = AddUpstream();
  AddCluster("a", {a.address()});
  RouteAction split;
  split.weighted_clusters = {{"a", 1}, {std::string(route::kMissingBackendCluster), 1}};
  split.total_weight = 2;
  table_ = Table({Routed("split", "/", split)});
  // The fixture's first draw is the top of the range: the missing backends' half.
  RecordingCallbacks& missing = Send("GET");
  random_.PushDouble(0.2);
  RecordingCallbacks& served = Send("GET");
  EXPECT_EQ(missing.status, "500");
  EXPECT_EQ(missing.body, "route backend does not exist\n");
  EXPECT_TRUE(missing.info.HasFlag(ResponseFlag::kNoClusterFound));
  EXPECT_EQ(missing.info.cluster_name, route::kMissingBackendCluster);
  EXPECT_EQ(served.status, "200");
  EXPECT_EQ(a.requests().size(), 1u);
  random_.PushDouble(0.9);
  RecordingCallbacks& grpc = Send("POST", "", kGrpc);
  EXPECT_EQ(grpc.grpc_status, "13");  // INTERNAL
}

TEST_F(RouterTest, NoHealthyUpstreamIs503Uh) {
  AddCluster("c", {});
  table_ = Table({Routed("r", "/", ToCluster("c"))});
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(client.body, "no healthy upstream\n");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kNoHealthyUpstream));
  EXPECT_EQ(Count("meshlet_upstream_rq_no_healthy_host_total"), 1u);
  RecordingCallbacks& grpc = Send("POST", "", kGrpc);
  EXPECT_EQ(grpc.grpc_status, "14");  // UNAVAILABLE
}

// The one entry point, DecodeHeaders, at its two places in the chain: at the route stage the
// router routes the request (the route's header mutations and rewrite applied) and hands it on to
// the route-level filters without starting an attempt; as the last filter it starts one. A route
// that needs no upstream is answered at the route stage, and the request goes no further.
TEST_F(RouterTest, RouteStageRoutesAndTheLastFilterStartsTheAttempt) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  RouteAction action = ToCluster("c");
  action.extras.mut().prefix_rewrite = "/v2";
  RouteEntry routed = Routed("r", "/v1", action);
  routed.extras.mut().headers.request_headers_to_add = {{"x-added", "yes"}};
  RouteEntry direct;
  direct.name = "direct";
  direct.match.path = "/direct";
  direct.action = route::DirectResponseAction{200, "ok"};
  table_ = Table({direct, routed});
  auto get = [](absl::string_view path) {
    auto headers = std::make_unique<http::HeaderMap>();
    headers->Add(":method", "GET");
    headers->Add(":path", path);
    headers->Add(":authority", "test");
    return headers;
  };

  RecordingCallbacks& client = NewStream();
  http::HeaderMap& request = Resolve(client, get("/v1/items"));
  Router& router = *routers_.back();
  EXPECT_EQ(router.DecodeHeaders(request, true), stream::FilterStatus::kContinue);
  EXPECT_EQ(request.Get(":path"), "/v2/items");
  EXPECT_EQ(request.Get("x-added"), "yes");
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(50));
  EXPECT_EQ(up.accepted(), 0u);  // no attempt yet
  EXPECT_EQ(client.headers_sent, 0);
  EXPECT_EQ(router.DecodeHeaders(request, true), stream::FilterStatus::kStopIteration);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.done(); }, std::chrono::seconds(5)));
  EXPECT_EQ(client.status, "200");
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0].path, "/v2/items");

  RecordingCallbacks& answered = NewStream();
  http::HeaderMap& direct_request = Resolve(answered, get("/direct"));
  EXPECT_EQ(routers_.back()->DecodeHeaders(direct_request, true),
            stream::FilterStatus::kStopIteration);
  EXPECT_TRUE(answered.complete);
  EXPECT_EQ(answered.status, "200");
  EXPECT_EQ(answered.body, "ok");
  EXPECT_EQ(up.requests().size(), 1u);
}

TEST_F(RouterTest, DirectResponseAndRedirectNeedNoCluster) {
  RouteEntry direct;
  direct.name = "direct";
  direct.match.path = "/direct";
  direct.action = route::DirectResponseAction{201, "made\n"};
  RouteEntry redirect;
  redirect.name = "redirect";
  redirect.match.path = "/old";
  route::RedirectAction action;
  action.path = "/new";
  redirect.action = action;
  table_ = Table({direct, redirect});
  RecordingCallbacks& made = Send("GET", "", {}, "/direct");
  EXPECT_EQ(made.status, "201");
  EXPECT_EQ(made.body, "made\n");
  EXPECT_EQ(made.local_replies, 0);
  RecordingCallbacks& moved = Send("GET", "", {}, "/old");
  EXPECT_EQ(moved.status, "301");
  EXPECT_EQ(moved.response_headers.Get("location"), "http://test/new");
  EXPECT_EQ(moved.info.route_name, "redirect");
}

TEST_F(RouterTest, FullPathRewriteAndRedirectByPrefix) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  RouteAction action = ToCluster("c");
  action.extras.mut().path_rewrite = "/index";
  RouteEntry rewritten = Routed("r", "/v1", action);
  RouteEntry moved;
  moved.name = "moved";
  moved.match.path_kind = route::RouteMatch::PathKind::kSegmentPrefix;
  moved.match.path = "/old";
  moved.action = route::RedirectAction{.scheme = "https", .prefix_rewrite = "/new"};
  table_ = Table({rewritten, moved});
  EXPECT_EQ(Send("GET", "", {}, "/v1/items?q=1").status, "200");
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0].path, "/index?q=1");
  RecordingCallbacks& redirected = Send("GET", "", {}, "/old/page?x=2");
  EXPECT_EQ(redirected.status, "301");
  EXPECT_EQ(redirected.response_headers.Get("location"), "https://test/new/page?x=2");
}

TEST_F(RouterTest, HeaderMutationsAndRewritesReachTheUpstreamAndTheClient) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  RouteAction action = ToCluster("c");
  action.extras.mut().prefix_rewrite = "/v2";
  action.extras.mut().host_rewrite = "backend";
  RouteEntry route = Routed("r", "/v1", action);
  route.extras.mut().headers.request_headers_to_add = {{"x-added", "yes"}};
  route.extras.mut().headers.request_headers_to_remove = {"x-secret"};
  route.extras.mut().headers.response_headers_to_add = {{"x-served-by", "meshlet"}};
  table_ = Table({route});
  RecordingCallbacks& client = Send("GET", "", {{"x-secret", "s"}}, "/v1/items?q=1");
  EXPECT_EQ(client.status, "200");
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0].path, "/v2/items?q=1");
  const http::HeaderMap& sent = *routers_.back()->request_headers();
  EXPECT_EQ(sent.Get("x-added"), "yes");
  EXPECT_FALSE(sent.Has("x-secret"));
  EXPECT_EQ(sent.Get(":authority"), "backend");
  EXPECT_EQ(client.response_headers.Get("x-served-by"), "meshlet");
}

TEST_F(RouterTest, ConnectToARouteWithoutClusterIs404) {
  RouteEntry direct;
  direct.name = "direct";
  direct.match.path = "/";
  direct.action = route::DirectResponseAction{200, "hi"};
  table_ = Table({direct});
  RecordingCallbacks& client = Send("CONNECT");
  EXPECT_EQ(client.status, "404");
  EXPECT_EQ(client.body, "no cluster route for CONNECT\n");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kNoRoute));
  EXPECT_EQ(client.info.route_name, "direct");
}

TEST_F(RouterTest, UpgradeBecomesATunnelOn101) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    up.Send(r.connection, absl::StrCat("RESP ", r.id, " 101\n"));
  };
  AddCluster("c", {up.address()});
  table_ = Table({Routed("r", "/", ToCluster("c"))});
  RecordingCallbacks& client = NewStream();
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "GET");
  headers->Add(":path", "/ws");
  headers->Add(":authority", "test");
  headers->Add("upgrade", "websocket");
  Start(client, std::move(headers), false);
  loop_.RunUntil([&] { return client.headers_sent > 0; }, std::chrono::seconds(5));
  EXPECT_EQ(client.status, "101");
  EXPECT_EQ(client.info.tunnel, stream::TunnelKind::kUpgrade);
  EXPECT_TRUE(routers_.back()->tunnel());
  routers_.back()->Abandon();
}

TEST_F(RouterTest, ExpiredCallerDeadlineIs504BeforeAnyAttempt) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  table_ = Table({Routed("r", "/", ToCluster("c"))});
  RecordingCallbacks& client = Send("GET", "", {{"x-meshlet-deadline", "0"}});
  EXPECT_EQ(client.status, "504");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kUpstreamRequestTimeout));
  EXPECT_EQ(up.requests().size(), 0u);
  EXPECT_EQ(Count("meshlet_upstream_rq_timeout_total"), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::router

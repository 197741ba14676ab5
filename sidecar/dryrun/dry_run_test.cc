#include "sidecar/dryrun/dry_run.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate_test_util.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::dryrun {
namespace {

// The translation tests' small valid resource set (routes "local": /a, /b split, /).
Resources Base() {
  const auto r = config::translate_testing::Parse<xds::Bootstrap::StaticResources>(
      config::translate_testing::kBaseYaml);
  Resources out;
  out.routes.assign(r.routes().begin(), r.routes().end());
  out.clusters.assign(r.clusters().begin(), r.clusters().end());
  out.endpoints.assign(r.endpoints().begin(), r.endpoints().end());
  out.secrets.assign(r.secrets().begin(), r.secrets().end());
  return out;
}

xds::Route& RouteAt(Resources& set, int i) {
  return *set.routes[0].mutable_virtual_hosts(0)->mutable_routes(i);
}

Request Get(const std::string& path) {
  Request request;
  request.authority = "svc";
  request.path = path;
  return request;
}

TEST(DryRunTest, MatchesWithTheRouteTableAndDescribesTheClusters) {
  Resources set = Base();
  RouteAt(set, 0).set_name("to-a");
  RouteAt(set, 0).mutable_route()->mutable_timeout()->set_nanos(300000000);
  RouteAt(set, 0).mutable_route()->mutable_retry_policy()->mutable_num_retries()->set_value(4);
  RouteAt(set, 1).set_name("split");
  absl::StatusOr<Result> r = Decide(set, "local", Get("/a/1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->virtual_host, "default");
  EXPECT_EQ(r->route, "to-a");
  EXPECT_EQ(r->action, "forward");
  EXPECT_EQ(r->timeout_ms, 300);
  EXPECT_EQ(r->num_retries, 4u);
  ASSERT_EQ(r->clusters.size(), 1u);
  EXPECT_TRUE(r->clusters[0].known);
  EXPECT_EQ(r->clusters[0].endpoints, std::vector<std::string>{"127.0.0.1:8080"});
  EXPECT_EQ(r->clusters[0].max_requests, 1024u);

  r = Decide(set, "local", Get("/b"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->route, "split");
  ASSERT_EQ(r->clusters.size(), 2u);
  EXPECT_EQ(r->clusters[1].name, "other");
  EXPECT_EQ(r->clusters[1].weight, 1u);

  // The sidecar's own matching: methods and headers decide as they do in the proxy.
  RouteAt(set, 0).mutable_match()->add_methods("POST");
  r = Decide(set, "local", Get("/a/1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->route, "to-a");
  Request post = Get("/a/1");
  post.method = "POST";
  r = Decide(set, "local", post);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->route, "to-a");
}

TEST(DryRunTest, ErrorsNameTheProblem) {
  Resources set = Base();
  EXPECT_EQ(Decide(set, "nosuch", Get("/")).status().code(), absl::StatusCode::kNotFound);
  RouteAt(set, 0).mutable_route()->set_cluster("missing");
  absl::StatusOr<Result> r = Decide(set, "local", Get("/"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "missing")) << r.status();
}

}  // namespace
}  // namespace meshlet::sidecar::dryrun

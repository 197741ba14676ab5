#include "sidecar/config/dry_run.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using translate_testing::Base;
using translate_testing::RouteAt;

DryRunRequest Get(const std::string& path) {
  DryRunRequest request;
  request.authority = "svc";
  request.path = path;
  return request;
}

TEST(DryRunTest, MatchesWithTheRouteTableAndDescribesTheClusters) {
  ResourceSet set = Base();
  RouteAt(set, 0).set_name("to-a");
  RouteAt(set, 0).mutable_route()->mutable_timeout()->set_nanos(300000000);
  RouteAt(set, 0).mutable_route()->mutable_retry_policy()->mutable_num_retries()->set_value(4);
  RouteAt(set, 1).set_name("split");
  absl::StatusOr<DryRunResult> r = DryRun(set, "local", Get("/a/1"));
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

  r = DryRun(set, "local", Get("/b"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->route, "split");
  ASSERT_EQ(r->clusters.size(), 2u);
  EXPECT_EQ(r->clusters[1].name, "other");
  EXPECT_EQ(r->clusters[1].weight, 1u);

  // The sidecar's own matching: methods and headers decide as they do in the proxy.
  RouteAt(set, 0).mutable_match()->add_methods("POST");
  r = DryRun(set, "local", Get("/a/1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->route, "to-a");
  DryRunRequest post = Get("/a/1");
  post.method = "POST";
  r = DryRun(set, "local", post);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->route, "to-a");
}

TEST(DryRunTest, ErrorsNameTheProblem) {
  ResourceSet set = Base();
  EXPECT_EQ(DryRun(set, "nosuch", Get("/")).status().code(), absl::StatusCode::kNotFound);
  RouteAt(set, 0).mutable_route()->set_cluster("missing");
  absl::StatusOr<DryRunResult> r = DryRun(set, "local", Get("/"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "missing")) << r.status();
}

}  // namespace
}  // namespace meshlet::sidecar::config

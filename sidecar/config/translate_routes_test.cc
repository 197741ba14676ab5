// Routes: retry policies inherited from the virtual host, faults and rate limits.
#include <string>

#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using namespace std::chrono_literals;

TEST(TranslateTest, RetryPolicyInheritanceAndOverrides) {
  ResourceSet set = Base();
  xds::VirtualHost* vh = set.routes.Mutable(0).mutable_virtual_hosts(0);
  vh->mutable_retry_policy()->mutable_num_retries()->set_value(5);
  vh->mutable_retry_policy()->add_retry_on("5xx");
  vh->mutable_retry_policy()->mutable_base_interval()->set_nanos(50'000'000);
  xds::RetryPolicy* own = RouteAt(set, 1).mutable_route()->mutable_retry_policy();
  own->mutable_num_retries()->set_value(0);
  own->add_retriable_status_codes(502);
  own->add_retriable_status_codes(504);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");

  const route::RouteAction* inherited = table->Match(Request("x", "/a"))->route_action();
  EXPECT_EQ(inherited->retry_policy.num_retries, 5u);
  EXPECT_EQ(inherited->retry_policy.retry_on, resilience::RetryOn::k5xx);
  EXPECT_EQ(inherited->retry_policy.backoff.base, 50ms);
  EXPECT_EQ(inherited->retry_policy.backoff.cap, 500ms);  // 10x an explicit base

  const route::RouteAction* overridden = table->Match(Request("x", "/b"))->route_action();
  EXPECT_EQ(overridden->retry_policy.num_retries, 0u);
  EXPECT_EQ(overridden->retry_policy.retry_on, resilience::RetryOn::kDefault);
  EXPECT_EQ(overridden->retry_policy.retriable_status_codes, (std::vector<uint32_t>{502, 504}));
}

TEST(TranslateTest, FaultAndRateLimit) {
  ResourceSet set = Base();
  RouteAt(set, 0).mutable_fault()->mutable_delay()->mutable_fixed_delay()->set_seconds(2);
  RouteAt(set, 0).mutable_fault()->mutable_delay()->set_percentage(12.5);
  RouteAt(set, 0).mutable_fault()->mutable_abort()->set_grpc_status(14);
  RouteAt(set, 0).mutable_fault()->mutable_abort()->set_percentage(1);
  RouteAt(set, 0).mutable_fault()->set_header_triggered(true);
  RouteAt(set, 0).mutable_rate_limit()->set_requests_per_second(50);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteEntry* route = (*snapshot)->FindRouteTable("local")->Match(Request("x", "/a"));
  ASSERT_TRUE(route->fault.has_value());
  ASSERT_TRUE(route->fault->delay.has_value());
  EXPECT_EQ(route->fault->delay->fixed_delay, 2s);
  EXPECT_EQ(route->fault->delay->percentage, 12.5);
  ASSERT_TRUE(route->fault->abort.has_value());
  EXPECT_EQ(route->fault->abort->grpc_status, 14u);
  EXPECT_TRUE(route->fault_header_triggered);
  ASSERT_TRUE(route->rate_limit.has_value());
  EXPECT_EQ(route->rate_limit->requests_per_second, 50u);
  EXPECT_EQ(route->rate_limit->burst, 0u);
  // One bucket for the route, shared by every worker; burst defaults to a second's worth.
  ASSERT_NE(route->rate_limiter, nullptr);
  EXPECT_EQ(route->rate_limiter->burst(), 50u);
}
}  // namespace
}  // namespace meshlet::sidecar::config

#include "sidecar/server/proxy_info.h"

#include <string>

#include "common/base/version.h"
#include "common/stats/exposition.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

TEST(ProxyInfoTest, NamesTheProxyWithValueOne) {
  StatsRegistry registry;
  RegisterProxyInfo(registry.shared_shard(), "frontend-7c9d.default", "frontend", "default");
  // Again: the same series.
  RegisterProxyInfo(registry.shared_shard(), "frontend-7c9d.default", "frontend", "default");

  const std::string expected =
      std::string(
          "meshlet_proxy_info{node=\"frontend-7c9d.default\",service=\"frontend\","
          "service_namespace=\"default\",version=\"") +
      kMeshletVersion + "\"} 1\n";
  const std::string text = FormatPrometheus(registry.Snapshot());
  EXPECT_NE(text.find("# TYPE meshlet_proxy_info gauge\n" + expected), std::string::npos) << text;
  EXPECT_EQ(registry.series_count(), 1u);
}

TEST(ProxyInfoTest, AStaticBootstrapWithoutANodeStillHasTheSeries) {
  StatsRegistry registry;
  RegisterProxyInfo(registry.shared_shard(), "", "", "");
  const StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(
      "meshlet_proxy_info",
      {{"node", ""}, {"service", ""}, {"service_namespace", ""}, {"version", kMeshletVersion}});
  ASSERT_NE(series, nullptr);
  EXPECT_EQ(series->gauge, 1);
}

}  // namespace
}  // namespace meshlet::sidecar::server

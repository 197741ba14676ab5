#include "sidecar/listener/capture_stats.h"

#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using Action = CaptureDecision::Action;

TEST(CaptureStatsTest, OneSeriesPerResult) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  CaptureStats stats = CaptureStats::Create(*shard, "outbound");
  stats.Record(Action::kDestination);
  stats.Record(Action::kDestination);
  stats.Record(Action::kPassthrough);
  stats.Record(Action::kRefuse);
  CaptureStats::Create(*shard, "inbound").Record(Action::kListener);

  const StatsSnapshot snapshot = registry.Snapshot();
  auto value = [&](const char* listener, const char* result) -> int64_t {
    const SeriesSnapshot* series = snapshot.Find("meshlet_downstream_cx_original_destination_total",
                                                 {{"listener", listener}, {"result", result}});
    return series == nullptr ? -1 : static_cast<int64_t>(series->counter);
  };
  EXPECT_EQ(value("outbound", "matched"), 2);
  EXPECT_EQ(value("outbound", "passthrough"), 1);
  EXPECT_EQ(value("outbound", "refused"), 1);
  EXPECT_EQ(value("outbound", "not_redirected"), 0);
  EXPECT_EQ(value("inbound", "not_redirected"), 1);
  EXPECT_EQ(value("inbound", "matched"), 0);
}

TEST(CaptureStatsTest, DefaultHandlesCountNothing) {
  CaptureStats stats;
  stats.Record(Action::kRefuse);  // no shard: nothing to see, nothing to crash
}

}  // namespace
}  // namespace meshlet::sidecar::listener

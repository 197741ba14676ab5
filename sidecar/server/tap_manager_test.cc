#include "sidecar/server/tap_manager.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/http/header_map.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Two "workers" run on the test's thread: a task runs at once on its WorkerTap, and what it posts
// back runs when the loop turns, as on the main thread.
class TapManagerTest : public ::testing::Test {
 protected:
  TapManagerTest() { clock_.Advance(seconds(1000)); }

  std::unique_ptr<TapManager> Make(TapManagerOptions options) {
    return std::make_unique<TapManager>(
        loop_, clock_, std::move(options), workers_.size(),
        [this](size_t index, std::function<void(stream::WorkerTap&)> task) {
          task(*workers_[index]);
        },
        [this](const config::TapEvents& events) { sent_.push_back(events); },
        registry_.shared_shard());
  }

  static config::TapCommand Start(std::string id, uint32_t rate = 10,
                                  Duration duration = seconds(30)) {
    return config::TapCommand{.id = std::move(id), .rate = rate, .duration = duration};
  }

  // One finished request on worker `index`.
  void Request(size_t index) {
    const stream::TapRequestView view{
        .inbound = true, .info = &info_, .request_headers = &headers_, .duration_us = 100};
    workers_[index]->Record(view, clock_.Now());
  }

  event::Loop loop_;
  FakeClock clock_;
  StatsRegistry registry_;
  std::vector<std::unique_ptr<stream::WorkerTap>> workers_ = [] {
    std::vector<std::unique_ptr<stream::WorkerTap>> w;
    w.push_back(std::make_unique<stream::WorkerTap>());
    w.push_back(std::make_unique<stream::WorkerTap>());
    return w;
  }();
  std::vector<config::TapEvents> sent_;
  stream::StreamInfo info_;
  http::HeaderMap headers_{{":method", "GET"}, {":path", "/"}, {":authority", "a"}};
};

TEST_F(TapManagerTest, RefusesPastMaxActiveAndClampsRateAndDuration) {
  auto manager = Make({.max_active = 1, .max_rate = 5, .max_duration = seconds(60)});
  manager->OnCommand(Start("t1", /*rate=*/1000, /*duration=*/std::chrono::hours(1)));
  manager->OnCommand(Start("t2"));
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_TRUE(sent_[0].started);
  EXPECT_EQ(sent_[1].id, "t2");
  EXPECT_TRUE(sent_[1].ended);
  EXPECT_TRUE(absl::StrContains(sent_[1].error, "--tap-max-active 1")) << sent_[1].error;
  EXPECT_EQ(manager->active(), 1u);
  // The workers run t1 as bounded here: 5/s, 60 s.
  stream::TapBatch t1 = workers_[0]->Remove("t1");
  ASSERT_NE(t1.session, nullptr);
  EXPECT_EQ(t1.session->spec().rate, 5u);
  EXPECT_EQ(t1.session->spec().end, clock_.Now() + seconds(60));
}

TEST_F(TapManagerTest, StopSendsEveryWorkersLastBatchThenEndedAndNothingAfter) {
  auto manager = Make({.flush_interval = std::chrono::hours(1)});
  manager->OnCommand(Start("t1"));
  Request(0);
  Request(1);
  Request(1);
  manager->OnCommand(config::TapCommand{.id = "t1", .stop = true});
  EXPECT_TRUE(workers_[0]->empty());
  EXPECT_TRUE(workers_[1]->empty());
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 4u);  // started, two batches, ended
  EXPECT_EQ(sent_[1].events + sent_[2].events, 3u);
  EXPECT_TRUE(sent_.back().ended);
  EXPECT_TRUE(sent_.back().error.empty());
  EXPECT_EQ(manager->active(), 0u);
  Request(0);
  manager->OnCommand(config::TapCommand{.id = "t1", .stop = true});
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 4u);
}

TEST_F(TapManagerTest, FlushesWhileRunningAndEndsAtTheDuration) {
  auto manager = Make({.flush_interval = milliseconds(5)});
  manager->OnCommand(Start("t1", 100, seconds(2)));
  Request(0);
  ASSERT_TRUE(loop_.RunUntil([&] { return sent_.size() >= 2; }, seconds(5)));
  EXPECT_EQ(sent_[1].events, 1u);
  EXPECT_FALSE(sent_[1].ended);
  clock_.Advance(seconds(2));
  ASSERT_TRUE(loop_.RunUntil([&] { return sent_.back().ended; }, seconds(5)));
  EXPECT_EQ(manager->active(), 0u);
  EXPECT_TRUE(workers_[0]->empty());
}

TEST_F(TapManagerTest, TheStreamsEndEndsEveryTap) {
  auto manager = Make({});
  manager->OnCommand(Start("t1"));
  manager->OnCommand(Start("t2"));
  manager->OnCommand(config::TapCommand{.stop_all = true});
  loop_.RunUntilIdle();
  EXPECT_EQ(manager->active(), 0u);
  int ended = 0;
  for (const config::TapEvents& e : sent_) ended += e.ended ? 1 : 0;
  EXPECT_EQ(ended, 2);
}

}  // namespace
}  // namespace meshlet::sidecar::server

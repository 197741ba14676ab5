#include "control-plane/store/store_worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"

namespace meshlet::controlplane {
namespace {

uint64_t CounterValue(StatsRegistry& stats, absl::string_view result) {
  const StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series =
      snapshot.Find("meshlet_cp_store_jobs_total", {{"result", std::string(result)}});
  return series == nullptr ? 0 : series->counter;
}

TEST(StoreWorkerTest, RunsOffTheLoopInOrderAndAnswersOnTheLoop) {
  event::Loop loop;
  StatsRegistry stats;
  StoreWorker worker(loop, {}, &stats);
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::vector<int> done;
  std::atomic<int> last_run{-1};
  bool in_order = true;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(worker.Run<int>(
        [i, &last_run, &in_order, loop_thread] {
          if (std::this_thread::get_id() == loop_thread) in_order = false;
          if (last_run.exchange(i) != i - 1) in_order = false;
          return i * 10;
        },
        [&done, loop_thread](int result) {
          EXPECT_EQ(std::this_thread::get_id(), loop_thread);
          done.push_back(result);
        }));
  }
  ASSERT_TRUE(loop.RunUntil([&] { return done.size() == 20; }, std::chrono::seconds(5)));
  EXPECT_TRUE(in_order);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(done[i], i * 10);
  EXPECT_EQ(CounterValue(stats, "done"), 20u);
  EXPECT_EQ(worker.pending(), 0u);
}

TEST(StoreWorkerTest, AHungJobLeavesTheLoopServingAndRefusesPastTheQueueLimit) {
  event::Loop loop;
  StatsRegistry stats;
  StoreWorker worker(loop, {.max_queued = 2}, &stats);
  Notification started, release;
  std::vector<std::string> done;
  auto job = [&started, &release](std::string name) {
    return [&started, &release, name]() -> std::string {
      if (name == "a") started.Notify();
      release.WaitForNotification();
      return name;
    };
  };
  auto record = [&done](std::string name) { done.push_back(name); };
  ASSERT_TRUE(worker.Run<std::string>(job("a"), record));
  // "a" is running (or about to): two more may wait, the fourth is refused.
  started.WaitForNotification();
  ASSERT_TRUE(worker.Run<std::string>(job("b"), record));
  ASSERT_TRUE(worker.Run<std::string>(job("c"), record));
  EXPECT_FALSE(worker.Run<std::string>(job("d"), record));
  EXPECT_EQ(CounterValue(stats, "rejected"), 1u);
  EXPECT_EQ(worker.pending(), 3u);

  // The loop keeps turning meanwhile: a timer fires on time.
  bool fired = false;
  event::Timer timer(loop, [&fired] { fired = true; });
  timer.Enable(std::chrono::milliseconds(20));
  ASSERT_TRUE(loop.RunUntil([&] { return fired; }, std::chrono::seconds(1)));
  EXPECT_TRUE(done.empty());

  release.Notify();
  ASSERT_TRUE(loop.RunUntil([&] { return done.size() == 3; }, std::chrono::seconds(5)));
  EXPECT_EQ(done, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(worker.Run<std::string>(job("e"), record));
  ASSERT_TRUE(loop.RunUntil([&] { return done.size() == 4; }, std::chrono::seconds(5)));
}

TEST(StoreWorkerTest, AfterStopNothingRunsAndNoAnswerArrives) {
  event::Loop loop;
  StoreWorker worker(loop, {}, nullptr);
  Notification started, release;
  std::atomic<int> ran{0};
  int answered = 0;
  ASSERT_TRUE(worker.Run<int>(
      [&] {
        started.Notify();
        release.WaitForNotification();
        return ++ran;
      },
      [&answered](int) { ++answered; }));
  ASSERT_TRUE(worker.Run<int>([&] { return ++ran; }, [&answered](int) { ++answered; }));
  started.WaitForNotification();
  std::thread releaser([&release] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release.Notify();
  });
  worker.Stop();  // waits for the first job; drops the second
  releaser.join();
  EXPECT_EQ(ran.load(), 1);
  loop.RunUntilIdle();
  EXPECT_EQ(answered, 0);
  EXPECT_FALSE(worker.Run<int>([] { return 0; }, [&answered](int) { ++answered; }));
  worker.Stop();
}

}  // namespace
}  // namespace meshlet::controlplane

#include "common/event/loop.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/base/fake_clock.h"
#include "common/event/timer.h"
#include "gtest/gtest.h"

namespace meshlet::event {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(LoopTest, PostRunsInOrderOnLaterTurn) {
  Loop loop;
  std::vector<int> seen;
  loop.Post([&] { seen.push_back(1); });
  loop.Post([&] { seen.push_back(2); });
  EXPECT_TRUE(seen.empty());
  loop.RunUntilIdle();
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
}

TEST(LoopTest, PostFromPostedFunctionRunsLater) {
  Loop loop;
  std::vector<int> seen;
  loop.Post([&] {
    seen.push_back(1);
    loop.Post([&] { seen.push_back(3); });
    seen.push_back(2);
  });
  loop.RunUntilIdle();
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
}

TEST(LoopTest, PostAcceptsMoveOnlyFunctions) {
  Loop loop;
  auto value = std::make_unique<int>(42);
  int got = 0;
  loop.Post([&got, v = std::move(value)] { got = *v; });
  loop.RunUntilIdle();
  EXPECT_EQ(got, 42);
}

TEST(LoopTest, ManyPostsFromManyThreadsArriveOncePerSenderInOrder) {
  constexpr int kThreads = 4;
  constexpr int kPostsPerThread = 10'000;
  Loop loop;
  std::vector<std::vector<int>> received(kThreads);
  int total = 0;
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&loop, &received, &total, t] {
      for (int i = 0; i < kPostsPerThread; ++i) {
        loop.Post([&received, &total, t, i] {
          received[t].push_back(i);
          ++total;
        });
      }
    });
  }
  EXPECT_TRUE(loop.RunUntil([&] { return total == kThreads * kPostsPerThread; }, seconds(20)));
  for (auto& s : senders) s.join();
  loop.RunUntilIdle();
  EXPECT_EQ(total, kThreads * kPostsPerThread);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(received[t].size(), static_cast<size_t>(kPostsPerThread)) << "sender " << t;
    for (int i = 0; i < kPostsPerThread; ++i) {
      ASSERT_EQ(received[t][i], i) << "sender " << t;
    }
  }
}

TEST(LoopTest, PostsBeforeWakeupCoalesce) {
  Loop loop;
  int ran = 0;
  std::thread sender([&] {
    for (int i = 0; i < 1000; ++i) loop.Post([&ran] { ++ran; });
  });
  sender.join();
  loop.RunUntilIdle();
  EXPECT_EQ(ran, 1000);
  EXPECT_EQ(loop.wakeups(), 1u);
}

TEST(LoopTest, StopFromAnotherThreadEndsRun) {
  Loop loop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(20));
    loop.Stop();
  });
  auto start = std::chrono::steady_clock::now();
  loop.Run();  // would block forever without Stop()
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
}

TEST(LoopTest, StopBeforeRunIsNotLost) {
  Loop loop;
  std::thread([&] { loop.Stop(); }).join();
  loop.Run();  // returns at once
  SUCCEED();
}

TEST(LoopTest, StopFromLoopThreadInsideCallback) {
  Loop loop;
  bool ran = false;
  loop.Post([&] {
    ran = true;
    loop.Stop();
  });
  loop.Run();
  EXPECT_TRUE(ran);
}

TEST(LoopTest, RunOnWorkerThreadAndPostFromMain) {
  Loop loop;
  std::atomic<bool> in_loop_thread{false};
  std::atomic<bool> done{false};
  std::thread worker([&] { loop.Run(); });
  loop.Post([&] {
    in_loop_thread = loop.IsInLoopThread();
    done = true;
    loop.Stop();
  });
  worker.join();
  EXPECT_TRUE(done);
  EXPECT_TRUE(in_loop_thread);
  EXPECT_FALSE(loop.IsInLoopThread());
}

class DeleteProbe {
 public:
  explicit DeleteProbe(bool* deleted) : deleted_(deleted) {}
  ~DeleteProbe() { *deleted_ = true; }

 private:
  bool* deleted_;
};

TEST(LoopTest, DeferDeleteRunsAfterCurrentCallbackReturns) {
  Loop loop;
  bool deleted = false;
  bool deleted_during_callback = true;
  loop.Post([&] {
    loop.DeferDelete(std::make_unique<DeleteProbe>(&deleted));
    deleted_during_callback = deleted;
  });
  // One turn runs the posted function and, at the end of the same turn, the deletion.
  loop.RunOnce();
  EXPECT_FALSE(deleted_during_callback);
  EXPECT_TRUE(deleted);
  EXPECT_EQ(loop.pending_deletions(), 0u);
}

// An object that asks to be deleted from its own callback.
class SelfDeleting {
 public:
  SelfDeleting(Loop& loop, bool* deleted) : loop_(loop), deleted_(deleted) {
    timer_ = std::make_unique<Timer>(loop, [this] { OnTimer(); });
    timer_->Enable(milliseconds(1));
  }
  ~SelfDeleting() { *deleted_ = true; }

  static std::unique_ptr<SelfDeleting>* owner;

 private:
  void OnTimer() {
    loop_.DeferDelete(std::move(*owner));
    // Still alive here: member access is safe.
    touched_ = true;
  }
  Loop& loop_;
  bool* deleted_;
  bool touched_ = false;
  std::unique_ptr<Timer> timer_;
};
std::unique_ptr<SelfDeleting>* SelfDeleting::owner = nullptr;

TEST(LoopTest, ObjectDeletesItselfFromItsTimerCallback) {
  Loop loop;
  bool deleted = false;
  auto obj = std::make_unique<SelfDeleting>(loop, &deleted);
  SelfDeleting::owner = &obj;
  EXPECT_TRUE(loop.RunUntil([&] { return deleted; }, seconds(5)));
  EXPECT_EQ(obj, nullptr);
}

TEST(LoopTest, DeferDeleteWithoutRunningHappensAtDestruction) {
  bool deleted = false;
  {
    Loop loop;
    loop.DeferDelete(std::make_unique<DeleteProbe>(&deleted));
    EXPECT_FALSE(deleted);
  }
  EXPECT_TRUE(deleted);
}

// Work already running on libuv's thread pool (a getaddrinfo whose owner is gone) cannot be
// cancelled: the Loop waits for it instead of refusing to close.
TEST(LoopTest, DestructionWaitsForWorkRunningOnThePool) {
  struct Work {
    uv_work_t req;
    std::atomic<bool> started{false};
    bool after = false;
  } work;
  work.req.data = &work;
  {
    Loop loop;
    ASSERT_EQ(uv_queue_work(
                  loop.uv_loop(), &work.req,
                  [](uv_work_t* req) {
                    static_cast<Work*>(req->data)->started = true;
                    std::this_thread::sleep_for(milliseconds(300));
                  },
                  [](uv_work_t* req, int) { static_cast<Work*>(req->data)->after = true; }),
              0);
    while (!work.started) std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(work.after);
}

TEST(LoopTest, PendingPostsAreDroppedAtDestruction) {
  bool ran = false;
  bool deleted = false;
  {
    Loop loop;
    auto probe = std::make_unique<DeleteProbe>(&deleted);
    loop.Post([&ran, p = std::move(probe)] { ran = true; });
  }
  EXPECT_FALSE(ran);
  EXPECT_TRUE(deleted);  // captured state is destroyed, not leaked
}

TEST(LoopTest, RunUntilTimesOut) {
  Loop loop;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(loop.RunUntil([] { return false; }, milliseconds(30)));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(29));
  EXPECT_LT(elapsed, seconds(5));
}

TEST(LoopTest, NowFollowsInjectedClock) {
  FakeClock clock;
  Loop loop(&clock);
  MonotonicTime t0 = loop.Now();
  clock.Advance(seconds(3));
  EXPECT_EQ(loop.Now() - t0, seconds(3));
}

TEST(LoopTest, NowIsCloseToSteadyClock) {
  Loop loop;
  loop.UpdateTime();
  auto diff = std::chrono::steady_clock::now() - loop.Now();
  EXPECT_GE(diff, milliseconds(0));
  EXPECT_LT(diff, milliseconds(50));
}

}  // namespace
}  // namespace meshlet::event

#include "common/event/timer.h"

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "common/base/allocation_counter.h"
#include "gtest/gtest.h"

namespace meshlet::event {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

TEST(TimerTest, MillisRoundUp) {
  EXPECT_EQ(ToLibuvMillis(Duration(0)), 0u);
  EXPECT_EQ(ToLibuvMillis(Duration(-5)), 0u);
  EXPECT_EQ(ToLibuvMillis(Duration(1)), 1u);
  EXPECT_EQ(ToLibuvMillis(milliseconds(7)), 7u);
  EXPECT_EQ(ToLibuvMillis(milliseconds(7) + Duration(1)), 8u);
}

TEST(TimerTest, OneShotFiresOnceAfterItsDuration) {
  Loop loop;
  int fired = 0;
  SteadyClock::time_point fired_at;
  Timer timer(loop, [&] {
    ++fired;
    fired_at = SteadyClock::now();
  });
  loop.UpdateTime();
  auto start = SteadyClock::now();
  timer.Enable(milliseconds(25));
  EXPECT_TRUE(timer.enabled());
  EXPECT_TRUE(loop.RunUntil([&] { return fired > 0; }, seconds(5)));
  // libuv time has millisecond granularity (truncated), hence the 1 ms slack.
  EXPECT_GE(fired_at - start, milliseconds(24));
  EXPECT_LT(fired_at - start, seconds(2));
  EXPECT_FALSE(timer.enabled());
  loop.RunUntil([] { return false; }, milliseconds(40));
  EXPECT_EQ(fired, 1);
}

TEST(TimerTest, TimersFireInDeadlineOrder) {
  Loop loop;
  std::vector<int> order;
  Timer t30(loop, [&] { order.push_back(30); });
  Timer t10(loop, [&] { order.push_back(10); });
  Timer t20(loop, [&] { order.push_back(20); });
  t30.Enable(milliseconds(30));
  t10.Enable(milliseconds(10));
  t20.Enable(milliseconds(20));
  EXPECT_TRUE(loop.RunUntil([&] { return order.size() == 3; }, seconds(5)));
  EXPECT_EQ(order, (std::vector<int>{10, 20, 30}));
}

TEST(TimerTest, ZeroTimeoutFiresOnNextTurn) {
  Loop loop;
  bool fired = false;
  Timer timer(loop, [&] { fired = true; });
  timer.Enable(Duration(0));
  EXPECT_FALSE(fired);  // never from inside Enable()
  loop.RunUntilIdle();
  EXPECT_TRUE(fired);
}

TEST(TimerTest, RepeatingFiresUntilDisabled) {
  Loop loop;
  int fired = 0;
  std::vector<SteadyClock::time_point> times;
  Timer* self = nullptr;
  Timer timer(loop, [&] {
    times.push_back(SteadyClock::now());
    if (++fired == 3) self->Disable();
  });
  self = &timer;
  loop.UpdateTime();
  auto start = SteadyClock::now();
  timer.EnableRepeating(milliseconds(5));
  EXPECT_TRUE(loop.RunUntil([&] { return fired == 3; }, seconds(5)));
  loop.RunUntil([] { return false; }, milliseconds(30));
  EXPECT_EQ(fired, 3);
  EXPECT_GE(times[2] - start, milliseconds(14));
}

TEST(TimerTest, EnableRearms) {
  Loop loop;
  int fired = 0;
  Timer timer(loop, [&] { ++fired; });
  loop.UpdateTime();
  auto start = SteadyClock::now();
  timer.Enable(milliseconds(5));
  timer.Enable(milliseconds(40));  // replaces the first deadline
  EXPECT_TRUE(loop.RunUntil([&] { return fired > 0; }, seconds(5)));
  EXPECT_GE(SteadyClock::now() - start, milliseconds(39));
  EXPECT_EQ(fired, 1);
}

TEST(TimerTest, DisabledTimerNeverFires) {
  Loop loop;
  bool fired = false;
  Timer timer(loop, [&] { fired = true; });
  timer.Enable(milliseconds(5));
  timer.Disable();
  EXPECT_FALSE(timer.enabled());
  loop.RunUntil([] { return false; }, milliseconds(40));
  EXPECT_FALSE(fired);
}

TEST(TimerTest, DestroyedTimerNeverFires) {
  Loop loop;
  bool fired = false;
  auto timer = std::make_unique<Timer>(loop, [&] { fired = true; });
  timer->Enable(milliseconds(5));
  timer.reset();
  loop.RunUntil([] { return false; }, milliseconds(40));
  EXPECT_FALSE(fired);
}

TEST(TimerTest, DestroyFromOwnCallbackIsSafe) {
  Loop loop;
  int after_reset = 0;
  std::unique_ptr<Timer> timer;
  // The callback keeps using its own captures after destroying the Timer; under ASan this proves
  // the callback object outlives the Timer until the callback returns.
  auto counter = std::make_shared<int>(0);
  timer = std::make_unique<Timer>(loop, [&timer, &after_reset, counter] {
    timer.reset();
    ++*counter;
    after_reset = *counter;
  });
  timer->EnableRepeating(milliseconds(1));
  EXPECT_TRUE(loop.RunUntil([&] { return after_reset > 0; }, seconds(5)));
  loop.RunUntil([] { return false; }, milliseconds(20));
  EXPECT_EQ(after_reset, 1);
  EXPECT_EQ(timer, nullptr);
}

TEST(TimerTest, ReenableFromOwnCallback) {
  Loop loop;
  int fired = 0;
  Timer* self = nullptr;
  Timer timer(loop, [&] {
    if (++fired < 3) self->Enable(milliseconds(1));
  });
  self = &timer;
  timer.Enable(milliseconds(1));
  EXPECT_TRUE(loop.RunUntil([&] { return fired == 3; }, seconds(5)));
  loop.RunUntil([] { return false; }, milliseconds(20));
  EXPECT_EQ(fired, 3);
}

TEST(TimerTest, ReusedHandleFiresForItsNewOwnerOnly) {
  Loop loop;
  int old_fired = 0;
  auto old_timer = std::make_unique<Timer>(loop, [&] { ++old_fired; });
  loop.UpdateTime();
  old_timer->Enable(milliseconds(10));
  old_timer.reset();
  loop.RunUntilIdle();  // the handle becomes a spare, its libuv timer still due in 10 ms

  int new_fired = 0;
  SteadyClock::time_point fired_at;
  Timer timer(loop, [&] {
    ++new_fired;
    fired_at = SteadyClock::now();
  });
  loop.UpdateTime();
  const auto start = SteadyClock::now();
  timer.Enable(milliseconds(60));
  // The old due time passes without firing anything; the new deadline is kept.
  loop.RunUntil([] { return false; }, milliseconds(30));
  EXPECT_EQ(new_fired, 0);
  EXPECT_TRUE(loop.RunUntil([&] { return new_fired > 0; }, seconds(5)));
  EXPECT_GE(fired_at - start, milliseconds(59));
  EXPECT_EQ(old_fired, 0);
  EXPECT_EQ(new_fired, 1);
}

TEST(TimerTest, RecreateFromOwnCallbackKeepsTheRunningCallbackAlive) {
  Loop loop;
  std::unique_ptr<Timer> timer;
  int generation = 0;
  auto counter = std::make_shared<int>(0);
  std::function<void()> make = [&] {
    // A callback that destroys its Timer and makes the next one, then still uses its captures.
    timer = std::make_unique<Timer>(loop, [&, counter] {
      timer.reset();
      if (++generation < 3) {
        make();
        timer->Enable(milliseconds(1));
      }
      ++*counter;
    });
  };
  make();
  timer->Enable(milliseconds(1));
  EXPECT_TRUE(loop.RunUntil([&] { return *counter == 3; }, seconds(5)));
  EXPECT_EQ(generation, 3);
  EXPECT_EQ(timer, nullptr);
}

TEST(TimerTest, TimersMadePerRequestDoNotAllocateOnceWarm) {
  Loop loop;
  int fired = 0;
  auto cycle = [&] {
    Timer timer(loop, [&] { ++fired; });
    timer.Enable(seconds(15));
  };
  // Warm-up: the handle, and the loop's two end-of-turn queues.
  for (int i = 0; i < 2; ++i) {
    cycle();
    loop.RunUntilIdle();
  }
  AllocationScope scope;
  for (int i = 0; i < 100; ++i) {
    cycle();
    loop.RunUntilIdle();
  }
  EXPECT_EQ(scope.count(), 0u);
  EXPECT_EQ(fired, 0);
}

}  // namespace
}  // namespace meshlet::event

#include "common/event/turn_clock.h"

#include <chrono>

#include "common/base/fake_clock.h"
#include "common/event/timer.h"
#include "gtest/gtest.h"

namespace meshlet::event {
namespace {

using std::chrono::milliseconds;

TEST(TurnClockTest, OutsideTheLoopEveryCallReadsTheSource) {
  FakeClock source;
  Loop loop;
  TurnClock clock(loop, source);
  const MonotonicTime first = clock.Now();
  const absl::Time first_wall = clock.WallNow();
  source.Advance(milliseconds(7));
  EXPECT_EQ(clock.Now() - first, milliseconds(7));
  EXPECT_EQ(clock.WallNow() - first_wall, absl::Milliseconds(7));
}

TEST(TurnClockTest, CallbacksOfOneTurnShareOneReading) {
  FakeClock source;
  Loop loop;
  TurnClock clock(loop, source);
  MonotonicTime seen[2];
  absl::Time seen_wall[2];
  // Posted before the loop runs: both run in the same turn.
  loop.Post([&] {
    seen[0] = clock.Now();
    seen_wall[0] = clock.WallNow();
    source.Advance(milliseconds(3));
  });
  loop.Post([&] {
    seen[1] = clock.Now();
    seen_wall[1] = clock.WallNow();
  });
  loop.RunUntilIdle();
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(seen_wall[0], seen_wall[1]);
  // Back outside the loop: the source's time again.
  EXPECT_EQ(clock.Now() - seen[0], milliseconds(3));
}

TEST(TurnClockTest, LaterTurnsAndTimersReadAgain) {
  FakeClock source;
  Loop loop;
  TurnClock clock(loop, source);
  MonotonicTime in_first = {}, in_second = {}, in_timer = {};
  bool done = false;
  Timer timer(loop, [&] {
    in_timer = clock.Now();
    done = true;
  });
  loop.Post([&] {
    in_first = clock.Now();
    source.Advance(milliseconds(5));
    // Posted from a callback: runs in a later turn.
    loop.Post([&] {
      in_second = clock.Now();
      source.Advance(milliseconds(11));
      // Timers run after the I/O callbacks' turn has ended.
      timer.Enable(Duration(0));
    });
  });
  ASSERT_TRUE(loop.RunUntil([&] { return done; }, std::chrono::seconds(5)));
  EXPECT_EQ(in_second - in_first, milliseconds(5));
  EXPECT_EQ(in_timer - in_second, milliseconds(11));
}

TEST(TurnClockTest, ExactNowAlwaysReadsTheSource) {
  FakeClock source;
  source.AdvanceOnEveryRead(milliseconds(1));
  Loop loop;
  TurnClock clock(loop, source);
  MonotonicTime shared[2], exact[2];
  loop.Post([&] {
    shared[0] = clock.Now();
    exact[0] = clock.ExactNow();
    shared[1] = clock.Now();
    exact[1] = clock.ExactNow();
  });
  loop.RunUntilIdle();
  EXPECT_EQ(shared[0], shared[1]);
  EXPECT_EQ(exact[0] - shared[0], milliseconds(1));
  EXPECT_EQ(exact[1] - exact[0], milliseconds(1));
}

}  // namespace
}  // namespace meshlet::event

// UsageCell (usage_cell.h): a use is kept to the second, never reported earlier than it
// happened, and the cell is shared by the threads that touch it.

#include "sidecar/route/usage_cell.h"

#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::sidecar::route {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

MonotonicTime At(milliseconds since_epoch) { return MonotonicTime(since_epoch); }

TEST(UsageCellTest, NeverUsedHasNoLastUse) {
  UsageCell cell;
  EXPECT_FALSE(cell.last_use().has_value());
}

TEST(UsageCellTest, TouchesWithinOneSecondKeepOneValue) {
  UsageCell cell;
  cell.Touch(At(milliseconds(5200)));
  ASSERT_TRUE(cell.last_use().has_value());
  EXPECT_EQ(*cell.last_use(), At(seconds(6)));  // the end of the second of the use
  cell.Touch(At(milliseconds(5999)));
  EXPECT_EQ(*cell.last_use(), At(seconds(6)));
  cell.Touch(At(milliseconds(6000)));
  EXPECT_EQ(*cell.last_use(), At(seconds(7)));
  // Never earlier than the latest touch.
  cell.Touch(At(seconds(3600) + milliseconds(10)));
  EXPECT_GE(*cell.last_use(), At(seconds(3600) + milliseconds(10)));
  EXPECT_LT(*cell.last_use(), At(seconds(3602)));
}

TEST(UsageCellTest, UseInTheClocksFirstSecondCounts) {
  UsageCell cell;
  cell.Touch(MonotonicTime{});
  ASSERT_TRUE(cell.last_use().has_value());
  EXPECT_GE(*cell.last_use(), MonotonicTime{});
}

TEST(UsageCellTest, TouchedFromSeveralThreads) {
  UsageCell cell;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cell, t] {
      for (int i = 0; i < 1000; ++i) cell.Touch(At(seconds(100 + t)));
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(cell.last_use().has_value());
  EXPECT_GE(*cell.last_use(), At(seconds(101)));
  EXPECT_LE(*cell.last_use(), At(seconds(104)));
}

}  // namespace
}  // namespace meshlet::sidecar::route

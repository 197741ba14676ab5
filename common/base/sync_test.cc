#include "common/base/sync.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace meshlet {
namespace {

TEST(SyncTest, MutexLockExcludesOtherThreads) {
  Mutex mu;
  int64_t counter = 0;  // a plain int: lost updates would show without the lock
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        MutexLock lock(&mu);
        ++counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, 400000);
}

TEST(SyncTest, NotificationHandsOverWhatWasWrittenBefore) {
  Notification ready;
  std::vector<int> data;
  std::thread writer([&] {
    data = {1, 2, 3};
    ready.Notify();
  });
  ready.WaitForNotification();
  EXPECT_TRUE(ready.HasBeenNotified());
  EXPECT_EQ(data, (std::vector<int>{1, 2, 3}));
  writer.join();
}

TEST(SyncTest, WaitWithTimeout) {
  Notification never;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(never.WaitForNotificationWithTimeout(std::chrono::milliseconds(30)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
  EXPECT_FALSE(never.HasBeenNotified());

  Notification soon;
  std::thread notifier([&] { soon.Notify(); });
  EXPECT_TRUE(soon.WaitForNotificationWithTimeout(std::chrono::seconds(10)));
  notifier.join();
  // Already notified: returns at once, however short the timeout.
  EXPECT_TRUE(soon.WaitForNotificationWithTimeout(std::chrono::nanoseconds(0)));
}

}  // namespace
}  // namespace meshlet

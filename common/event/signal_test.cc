#include "common/event/signal.h"

#include <signal.h>

#include <chrono>
#include <memory>

#include "gtest/gtest.h"

namespace meshlet::event {
namespace {

using std::chrono::seconds;

TEST(SignalTest, CallbackRunsOnLoopThread) {
  Loop loop;
  int got = 0;
  auto sig = Signal::Create(loop, SIGHUP, [&](int signum) { got = signum; });
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ((*sig)->signum(), SIGHUP);
  ASSERT_EQ(raise(SIGHUP), 0);
  EXPECT_EQ(got, 0);  // delivered through the loop, not from the handler
  EXPECT_TRUE(loop.RunUntil([&] { return got != 0; }, seconds(5)));
  EXPECT_EQ(got, SIGHUP);
}

TEST(SignalTest, DestroyFromOwnCallback) {
  Loop loop;
  std::unique_ptr<Signal> sig;
  bool fired = false;
  auto created = Signal::Create(loop, SIGUSR1, [&](int) {
    sig.reset();
    fired = true;
  });
  ASSERT_TRUE(created.ok());
  sig = std::move(*created);
  ASSERT_EQ(raise(SIGUSR1), 0);
  EXPECT_TRUE(loop.RunUntil([&] { return fired; }, seconds(5)));
  EXPECT_EQ(sig, nullptr);
  loop.RunUntilIdle();
}

TEST(SignalTest, TwoWatchersBothHear) {
  Loop loop;
  int a = 0, b = 0;
  auto s1 = Signal::Create(loop, SIGUSR2, [&](int) { ++a; });
  auto s2 = Signal::Create(loop, SIGUSR2, [&](int) { ++b; });
  ASSERT_TRUE(s1.ok() && s2.ok());
  ASSERT_EQ(raise(SIGUSR2), 0);
  EXPECT_TRUE(loop.RunUntil([&] { return a == 1 && b == 1; }, seconds(5)));
}

TEST(SignalTest, BadSignalNumberIsAnError) {
  Loop loop;
  auto zero = Signal::Create(loop, 0, [](int) {});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  auto kill = Signal::Create(loop, SIGKILL, [](int) {});
  EXPECT_EQ(kill.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(kill.status().message().find("signal 9"), absl::string_view::npos);
  loop.RunUntilIdle();
}

}  // namespace
}  // namespace meshlet::event

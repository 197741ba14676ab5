#include "common/base/logging.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace meshlet {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = GetLogLevel(); }
  void TearDown() override { SetLogLevel(saved_); }
  LogLevel saved_;
};

TEST_F(LoggingTest, ParsesLevelNames) {
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("WARNING"), LogLevel::kWarn);
  EXPECT_EQ(ParseLogLevel("Off"), LogLevel::kOff);
  EXPECT_EQ(ParseLogLevel("verbose"), std::nullopt);
  EXPECT_EQ(LogLevelName(LogLevel::kError), "error");
}

TEST_F(LoggingTest, DisabledLevelsDoNotEvaluateTheMessage) {
  std::vector<std::string> lines;
  ScopedLogSink sink([&](LogLevel, absl::string_view line) { lines.emplace_back(line); });
  SetLogLevel(LogLevel::kWarn);
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  LOG(INFO) << "hidden " << count();
  LOG(ERROR) << "shown " << count();
  EXPECT_EQ(evaluated, 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("error"), std::string::npos);
  EXPECT_NE(lines[0].find("logging_test.cc:"), std::string::npos);
  EXPECT_NE(lines[0].find("shown 1"), std::string::npos);
}

TEST_F(LoggingTest, EveryNSecLimitsEachCallSite) {
  std::vector<std::string> lines;
  ScopedLogSink sink([&](LogLevel, absl::string_view line) { lines.emplace_back(line); });
  SetLogLevel(LogLevel::kInfo);
  for (int i = 0; i < 100; ++i) {
    LOG_EVERY_N_SEC(WARN, 60) << "site a " << i;
    LOG_EVERY_N_SEC(WARN, 60) << "site b " << i;
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("site a 0"), std::string::npos);
  EXPECT_NE(lines[1].find("site b 0"), std::string::npos);
}

TEST_F(LoggingTest, WorksInUnbracedIfElse) {
  std::vector<std::string> lines;
  ScopedLogSink sink([&](LogLevel, absl::string_view line) { lines.emplace_back(line); });
  SetLogLevel(LogLevel::kInfo);
  bool flag = false;
  if (flag)
    LOG(INFO) << "then";
  else
    LOG(INFO) << "else";
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("else"), std::string::npos);
}

TEST_F(LoggingTest, ConcurrentLoggingKeepsLinesWhole) {
  std::vector<std::string> lines;
  std::mutex mu;
  ScopedLogSink sink([&](LogLevel, absl::string_view line) {
    std::lock_guard<std::mutex> l(mu);
    lines.emplace_back(line);
  });
  SetLogLevel(LogLevel::kInfo);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 100; ++i) LOG(INFO) << "thread " << t << " line " << i;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(lines.size(), 400u);
}

TEST(CheckDeathTest, FailedCheckAbortsWithMessage) {
  EXPECT_DEATH({ CHECK(1 + 1 == 3) << "arithmetic broke"; },
               "CHECK failed: 1 \\+ 1 == 3 arithmetic broke");
}

// Failures around a sink abort with their message instead of hanging on the sink's lock.
TEST(CheckDeathTest, FailuresAroundASinkAbortInsteadOfHanging) {
  EXPECT_DEATH(
      {
        ScopedLogSink first([](LogLevel, absl::string_view line) {
          // Best effort: the sink only has to exist (a short write changes nothing here).
          if (::write(STDERR_FILENO, line.data(), line.size()) < 0) return;
        });
        ScopedLogSink second([](LogLevel, absl::string_view) {});
      },
      "only one ScopedLogSink at a time");
  EXPECT_DEATH(
      {
        ScopedLogSink sink([](LogLevel, absl::string_view line) {
          CHECK(line.empty()) << "from inside the sink";
        });
        LOG(ERROR) << "a line";
      },
      "from inside the sink");
}

}  // namespace
}  // namespace meshlet

namespace meshlet {
namespace {
TEST(CheckDeathTest, CheckOkAcceptsStatusAndStatusOr) {
  CHECK_OK(absl::OkStatus());
  CHECK_OK(absl::StatusOr<int>(3));
  EXPECT_DEATH({ CHECK_OK(absl::StatusOr<int>(absl::NotFoundError("no such thing"))); },
               "no such thing");
}
}  // namespace
}  // namespace meshlet

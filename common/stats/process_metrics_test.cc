#include "common/stats/process_metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/stats/exposition.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

uint64_t ReadErrors(const StatsRegistry& registry, absl::string_view source) {
  const StatsSnapshot snapshot = registry.Snapshot();
  const SeriesSnapshot* series =
      snapshot.Find("meshlet_process_metrics_read_errors_total", {{"source", std::string(source)}});
  return series == nullptr ? UINT64_MAX : series->counter;
}

TEST(ProcessMetricsTest, ReadsThisProcess) {
  StatsRegistry registry;
  ProcessMetrics process(registry);
  const absl::StatusOr<ProcessStats> before = process.Read();
  ASSERT_TRUE(before.ok()) << before.status();

  EXPECT_GT(before->resident_bytes, 1u << 20);  // a test binary with gtest holds over 1 MiB
  EXPECT_GE(before->virtual_bytes, before->resident_bytes);
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(before->start_time_seconds, now + 1);
  EXPECT_GT(before->start_time_seconds, now - 600);  // started by this test run
  EXPECT_GE(before->cpu_seconds, 0);
  EXPECT_GE(before->open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GE(before->max_fds, before->open_fds);

  // Two more descriptors are counted; burnt CPU shows.
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  volatile uint64_t spin = 0;
  const std::clock_t until = std::clock() + CLOCKS_PER_SEC / 20;
  while (std::clock() < until) spin = spin + 1;
  const absl::StatusOr<ProcessStats> after = process.Read();
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->open_fds, before->open_fds + 2);
  EXPECT_GE(after->cpu_seconds, before->cpu_seconds + 0.03);
  EXPECT_EQ(after->start_time_seconds, before->start_time_seconds);

  EXPECT_EQ(ReadErrors(registry, "stat"), 0u);
  EXPECT_EQ(ReadErrors(registry, "fd"), 0u);
  EXPECT_EQ(ReadErrors(registry, "boot_time"), 0u);
}

TEST(ProcessMetricsTest, ExposesTheSixStandardFamilies) {
  StatsRegistry registry;
  ProcessMetrics process(registry);
  std::string text;
  process.AppendPrometheus(text);
  std::vector<std::string> types;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "# TYPE ")) types.emplace_back(line);
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "process_cpu_seconds_total counter",
                       "process_max_fds gauge",
                       "process_open_fds gauge",
                       "process_resident_memory_bytes gauge",
                       "process_start_time_seconds gauge",
                       "process_virtual_memory_bytes gauge",
                   }));
  // Start time with its fraction of a second, not an integer count of ticks.
  EXPECT_NE(text.find("\nprocess_start_time_seconds 1"), std::string::npos) << text;
}

// A directory laid out like procfs, with a /proc/<pid>/stat line whose command name holds spaces
// and parentheses.
class FakeProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/proc.XXXXXX");
    ASSERT_NE(::mkdtemp(base.data()), nullptr);
    dir_ = base;
    ASSERT_EQ(::mkdir(absl::StrCat(dir_, "/self").c_str(), 0700), 0);
  }
  void TearDown() override {
    for (const char* name : {"self/fd/0", "self/fd/1", "self/fd/7", "self/stat", "stat"}) {
      ::unlink(absl::StrCat(dir_, "/", name).c_str());
    }
    ::rmdir(absl::StrCat(dir_, "/self/fd").c_str());
    ::rmdir(absl::StrCat(dir_, "/self").c_str());
    ::rmdir(dir_.c_str());
  }
  void Write(absl::string_view name, absl::string_view content) {
    std::ofstream(absl::StrCat(dir_, "/", name)) << content;
  }
  // Fields 3 to 24: state, then utime 250 and stime 150 ticks, starttime 1000 ticks, vsize
  // 123456789 bytes, rss 300 pages.
  static constexpr absl::string_view kStat =
      "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 1000 "
      "123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

  std::string dir_;
};

TEST_F(FakeProcTest, ParsesStatAndCountsDescriptors) {
  Write("stat", "cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n");
  Write("self/stat", kStat);
  ASSERT_EQ(::mkdir(absl::StrCat(dir_, "/self/fd").c_str(), 0700), 0);
  for (const char* fd : {"self/fd/0", "self/fd/1", "self/fd/7"}) Write(fd, "");

  StatsRegistry registry;
  ProcessMetrics process(registry, dir_);
  const absl::StatusOr<ProcessStats> stats = process.Read();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  EXPECT_DOUBLE_EQ(stats->cpu_seconds, 400 / ticks);
  EXPECT_EQ(stats->virtual_bytes, 123456789u);
  EXPECT_EQ(stats->resident_bytes, 300u * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_DOUBLE_EQ(stats->start_time_seconds, 1700000000 + 1000 / ticks);
  EXPECT_EQ(stats->open_fds, 3);
  EXPECT_EQ(ReadErrors(registry, "boot_time"), 0u);
}

TEST_F(FakeProcTest, CountsWhatCannotBeRead) {
  // No /proc/stat (boot time unknown), no fd directory, then no stat either.
  Write("self/stat", kStat);
  StatsRegistry registry;
  ProcessMetrics process(registry, dir_);
  EXPECT_EQ(ReadErrors(registry, "boot_time"), 1u);

  std::string text;
  process.AppendPrometheus(text);
  EXPECT_EQ(ReadErrors(registry, "fd"), 1u);
  EXPECT_EQ(ReadErrors(registry, "stat"), 0u);
  EXPECT_EQ(text.find("process_open_fds"), std::string::npos) << text;
  EXPECT_EQ(text.find("process_start_time_seconds"), std::string::npos) << text;
  EXPECT_NE(text.find("\nprocess_virtual_memory_bytes 1.23456789e+08\n"), std::string::npos)
      << text;

  Write("self/stat", "4242 no parenthesis\n");
  text.clear();
  process.AppendPrometheus(text);
  EXPECT_EQ(text, "");
  EXPECT_EQ(ReadErrors(registry, "stat"), 1u);
  ::unlink(absl::StrCat(dir_, "/self/stat").c_str());
  EXPECT_FALSE(process.Read().ok());
  EXPECT_EQ(ReadErrors(registry, "stat"), 2u);
}

}  // namespace
}  // namespace meshlet

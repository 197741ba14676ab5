#include "common/stats/process_metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file.h"
#include "common/stats/exposition.h"
#include "common/stats/must_stat.h"

namespace meshlet {
namespace {

// /proc/<pid>/stat's fields, numbered as proc(5) numbers them, that we read.
constexpr size_t kStateField = 3;  // the first field after the command's closing parenthesis
constexpr size_t kUtimeField = 14;
constexpr size_t kStimeField = 15;
constexpr size_t kStartTimeField = 22;
constexpr size_t kVsizeField = 23;
constexpr size_t kRssField = 24;

// The line is a few hundred bytes; the command name in it is at most 64.
constexpr size_t kStatBufferBytes = 4096;

// Reads all of a small file into `buffer`; the byte count, or -1 with errno set.
ssize_t ReadSmallFile(const std::string& path, char* buffer, size_t size) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -1;
  size_t used = 0;
  while (used < size) {
    const ssize_t n = ::read(fd, buffer + used, size - used);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      errno = error;
      return -1;
    }
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  return static_cast<ssize_t>(used);
}

// "btime N" of /proc/stat: the boot time in seconds since the epoch.
int64_t ParseBootTime(absl::string_view proc_stat) {
  for (absl::string_view line : absl::StrSplit(proc_stat, '\n')) {
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    int64_t seconds = 0;
    if (absl::SimpleAtoi(line, &seconds) && seconds > 0) return seconds;
    return -1;
  }
  return -1;
}

void AppendFamily(std::string& out, absl::string_view name, absl::string_view type,
                  absl::string_view help, double value) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ");
  AppendPrometheusValue(out, value);
  out += '\n';
}

}  // namespace

ProcessMetrics::ProcessMetrics(StatsRegistry& registry, std::string proc)
    : stat_path_(absl::StrCat(proc, "/self/stat")), fd_path_(absl::StrCat(proc, "/self/fd")) {
  constexpr absl::string_view kName = "meshlet_process_metrics_read_errors_total";
  constexpr absl::string_view kHelp =
      "Failed reads of the process metrics (process_*) from procfs, by what was read: stat "
      "(memory, CPU, start time), fd (open descriptors), boot_time (once, at start).";
  StatsShard& shard = registry.shared_shard();
  stat_errors_ = MustStat(shard.RegisterCounter(kName, kHelp, {{"source", "stat"}}));
  fd_errors_ = MustStat(shard.RegisterCounter(kName, kHelp, {{"source", "fd"}}));
  boot_time_errors_ = MustStat(shard.RegisterCounter(kName, kHelp, {{"source", "boot_time"}}));
  absl::StatusOr<std::string> proc_stat = ReadFile(absl::StrCat(proc, "/stat"), 1 << 20);
  if (proc_stat.ok()) boot_time_ = ParseBootTime(*proc_stat);
  if (boot_time_ < 0) boot_time_errors_.Inc();
}

absl::StatusOr<ProcessStats> ProcessMetrics::ReadStat() const {
  char buffer[kStatBufferBytes];
  const ssize_t n = ReadSmallFile(stat_path_, buffer, sizeof(buffer));
  if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", stat_path_));
  const absl::string_view text(buffer, static_cast<size_t>(n));
  // The command name is in parentheses and may hold spaces and parentheses itself.
  const size_t close = text.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::DataLossError(absl::StrCat(stat_path_, ": no command name"));
  }
  const std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipWhitespace());
  auto field = [&](size_t number, uint64_t* value) {
    const size_t i = number - kStateField;
    return i < fields.size() && absl::SimpleAtoi(fields[i], value);
  };
  uint64_t utime = 0, stime = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  if (!field(kUtimeField, &utime) || !field(kStimeField, &stime) ||
      !field(kStartTimeField, &start_ticks) || !field(kVsizeField, &vsize) ||
      !field(kRssField, &rss_pages)) {
    return absl::DataLossError(absl::StrCat(stat_path_, ": unexpected fields"));
  }
  static const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const uint64_t page_bytes = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ProcessStats stats;
  stats.cpu_seconds = static_cast<double>(utime + stime) / ticks_per_second;
  stats.virtual_bytes = vsize;
  stats.resident_bytes = rss_pages * page_bytes;
  stats.start_time_seconds =
      boot_time_ < 0
          ? std::numeric_limits<double>::quiet_NaN()
          : static_cast<double>(boot_time_) + static_cast<double>(start_ticks) / ticks_per_second;
  return stats;
}

int64_t ProcessMetrics::CountOpenFds() const {
  DIR* dir = ::opendir(fd_path_.c_str());
  if (dir == nullptr) return -1;
  const int own = ::dirfd(dir);
  int64_t count = 0;
  errno = 0;
  while (const struct dirent* entry = ::readdir(dir)) {
    int fd = -1;
    if (absl::SimpleAtoi(entry->d_name, &fd) && fd != own) ++count;
  }
  const bool failed = errno != 0;
  ::closedir(dir);
  return failed ? -1 : count;
}

absl::StatusOr<ProcessStats> ProcessMetrics::Read() const {
  absl::StatusOr<ProcessStats> stats = ReadStat();
  if (!stats.ok()) {
    stat_errors_.Inc();
    return stats.status();
  }
  stats->open_fds = CountOpenFds();
  if (stats->open_fds < 0) fd_errors_.Inc();
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    stats->max_fds =
        limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur > static_cast<rlim_t>(INT64_MAX)
            ? INT64_MAX
            : static_cast<int64_t>(limit.rlim_cur);
  }
  return stats;
}

void ProcessMetrics::AppendPrometheus(std::string& out) const {
  absl::StatusOr<ProcessStats> stats = Read();
  if (!stats.ok()) return;
  AppendFamily(out, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.", stats->cpu_seconds);
  if (stats->max_fds >= 0) {
    AppendFamily(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                 static_cast<double>(stats->max_fds));
  }
  if (stats->open_fds >= 0) {
    AppendFamily(out, "process_open_fds", "gauge", "Number of open file descriptors.",
                 static_cast<double>(stats->open_fds));
  }
  AppendFamily(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
               static_cast<double>(stats->resident_bytes));
  if (!std::isnan(stats->start_time_seconds)) {
    AppendFamily(out, "process_start_time_seconds", "gauge",
                 "Start time of the process since unix epoch in seconds.",
                 stats->start_time_seconds);
  }
  AppendFamily(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
               static_cast<double>(stats->virtual_bytes));
}

}  // namespace meshlet

#pragma once

// The standard Prometheus process metrics, read from procfs when a scraper asks for them:
//
//   process_cpu_seconds_total      counter  user + system CPU time
//   process_resident_memory_bytes  gauge    resident set size
//   process_virtual_memory_bytes   gauge    virtual memory size
//   process_start_time_seconds     gauge    start time, seconds since the Unix epoch
//   process_open_fds               gauge    open file descriptors
//   process_max_fds                gauge    the soft limit on open file descriptors
//
// These names carry no registry prefix and some values are fractional, so they are not registry
// series: the /metrics handlers append ProcessMetrics::AppendPrometheus() to FormatPrometheus().
// Nothing runs between scrapes and nothing touches the request path; one scrape costs an open
// and read of <proc>/self/stat and a listing of <proc>/self/fd (one entry per open descriptor).
//
// Ownership and threads: one ProcessMetrics per exposition handler, holding a counter from the
// registry's shared shard (the registry must outlive it). Read() and AppendPrometheus() are
// const and may run on any thread, concurrently.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/stats.h"

namespace meshlet {

struct ProcessStats {
  double cpu_seconds = 0;
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  double start_time_seconds = 0;  // NaN when the boot time is unknown
  int64_t open_fds = -1;          // -1 when the descriptor listing failed
  int64_t max_fds = -1;           // the soft RLIMIT_NOFILE (INT64_MAX when unlimited); -1: unknown
};

class ProcessMetrics {
 public:
  // `proc` is procfs' mount point (tests pass a directory laid out like it). Reads the boot time
  // from <proc>/stat once, here: it does not change. Registers
  // `meshlet_process_metrics_read_errors_total{source}` (source "stat", "fd", "boot_time").
  explicit ProcessMetrics(StatsRegistry& registry, std::string proc = "/proc");

  // The process's figures now. A part that cannot be read is counted and left out: Read()
  // fails only when <proc>/self/stat cannot be read or parsed (no memory, CPU or start time).
  absl::StatusOr<ProcessStats> Read() const;

  // Appends the six families (HELP, TYPE, value) in Prometheus text format, or nothing when
  // Read() fails; process_open_fds is left out when the listing failed, and
  // process_start_time_seconds when the boot time is unknown.
  void AppendPrometheus(std::string& out) const;

 private:
  absl::StatusOr<ProcessStats> ReadStat() const;
  // Open descriptors, the one the listing itself uses excepted; -1 when the listing fails.
  int64_t CountOpenFds() const;

  const std::string stat_path_;
  const std::string fd_path_;
  // Seconds since the epoch at boot; -1 when <proc>/stat could not be read.
  int64_t boot_time_ = -1;
  Counter stat_errors_;
  Counter fd_errors_;
  Counter boot_time_errors_;
};

}  // namespace meshlet

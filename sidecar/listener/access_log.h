#pragma once

// Access logs: JSON lines appended to a file (or /dev/stdout).
//
// Design choice: every worker writes its own lines straight to a shared file descriptor opened
// with O_APPEND, one writev(2) per line (the line and its newline together). The kernel appends
// each call atomically to a regular file, so lines from different workers never interleave and no
// lock or queue sits between workers. A write costs a few microseconds against the page cache
// (see docs/operations.md for the measurement); a log on a slow device would stall the worker
// that writes, which is the trade-off accepted here for simplicity. Lines longer than PIPE_BUF to
// a pipe may interleave; /dev/stdout to a terminal or file is fine.
//
// Ownership and threads: AccessLogFiles lives on the main thread (owned by the Server) and hands
// out shared_ptr<AccessLogFile>, one per distinct path; workers keep the pointers they were given
// at configuration time, so a file stays open while any listener still logs to it. Write() is
// safe from any thread.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/sync.h"
#include "common/stats/stats.h"
#include "sidecar/listener/worker_context.h"

namespace meshlet::sidecar::listener {

class AccessLogFile final : public AccessLogSink {
 public:
  // Opens `path` for appending (created 0644 if missing). `shared_stats` is the registry's shared
  // shard: its handles may be used from any thread.
  static absl::StatusOr<std::shared_ptr<AccessLogFile>> Open(const std::string& path,
                                                             StatsShard& shared_stats);
  ~AccessLogFile() override;
  AccessLogFile(const AccessLogFile&) = delete;
  AccessLogFile& operator=(const AccessLogFile&) = delete;

  // Appends `json_line` and a newline. Failures are counted (meshlet_access_log_write_errors_total)
  // and logged at most once a second; they never reach the request path.
  void Write(absl::string_view json_line) override;

  const std::string& path() const { return path_; }

 private:
  AccessLogFile(std::string path, int fd, Counter lines, Counter errors)
      : path_(std::move(path)), fd_(fd), lines_(lines), errors_(errors) {}

  const std::string path_;
  const int fd_;
  Counter lines_;
  Counter errors_;
};

// One AccessLogFile per path, so listeners naming the same file share a descriptor.
class AccessLogFiles {
 public:
  explicit AccessLogFiles(StatsShard& shared_stats) : shared_stats_(shared_stats) {}

  // The open file for `path`, opening it on first use.
  absl::StatusOr<std::shared_ptr<AccessLogFile>> Get(const std::string& path);

 private:
  StatsShard& shared_stats_;
  Mutex mu_;
  std::map<std::string, std::weak_ptr<AccessLogFile>> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshlet::sidecar::listener

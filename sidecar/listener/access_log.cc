#include "sidecar/listener/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::listener {

absl::StatusOr<std::shared_ptr<AccessLogFile>> AccessLogFile::Open(const std::string& path,
                                                                   StatsShard& shared_stats) {
  // Only for the proxy's user: lines carry paths with their queries, which may hold secrets.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("access log \"", path, "\": cannot open: ", strerror(errno)));
  }
  absl::StatusOr<Counter> lines =
      shared_stats.RegisterCounter("meshlet_access_log_lines_total", "Access log lines written.");
  absl::StatusOr<Counter> errors = shared_stats.RegisterCounter(
      "meshlet_access_log_write_errors_total", "Access log lines lost to write errors.");
  if (!lines.ok() || !errors.ok()) {
    ::close(fd);
    return !lines.ok() ? lines.status() : errors.status();
  }
  return std::shared_ptr<AccessLogFile>(new AccessLogFile(path, fd, *lines, *errors));
}

AccessLogFile::~AccessLogFile() { ::close(fd_); }

void AccessLogFile::Write(absl::string_view json_line) {
  char newline = '\n';
  iovec iov[2] = {{const_cast<char*>(json_line.data()), json_line.size()}, {&newline, 1}};
  const size_t want = json_line.size() + 1;
  ssize_t n;
  do {
    n = ::writev(fd_, iov, 2);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(want)) {
    lines_.Inc();
    return;
  }
  errors_.Inc();
  LOG_EVERY_N_SEC(WARN, 1) << "access log " << path_ << ": "
                           << (n < 0 ? strerror(errno) : "short write");
}

absl::StatusOr<std::shared_ptr<AccessLogFile>> AccessLogFiles::Get(const std::string& path) {
  MutexLock lock(&mu_);
  if (auto it = files_.find(path); it != files_.end()) {
    if (std::shared_ptr<AccessLogFile> file = it->second.lock()) return file;
  }
  absl::StatusOr<std::shared_ptr<AccessLogFile>> file = AccessLogFile::Open(path, shared_stats_);
  if (!file.ok()) return file.status();
  files_[path] = *file;
  return file;
}

}  // namespace meshlet::sidecar::listener

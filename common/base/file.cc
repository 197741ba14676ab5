#include "common/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshlet {
namespace {

std::string CannotRead(const std::string& path) {
  return absl::StrCat("cannot read \"", path, "\"");
}

// "1 MiB", "64 KiB" or "1000 bytes".
std::string SizeText(size_t bytes) {
  if (bytes > 0 && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes > 0 && bytes % 1024 == 0) return absl::StrCat(bytes >> 10, " KiB");
  return absl::StrCat(bytes, " bytes");
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return absl::ErrnoToStatus(errno, CannotRead(path));
  std::string content;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    // One read for a regular file of known size (plus one to see its end); the size is a hint.
    content.reserve(std::min<size_t>(static_cast<size_t>(st.st_size), max_bytes) + 1);
  }
  char chunk[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, CannotRead(path));
    }
    if (static_cast<size_t>(n) > max_bytes - content.size()) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(CannotRead(path), ": larger than ", SizeText(max_bytes)));
    }
    content.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace meshlet

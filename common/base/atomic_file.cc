#include "common/base/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshlet {
namespace {

// `cannot write "PATH": STEP "FILE": strerror(error)`, coded as errno maps it.
absl::Status CannotWrite(int error, const std::string& path, absl::string_view step,
                         const std::string& file) {
  return absl::ErrnoToStatus(
      error, absl::StrCat("cannot write \"", path, "\": ", step, " \"", file, "\""));
}

// The directory holding `path` ("." for a bare name, "/" for a name in the root).
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes all of `content` to `fd`, retrying short writes and EINTR. Returns 0 or an errno.
int WriteAll(int fd, absl::string_view content) {
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    written += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content,
                                 const WriteFileOptions& options) {
  const std::string dir = DirectoryOf(path);
  if (options.create_directory_mode != 0 &&
      ::mkdir(dir.c_str(), options.create_directory_mode) != 0 && errno != EEXIST) {
    return CannotWrite(errno, path, "creating directory", dir);
  }
  const std::string temp = absl::StrCat(path, ".tmp");
  // O_EXCL after removing a stale temporary: the file is ours, new, and not behind a link.
  if (::unlink(temp.c_str()) != 0 && errno != ENOENT) {
    return CannotWrite(errno, path, "removing", temp);
  }
  int fd;
  do {
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return CannotWrite(errno, path, "creating", temp);
  auto fail = [&](int error, absl::string_view step, const std::string& file) {
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return CannotWrite(error, path, step, file);
  };
  if (const int error = WriteAll(fd, content); error != 0) return fail(error, "writing", temp);
  if (::fchmod(fd, options.mode) != 0) return fail(errno, "setting the mode of", temp);
  if (::fsync(fd) != 0) return fail(errno, "syncing", temp);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail(errno, "closing", temp);
  if (options.replace) {
    if (::rename(temp.c_str(), path.c_str()) != 0) return fail(errno, "renaming", temp);
  } else {
    // link() refuses an existing `path` (EEXIST) where rename() would replace it.
    if (::link(temp.c_str(), path.c_str()) != 0) return fail(errno, "linking", temp);
    ::unlink(temp.c_str());
  }
  // The new name must reach the disk too, or a crash could bring back the old file.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return CannotWrite(errno, path, "opening directory", dir);
  const int synced = ::fsync(dir_fd);
  const int error = errno;
  ::close(dir_fd);
  if (synced != 0) return CannotWrite(error, path, "syncing directory", dir);
  return absl::OkStatus();
}

}  // namespace meshlet

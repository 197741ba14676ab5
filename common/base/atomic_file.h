#pragma once

// Replacing a whole file atomically and durably: the files the programs keep (certificates and
// keys, tokens, the meshctl context, the store's resources, a sidecar's last configuration).
// Blocking (open, write, fsync, rename): never on a worker or a loop that must stay responsive.

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshlet {

struct WriteFileOptions {
  // The file's permissions, exactly: set with fchmod, so the umask does not narrow them.
  mode_t mode = 0600;
  // When not 0 and the file's directory is missing, that directory (the last level only) is
  // created with this mode. When 0, a missing directory is an error (NotFound).
  mode_t create_directory_mode = 0;
  // true: an existing file is replaced (rename). false: the file is only created, and an
  // existing one is an error (AlreadyExists) left as it was (link), so that two processes racing
  // to create it agree on one content.
  bool replace = true;
};

// Writes `content` to `path` so that, even after a crash or power loss, `path` holds either its
// old content or the whole new one, never a part: `content` goes to "PATH.tmp" (created anew,
// mode as asked; a stale one from a crash is removed first), which is fsynced, then moved to
// `path`, and the directory is fsynced so that the move itself is durable. On error nothing is
// left behind but the old file, and the error names the path, the step and the reason, with the
// code errno maps to (NotFound, PermissionDenied, AlreadyExists, ...):
//   cannot write "/var/lib/meshlet/ca.key": creating "/var/lib/meshlet/ca.key.tmp": Permission
//   denied
// Writers of one path must not run concurrently (they share "PATH.tmp"); readers may run at any
// time and see one whole version.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content,
                                 const WriteFileOptions& options = {});

}  // namespace meshlet

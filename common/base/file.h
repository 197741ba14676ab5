#pragma once

// Reading a whole file into memory: configuration, certificates and keys, tokens, saved state.
// Blocking (open, fstat, read): never on a worker or a loop that must stay responsive.

#include <cstddef>
#include <limits>
#include <string>

#include "absl/status/statusor.h"

namespace meshlet {

// The content of the file at `path`. Errors name the path and say why, with the code errno maps
// to (absl::ErrnoToStatus: NotFound, PermissionDenied, ...):
//   cannot read "/etc/meshlet/ca.pem": No such file or directory
// A file longer than `max_bytes` is refused (InvalidArgument) once that many bytes have been
// read: `cannot read "PATH": larger than 1 MiB` (or N KiB, N bytes).
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes = std::numeric_limits<size_t>::max());

}  // namespace meshlet

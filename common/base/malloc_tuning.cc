#include "common/base/malloc_tuning.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"

namespace meshlet {

absl::Status SetMallocTrimThreshold(size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  if (bytes > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("malloc trim threshold ", bytes,
                                                   " is above the largest glibc accepts"));
  }
  // glibc caps the mapping threshold at 32 MiB on 64-bit systems.
  constexpr size_t kMaxMmapThreshold = size_t{32} << 20;
  if (mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) != 1 ||
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min(bytes, kMaxMmapThreshold))) != 1) {
    return absl::InternalError(absl::StrCat("mallopt refused a trim threshold of ", bytes));
  }
  return absl::OkStatus();
}

}  // namespace meshlet

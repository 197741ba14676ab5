#include "common/base/malloc_tuning.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

namespace meshlet {

bool SetMallocTrimThreshold(size_t bytes) {
  if (bytes == 0) return true;
  if (bytes > INT_MAX) return false;
  // glibc caps the mapping threshold at 32 MiB on 64-bit systems.
  constexpr size_t kMaxMmapThreshold = size_t{32} << 20;
  return mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) == 1 &&
         mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min(bytes, kMaxMmapThreshold))) == 1;
}

void ReleaseFreeMemory() { malloc_trim(0); }

}  // namespace meshlet

#pragma once

// glibc malloc settings for a long-running proxy (docs/performance.md, "Memory").
//
// A malloc arena gives the free memory at its top back to the kernel (madvise or sbrk) as soon
// as it passes the trim threshold, 128 KiB by default. A proxy under steady load frees and
// reallocates 16 KiB buffer blocks all the time; when one sits at the top of a worker's arena,
// every free returns its pages and the next allocation faults them in again: hundreds of
// madvise calls, TLB flushes and page faults a second, a few % of the worker's CPU, depending
// only on where the blocks happened to land. A fixed, larger threshold ends that; what an idle
// arena keeps after a burst is bounded by it.

#include <cstddef>

namespace meshlet {

// Sets the trim threshold (and the size from which allocations get their own mapping, which
// glibc stops adapting once the threshold is set) to `bytes`; 0 leaves glibc's defaults. False
// when the allocator has no such setting (a sanitizer's) or refused the value.
bool SetMallocTrimThreshold(size_t bytes);

// Gives the free memory of every arena back to the kernel: the top past no threshold, and the
// whole free pages inside (malloc_trim(0)). Takes the arenas' locks in turn; milliseconds for tens
// of MB of heap, so callers do it on a control thread after bursts of work, never per request.
void ReleaseFreeMemory();

}  // namespace meshlet

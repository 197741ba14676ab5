#pragma once

// Names for the threads a process starts, so `top -H`, `ps -L`, /proc/PID/task/*/comm, gdb and
// perf show "worker-0" or "store" instead of the binary's name for every thread.
//
// SetThreadName names the calling thread; Linux keeps at most 15 bytes, so a longer name is cut
// there (at a byte boundary: names are ASCII by convention). Failure (not Linux, an odd libc) is
// ignored: a name is a debugging aid, never needed for correctness. Call it first thing in the
// thread's function.

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet {

inline constexpr size_t kMaxThreadNameBytes = 15;

void SetThreadName(absl::string_view name);
// The calling thread's name as the kernel holds it; empty if it cannot be read.
std::string CurrentThreadName();

}  // namespace meshlet

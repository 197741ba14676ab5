#pragma once

// Counts calls to the global operator new, for tests and benchmarks that assert or report how
// many heap allocations a piece of work makes. Depending on //common/base:allocation_counter
// replaces the binary's global allocation functions (plain malloc/free plus one relaxed atomic
// increment), so only test and benchmark binaries may depend on it.
//
// The count is process-wide: allocations on other threads during a measured span are counted
// too, so measure spans in which only the measuring thread works.

#include <cstdint>

namespace meshlet {

// Allocations since the process started, on every thread.
uint64_t AllocationsSoFar();

// Allocations made while the scope is alive.
class AllocationScope {
 public:
  AllocationScope() : start_(AllocationsSoFar()) {}
  uint64_t count() const { return AllocationsSoFar() - start_; }

 private:
  uint64_t start_;
};

}  // namespace meshlet

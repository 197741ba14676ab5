#include "common/base/allocation_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace

namespace meshlet {
uint64_t AllocationsSoFar() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace meshlet

// GCC 12 at -O2 reports free() in a replaced operator delete as mismatched with operator new;
// replacing both with malloc/free is what the standard permits.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too: libstdc++'s own route them through the replaced operator new, but a
// sanitizer's runtime replaces them with its own allocator, whose blocks the delete above would
// then free() as a mismatch (nghttp2's session memory allocates with new(std::nothrow)).
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }

#include "common/http/h2/session_memory.h"

#include <cstdint>
#include <cstring>
#include <new>

#include "common/base/free_list.h"

namespace meshlet::http::h2 {
namespace {

using free_list_internal::Allocate;
using free_list_internal::Free;

// In front of every block; 16 bytes keep what follows aligned as malloc's results are.
struct alignas(16) Header {
  // Index into kClassBytes, or kLarge with the usable size in `large_bytes`.
  uint32_t size_class;
  size_t large_bytes;
};
static_assert(sizeof(Header) == 16);

// Whole blocks, header included: 64 B .. 4 KiB. The lists from 256 bytes up are the ones
// RecyclingByteAllocator uses too (same sizes and bound), so they are shared.
constexpr size_t kClassBytes[] = {64, 128, 256, 512, 1024, 2048, 4096};
constexpr uint32_t kClasses = sizeof(kClassBytes) / sizeof(kClassBytes[0]);
constexpr uint32_t kLarge = kClasses;
constexpr size_t kMaxCached = 32;  // blocks per size class and thread

uint32_t ClassFor(size_t usable) {
  for (uint32_t c = 0; c < kClasses; ++c) {
    if (usable + sizeof(Header) <= kClassBytes[c]) return c;
  }
  return kLarge;
}

void* AllocateClass(uint32_t c) {
  switch (c) {
    case 0:
      return Allocate<64, kMaxCached>();
    case 1:
      return Allocate<128, kMaxCached>();
    case 2:
      return Allocate<256, kMaxCached>();
    case 3:
      return Allocate<512, kMaxCached>();
    case 4:
      return Allocate<1024, kMaxCached>();
    case 5:
      return Allocate<2048, kMaxCached>();
    default:
      return Allocate<4096, kMaxCached>();
  }
}

void FreeClass(uint32_t c, void* block) {
  switch (c) {
    case 0:
      return Free<64, kMaxCached>(block);
    case 1:
      return Free<128, kMaxCached>(block);
    case 2:
      return Free<256, kMaxCached>(block);
    case 3:
      return Free<512, kMaxCached>(block);
    case 4:
      return Free<1024, kMaxCached>(block);
    case 5:
      return Free<2048, kMaxCached>(block);
    default:
      return Free<4096, kMaxCached>(block);
  }
}

Header* HeaderOf(const void* p) {
  return reinterpret_cast<Header*>(const_cast<char*>(static_cast<const char*>(p)) - sizeof(Header));
}

size_t Capacity(const Header& h) {
  return h.size_class == kLarge ? h.large_bytes : kClassBytes[h.size_class] - sizeof(Header);
}

void* SessionMalloc(size_t size, void* /*user_data*/) {
  const uint32_t c = ClassFor(size);
  Header* h;
  if (c == kLarge) {
    if (size > SIZE_MAX - sizeof(Header)) return nullptr;
    h = static_cast<Header*>(::operator new(sizeof(Header) + size, std::nothrow));
    if (h == nullptr) return nullptr;
    h->large_bytes = size;
  } else {
    h = static_cast<Header*>(AllocateClass(c));
  }
  h->size_class = c;
  return h + 1;
}

void SessionFree(void* p, void* /*user_data*/) {
  if (p == nullptr) return;
  Header* h = HeaderOf(p);
  if (h->size_class == kLarge) {
    ::operator delete(h);
  } else {
    FreeClass(h->size_class, h);
  }
}

void* SessionCalloc(size_t count, size_t size, void* user_data) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* p = SessionMalloc(count * size, user_data);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

void* SessionRealloc(void* p, size_t size, void* user_data) {
  if (p == nullptr) return SessionMalloc(size, user_data);
  if (size == 0) {
    SessionFree(p, user_data);
    return nullptr;
  }
  const size_t capacity = Capacity(*HeaderOf(p));
  if (size <= capacity) return p;
  void* grown = SessionMalloc(size, user_data);
  if (grown == nullptr) return nullptr;  // p stays valid, as realloc leaves it
  std::memcpy(grown, p, capacity);
  SessionFree(p, user_data);
  return grown;
}

nghttp2_mem memory = {nullptr, &SessionMalloc, &SessionFree, &SessionCalloc, &SessionRealloc};

}  // namespace

nghttp2_mem* RecyclingSessionMemory() { return &memory; }

namespace codec_internal {
size_t SessionBlockCapacity(const void* p) { return Capacity(*HeaderOf(p)); }
}  // namespace codec_internal

}  // namespace meshlet::http::h2

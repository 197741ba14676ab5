#include "common/http/h2/session_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "common/base/allocation_counter.h"
#include "common/base/free_list.h"

namespace meshlet::http::h2 {
namespace {

using codec_internal::SessionBlockCapacity;

class SessionMemoryTest : public ::testing::Test {
 protected:
  void* Malloc(size_t n) { return mem_->malloc(n, mem_->mem_user_data); }
  void Free(void* p) { mem_->free(p, mem_->mem_user_data); }
  void* Calloc(size_t a, size_t b) { return mem_->calloc(a, b, mem_->mem_user_data); }
  void* Realloc(void* p, size_t n) { return mem_->realloc(p, n, mem_->mem_user_data); }

  nghttp2_mem* mem_ = RecyclingSessionMemory();
};

TEST_F(SessionMemoryTest, AFreedBlockIsTheNextAllocationOfItsSizeClassWithoutTheHeap) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  // A stream's worth of nghttp2 blocks, as a request allocates and frees them.
  const size_t sizes[] = {40, 150, 300, 700, 1500, 3000};
  void* first[6];
  for (int i = 0; i < 6; ++i) first[i] = Malloc(sizes[i]);
  for (void* p : first) Free(p);
  AllocationScope scope;
  for (int i = 0; i < 6; ++i) {
    void* again = Malloc(sizes[i] - 10);  // same class, not the same size
    EXPECT_EQ(again, first[i]) << sizes[i];
    Free(again);
  }
  EXPECT_EQ(scope.count(), 0u);
}

TEST_F(SessionMemoryTest, BlocksAreAlignedAndHoldWhatWasAskedFor) {
  for (size_t n : {0, 1, 47, 48, 49, 112, 4080, 4081, 100000}) {
    auto* p = static_cast<unsigned char*>(Malloc(n));
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    EXPECT_GE(SessionBlockCapacity(p), n);
    std::memset(p, 0xab, n);  // the whole block is usable (ASan and valgrind check the bounds)
    Free(p);
  }
  Free(nullptr);
}

TEST_F(SessionMemoryTest, CallocZeroesARecycledBlock) {
  auto* dirty = static_cast<unsigned char*>(Malloc(200));
  std::memset(dirty, 0xff, 200);
  Free(dirty);
  auto* p = static_cast<unsigned char*>(Calloc(25, 8));
  for (size_t i = 0; i < 200; ++i) ASSERT_EQ(p[i], 0) << i;
  Free(p);
  EXPECT_EQ(Calloc(SIZE_MAX / 2, 4), nullptr);  // the product overflows
}

TEST_F(SessionMemoryTest, ReallocKeepsTheBytesAcrossSizeClassesAndIntoLargeBlocks) {
  std::string expected;
  char* p = static_cast<char*>(Realloc(nullptr, 10));
  for (size_t size : {10, 40, 100, 1000, 5000, 20000, 30}) {
    p = static_cast<char*>(Realloc(p, size));
    ASSERT_NE(p, nullptr);
    ASSERT_GE(SessionBlockCapacity(p), size);
    const size_t kept = std::min(expected.size(), size);
    ASSERT_EQ(std::string(p, kept), expected.substr(0, kept)) << size;
    expected.resize(size);
    for (size_t i = 0; i < size; ++i) expected[i] = static_cast<char>('a' + (i * 7 + size) % 26);
    std::memcpy(p, expected.data(), size);
  }
  // Shrinking stays in place.
  char* same = static_cast<char*>(Realloc(p, 8));
  EXPECT_EQ(same, p);
  EXPECT_EQ(std::string(same, 8), expected.substr(0, 8));
  EXPECT_EQ(Realloc(same, 0), nullptr);  // frees
}

TEST_F(SessionMemoryTest, ABlockFreedOnAnotherThreadJoinsThatThreadsList) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  void* p = Malloc(500);
  std::thread other([&] {
    Free(p);
    void* again = Malloc(500);
    EXPECT_EQ(again, p);
    Free(again);
  });
  other.join();
}

}  // namespace
}  // namespace meshlet::http::h2

#include "common/base/free_list.h"

#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/allocation_counter.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

struct Request : ThreadRecycled<Request, 4> {
  char payload[200] = {};
  int id = 0;
};

// Another type of the same size shares the list for that size.
struct Twin : ThreadRecycled<Twin, 4> {
  char payload[200 + sizeof(int)] = {};
};

TEST(FreeListTest, ObjectsMadePerRequestReuseTheirMemory) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  auto warm = std::make_unique<Request>();
  Request* first = warm.get();
  warm.reset();
  AllocationScope scope;
  for (int i = 0; i < 100; ++i) {
    auto r = std::make_unique<Request>();
    r->id = i;
    EXPECT_EQ(r.get(), first);
  }
  EXPECT_EQ(scope.count(), 0u);
}

TEST(FreeListTest, KeepsAtMostItsLimit) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  std::vector<std::unique_ptr<Request>> many;
  for (int i = 0; i < 10; ++i) many.push_back(std::make_unique<Request>());
  many.clear();
  EXPECT_EQ(Request::ThreadCachedCount(), 4u);
  // Blocks of the same size serve another type too.
  static_assert(sizeof(Twin) == sizeof(Request));
  auto twin = std::make_unique<Twin>();
  EXPECT_EQ(Request::ThreadCachedCount(), 3u);
}

TEST(FreeListTest, EachThreadHasItsOwnList) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  std::unique_ptr<Request>().reset(new Request());
  const size_t here = Request::ThreadCachedCount();
  // Made here, freed there: the block joins the other thread's list.
  auto r = std::make_unique<Request>();
  size_t there = 0;
  std::thread([&] {
    r.reset();
    there = Request::ThreadCachedCount();
  }).join();
  EXPECT_EQ(there, 1u);
  EXPECT_EQ(Request::ThreadCachedCount(), here - 1);
}

TEST(FreeListTest, ListNodesComeFromTheFreeList) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  std::list<int, RecyclingAllocator<int>> list;
  list.push_back(1);
  list.pop_back();
  AllocationScope scope;
  for (int i = 0; i < 100; ++i) {
    list.push_back(i);
    list.pop_front();
  }
  EXPECT_EQ(scope.count(), 0u);
  EXPECT_TRUE(list.empty());
}

TEST(FreeListTest, GrowingByteStorageReusesItsBlocks) {
  if (free_list_internal::kBypass) GTEST_SKIP() << "free lists are off under AddressSanitizer";
  using Bytes = std::basic_string<char, std::char_traits<char>, RecyclingByteAllocator<char>>;
  auto fill = [] {
    Bytes bytes;
    for (int i = 0; i < 3000; ++i) bytes.push_back(static_cast<char>('a' + i % 26));
    // Larger than the biggest class: plain operator new, still correct.
    Bytes big(10000, 'x');
    return bytes.size() + big.size();
  };
  EXPECT_EQ(fill(), 13000u);
  AllocationScope scope;
  EXPECT_EQ(fill(), 13000u);
  // Only the block above 4 KiB comes from the heap again.
  EXPECT_EQ(scope.count(), 1u);
}

}  // namespace
}  // namespace meshlet

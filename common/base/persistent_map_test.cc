#include "common/base/persistent_map.h"

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet {
namespace {

TEST(PersistentMapTest, SubscriptAddsOrChangesInPlaceLeavingCopiesAsTheyWere) {
  PersistentMap<std::shared_ptr<const int>> map;
  for (int i = 0; i < 100; ++i) map.emplace("k" + std::to_string(i), std::make_shared<int>(i));
  const PersistentMap<std::shared_ptr<const int>> copy = map;

  map["k7"] = std::make_shared<int>(700);
  EXPECT_EQ(map["absent"], nullptr);  // added, value-initialized
  map["new"] = std::make_shared<int>(1);

  EXPECT_EQ(map.size(), 102u);
  EXPECT_EQ(*map.at("k7"), 700);
  EXPECT_EQ(*map.at("new"), 1);
  EXPECT_EQ(*map.at("k8"), 8);
  // The copy shared the changed path before the change: it is as it was.
  EXPECT_EQ(copy.size(), 100u);
  EXPECT_EQ(*copy.at("k7"), 7);
  EXPECT_FALSE(copy.contains("new"));
  EXPECT_FALSE(copy.contains("absent"));
  size_t differ = 0;
  PersistentMap<std::shared_ptr<const int>>::Diff(
      copy, map, [&](const std::string&, const auto*, const auto*) { ++differ; });
  EXPECT_EQ(differ, 3u);
}

// A node is one allocation holding its count: the entry (a 32-byte name and the int, padded to
// 8), the count (4, padded), the priority and two 8-byte child pointers. With std::shared_ptr
// nodes and a sum kept without a summary it was 112 bytes (a 16-byte control block, 16 per
// child, 16 of sums).
static_assert(PersistentMap<int>::NodeBytes() == sizeof(std::string) + 8 + 8 + 8 + 2 * 8);

struct LengthSummary {
  static uint64_t Of(const std::string& name, int value) {
    return name.size() * 1000 + static_cast<uint64_t>(value);
  }
};

TEST(PersistentMapTest, SumsFollowChangesOfEveryCopy) {
  PersistentMap<int, LengthSummary> a;
  uint64_t expected = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string name = "name-" + std::to_string(i);
    a.insert_or_assign(name, i);
    expected += LengthSummary::Of(name, i);
  }
  EXPECT_EQ(a.Sum(), expected);
  PersistentMap<int, LengthSummary> b = a;
  b.insert_or_assign("name-7", 1007);  // replaced: the sum follows the new value
  b.erase("name-8");
  b.insert_or_assign("extra", 1);
  EXPECT_EQ(a.Sum(), expected);
  EXPECT_EQ(b.Sum(), expected - LengthSummary::Of("name-7", 7) + LengthSummary::Of("name-7", 1007) -
                         LengthSummary::Of("name-8", 8) + LengthSummary::Of("extra", 1));
  b = PersistentMap<int, LengthSummary>();
  EXPECT_EQ(b.Sum(), 0u);
  EXPECT_EQ(PersistentMap<int>().Sum(), 0u);
}

TEST(PersistentMapTest, CopiesSharedAcrossThreadsLetGoOnAnyOfThem) {
  PersistentMap<std::string> base;
  for (int i = 0; i < 1000; ++i) base.insert_or_assign("k" + std::to_string(i), "v");
  std::vector<PersistentMap<std::string>> copies(8, base);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < copies.size(); ++t) {
    threads.emplace_back([&copies, t] {
      PersistentMap<std::string>& mine = copies[t];
      for (int i = 0; i < 1000; i += 3) mine.insert_or_assign("k" + std::to_string(i), "changed");
      for (int i = 1; i < 1000; i += 3) mine.erase("k" + std::to_string(i));
      mine = PersistentMap<std::string>();
    });
  }
  for (int i = 2; i < 1000; i += 3) base.insert_or_assign("k" + std::to_string(i), "base");
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(base.size(), 1000u);
  EXPECT_EQ(base.at("k0"), "v");
  EXPECT_EQ(base.at("k2"), "base");
}

}  // namespace
}  // namespace meshlet

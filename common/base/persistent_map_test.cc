#include "common/base/persistent_map.h"

#include <memory>
#include <string>

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

}  // namespace
}  // namespace meshlet

// ResourceMap against std::map under random changes (order, lookups, versions, copies left
// untouched by changes to the map they came from), and its diff costing per difference between
// maps derived one from the other.

#include "control-plane/xds/resource_map.h"

#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/xds/resource_set.h"
#include "gtest/gtest.h"
#include "xds/version.h"

namespace meshlet::controlplane::ads {
namespace {

using Reference = std::map<std::string, ResourcePtr>;

ResourcePtr Resource(const std::string& name, int version) {
  auto out = std::make_shared<NamedResource>();
  out->name = name;
  out->version = absl::StrCat("v", version);
  return out;
}

void ExpectSame(const ResourceMap& map, const Reference& reference) {
  ASSERT_EQ(map.size(), reference.size());
  auto it = map.begin();
  for (const auto& [name, resource] : reference) {
    ASSERT_TRUE(it != map.end());
    EXPECT_EQ(it->first, name);
    EXPECT_EQ(it->second, resource);
    ++it;
    ASSERT_TRUE(map.contains(name));
    EXPECT_EQ(map.at(name), resource);
    EXPECT_EQ(map.find(name)->second, resource);
  }
  EXPECT_TRUE(it == map.end());
  EXPECT_EQ(TypeVersion(map),
            xds::TypeVersion(reference, [](const ResourcePtr& r) { return r->version; }));
}

TEST(ResourceMapTest, BehavesAsAnOrderedMapAndCopiesStayAsTheyWere) {
  std::mt19937 random(7);
  ResourceMap map;
  Reference reference;
  std::vector<std::pair<ResourceMap, Reference>> copies;
  for (int step = 0; step < 4000; ++step) {
    const std::string name = absl::StrCat("outbound|80||svc-", random() % 500, ".bench");
    switch (random() % 4) {
      case 0:
      case 1: {
        ResourcePtr resource = Resource(name, step);
        EXPECT_EQ(map.insert_or_assign(name, resource), !reference.contains(name));
        reference[name] = resource;
        break;
      }
      case 2: {
        ResourcePtr resource = Resource(name, step);
        EXPECT_EQ(map.emplace(name, resource), reference.emplace(name, resource).second);
        break;
      }
      default:
        EXPECT_EQ(map.erase(name), reference.erase(name));
        EXPECT_FALSE(map.contains(name));
        EXPECT_TRUE(map.find(name) == map.end());
    }
    if (step % 400 == 0) copies.emplace_back(map, reference);
  }
  ExpectSame(map, reference);
  for (const auto& [copy, as_it_was] : copies) ExpectSame(copy, as_it_was);
  // Iteration from a found entry goes on in name order.
  auto it = map.find(reference.begin()->first);
  EXPECT_EQ(std::distance(it, map.end()), static_cast<ptrdiff_t>(reference.size()));
  map.clear();
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(map.begin() == map.end());
  EXPECT_EQ(TypeVersion(map), "cbf29ce484222325");
}

// The diff reports exactly the differences, in name order, between any two maps.
TEST(ResourceMapTest, DiffFindsEveryDifference) {
  std::mt19937 random(11);
  ResourceMap from;
  for (int i = 0; i < 300; ++i) from.insert_or_assign(absl::StrCat("r", i), Resource("r", i));
  for (int round = 0; round < 20; ++round) {
    ResourceMap to = round % 2 == 0 ? from : ResourceMap();
    if (round % 2 == 1) {
      for (const auto& [name, resource] : from) to.emplace(name, resource);  // built anew
    }
    for (int change = 0; change < round * 3; ++change) {
      const std::string name = absl::StrCat("r", random() % 400);
      if (random() % 3 == 0) {
        to.erase(name);
      } else {
        to.insert_or_assign(name, Resource(name, 1000 + change));
      }
    }
    Reference expected_before, expected_after;
    for (const auto& [name, resource] : from) {
      const ResourcePtr* now = to.Get(name);
      if (now == nullptr || *now != resource) expected_before[name] = resource;
    }
    for (const auto& [name, resource] : to) {
      const ResourcePtr* was = from.Get(name);
      if (was == nullptr || *was != resource) expected_after[name] = resource;
    }
    Reference before, after;
    std::string last;
    ResourceMap::Diff(from, to,
                      [&](const std::string& name, const ResourcePtr* b, const ResourcePtr* a) {
                        EXPECT_LT(last, name);
                        last = name;
                        ASSERT_TRUE(b != nullptr || a != nullptr);
                        if (b != nullptr) before[name] = *b;
                        if (a != nullptr) after[name] = *a;
                      });
    EXPECT_EQ(before, expected_before) << "round " << round;
    EXPECT_EQ(after, expected_after) << "round " << round;
    EXPECT_EQ(from == to, expected_before.empty() && expected_after.empty());
  }
}

// A map derived from another by a few changes shares the rest: their diff, like a change to
// either, walks a path per changed name, not the 15 000 entries.
TEST(ResourceMapTest, DiffOfDerivedMapsComparesPerChange) {
  ResourceMap base;
  auto name_of = [](int i) { return absl::StrCat("outbound|80||svc-", i, ".bench.svc.local"); };
  for (int i = 0; i < 15000; ++i) base.insert_or_assign(name_of(i), Resource(name_of(i), i));
  // A changed resource: the shape stays, only the path to it differs (a treap of 15 000 names
  // is about 40 deep at most, whatever its priorities).
  for (int i = 0; i < 15000; i += 1499) {
    ResourceMap changed = base;
    changed.insert_or_assign(name_of(i), Resource(name_of(i), -1));
    int differences = 0;
    const size_t compared = ResourceMap::Diff(
        base, changed,
        [&](const std::string&, const ResourcePtr*, const ResourcePtr*) { ++differences; });
    EXPECT_EQ(differences, 1);
    EXPECT_LT(compared, 100u) << name_of(i);  // a full walk compares 15 000
    EXPECT_NE(TypeVersion(base), TypeVersion(changed));
  }
  // A name added or removed also walks the subtree it heads (about 2 ln n entries on average;
  // the bound leaves room for an unlucky priority).
  ResourceMap changed = base;
  changed.erase(name_of(77));
  changed.insert_or_assign("outbound|80||svc-new", Resource("outbound|80||svc-new", 1));
  int differences = 0;
  const size_t compared = ResourceMap::Diff(
      base, changed,
      [&](const std::string&, const ResourcePtr*, const ResourcePtr*) { ++differences; });
  EXPECT_EQ(differences, 2);
  EXPECT_LT(compared, 7500u);
  EXPECT_EQ(base.size(), 15000u);
  EXPECT_EQ(changed.size(), 15000u);
}

}  // namespace
}  // namespace meshlet::controlplane::ads

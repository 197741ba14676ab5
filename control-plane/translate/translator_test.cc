// End to end: Translate and MeshTranslator as callers use them — deterministic output and
// versions, the shared outbound part (TranslationCache, OutboundKey) equal to translating alone.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, DeterministicWhateverTheInputOrder) {
  const NodeResources first = Translate(policy_, registry_, node_);
  const std::string first_bytes = Bytes(first);
  std::mt19937 shuffle(42);
  for (int i = 0; i < 5; ++i) {
    policy::PolicySnapshot shuffled = policy_;
    std::shuffle(shuffled.services.begin(), shuffled.services.end(), shuffle);
    std::shuffle(shuffled.http_routes.begin(), shuffled.http_routes.end(), shuffle);
    EXPECT_EQ(Bytes(Translate(shuffled, registry_, node_)), first_bytes);
  }
  EXPECT_EQ(Content(first.clusters), Content(Translate(policy_, registry_, node_).clusters));
  // Each list is ordered by name.
  for (size_t i = 1; i < first.clusters.size(); ++i) {
    EXPECT_LT(first.clusters[i - 1].name(), first.clusters[i].name());
  }
}

TEST_F(TranslatorTest, VersionsFollowContent) {
  const NodeResources before = Translate(policy_, registry_, node_);
  registry_.workloads[3].ready = false;  // reviews-v2-0 stops being ready
  const NodeResources after = Translate(policy_, registry_, node_);
  // Only the endpoints change: the other types keep their content, so their versions.
  EXPECT_EQ(Content(before.clusters), Content(after.clusters));
  EXPECT_EQ(Content(before.routes), Content(after.routes));
  EXPECT_EQ(Content(before.listeners), Content(after.listeners));
  EXPECT_NE(Content(before.endpoints), Content(after.endpoints));
}

TEST_F(TranslatorTest, CacheGivesTheSameResultAsTranslatingAlone) {
  TranslationCache cache;
  policy_.revision = 7;
  registry_.version = 3;
  for (const auto& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << w.id;
  }
  TranslationCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, registry_.workloads.size() - 1);

  // New inputs (a new revision) are never answered from old entries.
  policy_.revision = 8;
  policy_.http_routes.clear();
  EXPECT_EQ(Bytes(Translate(policy_, registry_, node_, {}, &cache)),
            Bytes(Translate(policy_, registry_, node_)));
  EXPECT_EQ(cache.stats().misses, 2u);

  // Scoped nodes share entries only with nodes that reach the same services.
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  policy_.revision = 9;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  for (const auto& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << w.id;
  }
  // frontend (frontend + reviews) and the reviews workloads (reviews only): two entries.
  EXPECT_EQ(cache.stats().misses, 4u);
}

// MeshTranslator's two parts together are exactly Translate(), and its keys group nodes whose
// outbound parts are identical.
TEST_F(TranslatorTest, MeshTranslatorPartsMakeTheWholeTranslation) {
  auto check = [&](absl::string_view what) {
    auto policy = std::make_shared<const PolicySnapshot>(policy_);
    auto registry = std::make_shared<const RegistrySnapshot>(registry_);
    MeshTranslator mesh(policy, registry, {});
    std::map<std::string, std::string> outbound_by_key;
    for (const auto& w : registry_.workloads) {
      xds::Node node;
      node.set_id(w.id);
      NodeResources outbound = mesh.TranslateOutbound(node);
      NodeResources local = mesh.TranslateLocal(node);
      EXPECT_TRUE(outbound.listeners.empty()) << what;
      for (const auto& c : local.clusters) {
        EXPECT_TRUE(absl::StartsWith(c.name(), "inbound|"));
      }
      const std::string shared = Bytes(outbound);
      auto [it, inserted] = outbound_by_key.emplace(mesh.OutboundKey(node), shared);
      if (!inserted) {
        EXPECT_EQ(it->second, shared) << what << " " << w.id;
      }
      // Merge the parts the way a caller does and compare with the one-shot translation.
      NodeResources merged = std::move(local);
      for (auto& r : outbound.routes) merged.routes.push_back(std::move(r));
      for (auto& c : outbound.clusters) merged.clusters.push_back(std::move(c));
      for (auto& e : outbound.endpoints) merged.endpoints.push_back(std::move(e));
      auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
      std::sort(merged.routes.begin(), merged.routes.end(), by_name);
      std::sort(merged.clusters.begin(), merged.clusters.end(), by_name);
      EXPECT_EQ(Bytes(merged), Bytes(Translate(*policy, *registry, node))) << what << " " << w.id;
    }
    return outbound_by_key.size();
  };
  EXPECT_EQ(check("unscoped"), 1u);
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  // frontend (frontend + reviews) and the reviews workloads (reviews only).
  EXPECT_EQ(check("scoped"), 2u);
}

TEST_F(CaptureTest, NodesWithoutCaptureGetExactlyWhatTheyGotWithoutAddresses) {
  policy::PolicySnapshot without = policy_;
  for (pb::Service& s : without.services) {
    s.clear_status();
    s.mutable_spec()->clear_addresses();
  }
  for (const registry::Workload& w : registry_.workloads) {
    xds::Node node;
    node.set_id(w.id);
    const NodeResources with = Translate(policy_, registry_, node);
    EXPECT_EQ(Bytes(with), Bytes(Translate(without, registry_, node))) << w.id;
    for (const xds::Listener& l : with.listeners) {
      EXPECT_FALSE(l.use_original_destination());
      EXPECT_EQ(l.destinations_size(), 0);
    }
  }
}

TEST_F(CaptureTest, CapturedAndOtherNodesShareNoOutboundPart) {
  Capture(registry_.workloads[0]);
  policy_.revision = 4;
  registry_.version = 2;
  auto policy = std::make_shared<const PolicySnapshot>(policy_);
  auto registry = std::make_shared<const RegistrySnapshot>(registry_);
  MeshTranslator mesh(policy, registry, {});
  xds::Node captured, plain;
  captured.set_id("frontend-0");
  plain.set_id("reviews-v1-0");
  EXPECT_NE(mesh.OutboundKey(captured), mesh.OutboundKey(plain));
  TranslationCache cache;
  for (const xds::Node& node : {plain, captured, plain}) {
    EXPECT_EQ(Bytes(Translate(policy_, registry_, node, {}, &cache)),
              Bytes(Translate(policy_, registry_, node)))
        << node.id();
  }
  EXPECT_EQ(cache.stats().misses, 2u);
}

// A sidecar of a 5 000-Service mesh that reads ServiceRoutes gets no resource that grows with the
// mesh (the inline table passes 4 MiB at about 3 850 Services): every one stays under 64 KiB.
TEST(TranslatorScaleTest, NoResourceAbove64KiBForACapableNodeOf5000Services) {
  policy::PolicySnapshot policy;
  registry::RegistrySnapshot registry;
  BuildScaleMesh(5000, 1, policy, registry);
  xds::Node node;
  node.set_id("svc-0-0");
  for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
  const NodeResources r = Translate(policy, registry, node);
  EXPECT_EQ(r.service_routes.size(), 5000u);
  size_t largest = 0;
  std::string name;  // its type
  auto check = [&](const auto& list) {
    for (const auto& m : list) {
      if (m.ByteSizeLong() > largest) {
        largest = m.ByteSizeLong();
        name = m.GetTypeName();
      }
    }
  };
  check(r.listeners);
  check(r.routes);
  check(r.service_routes);
  check(r.clusters);
  check(r.endpoints);
  EXPECT_LE(largest, 64u * 1024) << name;
}

}  // namespace
}  // namespace meshlet::controlplane::translate

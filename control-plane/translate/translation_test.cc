// The context of one translation (translation.cc): the node, the services it reaches, the
// settings that apply to a service.

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
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"

namespace meshlet::controlplane::translate {
namespace {

TEST_F(TranslatorTest, ScopeToDependencies) {
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads.push_back(MakeWorkload("ratings-0", "ratings", "10.0.3.1"));
  NodeResources none = Translate(policy_, registry_, node_);
  EXPECT_EQ(Host(none, "outbound", "reviews.default:9080"), nullptr);
  EXPECT_EQ(Host(none, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_NE(Host(none, "outbound", "frontend.default:8080"), nullptr);  // its own service

  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  NodeResources some = Translate(policy_, registry_, node_);
  EXPECT_NE(Host(some, "outbound", "reviews.default:9080"), nullptr);
  EXPECT_EQ(Host(some, "outbound", "ratings.default:9080"), nullptr);
  EXPECT_EQ(Named(some.clusters, "outbound|9080||ratings.default"), nullptr);
  EXPECT_LT(some.clusters.size(), Translate(policy_, registry_, node_).clusters.size() + 1);
}

TEST_F(CaptureTest, WorkloadCaptureComesFromItsNodeLabel) {
  xds::Node node;
  node.set_id("x");
  EXPECT_FALSE(registry::WorkloadFromNode(node).capture);
  (*node.mutable_labels())[registry::kCaptureLabel] = "iptables";
  EXPECT_TRUE(registry::WorkloadFromNode(node).capture);
  (*node.mutable_labels())[registry::kCaptureLabel] = "nftables";
  EXPECT_FALSE(registry::WorkloadFromNode(node).capture);
}

// The context on its own.

ServiceView View(std::string ns, std::string name) {
  ServiceView s;
  s.namespace_ = std::move(ns);
  s.name = std::move(name);
  return s;
}

TEST_F(TranslatorTest, DependenciesNameServicesNamespacesOrAllOfANamespace) {
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = " reviews , ratings.shop,*.ops";
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_TRUE(ctx.Reachable(View("default", "frontend")));  // its own
  EXPECT_TRUE(ctx.Reachable(View("default", "reviews")));   // the node's namespace
  EXPECT_FALSE(ctx.Reachable(View("shop", "reviews")));
  EXPECT_TRUE(ctx.Reachable(View("shop", "ratings")));
  EXPECT_FALSE(ctx.Reachable(View("default", "ratings")));
  EXPECT_TRUE(ctx.Reachable(View("ops", "anything")));
  EXPECT_FALSE(ctx.Reachable(View("default", "db")));
  // Unscoped: everything.
  policy_.mesh_config.reset();
  const TranslationContext unscoped(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_TRUE(unscoped.Reachable(View("default", "db")));
}

TEST_F(TranslatorTest, TheNodeIsItsRegistrationElseItsNode) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext registered(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_EQ(registered.self.service, "frontend");
  EXPECT_EQ(registered.self.ports, std::vector<uint32_t>{8081});
  xds::Node stranger;
  stranger.set_id("stranger");
  (*stranger.mutable_labels())[registry::kCaptureLabel] = registry::kCaptureIptables;
  const TranslationContext unregistered(policy_, registry_, index, stranger, kDefaultOptions);
  EXPECT_EQ(unregistered.self.id, "stranger");
  EXPECT_TRUE(unregistered.self.capture);
}

TEST_F(TranslatorTest, RetriesMergeFieldByFieldRuleOverPolicyOverMesh) {
  pb::MeshConfig mesh;
  mesh.mutable_spec()->mutable_default_retries()->mutable_attempts()->set_value(5);
  mesh.mutable_spec()->mutable_default_retries()->mutable_backoff_base()->set_nanos(10000000);
  mesh.mutable_spec()->mutable_default_retries()->add_retry_on("5xx");
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_request()->set_seconds(9);
  mesh.mutable_spec()->mutable_default_timeouts()->mutable_idle()->set_seconds(60);
  policy_.mesh_config = mesh;
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  const pb::TrafficPolicySpec* tp = ctx.PolicyFor(*index.services.at({"default", "reviews"}));
  ASSERT_NE(tp, nullptr);  // attempts 3, retryOn [connect-failure, reset], budgetPercent 25
  EXPECT_EQ(ctx.PolicyFor(*index.services.at({"default", "frontend"})), nullptr);

  pb::Retries rule;
  rule.mutable_attempts()->set_value(1);
  const pb::Retries merged = ctx.EffectiveRetries(tp, &rule);
  EXPECT_EQ(merged.attempts().value(), 1u);                 // the rule's
  EXPECT_EQ(merged.retry_on_size(), 2);                     // the TrafficPolicy's
  EXPECT_DOUBLE_EQ(merged.budget_percent().value(), 25.0);  // the TrafficPolicy's
  EXPECT_EQ(merged.backoff_base().nanos(), 10000000);       // the mesh's
  const pb::Retries mesh_only = ctx.EffectiveRetries(nullptr, nullptr);
  EXPECT_EQ(mesh_only.attempts().value(), 5u);
  EXPECT_EQ(mesh_only.retry_on(0), "5xx");

  const pb::Timeouts timeouts = ctx.EffectiveTimeouts(tp);
  EXPECT_EQ(timeouts.request().seconds(), 2);  // the TrafficPolicy's 2s over the mesh's 9s
  EXPECT_EQ(timeouts.idle().seconds(), 60);    // the mesh's
  EXPECT_EQ(timeouts.per_try().nanos(), 500000000);
  EXPECT_EQ(ctx.EffectiveTimeouts(nullptr).request().seconds(), 9);
}

TEST_F(TranslatorTest, MtlsModeAndTrustDomainDefaults) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext defaults(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_EQ(defaults.MtlsMode(nullptr), "PERMISSIVE");
  EXPECT_EQ(defaults.TrustDomain(), "cluster.local");
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_mtls("STRICT");
  mesh.mutable_spec()->set_trust_domain("example.org");
  policy_.mesh_config = mesh;
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  EXPECT_EQ(ctx.MtlsMode(nullptr), "STRICT");
  pb::TrafficPolicySpec tp;
  EXPECT_EQ(ctx.MtlsMode(&tp), "STRICT");  // a TrafficPolicy without a mode
  tp.set_mtls("DISABLE");
  EXPECT_EQ(ctx.MtlsMode(&tp), "DISABLE");
  EXPECT_EQ(ctx.TrustDomain(), "example.org");
}

}  // namespace
}  // namespace meshlet::controlplane::translate

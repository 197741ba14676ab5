#include "control-plane/xds/node_resources.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace meshlet::controlplane::ads {
namespace {

namespace pb = ::meshlet::policy;

// Two services with registered workloads; the policy has a TrafficPolicy whose retries change.
struct Inputs {
  std::shared_ptr<policy::PolicySnapshot> policy = std::make_shared<policy::PolicySnapshot>();
  std::shared_ptr<registry::RegistrySnapshot> registry =
      std::make_shared<registry::RegistrySnapshot>();

  Inputs() {
    for (const char* name : {"a", "b"}) {
      pb::Service service;
      service.mutable_metadata()->set_name(name);
      service.mutable_metadata()->set_namespace_("default");
      service.mutable_spec()->add_ports()->set_port(8080);
      policy->services.push_back(service);
      for (int i = 0; i < 3; ++i) {
        registry::Workload w;
        w.id = absl::StrCat(name, "-", i);
        w.service = name;
        w.namespace_ = "default";
        w.addresses = {absl::StrCat("10.0.0.", registry->workloads.size() + 1)};
        w.ports = {static_cast<uint32_t>(9000 + i)};
        registry->workloads.push_back(w);
      }
    }
    pb::TrafficPolicy tp;
    tp.mutable_metadata()->set_name("a");
    tp.mutable_metadata()->set_namespace_("default");
    tp.mutable_spec()->set_target("a");
    tp.mutable_spec()->mutable_retries()->mutable_attempts()->set_value(1);
    policy->traffic_policies.push_back(tp);
    policy->revision = 1;
    registry->version = 1;
  }

  static xds::Node Node(const std::string& id) {
    xds::Node node;
    node.set_id(id);
    return node;
  }
};

std::map<std::string, std::string> Versions(const ResourceMap& map) {
  std::map<std::string, std::string> out;
  for (const auto& [name, r] : map) out[name] = r->version;
  return out;
}

TEST(NodeResourceGeneratorTest, SameResourcesAsTranslatingEachNodeAlone) {
  Inputs in;
  NodeResourceGenerator generator({});
  for (const registry::Workload& w : in.registry->workloads) {
    const NodeResourceSet shared = generator.Generate(in.policy, in.registry, Inputs::Node(w.id));
    const NodeResourceSet alone =
        PackNodeResources(translate::Translate(*in.policy, *in.registry, Inputs::Node(w.id)));
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(shared.of(type)), Versions(alone.of(type))) << w.id << TypeLabel(type);
      EXPECT_EQ(TypeVersion(shared.of(type)), TypeVersion(alone.of(type)));
    }
    EXPECT_EQ(shared.warnings, alone.warnings);
  }
  EXPECT_EQ(generator.stats().outbound_builds, 1u);
  EXPECT_EQ(generator.stats().outbound_shared, in.registry->workloads.size() - 1);
}

// Captured nodes (meshlet.io/capture) get an outbound part of their own (capture listeners'
// clusters, hosts answering to Service addresses), shared among them, and each still gets exactly
// what translating it alone gives.
TEST(NodeResourceGeneratorTest, CapturedNodesShareTheirOwnOutboundPart) {
  Inputs in;
  in.policy->services[0].mutable_status()->add_addresses("240.240.0.1");
  pb::ServicePort* tcp = in.policy->services[1].mutable_spec()->add_ports();
  tcp->set_port(5432);
  tcp->set_protocol("TCP");
  in.policy->services[1].mutable_spec()->add_addresses("10.96.0.2");
  for (registry::Workload& w : in.registry->workloads) {
    if (w.id.back() == '0') continue;  // a-0 and b-0 are not captured
    w.labels[registry::kCaptureLabel] = registry::kCaptureIptables;
    w.capture = true;
  }
  NodeResourceGenerator generator({});
  for (const registry::Workload& w : in.registry->workloads) {
    const NodeResourceSet shared = generator.Generate(in.policy, in.registry, Inputs::Node(w.id));
    const NodeResourceSet alone =
        PackNodeResources(translate::Translate(*in.policy, *in.registry, Inputs::Node(w.id)));
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(shared.of(type)), Versions(alone.of(type))) << w.id << TypeLabel(type);
    }
    EXPECT_EQ(shared.warnings, alone.warnings);
  }
  EXPECT_EQ(generator.stats().outbound_builds, 2u);  // captured, and not
}

// A rotated trust bundle reaches nodes with the same policy and registry: SetOptions starts a
// new generation instead of serving the outbound and local parts built with the old bundle.
TEST(NodeResourceGeneratorTest, NewOptionsReachTheNextGeneration) {
  Inputs in;
  for (registry::Workload& w : in.registry->workloads) w.workload_certificate = true;
  translate::TranslateOptions options;
  options.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n";
  NodeResourceGenerator generator(options);
  auto bundle_of = [&] {
    const NodeResourceSet set = generator.Generate(in.policy, in.registry, Inputs::Node("a-0"));
    const ResourceMap& secrets = set.of(ResourceType::kSecret);
    auto it = secrets.find(std::string(translate::kTrustBundleSecret));
    return it == secrets.end() ? std::string("none") : it->second->version;
  };
  const std::string before = bundle_of();
  EXPECT_NE(before, "none");
  EXPECT_EQ(bundle_of(), before);
  options.trust_bundle_pem += "-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n";
  generator.SetOptions(options);
  const std::string after = bundle_of();
  EXPECT_NE(after, "none");
  EXPECT_NE(after, before);
  EXPECT_EQ(generator.stats().generations, 2u);
}

TEST(NodeResourceGeneratorTest, NodesShareOutboundResourcesAndUnchangedOnesSurviveAChange) {
  Inputs in;
  NodeResourceGenerator generator({});
  const NodeResourceSet a0 = generator.Generate(in.policy, in.registry, Inputs::Node("a-0"));
  const NodeResourceSet b1 = generator.Generate(in.policy, in.registry, Inputs::Node("b-1"));
  const ResourceMap& clusters_a = a0.of(ResourceType::kCluster);
  const ResourceMap& clusters_b = b1.of(ResourceType::kCluster);
  ASSERT_TRUE(clusters_a.count("outbound|8080||a.default"));
  // The same object, not an equal copy.
  EXPECT_EQ(clusters_a.at("outbound|8080||a.default").get(),
            clusters_b.at("outbound|8080||a.default").get());
  EXPECT_EQ(a0.of(ResourceType::kRoute).at("outbound").get(),
            b1.of(ResourceType::kRoute).at("outbound").get());
  // The node's own part is its own.
  EXPECT_NE(a0.of(ResourceType::kListener).at("inbound")->version,
            b1.of(ResourceType::kListener).at("inbound")->version);

  // A retry change for service a: a new generation. The route table changes; the clusters
  // and endpoints do not and keep their objects.
  auto changed = std::make_shared<policy::PolicySnapshot>(*in.policy);
  changed->traffic_policies[0].mutable_spec()->mutable_retries()->mutable_attempts()->set_value(4);
  changed->revision = 2;
  const NodeResourceSet after = generator.Generate(changed, in.registry, Inputs::Node("a-0"));
  EXPECT_EQ(generator.stats().generations, 2u);
  EXPECT_EQ(generator.stats().outbound_builds, 2u);
  EXPECT_NE(after.of(ResourceType::kRoute).at("outbound")->version,
            a0.of(ResourceType::kRoute).at("outbound")->version);
  EXPECT_EQ(after.of(ResourceType::kCluster).at("outbound|8080||a.default").get(),
            clusters_a.at("outbound|8080||a.default").get());
  EXPECT_EQ(after.of(ResourceType::kEndpoint).at("outbound|8080||b.default").get(),
            a0.of(ResourceType::kEndpoint).at("outbound|8080||b.default").get());
  EXPECT_GE(generator.stats().resources_reused, 4u);

  // A registry change (a new workload of b): b's endpoints change, the route table does not.
  auto grown = std::make_shared<registry::RegistrySnapshot>(*in.registry);
  registry::Workload extra = grown->workloads.back();
  extra.id = "b-9";
  extra.addresses = {"10.0.0.99"};
  grown->workloads.push_back(extra);
  grown->version = 2;
  const NodeResourceSet grown_set = generator.Generate(changed, grown, Inputs::Node("a-0"));
  EXPECT_EQ(grown_set.of(ResourceType::kRoute).at("outbound").get(),
            after.of(ResourceType::kRoute).at("outbound").get());
  EXPECT_NE(grown_set.of(ResourceType::kEndpoint).at("outbound|8080||b.default")->version,
            after.of(ResourceType::kEndpoint).at("outbound|8080||b.default")->version);
}

}  // namespace
}  // namespace meshlet::controlplane::ads

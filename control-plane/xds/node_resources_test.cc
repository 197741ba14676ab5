#include "control-plane/xds/node_resources.h"

#include <gtest/gtest.h>

#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translator_test_util.h"

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

// A sidecar that reads ServiceRoutes gets one per Service port, shared like the rest of the
// outbound part; those above the limit are replaced once per part built, and counted.
TEST(NodeResourceGeneratorTest, ServiceRoutesSharedAndOversizedOnesCounted) {
  Inputs in;
  translate::TranslateOptions options;
  options.max_resource_bytes = 64;  // smaller than either Service port's virtual host
  NodeResourceGenerator generator(options);
  std::vector<NodeResourceSet> sets;
  for (const char* id : {"a-0", "b-0"}) {
    xds::Node node = Inputs::Node(id);
    for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
    sets.push_back(generator.Generate(in.policy, in.registry, node));
    const NodeResourceSet alone =
        PackNodeResources(translate::Translate(*in.policy, *in.registry, node, options));
    EXPECT_EQ(Versions(sets.back().of(ResourceType::kServiceRoute)),
              Versions(alone.of(ResourceType::kServiceRoute)));
  }
  const ResourceMap& routes = sets[0].of(ResourceType::kServiceRoute);
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes.begin()->first, "a.default:8080");
  EXPECT_EQ(routes.begin()->second, sets[1].of(ResourceType::kServiceRoute).begin()->second);
  EXPECT_EQ(generator.stats().oversized_service_routes, 2u);
  int warned = 0;
  for (const std::string& w : sets[1].warnings) {
    warned += absl::StrContains(w, "bytes, more than the limit of 64");
  }
  EXPECT_EQ(warned, 2);
}

// Lookup keys (ADR 0086): the inputs with discovery OnDemand and a third Service "c"; node a-0
// reads every capability.
class LookupKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pb::Service c;
    c.mutable_metadata()->set_name("c");
    c.mutable_metadata()->set_namespace_("default");
    c.mutable_spec()->add_ports()->set_port(8080);
    in_.policy->services.push_back(c);
    in_.policy->mesh_config.emplace();
    in_.policy->mesh_config->mutable_metadata()->set_name("mesh");
    in_.policy->mesh_config->mutable_spec()->mutable_discovery()->set_mode("OnDemand");
    node_ = Inputs::Node("a-0");
    for (const std::string& name : xds::CapabilitySet::All().Names()) node_.add_capabilities(name);
  }

  NodeResourceSet Generate(NodeResourceGenerator& generator, std::vector<absl::string_view> keys,
                           bool delta = true) {
    return generator.Generate(in_.policy, in_.registry,
                              GenerateRequest{.node = node_, .delta = delta, .keys = keys});
  }

  // "result service_route" per key.
  static std::map<std::string, std::string> Answers(const NodeResourceSet& set) {
    std::map<std::string, std::string> out;
    for (const auto& [key, answer] : set.key_answers) {
      out[key] = absl::StrCat(KeyResultName(answer.result), " ", answer.service_route);
    }
    return out;
  }

  static std::vector<std::string> Names(const ResourceMap& map) {
    std::vector<std::string> out;
    for (const auto& [name, r] : map) out.push_back(name);
    return out;
  }

  static registry::Workload* Member(registry::RegistrySnapshot& r, const std::string& id) {
    for (registry::Workload& w : r.workloads) {
      if (w.id == id) return &w;
    }
    ADD_FAILURE() << "no workload " << id;
    return &r.workloads.front();
  }

  Inputs in_;
  xds::Node node_;
};

// A key naming a Service the node did not declare adds that Service's ServiceRoute, clusters and
// endpoints, exactly as the whole mesh's translation has them.
TEST_F(LookupKeysTest, KeyOfAnUndeclaredServiceAddsItsPart) {
  NodeResourceGenerator generator({});
  const NodeResourceSet base = Generate(generator, {});
  EXPECT_EQ(Names(base.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"a.default:8080"}));
  EXPECT_TRUE(base.key_answers.empty());
  const NodeResourceSet found = Generate(generator, {"host:b", "host:a.default:8080"});
  EXPECT_EQ(Answers(found),
            (std::map<std::string, std::string>{{"host:a.default:8080", "found a.default:8080"},
                                                {"host:b", "found b.default:8080"}}));
  EXPECT_EQ(Names(found.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"a.default:8080", "b.default:8080"}));
  // The same resources as a node pushed the whole mesh, but c's.
  const NodeResourceSet whole = Generate(generator, {}, /*delta=*/false);
  for (ResourceType type :
       {ResourceType::kCluster, ResourceType::kEndpoint, ResourceType::kServiceRoute}) {
    std::map<std::string, std::string> expected = Versions(whole.of(type));
    std::erase_if(expected, [](const auto& entry) {
      return entry.first.find("c.default") != std::string::npos;
    });
    EXPECT_EQ(Versions(found.of(type)), expected) << TypeLabel(type);
    EXPECT_TRUE(found.of(type).size() > base.of(type).size()) << TypeLabel(type);
  }
  // The listener carries on_demand; the key changes nothing of it.
  EXPECT_EQ(Versions(found.of(ResourceType::kListener)),
            Versions(base.of(ResourceType::kListener)));
  xds::Listener outbound;
  ASSERT_TRUE(found.of(ResourceType::kListener).at("outbound")->resource.UnpackTo(&outbound));
  EXPECT_TRUE(outbound.has_on_demand());
}

// A lookup extends the set the stream's previous request got (GenerateRequest::previous): it
// merges the resources of the one Service it discovers, however many the node holds, keeps no
// merge per key set, and gives what generating the whole set gives, across an endpoint change
// too. A key removed, or a set not handed back, makes the whole set again.
TEST_F(LookupKeysTest, ALookupCostsWhatItAddsNotWhatTheNodeHolds) {
  constexpr int kServices = 40;
  for (int i = 0; i < kServices; ++i) {
    pb::Service service;
    service.mutable_metadata()->set_name(absl::StrCat("s", i));
    service.mutable_metadata()->set_namespace_("default");
    service.mutable_spec()->add_ports()->set_port(8080);
    in_.policy->services.push_back(service);
    registry::Workload w;
    w.id = absl::StrCat("s", i, "-0");
    w.service = absl::StrCat("s", i);
    w.namespace_ = "default";
    w.addresses = {absl::StrCat("10.1.0.", i + 1)};
    w.ports = {9000};
    in_.registry->workloads.push_back(w);
  }
  std::vector<std::string> storage;
  storage.reserve(kServices + 8);  // keys view its strings
  std::vector<absl::string_view> keys;
  auto expect_whole = [&](const NodeResourceSet& set, const std::string& when) {
    NodeResourceGenerator whole({});
    const NodeResourceSet expected = Generate(whole, keys);
    EXPECT_EQ(Answers(set), Answers(expected)) << when;
    EXPECT_EQ(set.warnings, expected.warnings) << when;
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(set.of(type)), Versions(expected.of(type))) << when << TypeLabel(type);
    }
  };
  NodeResourceGenerator generator({});
  NodeResourceSet set = Generate(generator, keys);
  ASSERT_NE(set.basis, nullptr);
  const uint64_t builds = generator.stats().outbound_builds;
  std::vector<uint64_t> merged;  // resources merged per lookup
  for (int i = 0; i < kServices; ++i) {
    keys.push_back(storage.emplace_back(absl::StrCat("host:s", i)));
    const uint64_t before = generator.stats().resources_merged;
    set = generator.Generate(
        in_.policy, in_.registry,
        GenerateRequest{.node = node_, .delta = true, .keys = keys, .previous = &set});
    merged.push_back(generator.stats().resources_merged - before);
    if (i == 0 || i == kServices / 2 || i == kServices - 1) {
      expect_whole(set, absl::StrCat("after lookup ", i));
    }
  }
  // A ServiceRoute, a cluster and its assignment per lookup (one port, no subsets), whether the
  // node holds 1 key or 40.
  EXPECT_EQ(merged.front(), 3u);
  EXPECT_EQ(merged, std::vector<uint64_t>(kServices, merged.front()));
  EXPECT_EQ(generator.stats().sets_extended, static_cast<uint64_t>(kServices));
  EXPECT_EQ(generator.stats().outbound_builds, builds);
  EXPECT_EQ(Answers(set).at("host:s39"), "found s39.default:8080");

  // An endpoint change: the stale parts replaced, one more key added, as a whole set has them.
  auto next = std::make_shared<registry::RegistrySnapshot>(*in_.registry);
  Member(*next, "s3-0")->addresses = {"10.1.1.3"};
  next->version = 2;
  in_.registry = next;
  keys.push_back(storage.emplace_back("host:b"));
  set = generator.Generate(
      in_.policy, in_.registry,
      GenerateRequest{.node = node_, .delta = true, .keys = keys, .previous = &set});
  EXPECT_EQ(generator.stats().member_only_generations, 1u);
  EXPECT_EQ(generator.stats().sets_extended, static_cast<uint64_t>(kServices) + 1);
  // The one part reading s3 is found stale, not by checking the 40 the node's keys hold.
  EXPECT_EQ(generator.stats().parts_examined, 1u);
  EXPECT_EQ(generator.stats().parts_updated, 1u);
  expect_whole(set, "after an endpoint change");

  // A key removed: the whole set again, also when as many keys are held as before (the last
  // one removed, another added), and extended again from there.
  keys.pop_back();
  keys.erase(keys.begin() + 5);
  keys.push_back(storage.emplace_back("host:c"));
  keys.push_back(storage.emplace_back("host:a.default:8080"));
  set = generator.Generate(
      in_.policy, in_.registry,
      GenerateRequest{
          .node = node_, .delta = true, .keys = keys, .keys_removed = 2, .previous = &set});
  EXPECT_EQ(generator.stats().sets_extended, static_cast<uint64_t>(kServices) + 1);
  EXPECT_FALSE(set.of(ResourceType::kServiceRoute).contains("s5.default:8080"));
  EXPECT_FALSE(set.of(ResourceType::kServiceRoute).contains("b.default:8080"));
  expect_whole(set, "after keys removed");
  keys.push_back(storage.emplace_back("host:s5"));
  set = generator.Generate(
      in_.policy, in_.registry,
      GenerateRequest{
          .node = node_, .delta = true, .keys = keys, .keys_removed = 2, .previous = &set});
  EXPECT_EQ(generator.stats().sets_extended, static_cast<uint64_t>(kServices) + 2);
  expect_whole(set, "after a key added again");
}

// A generation that differs in members only keeps the lookup tables of the one before
// (MeshTranslator::KeepLookupTables) and answers as a new generator does; any other change
// builds them again.
TEST_F(LookupKeysTest, EndpointChangeKeepsTheLookupTables) {
  const std::vector<absl::string_view> keys = {"host:b", "host:c.default:8080", "host:nowhere"};
  NodeResourceGenerator generator({});
  Generate(generator, keys);
  EXPECT_EQ(generator.stats().lookup_tables_kept, 0u);
  auto expect_as_new = [&](const NodeResourceSet& set) {
    NodeResourceGenerator fresh({});
    const NodeResourceSet expected = Generate(fresh, keys);
    EXPECT_EQ(Answers(set), Answers(expected));
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(set.of(type)), Versions(expected.of(type))) << TypeLabel(type);
    }
  };
  auto next = std::make_shared<registry::RegistrySnapshot>(*in_.registry);
  Member(*next, "b-1")->addresses = {"10.0.0.99"};
  next->version = 2;
  in_.registry = next;
  const NodeResourceSet changed = Generate(generator, keys);
  EXPECT_EQ(generator.stats().member_only_generations, 1u);
  EXPECT_EQ(generator.stats().lookup_tables_kept, 1u);
  expect_as_new(changed);
  auto policy = std::make_shared<policy::PolicySnapshot>(*in_.policy);
  ++policy->revision;
  in_.policy = policy;
  expect_as_new(Generate(generator, keys));
  EXPECT_EQ(generator.stats().lookup_tables_kept, 1u);
}

TEST_F(LookupKeysTest, UnknownKeyAnsweredNotFound) {
  NodeResourceGenerator generator({});
  const NodeResourceSet base = Generate(generator, {});
  EXPECT_EQ(Names(base.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"a.default:8080"}));
  const NodeResourceSet set =
      Generate(generator, {"host:nowhere", "host:b.elsewhere", "addr:10.9.9.9:80"});
  EXPECT_EQ(Answers(set), (std::map<std::string, std::string>{{"addr:10.9.9.9:80", "not_found "},
                                                              {"host:b.elsewhere", "not_found "},
                                                              {"host:nowhere", "not_found "}}));
  for (ResourceType type : kPushOrder) {
    EXPECT_EQ(Versions(set.of(type)), Versions(base.of(type))) << TypeLabel(type);
  }
}

// A node served another mode than OnDemand looks nothing up: each of its keys is refused and
// adds nothing.
TEST_F(LookupKeysTest, KeysOfANodeThatCannotLookUpAreRefused) {
  const std::vector<absl::string_view> keys = {"host:b", "host:a", "host:nowhere"};
  const std::map<std::string, std::string> refused = {
      {"host:a", "refused "}, {"host:b", "refused "}, {"host:nowhere", "refused "}};
  {
    SCOPED_TRACE("state of the world");
    NodeResourceGenerator generator({});
    EXPECT_EQ(Answers(Generate(generator, keys, /*delta=*/false)), refused);
  }
  {
    SCOPED_TRACE("without capability on-demand");
    node_.clear_capabilities();
    for (const std::string& name : xds::CapabilitySet::All().Names()) {
      if (name != "on-demand") node_.add_capabilities(name);
    }
    NodeResourceGenerator generator({});
    EXPECT_EQ(Answers(Generate(generator, keys)), refused);
    node_.add_capabilities("on-demand");
  }
  {
    SCOPED_TRACE("Declared");
    in_.policy->mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
    NodeResourceGenerator generator({});
    const NodeResourceSet set = Generate(generator, keys);
    EXPECT_EQ(Answers(set), refused);
    EXPECT_EQ(Names(set.of(ResourceType::kServiceRoute)),
              (std::vector<std::string>{"a.default:8080"}));
  }
}

// Services past TranslateOptions::max_on_demand_services are not added; keys of Services already
// held still are answered.
TEST_F(LookupKeysTest, KeysPastTheServiceLimitAreOverLimit) {
  translate::TranslateOptions options;
  options.max_on_demand_services = 1;
  NodeResourceGenerator generator(options);
  const NodeResourceSet set =
      Generate(generator, {"host:b", "host:c", "host:b.default", "host:a", "host:nowhere"});
  EXPECT_EQ(Answers(set),
            (std::map<std::string, std::string>{{"host:a", "found a.default:8080"},
                                                {"host:b", "found b.default:8080"},
                                                {"host:b.default", "found b.default:8080"},
                                                {"host:c", "over_limit "},
                                                {"host:nowhere", "not_found "}}));
  EXPECT_EQ(Names(set.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"a.default:8080", "b.default:8080"}));
  // In key order: c first takes the one place.
  EXPECT_EQ(Answers(Generate(generator, {"host:c", "host:b"})),
            (std::map<std::string, std::string>{{"host:b", "over_limit "},
                                                {"host:c", "found c.default:8080"}}));
}

TEST_F(LookupKeysTest, MalformedKeyAnsweredMalformed) {
  NodeResourceGenerator generator({});
  const NodeResourceSet base = Generate(generator, {});
  const NodeResourceSet set =
      Generate(generator, {"b", "host:", "host:b c", "addr:10.0.0.1", "addr:999.0.0.1:80"});
  EXPECT_EQ(Answers(set), (std::map<std::string, std::string>{{"addr:10.0.0.1", "malformed "},
                                                              {"addr:999.0.0.1:80", "malformed "},
                                                              {"b", "malformed "},
                                                              {"host:", "malformed "},
                                                              {"host:b c", "malformed "}}));
  for (ResourceType type : kPushOrder) {
    EXPECT_EQ(Versions(set.of(type)), Versions(base.of(type))) << TypeLabel(type);
  }
}

// Service parts (ADR 0086 commit 7): nodes whose sets overlap share the parts of the Services
// they both reach, translated once.
TEST_F(LookupKeysTest, NodesWithOverlappingDependenciesSharePartPointers) {
  in_.policy->mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
  Member(*in_.registry, "a-0")->labels["meshlet.io/dependencies"] = "b";
  Member(*in_.registry, "b-0")->labels["meshlet.io/dependencies"] = "c";
  NodeResourceGenerator generator({});
  const NodeResourceSet a = Generate(generator, {});
  node_.set_id("b-0");
  const NodeResourceSet b = Generate(generator, {});
  EXPECT_EQ(Names(a.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"a.default:8080", "b.default:8080"}));
  EXPECT_EQ(Names(b.of(ResourceType::kServiceRoute)),
            (std::vector<std::string>{"b.default:8080", "c.default:8080"}));
  for (ResourceType type :
       {ResourceType::kServiceRoute, ResourceType::kCluster, ResourceType::kEndpoint}) {
    for (const auto& [name, resource] : a.of(type)) {
      if (name.find("b.default") == std::string::npos) continue;
      ASSERT_TRUE(b.of(type).contains(name)) << name;
      EXPECT_EQ(b.of(type).at(name), resource) << name;
    }
  }
  // b's part was translated for a-0 and served to b-0: three Services, one cluster each.
  EXPECT_EQ(generator.stats().clusters_translated, 3u);
  EXPECT_EQ(generator.stats().parts_built, 3u + 1u);  // and the common part
  EXPECT_EQ(generator.stats().parts_shared, 2u);      // b's and the common part
}

// Per generation, each Service's part is translated once per variant, whatever number of nodes
// and sets read it; an endpoint change updates the parts reading the changed service and keeps
// the others' pointers; any other change translates them all again.
TEST_F(LookupKeysTest, OnePartPerServiceAndVariantPerGeneration) {
  std::vector<xds::Node> nodes;
  for (const registry::Workload& w : in_.registry->workloads) {
    xds::Node node = node_;
    node.set_id(w.id);
    nodes.push_back(node);
  }
  xds::Node captured = node_;
  captured.set_id("captured");
  (*captured.mutable_labels())[registry::kCaptureLabel] = registry::kCaptureIptables;
  nodes.push_back(captured);  // a variant of its own
  in_.policy->mesh_config->mutable_spec()->mutable_discovery()->set_mode("WholeMesh");
  Member(*in_.registry, "b-1")->labels["meshlet.io/discovery"] = "declared";
  Member(*in_.registry, "b-2")->labels["meshlet.io/discovery"] = "declared";
  NodeResourceGenerator generator({});
  auto round = [&] {
    std::vector<NodeResourceSet> sets;
    for (const xds::Node& node : nodes) {
      sets.push_back(generator.Generate(in_.policy, in_.registry, node));
    }
    return sets;
  };
  const std::vector<NodeResourceSet> first = round();
  const uint64_t per_generation = 2 * (3 + 1);  // two variants: three Services and the common part
  EXPECT_EQ(generator.stats().parts_built, per_generation);
  EXPECT_EQ(generator.stats().parts_updated, 0u);

  auto next = std::make_shared<registry::RegistrySnapshot>(*in_.registry);
  Member(*next, "b-1")->addresses = {"10.0.0.99"};
  next->version = 2;
  in_.registry = next;
  const std::vector<NodeResourceSet> second = round();
  EXPECT_EQ(generator.stats().parts_built, per_generation);
  EXPECT_EQ(generator.stats().parts_updated, 2u);  // b's, in each variant
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const auto& [name, resource] : first[i].of(ResourceType::kEndpoint)) {
      if (!absl::StartsWith(name, "outbound|")) continue;
      EXPECT_EQ(second[i].of(ResourceType::kEndpoint).at(name) == resource,
                name.find("b.default") == std::string::npos)
          << nodes[i].id() << " " << name;
    }
    for (const auto& [name, resource] : first[i].of(ResourceType::kServiceRoute)) {
      EXPECT_EQ(second[i].of(ResourceType::kServiceRoute).at(name), resource) << name;
    }
  }

  auto policy = std::make_shared<policy::PolicySnapshot>(*in_.policy);
  policy->revision = 2;
  in_.policy = policy;
  round();
  EXPECT_EQ(generator.stats().parts_built, 2 * per_generation);
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

// ---------------------------------------------------------------------------------------------
// Endpoint changes (ADR 0088): only the changed services' clusters and assignments are translated
// again, and the result is what a full translation of the new inputs gives.

// Registry changes that touch services' members only, each applied to a copy of the snapshot.
using MemberChange = std::function<void(registry::RegistrySnapshot&)>;

registry::Workload* Member(registry::RegistrySnapshot& r, const std::string& id) {
  for (registry::Workload& w : r.workloads) {
    if (w.id == id) return &w;
  }
  ADD_FAILURE() << "no workload " << id;
  static registry::Workload none;
  return &none;
}

std::vector<MemberChange> ReviewsChanges() {
  return {
      [](registry::RegistrySnapshot& r) { Member(r, "reviews-v2-0")->ready = false; },
      [](registry::RegistrySnapshot& r) { Member(r, "reviews-v2-0")->ready = true; },
      [](registry::RegistrySnapshot& r) { Member(r, "reviews-v1-1")->labels["version"] = "v2"; },
      [](registry::RegistrySnapshot& r) { Member(r, "reviews-v1-0")->workload_certificate = true; },
      [](registry::RegistrySnapshot& r) { Member(r, "reviews-v1-1")->addresses = {"10.0.1.9"}; },
      [](registry::RegistrySnapshot& r) {
        registry::Workload added = *Member(r, "reviews-v2-0");
        added.id = "reviews-v2-1";
        added.addresses = {"10.0.2.2"};
        r.workloads.push_back(added);
        std::sort(r.workloads.begin(), r.workloads.end(),
                  [](const auto& a, const auto& b) { return a.id < b.id; });
      },
      [](registry::RegistrySnapshot& r) {
        std::erase_if(r.workloads, [](const auto& w) { return w.id == "reviews-v1-1"; });
      },
  };
}

// Each node of the mesh (every workload, with every capability and with none) as the generator
// gives it, compared with translating it alone; the generator keeps running across `changes`.
// Returns the generator's stats.
NodeResourceGenerator::Stats ExpectSameAsTranslatingAlone(
    const policy::PolicySnapshot& policy_in, const registry::RegistrySnapshot& registry_in,
    const std::vector<MemberChange>& changes) {
  auto policy = std::make_shared<const policy::PolicySnapshot>(policy_in);
  auto registry = std::make_shared<registry::RegistrySnapshot>(registry_in);
  registry->version = 1;
  NodeResourceGenerator generator({});
  auto check = [&](const std::string& when) {
    for (const registry::Workload& w : registry->workloads) {
      for (bool current : {true, false}) {
        xds::Node node;
        node.set_id(w.id);
        if (current) {
          for (const std::string& name : xds::CapabilitySet::All().Names()) {
            node.add_capabilities(name);
          }
        }
        const NodeResourceSet got = generator.Generate(policy, registry, node);
        const NodeResourceSet alone =
            PackNodeResources(translate::Translate(*policy, *registry, node));
        for (ResourceType type : kPushOrder) {
          EXPECT_EQ(Versions(got.of(type)), Versions(alone.of(type)))
              << when << ", " << w.id << (current ? "" : " (older sidecar)") << ", "
              << TypeLabel(type);
        }
        EXPECT_EQ(got.warnings, alone.warnings) << when << ", " << w.id;
      }
    }
  };
  check("before any change");
  for (size_t i = 0; i < changes.size(); ++i) {
    auto next = std::make_shared<registry::RegistrySnapshot>(*registry);
    changes[i](*next);
    next->version = registry->version + 1;
    registry = next;
    check(absl::StrCat("after change ", i));
  }
  return generator.stats();
}

class EndpointChangeTest : public translate::TranslatorTest {};
class EndpointChangeCaptureTest : public translate::KubernetesServicesTest {};

// A node's outbound part merged from Service parts is what translating the node alone gives, in
// mode WholeMesh (one merge every such node shares) and Declared (a merge per set), on the
// translator's fixtures.
void ExpectMergedPartsEqualTheWholeTranslation(policy::PolicySnapshot policy,
                                               registry::RegistrySnapshot registry) {
  for (const char* mode : {"WholeMesh", "Declared"}) {
    SCOPED_TRACE(mode);
    policy.mesh_config.emplace();
    policy.mesh_config->mutable_metadata()->set_name("mesh");
    policy.mesh_config->mutable_spec()->mutable_discovery()->set_mode(mode);
    for (size_t i = 0; i < registry.workloads.size(); ++i) {
      // Overlapping sets: each workload declares the next one's Service.
      registry.workloads[i].labels["meshlet.io/dependencies"] =
          absl::StrCat(registry.workloads[(i + 1) % registry.workloads.size()].service, ".",
                       registry.workloads[(i + 1) % registry.workloads.size()].namespace_);
    }
    const NodeResourceGenerator::Stats stats = ExpectSameAsTranslatingAlone(policy, registry, {});
    EXPECT_GT(stats.parts_built, 0u);
    // WholeMesh: one merge, every such node served it; Declared: parts served to several merges.
    EXPECT_GT(std::string(mode) == "WholeMesh" ? stats.outbound_shared : stats.parts_shared, 0u);
  }
}

TEST_F(EndpointChangeTest, MergedPartsEqualTheWholeTranslation) {
  ExpectMergedPartsEqualTheWholeTranslation(policy_, registry_);
}

TEST_F(EndpointChangeCaptureTest, MergedPartsEqualTheWholeTranslation) {
  ExpectMergedPartsEqualTheWholeTranslation(policy_, registry_);
}

TEST_F(EndpointChangeTest, WholeMeshUpdatesEqualFullTranslations) {
  const auto stats = ExpectSameAsTranslatingAlone(policy_, registry_, ReviewsChanges());
  EXPECT_EQ(stats.member_only_generations, ReviewsChanges().size());
  // One outbound part per capability set, built once and updated by each change; from the 4th
  // change on, reviews-v1-0 has a workload certificate and, as a caller, parts of its own (built
  // in full once, then updated): 3 × 2 + (2 + 0) + 3 × 4 updates.
  EXPECT_EQ(stats.outbound_builds, 4u);
  EXPECT_EQ(stats.outbound_updates, 20u);
}

TEST_F(EndpointChangeTest, ScopedUpdatesEqualFullTranslations) {
  pb::MeshConfig mesh;
  mesh.mutable_metadata()->set_name("mesh");
  mesh.mutable_spec()->set_scope_to_dependencies(true);
  policy_.mesh_config = mesh;
  registry_.workloads[0].labels["meshlet.io/dependencies"] = "reviews";
  const auto stats = ExpectSameAsTranslatingAlone(policy_, registry_, ReviewsChanges());
  EXPECT_EQ(stats.member_only_generations, ReviewsChanges().size());
  EXPECT_GT(stats.outbound_updates, 0u);
}

// Captured nodes, Kubernetes Services whose EndpointSlices change, mTLS that follows the members'
// certificates, an opaque port's TCP twin.
TEST_F(EndpointChangeCaptureTest, KubernetesAndCaptureUpdatesEqualFullTranslations) {
  std::vector<MemberChange> changes = ReviewsChanges();
  changes.push_back([](registry::RegistrySnapshot& r) {
    auto services = std::make_shared<registry::KubernetesServices>(*r.kubernetes);
    for (auto& s : services->services) {
      if (s->name != "ratings") continue;
      auto changed = std::make_shared<registry::KubernetesService>(*s);
      changed->endpoints.pop_back();  // ratings-b left the EndpointSlice
      s = std::move(changed);
    }
    r.kubernetes = services;
  });
  changes.push_back([](registry::RegistrySnapshot& r) {
    auto services = std::make_shared<registry::KubernetesServices>(*r.kubernetes);
    for (auto& s : services->services) {
      if (s->name != "ratings") continue;
      auto changed = std::make_shared<registry::KubernetesService>(*s);
      changed->endpoints.push_back({.address = "10.1.0.8", .pod = "ratings-c"});
      s = std::move(changed);
    }
    r.kubernetes = services;
  });
  changes.push_back([](registry::RegistrySnapshot& r) { Member(r, "store-db-0")->ready = false; });
  const auto stats = ExpectSameAsTranslatingAlone(policy_, registry_, changes);
  EXPECT_EQ(stats.member_only_generations, changes.size());
  EXPECT_GT(stats.outbound_updates, 0u);
}

class EndpointChangeGatewayTest : public translate::GatewayTest {};

// A consumer route gives the callers of its namespace an outbound part of their own.
TEST_F(EndpointChangeGatewayTest, ConsumerRouteUpdatesEqualFullTranslations) {
  AddHttp(R"(
kind: HTTPRoute
metadata: {name: mine, namespace: consumer}
spec:
  parentRefs: [{kind: Service, group: core, name: echo, namespace: default, port: 80}]
  rules:
  - backendRefs: [{name: echo, namespace: default, port: 80}]
)");
  const std::vector<MemberChange> changes = {
      [](registry::RegistrySnapshot& r) { Member(r, "echo-0")->ready = false; },
      [](registry::RegistrySnapshot& r) { Member(r, "echo-v2-0")->addresses = {"10.0.3.9"}; },
  };
  const auto stats = ExpectSameAsTranslatingAlone(policy_, registry_, changes);
  EXPECT_EQ(stats.member_only_generations, changes.size());
  // Two caller namespaces, two capability sets: four parts, updated on each change.
  EXPECT_EQ(stats.outbound_builds, 4u);
  EXPECT_EQ(stats.outbound_updates, 4 * changes.size());
}

// One endpoint of reviews goes: its assignments are the only resources translated again, and
// every other outbound resource is the very object the previous generation had.
TEST_F(EndpointChangeTest, OnlyTheChangedServicesAssignmentsAreTranslatedAgain) {
  auto policy = std::make_shared<const policy::PolicySnapshot>(policy_);
  auto before = std::make_shared<registry::RegistrySnapshot>(registry_);
  before->version = 1;
  NodeResourceGenerator generator({});
  const NodeResourceSet first = generator.Generate(policy, before, node_);
  const auto built = generator.stats();

  auto after = std::make_shared<registry::RegistrySnapshot>(*before);
  Member(*after, "reviews-v2-0")->ready = false;
  after->version = 2;
  const NodeResourceSet second = generator.Generate(policy, after, node_);
  const auto& stats = generator.stats();
  EXPECT_EQ(stats.outbound_builds, built.outbound_builds);
  EXPECT_EQ(stats.outbound_updates, 1u);
  // reviews' clusters: the whole service, v1 and v2 (the HTTPRoute's subsets).
  EXPECT_EQ(stats.assignments_translated - built.assignments_translated, 3u);
  EXPECT_EQ(stats.clusters_translated - built.clusters_translated, 3u);

  std::set<std::string> changed;
  for (ResourceType type : kPushOrder) {
    for (const auto& [name, resource] : second.of(type)) {
      // The node's own part (listeners, "inbound", "inbound|PORT") is translated per node.
      if (type == ResourceType::kListener || !absl::StartsWith(name, "outbound")) continue;
      ASSERT_TRUE(first.of(type).contains(name)) << name;
      if (first.of(type).at(name).get() != resource.get()) {
        changed.insert(absl::StrCat(TypeLabel(type), " ", name));
      }
    }
  }
  // The assignments the endpoint was in; reviews' clusters did not change and stay shared.
  EXPECT_EQ(changed, (std::set<std::string>{"endpoints outbound|9080|version=v2|reviews.default",
                                            "endpoints outbound|9080||reviews.default"}));
}

// Endpoint changes with no full generation between them: the reuse maps keep only what the
// parts of the last generations hold, also when a node's part is built in full again (its key
// was not served in the generation before) and when a node goes.
TEST_F(EndpointChangeTest, ReuseMapsStayBoundedAcrossEndpointChanges) {
  auto policy = std::make_shared<const policy::PolicySnapshot>(policy_);
  auto registry = std::make_shared<registry::RegistrySnapshot>(registry_);
  registry->version = 1;
  // `generator` also serves an older sidecar (no capabilities: an outbound part of its own),
  // every other change and then not at all (it went); `alone` serves node_ only.
  NodeResourceGenerator generator({}), alone({});
  xds::Node older = node_;
  older.clear_capabilities();
  for (int round = 0; round < 24; ++round) {
    auto next = std::make_shared<registry::RegistrySnapshot>(*registry);
    Member(*next, "reviews-v1-1")->addresses = {absl::StrCat("10.0.1.", 10 + round)};
    next->version = registry->version + 1;
    registry = next;
    generator.Generate(policy, registry, node_);
    alone.Generate(policy, registry, node_);
    if (round % 2 == 0 && round < 16) generator.Generate(policy, registry, older);
  }
  EXPECT_GT(generator.stats().member_only_generations, 20u);
  EXPECT_GT(generator.stats().outbound_builds, 3u);  // the older node's part rebuilt in full
  // Once the older node went, what is kept is what serving node_ alone keeps.
  EXPECT_EQ(generator.reuse_entries(), alone.reuse_entries());
}

// An EndpointSlice change in a mesh of many Kubernetes Services costs work for its Service
// alone, counted: one view of the index built (the others shared with the previous index), its
// endpoints made into members, one service compared, its assignment translated again. The result
// is a full translation's.
TEST(NodeResourceGeneratorScaleTest, AnEndpointSliceChangeIndexesAndComparesOneService) {
  constexpr int kServices = 300;
  constexpr int kEndpoints = 10;
  auto policy = std::make_shared<policy::PolicySnapshot>();
  policy->revision = 1;
  auto kubernetes = std::make_shared<registry::KubernetesServices>();
  for (int s = 0; s < kServices; ++s) {
    registry::KubernetesService ks;
    ks.namespace_ = "bench";
    ks.name = absl::StrCat("svc-", s);
    ks.ports = {{.name = "http", .port = 80, .protocol = "HTTP", .target_port = 8080}};
    for (int e = 0; e < kEndpoints; ++e) {
      ks.endpoints.push_back({.address = absl::StrCat("10.", s / 200, ".", s % 200, ".", e),
                              .pod = absl::StrCat(ks.name, "-", e)});
    }
    kubernetes->services.push_back(std::make_shared<const registry::KubernetesService>(ks));
  }
  auto registry = std::make_shared<registry::RegistrySnapshot>();
  registry->version = 1;
  registry->kubernetes = kubernetes;
  // A sidecar registered at an endpoint's address of svc-7.
  registry::Workload sidecar;
  sidecar.id = "svc-7-0.bench";
  sidecar.service = "svc-7";
  sidecar.namespace_ = "bench";
  sidecar.addresses = {"10.0.7.0"};
  sidecar.ports = {8080};
  registry->workloads.push_back(sidecar);
  NodeResourceGenerator generator({});
  const xds::Node node = Inputs::Node(sidecar.id);
  auto generate = [&](const std::string& when) {
    const NodeResourceSet got = generator.Generate(policy, registry, node);
    const NodeResourceSet alone = PackNodeResources(translate::Translate(*policy, *registry, node));
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(got.of(type)), Versions(alone.of(type))) << when << TypeLabel(type);
    }
  };
  generate("first");
  EXPECT_EQ(generator.stats().services_indexed, static_cast<uint64_t>(kServices));
  EXPECT_EQ(generator.stats().index_members_built, static_cast<uint64_t>(kServices * kEndpoints));

  // svc-3's EndpointSlice loses an endpoint.
  NodeResourceGenerator::Stats before = generator.stats();
  auto services = std::make_shared<registry::KubernetesServices>(*kubernetes);
  auto changed = std::make_shared<registry::KubernetesService>(*services->services[3]);
  changed->endpoints.pop_back();
  services->services[3] = changed;
  auto next = std::make_shared<registry::RegistrySnapshot>(*registry);
  next->kubernetes = services;
  next->version = 2;
  registry = next;
  generate("a slice changed");
  NodeResourceGenerator::Stats after = generator.stats();
  EXPECT_EQ(after.member_only_generations - before.member_only_generations, 1u);
  EXPECT_EQ(after.services_indexed - before.services_indexed, 1u);
  EXPECT_EQ(after.services_shared - before.services_shared, kServices - 1u);
  EXPECT_EQ(after.index_members_built - before.index_members_built, kEndpoints - 1u);
  EXPECT_EQ(after.services_compared - before.services_compared, 1u);
  EXPECT_EQ(after.assignments_translated - before.assignments_translated, 1u);

  // The sidecar at svc-7's endpoint is not ready: svc-7 alone is indexed again.
  before = after;
  next = std::make_shared<registry::RegistrySnapshot>(*registry);
  next->workloads[0].ready = false;
  next->version = 3;
  registry = next;
  generate("a registered member not ready");
  after = generator.stats();
  EXPECT_EQ(after.services_indexed - before.services_indexed, 1u);
  EXPECT_EQ(after.services_compared - before.services_compared, 1u);
  EXPECT_EQ(after.assignments_translated - before.assignments_translated, 1u);

  // svc-5 gets another port: compared (and counted), found reshaped, translated in full.
  before = after;
  services = std::make_shared<registry::KubernetesServices>(*registry->kubernetes);
  auto reshaped = std::make_shared<registry::KubernetesService>(*services->services[5]);
  reshaped->ports.push_back(
      {.name = "extra", .port = 9999, .protocol = "TCP", .target_port = 9999});
  services->services[5] = reshaped;
  next = std::make_shared<registry::RegistrySnapshot>(*registry);
  next->kubernetes = services;
  next->version = 4;
  registry = next;
  generate("a service reshaped");
  after = generator.stats();
  EXPECT_EQ(after.member_only_generations, before.member_only_generations);
  EXPECT_EQ(after.services_compared - before.services_compared, 1u);
}

// What is not a change of members translates everything: a policy change, a new service, a
// service whose ports changed.
TEST_F(EndpointChangeTest, OtherChangesTranslateTheWholeOutboundPart) {
  auto policy = std::make_shared<policy::PolicySnapshot>(policy_);
  policy->revision = 1;
  auto registry = std::make_shared<registry::RegistrySnapshot>(registry_);
  registry->version = 1;
  NodeResourceGenerator generator({});
  uint64_t builds = 0;
  auto generate = [&](const std::string& when) {
    const NodeResourceSet got = generator.Generate(policy, registry, node_);
    const NodeResourceSet alone =
        PackNodeResources(translate::Translate(*policy, *registry, node_));
    for (ResourceType type : kPushOrder) {
      EXPECT_EQ(Versions(got.of(type)), Versions(alone.of(type))) << when << TypeLabel(type);
    }
    EXPECT_EQ(generator.stats().outbound_builds, ++builds) << when;
    EXPECT_EQ(generator.stats().outbound_updates, 0u) << when;
  };
  generate("first");
  auto next_registry = [&](const std::function<void(registry::RegistrySnapshot&)>& change) {
    auto next = std::make_shared<registry::RegistrySnapshot>(*registry);
    change(*next);
    next->version = registry->version + 1;
    registry = next;
  };

  policy = std::make_shared<policy::PolicySnapshot>(*policy);
  policy->traffic_policies[0].mutable_spec()->mutable_retries()->mutable_attempts()->set_value(7);
  policy->revision = 2;
  generate("policy changed");

  next_registry([](registry::RegistrySnapshot& r) {
    registry::Workload extra = r.workloads[0];
    extra.id = "zz-extra-0";
    extra.service = "extra";  // a service only the registry knows
    extra.addresses = {"10.0.7.1"};
    extra.ports = {7000};
    r.workloads.push_back(extra);
  });
  generate("service added");

  next_registry([](registry::RegistrySnapshot& r) { Member(r, "zz-extra-0")->ports = {7001}; });
  generate("service ports changed");

  EXPECT_EQ(generator.stats().member_only_generations, 0u);
}

}  // namespace
}  // namespace meshlet::controlplane::ads

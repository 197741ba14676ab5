// Discovery modes and lookup keys (lookup.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/translate/translation.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::translate {
namespace {

// What a key resolves to, as one text: the ServiceRoute's name, else the reason.
std::string Answer(const LookupResult& r) {
  return r.found() ? r.service_route : std::string(LookupReasonName(r.reason));
}

// The translator's fixtures with capture (CaptureTest), plus a Service of another namespace
// with two HTTP ports and an address, and HTTPRoute wildcard hostnames: *.ratings.example.com
// (ratings) inside *.example.com (wide).
class LookupTest : public CaptureTest {
 protected:
  void SetUp() override {
    CaptureTest::SetUp();
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  addresses: [10.96.0.30]
  ports: [{name: admin, port: 9090}, {name: http, port: 80}]
)"));
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: wide, namespace: shop}
spec:
  ports: [{name: http, port: 8000}]
)"));
    policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: ratings, namespace: shop}
spec:
  target: ratings
  hostnames: ["*.ratings.example.com"]
  rules: [{backends: [{service: ratings}]}]
)"));
    policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: wide, namespace: shop}
spec:
  target: wide
  hostnames: ["*.example.com"]
  rules: [{backends: [{service: wide}]}]
)"));
  }

  std::string Resolved(const xds::Node& node, absl::string_view key) {
    const MeshTranslator translator(std::make_shared<const policy::PolicySnapshot>(policy_),
                                    std::make_shared<const registry::RegistrySnapshot>(registry_),
                                    kDefaultOptions);
    return Answer(translator.Resolve(node, key));
  }
  std::string Resolved(absl::string_view key) { return Resolved(node_, key); }
};

TEST_F(LookupTest, HostKeys) {
  struct Case {
    const char* key;
    const char* answer;
  };
  for (const Case& c : std::vector<Case>{
           // Every name of a Service, with and without the port.
           {"host:reviews", "reviews.default:9080"},
           {"host:reviews:9080", "reviews.default:9080"},
           {"host:reviews.default", "reviews.default:9080"},
           {"host:reviews.default.svc:9080", "reviews.default:9080"},
           {"host:reviews.default.svc.cluster.local", "reviews.default:9080"},
           {"host:reviews.default.svc.cluster.local:9080", "reviews.default:9080"},
           // Case and one trailing dot do not matter.
           {"host:Reviews.DEFAULT.svc.Cluster.Local.", "reviews.default:9080"},
           {"host:reviews.default.svc.cluster.local.:9080", "reviews.default:9080"},
           // A name without its port is the Service's first HTTP port's; with a port, that
           // port's; with a port the Service lacks, the name's (as the sidecar matches hosts).
           {"host:ratings.shop", "ratings.shop:80"},
           {"host:ratings.shop:80", "ratings.shop:80"},
           {"host:ratings.shop:9090", "ratings.shop:9090"},
           {"host:ratings.shop.svc.cluster.local:9090", "ratings.shop:9090"},
           {"host:ratings.shop:1234", "ratings.shop:80"},
           {"host:db", "db.default:8080"},  // 3306 is TCP: 8080 is db's first HTTP port
           // HTTPRoute hostnames, exact and wildcard (the longest suffix first; the wildcard
           // stands for at least one label character).
           {"host:reviews.example.com", "reviews.default:9080"},
           {"host:reviews.example.com:443", "reviews.default:9080"},
           {"host:a.ratings.example.com", "ratings.shop:80"},
           {"host:x.y.ratings.example.com:8443", "ratings.shop:80"},
           {"host:ratings.example.com", "wide.shop:8000"},
           {"host:b.example.com", "wide.shop:8000"},
           {"host:example.com", "unknown"},
           // A bare name is the first claimant's in the mesh, whatever the caller's namespace.
           {"host:ratings", "ratings.shop:80"},
           // Not a Service's.
           {"host:reviews.shop", "unknown"},
           {"host:240.240.0.1:9080", "unknown"},  // addresses are hosts of captured nodes only
           // Not a key a sidecar sends.
           {"host:", "malformed"},
           {"host:a b", "malformed"},
           {"host:*.example.com", "malformed"},
           {"host:reviews:0", "malformed"},
           {"host:reviews:65536", "malformed"},
           {"host:reviews:x", "malformed"},
           {"host:[fd00::1", "malformed"},
           {"reviews", "malformed"},
           {"HOST:reviews", "malformed"},
       }) {
    EXPECT_EQ(Resolved(c.key), c.answer) << c.key;
  }
  EXPECT_EQ(Resolved(absl::StrCat("host:", std::string(300, 'a'))), "malformed");
}

TEST_F(LookupTest, AddressKeysOfCapturedNodes) {
  Capture(registry_.workloads[0]);  // frontend-0
  struct Case {
    const char* key;
    const char* answer;
  };
  for (const Case& c : std::vector<Case>{
           {"addr:240.240.0.1:9080", "reviews.default:9080"},
           {"addr:[fd00:240::1]:9080", "reviews.default:9080"},
           {"addr:[FD00:240:0::1]:9080", "reviews.default:9080"},       // as written differently
           {"addr:[::ffff:240.240.0.1]:9080", "reviews.default:9080"},  // IPv4-mapped
           {"addr:10.96.0.20:3306", "db.default:3306"},                 // a TCP port
           {"addr:[fd00::20]:8080", "db.default:8080"},
           {"addr:10.96.0.30:9090", "ratings.shop:9090"},
           {"addr:10.96.0.30:80", "ratings.shop:80"},
           {"addr:240.240.0.1:9081", "unknown"},
           {"addr:10.9.9.9:80", "unknown"},
           {"addr:10.96.0.30", "malformed"},
           {"addr:fd00::20:8080", "malformed"},  // IPv6 without brackets
           {"addr:10.96.0.30:0", "malformed"},
           {"addr:10.96.0.30:65536", "malformed"},
           {"addr:10.96.0.30:+80", "malformed"},
           {"addr:ratings:80", "malformed"},
           {"addr:[10.96.0.30:80", "malformed"},
           // A captured node's hosts include the Services' addresses.
           {"host:240.240.0.1:9080", "reviews.default:9080"},
           {"host:[fd00::20]:8080", "db.default:8080"},
       }) {
    EXPECT_EQ(Resolved(c.key), c.answer) << c.key;
  }
}

TEST_F(LookupTest, AddressKeysOfUncapturedNodesFindNothing) {
  // Its ServiceRoutes carry no capture destinations: nothing would answer the address.
  EXPECT_EQ(Resolved("addr:240.240.0.1:9080"), "unknown");
  EXPECT_EQ(Resolved("addr:10.96.0.20:3306"), "unknown");
}

TEST_F(LookupTest, DeclaredNodeMayNotDiscoverUndeclared) {
  registry_.workloads[0].labels[std::string(kDependenciesLabel)] = "reviews";  // frontend-0
  policy_.mesh_config.emplace();
  for (const char* how : {"mode", "scopeToDependencies", "label"}) {
    SCOPED_TRACE(how);
    policy_.mesh_config->mutable_spec()->Clear();
    registry_.workloads[0].labels.erase(std::string(kDiscoveryLabel));
    if (std::string(how) == "mode") {
      policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
    } else if (std::string(how) == "scopeToDependencies") {
      policy_.mesh_config->mutable_spec()->set_scope_to_dependencies(true);
    } else {
      policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("WholeMesh");
      registry_.workloads[0].labels[std::string(kDiscoveryLabel)] = "declared";
    }
    EXPECT_EQ(Resolved("host:reviews"), "reviews.default:9080");    // declared
    EXPECT_EQ(Resolved("host:frontend"), "frontend.default:8080");  // its own
    EXPECT_EQ(Resolved("host:ratings.shop"), "not_visible");
    EXPECT_EQ(Resolved("host:b.example.com"), "not_visible");
    // What it could not discover is reported with its owner, for the server's counters only.
    const MeshTranslator translator(std::make_shared<const policy::PolicySnapshot>(policy_),
                                    std::make_shared<const registry::RegistrySnapshot>(registry_),
                                    kDefaultOptions);
    const LookupResult hidden = translator.Resolve(node_, "host:ratings.shop:9090");
    EXPECT_FALSE(hidden.found());
    EXPECT_EQ(hidden.service_route, "ratings.shop:9090");
  }
  // The label whole-mesh overrides MeshConfig's Declared for its workload.
  registry_.workloads[0].labels[std::string(kDiscoveryLabel)] = "whole-mesh";
  policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
  EXPECT_EQ(Resolved("host:ratings.shop"), "ratings.shop:80");
}

TEST_F(LookupTest, OnDemandNodeMayDiscoverAnyService) {
  registry_.workloads[0].labels[std::string(kDependenciesLabel)] = "reviews";
  registry_.workloads[0].labels[std::string(kDiscoveryLabel)] = "on-demand";
  const MeshIndex index = BuildIndex(policy_, registry_);
  // Over a state-of-the-world stream it cannot look Services up: it is served the whole mesh.
  EXPECT_EQ(TranslationContext(policy_, registry_, index, node_, kDefaultOptions).mode,
            DiscoveryMode::kWholeMesh);
  TranslationContext ctx(policy_, registry_, index, NodeInput(node_, /*delta=*/true),
                         kDefaultOptions);
  EXPECT_EQ(ctx.mode, DiscoveryMode::kOnDemand);
  EXPECT_EQ(Answer(Resolve(ctx, "host:ratings.shop")), "ratings.shop:80");
  ServiceView ratings;
  ratings.namespace_ = "shop";
  ratings.name = "ratings";
  EXPECT_FALSE(ctx.Reachable(ratings));  // pushed: what it declared
  EXPECT_TRUE(ctx.MayDiscover(ratings));
  ctx.mode = DiscoveryMode::kDeclared;
  EXPECT_EQ(Answer(Resolve(ctx, "host:ratings.shop")), "not_visible");
}

// A translator whose inputs differ from the previous one's in members only shares its lookup
// tables (KeepLookupTables): what either builds serves both, nothing is built twice, and the
// answers are those of tables built from nothing.
TEST_F(LookupTest, MemberOnlyChangeSharesTheLookupTables) {
  Capture(registry_.workloads[0]);  // frontend-0: address keys are looked up too
  const auto policy = std::make_shared<const policy::PolicySnapshot>(policy_);
  const NodeInput node(node_, /*delta=*/true);
  const std::vector<std::string> keys = {"host:reviews",         "host:ratings.shop:9090",
                                         "host:x.example.com",   "host:a.ratings.example.com",
                                         "addr:10.96.0.30:80",   "addr:240.240.0.1:9080",
                                         "host:nowhere.example", "addr:10.96.0.20:3306"};
  const MeshTranslator before(policy, std::make_shared<const registry::RegistrySnapshot>(registry_),
                              kDefaultOptions);
  EXPECT_EQ(Answer(before.Resolve(node, "host:reviews")), "reviews.default:9080");
  EXPECT_EQ(before.lookup_tables_built(), 1u);  // the host owners of a captured node

  for (registry::Workload& w : registry_.workloads) {
    if (w.id == "reviews-v2-0") w.addresses = {"10.0.2.9"};
  }
  const auto registry = std::make_shared<const registry::RegistrySnapshot>(registry_);
  MeshTranslator after(policy, registry, kDefaultOptions, &before);
  ASSERT_TRUE(after.MemberChangesSince(before).has_value());
  after.KeepLookupTables(before);
  const MeshTranslator fresh(policy, registry, kDefaultOptions);
  for (const std::string& key : keys) {
    EXPECT_EQ(Answer(after.Resolve(node, key)), Answer(fresh.Resolve(node, key))) << key;
  }
  // The host owners were kept; the address owners, built for `after`, are `before`'s too.
  EXPECT_EQ(after.lookup_tables_built(), 2u);
  EXPECT_EQ(before.lookup_tables_built(), 2u);
  EXPECT_EQ(fresh.lookup_tables_built(), 2u);
}

TEST(DiscoveryModeTest, EffectiveMode) {
  registry::Workload node;
  pb::MeshConfigSpec mesh;
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kOnDemand);  // the default
  // A sidecar that cannot look up (0.1.0, or a state-of-the-world stream) keeps the whole mesh.
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kWholeMesh);
  EXPECT_EQ(ConfiguredMode(node, mesh), DiscoveryMode::kOnDemand);
  mesh.mutable_discovery()->set_mode("WholeMesh");
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kWholeMesh);
  mesh.clear_discovery();
  mesh.set_scope_to_dependencies(true);
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kDeclared);
  mesh.set_scope_to_dependencies(false);
  mesh.mutable_discovery()->set_mode("OnDemand");
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kOnDemand);
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kWholeMesh);  // cannot look up
  mesh.mutable_discovery()->set_mode("Declared");
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kDeclared);
  // The label wins; one naming no mode is ignored.
  node.labels[std::string(kDiscoveryLabel)] = "whole-mesh";
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kWholeMesh);
  node.labels[std::string(kDiscoveryLabel)] = "on-demand";
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kOnDemand);
  node.labels[std::string(kDiscoveryLabel)] = "OnDemand";
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kDeclared);
  // A node asking for OnDemand by label that cannot look up keeps what the mesh gives it.
  node.labels[std::string(kDiscoveryLabel)] = "on-demand";
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kDeclared);
  mesh.mutable_discovery()->set_mode("OnDemand");
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kWholeMesh);
  mesh.clear_discovery();
  mesh.set_scope_to_dependencies(true);
  EXPECT_EQ(EffectiveMode(node, mesh, false), DiscoveryMode::kDeclared);
  EXPECT_EQ(EffectiveMode(node, mesh, true), DiscoveryMode::kOnDemand);
}

TEST_F(LookupTest, UnknownDiscoveryLabelIsIgnoredWithAWarning) {
  registry_.workloads[0].labels[std::string(kDiscoveryLabel)] = "OnDemand";
  registry_.workloads[0].labels[std::string(kDependenciesLabel)] = "reviews";
  policy_.mesh_config.emplace();
  policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
  const NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_EQ(r.service_routes.size(), 2u);  // Declared, as MeshConfig says
  EXPECT_NE(std::find(r.warnings.begin(), r.warnings.end(),
                      "label meshlet.io/discovery: \"OnDemand\" is not one of on-demand, "
                      "whole-mesh, declared and is ignored; the node's discovery mode is Declared "
                      "(MeshConfig)"),
            r.warnings.end());
}

// Mode Declared (not only scopeToDependencies) narrows what a node is pushed; the label
// whole-mesh gives one workload everything again.
TEST_F(LookupTest, DeclaredModeNarrowsWhatIsPushed) {
  registry_.workloads[0].labels[std::string(kDependenciesLabel)] = "reviews";
  policy_.mesh_config.emplace();
  policy_.mesh_config->mutable_spec()->mutable_discovery()->set_mode("Declared");
  auto names = [&] {
    std::vector<std::string> out;
    for (const xds::ServiceRoute& sr : Translate(policy_, registry_, node_).service_routes) {
      out.push_back(sr.name());
    }
    return out;
  };
  EXPECT_EQ(names(), (std::vector<std::string>{"frontend.default:8080", "reviews.default:9080"}));
  registry_.workloads[0].labels[std::string(kDiscoveryLabel)] = "whole-mesh";
  EXPECT_EQ(names().size(), 6u);
}

// ---------------------------------------------------------------------------------------------
// The invariant: a key resolves to a ServiceRoute exactly when, among the ServiceRoutes a
// whole-mesh node of that variant is pushed, that one answers it as the sidecar matches (hosts:
// route::RouteTable::MatchVirtualHost; addresses: the capture destinations), and to nothing when
// none does.

// The virtual host a sidecar picks for `host` (normalised), by a scan of every ServiceRoute:
// exact with the port, exact without, then the longest wildcard suffix with and without the port.
std::string MatchHost(const std::vector<xds::ServiceRoute>& routes, absl::string_view host) {
  const size_t colon = host.rfind(':');
  const size_t bracket = host.rfind(']');
  const bool has_port =
      colon != absl::string_view::npos && (bracket == absl::string_view::npos || colon > bracket);
  const absl::string_view bare = has_port ? host.substr(0, colon) : host;
  auto exact = [&](absl::string_view h) -> std::string {
    for (const xds::ServiceRoute& sr : routes) {
      for (const std::string& d : sr.virtual_host().domains()) {
        if (absl::EqualsIgnoreCase(d, h)) return sr.name();
      }
    }
    return "";
  };
  auto suffix = [&](absl::string_view h) -> std::string {
    std::string best;
    size_t best_length = 0;
    for (const xds::ServiceRoute& sr : routes) {
      for (const std::string& d : sr.virtual_host().domains()) {
        if (d.size() < 2 || d[0] != '*') continue;
        const absl::string_view s = absl::string_view(d).substr(1);
        if (h.size() > s.size() && absl::EndsWithIgnoreCase(h, s) && s.size() > best_length) {
          best = sr.name();
          best_length = s.size();
        }
      }
    }
    return best;
  };
  for (const std::string& found : {exact(host), has_port ? exact(bare) : std::string(),
                                   suffix(host), has_port ? suffix(bare) : std::string()}) {
    if (!found.empty()) return found;
  }
  return "";
}

// The ServiceRoute whose capture destination matches the normalised address key.
std::string MatchAddress(const std::vector<xds::ServiceRoute>& routes, absl::string_view key) {
  for (const xds::ServiceRoute& sr : routes) {
    if (!sr.has_destination()) continue;
    for (const std::string& address : sr.destination().addresses()) {
      if (xds::LookupKeyForAddress(address, sr.destination().port()) == key) return sr.name();
    }
  }
  return "";
}

// Keys to try against `routes`: every domain and destination as sent, in other case, with a
// trailing dot, with another port, wildcards filled in, addresses as IPv4-mapped and on the
// next port; and some that nothing answers.
std::vector<std::string> CandidateKeys(const std::vector<xds::ServiceRoute>& routes) {
  std::set<std::string> keys = {"host:nothing",       "host:nothing.default:80",
                                "addr:10.255.0.1:80", "addr:[fd00::ffff]:80",
                                "host:example.com",   "host:a.b.c"};
  for (const xds::ServiceRoute& sr : routes) {
    for (const std::string& d : sr.virtual_host().domains()) {
      if (absl::StartsWith(d, "*.")) {
        const std::string rest = d.substr(2);
        for (const std::string& host : {absl::StrCat("a.", rest), absl::StrCat("a.b.", rest), rest,
                                        absl::StrCat("a.", rest, ":8443")}) {
          keys.insert(absl::StrCat("host:", host));
        }
        continue;
      }
      keys.insert(absl::StrCat("host:", d));
      keys.insert(absl::StrCat("host:", absl::AsciiStrToUpper(d)));
      const size_t colon = d.rfind(':');
      const size_t bracket = d.rfind(']');
      // (A trailing dot belongs to names, not to IPv6 literals.)
      const absl::string_view dot = absl::StartsWith(d, "[") ? "" : ".";
      if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
        keys.insert(absl::StrCat("host:", d.substr(0, colon), dot, d.substr(colon)));
        keys.insert(absl::StrCat("host:", d.substr(0, colon), ":1"));
      } else {
        keys.insert(absl::StrCat("host:", d, dot));
        keys.insert(absl::StrCat("host:", d, ":1"));
      }
    }
    if (sr.has_destination()) {
      for (const std::string& address : sr.destination().addresses()) {
        for (uint32_t port : {sr.destination().port(), sr.destination().port() + 1}) {
          keys.insert(*xds::LookupKeyForAddress(address, port));
          if (!absl::StrContains(address, ':')) {
            keys.insert(absl::StrCat("addr:[::ffff:", address, "]:", port));
          }
        }
      }
    }
  }
  return {keys.begin(), keys.end()};
}

// Checks the invariant for `node` (a whole-mesh node reading ServiceRoutes); returns how many
// keys resolved.
size_t CheckEveryKey(const policy::PolicySnapshot& policy,
                     const registry::RegistrySnapshot& registry, const xds::Node& node) {
  const NodeResources r = Translate(policy, registry, node);
  EXPECT_FALSE(r.service_routes.empty());
  const MeshTranslator translator(std::make_shared<const policy::PolicySnapshot>(policy),
                                  std::make_shared<const registry::RegistrySnapshot>(registry),
                                  kDefaultOptions);
  size_t found = 0;
  for (const std::string& key : CandidateKeys(r.service_routes)) {
    const LookupResult result = translator.Resolve(node, key);
    std::string expected;
    if (absl::StartsWith(key, xds::kLookupHostPrefix)) {
      std::optional<std::string> normal =
          xds::LookupKeyForHost(absl::string_view(key).substr(xds::kLookupHostPrefix.size()));
      EXPECT_TRUE(normal.has_value()) << key;
      if (!normal) continue;
      expected = MatchHost(r.service_routes,
                           absl::string_view(*normal).substr(xds::kLookupHostPrefix.size()));
    } else {
      // Candidates are canonical, except IPv4-mapped ones.
      std::string normal = key;
      if (absl::StartsWith(key, "addr:[::ffff:")) {
        const std::string inner = key.substr(13);
        const size_t end = inner.find(']');
        normal = absl::StrCat("addr:", inner.substr(0, end), inner.substr(end + 1));
      }
      expected = MatchAddress(r.service_routes, normal);
    }
    EXPECT_EQ(result.found() ? result.service_route : "", expected) << key;
    if (result.found()) {
      ++found;
    } else {
      EXPECT_EQ(result.reason, LookupReason::kUnknown) << key;
    }
  }
  return found;
}

TEST_F(LookupTest, ResolvedKeyIsAnsweredByItsServiceRoute) {
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 40u);
  Capture(registry_.workloads[0]);
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 60u);
}

TEST_F(TranslatorTest, ResolvedKeyIsAnsweredByItsServiceRoute) {
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 20u);
}

TEST_F(CaptureTest, ResolvedKeyIsAnsweredByItsServiceRoute) {
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 20u);
  Capture(registry_.workloads[0]);
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 40u);
}

TEST_F(KubernetesServicesTest, ResolvedKeyIsAnsweredByItsServiceRoute) {
  // frontend-0 is captured here; a second node that is not.
  EXPECT_GT(CheckEveryKey(policy_, registry_, node_), 40u);
  xds::Node other = node_;
  other.set_id("reviews-v1-0");
  EXPECT_GT(CheckEveryKey(policy_, registry_, other), 20u);
}

}  // namespace
}  // namespace meshlet::controlplane::translate

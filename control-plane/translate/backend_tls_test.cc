// BackendTLSPolicy (backend_tls.cc): which policy takes a Service port, the TLS of the clusters
// it targets with their CA Secret, and the policy's status per Gateway.

#include "control-plane/translate/backend_tls.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "control-plane/translate/gateway_test_util.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

constexpr char kCaPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

class BackendTlsTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    AddMeshletGateway(R"(
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: meshlet
  listeners: [{name: http, port: 80, protocol: HTTP}]
)");
    bundles_[{"default", "ca"}] = BackendCaBundle{.pem = kCaPem};
    bundles_[{"default", "broken"}] = BackendCaBundle{.error = "data[\"ca.crt\"] is missing"};
  }
  // A policy "NAME" created at second `created` targeting `target` (a Service, "svc" or
  // "svc/section"), verifying with the ConfigMaps `configmaps` (each "Kind/name" or "name").
  void AddPolicy(const std::string& name, int created, const std::string& target,
                 const std::vector<std::string>& configmaps, const std::string& extra = "") {
    const size_t slash = target.find('/');
    std::string refs;
    for (const std::string& ref : configmaps) {
      const size_t kind = ref.find('/');
      absl::StrAppend(&refs, "{group: \"\", kind: ",
                      kind == std::string::npos ? "ConfigMap" : ref.substr(0, kind),
                      ", name: ", kind == std::string::npos ? ref : ref.substr(kind + 1), "},");
    }
    gw::BackendTLSPolicy p = ParseGateway<gw::BackendTLSPolicy>(absl::StrCat(
        "kind: BackendTLSPolicy\nmetadata: {name: ", name,
        ", generation: 3, creationTimestamp: \"2026-01-01T00:00:",
        absl::Dec(created, absl::kZeroPad2),
        "Z\"}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: ", target.substr(0, slash),
        slash == std::string::npos ? "" : absl::StrCat(", sectionName: ", target.substr(slash + 1)),
        "}]\n  validation:\n    hostname: abc.example.com\n",
        refs.empty() ? "" : absl::StrCat("    caCertificateRefs: [", refs, "]\n"), extra));
    // The list is ordered by (namespace, name), as a snapshot's.
    std::vector<gw::BackendTLSPolicy> all(policy_.backend_tls_policies.begin(),
                                          policy_.backend_tls_policies.end());
    all.push_back(p);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.metadata().name() < b.metadata().name();
    });
    policy_.backend_tls_policies.clear();
    for (const gw::BackendTLSPolicy& q : all) policy_.backend_tls_policies.push_back(q);
  }
  const NodeResources& Translated(
      const std::string& node_id,
      const std::vector<std::string>& capabilities = xds::CapabilitySet::All().Names()) {
    xds::Node node;
    node.set_id(node_id);
    for (const std::string& name : capabilities) node.add_capabilities(name);
    options_.backend_ca_bundles = bundles_;
    return translations_.emplace_back(Translate(policy_, registry_, node, options_));
  }
  const gw::BackendTLSPolicy* For(const std::string& service, const std::string& port) {
    return BackendTlsPolicyFor(policy_, "default", service, port);
  }
  // Each ancestor of the policy's status as "ns/gateway Type=Status/Reason ...".
  std::vector<std::string> StatusOf(const std::string& name) {
    GatewayEnvironment env;
    env.ca_bundles = bundles_;
    std::vector<std::string> out;
    for (const policy::RouteStatusUpdate& u : ComputeBackendTlsStatuses(policy_, env)) {
      if (u.name != name) continue;
      EXPECT_EQ(u.kind, "BackendTLSPolicy");
      for (const gw::RouteParentStatus& a : u.status.parents()) {
        EXPECT_EQ(a.parent_ref().group(), "gateway.networking.k8s.io");
        EXPECT_EQ(a.parent_ref().kind(), "Gateway");
        EXPECT_EQ(a.controller_name(), "meshlet.io/gateway-controller");
        std::string line = absl::StrCat(a.parent_ref().namespace_(), "/", a.parent_ref().name());
        for (const gw::Condition& c : a.conditions()) {
          EXPECT_EQ(c.observed_generation(), 3) << c.type();
          absl::StrAppend(&line, " ", c.type(), "=", c.status(), "/", c.reason());
        }
        out.push_back(line);
      }
    }
    return out;
  }
  void RouteToEcho() {
    AddHttp(R"(
kind: HTTPRoute
metadata: {name: to-echo}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: echo, port: 80}]
)");
  }

  BackendCaBundles bundles_;
  TranslateOptions options_;
};

TEST_F(BackendTlsTest, TheOlderPolicyTakesATargetAndASectionNameWinsOverTheService) {
  AddPolicy("late", 30, "echo", {"ca"});
  AddPolicy("early", 10, "echo", {"ca"});
  AddPolicy("same-time-b", 20, "echo/admin", {"ca"});
  AddPolicy("same-time-a", 20, "echo/admin", {"ca"});
  EXPECT_EQ(For("echo", "http")->metadata().name(), "early");
  EXPECT_EQ(For("echo", "admin")->metadata().name(), "same-time-a");
  EXPECT_EQ(For("echo", "")->metadata().name(), "early");
  EXPECT_EQ(For("echo-v1", "http"), nullptr);
  EXPECT_EQ(BackendTlsPolicyFor(policy_, "other", "echo", "http"), nullptr);
  EXPECT_TRUE(
      EvaluateBackendTls(policy_, bundles_, *policy_.backend_tls_policies.Find("default", "late"))
          .conflicted);
  EXPECT_FALSE(EvaluateBackendTls(policy_, bundles_, *For("echo", "http")).conflicted);
  RouteToEcho();
  EXPECT_EQ(StatusOf("late"),
            std::vector<std::string>{
                "default/edge Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs"});
  EXPECT_EQ(StatusOf("early"),
            std::vector<std::string>{
                "default/edge Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"});
  EXPECT_EQ(StatusOf("same-time-b"),
            std::vector<std::string>{
                "default/edge Accepted=False/Conflicted ResolvedRefs=True/ResolvedRefs"});
}

TEST_F(BackendTlsTest, ReferencesThatDoNotResolveLeaveNoCa) {
  AddPolicy("kind", 1, "echo", {"Secret/ca"});
  AddPolicy("missing", 2, "echo-v1", {"nowhere"});
  AddPolicy("broken", 3, "echo-v2", {"broken"});
  AddPolicy("partly", 4, "remote", {"broken", "ca"});
  AddPolicy("system", 5, "echo/admin", {}, "    wellKnownCACertificates: System\n");
  for (const char* backend : {"echo", "echo-v1", "echo-v2"}) {
    AddHttp(absl::StrCat(
        "kind: HTTPRoute\nmetadata: {name: to-", backend,
        "}\nspec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: ", backend,
        ", port: 80}]\n"));
  }
  EXPECT_EQ(StatusOf("kind"),
            std::vector<std::string>{
                "default/edge Accepted=False/NoValidCACertificate ResolvedRefs=False/InvalidKind"});
  EXPECT_EQ(StatusOf("missing"), std::vector<std::string>{"default/edge "
                                                          "Accepted=False/NoValidCACertificate "
                                                          "ResolvedRefs=False/"
                                                          "InvalidCACertificateRef"});
  EXPECT_EQ(StatusOf("broken"), StatusOf("missing"));
  // No Gateway sends to remote (another namespace's Service): no ancestor.
  EXPECT_EQ(StatusOf("partly"), std::vector<std::string>{});
  const BackendTlsState partly = EvaluateBackendTls(
      policy_, bundles_, *policy_.backend_tls_policies.Find("default", "partly"));
  EXPECT_EQ(partly.ca_pem, kCaPem);
  EXPECT_EQ(partly.refs_reason, "InvalidCACertificateRef");
  EXPECT_EQ(StatusOf("system"),
            std::vector<std::string>{
                "default/edge Accepted=False/NoValidCACertificate ResolvedRefs=True/ResolvedRefs"});
  // ConfigMaps are read for the ConfigMap references only.
  EXPECT_EQ(BackendCaConfigMapRefs(policy_),
            (std::set<std::pair<std::string, std::string>>{
                {"default", "broken"}, {"default", "ca"}, {"default", "nowhere"}}));
}

TEST_F(BackendTlsTest, ACallersClusterOriginatesTlsWithThePolicysCaAndNames) {
  AddPolicy("echo-tls", 1, "echo/http", {"ca"},
            "    subjectAltNames:\n"
            "    - {type: Hostname, hostname: echo.example.com}\n"
            "    - {type: URI, uri: \"spiffe://example/echo\"}\n");
  const NodeResources& r = Translated("frontend-0");
  const xds::Cluster* cluster = Named(r.clusters, "outbound|80||echo.default");
  ASSERT_NE(cluster, nullptr);
  EXPECT_TRUE(cluster->tls().enabled());
  EXPECT_FALSE(cluster->tls().workload_certificate());
  EXPECT_EQ(cluster->tls().sni(), "abc.example.com");
  EXPECT_EQ(cluster->tls().secret_name(), "backend-tls/default/echo-tls");
  ASSERT_EQ(cluster->tls().subject_alt_names_size(), 2);
  EXPECT_EQ(cluster->tls().subject_alt_names(0).dns(), "echo.example.com");
  EXPECT_EQ(cluster->tls().subject_alt_names(1).uri(), "spiffe://example/echo");
  EXPECT_NE(cluster->protocol(), xds::UPSTREAM_MESH_HTTP2);
  const xds::Secret* secret = Named(r.secrets, "backend-tls/default/echo-tls");
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ(secret->trust_bundle_pem(), kCaPem);
  EXPECT_TRUE(secret->certificate_chain_pem().empty());
  const xds::ClusterLoadAssignment* assignment = Assignment(r, "outbound|80||echo.default");
  ASSERT_NE(assignment, nullptr);
  ASSERT_EQ(assignment->endpoints_size(), 1);
  EXPECT_TRUE(assignment->endpoints(0).identity().empty());
  // The other port is not targeted.
  const xds::Cluster* admin = Named(r.clusters, "outbound|9090||echo.default");
  ASSERT_NE(admin, nullptr);
  EXPECT_NE(admin->tls().sni(), "abc.example.com");

  // A sidecar without backend-tls is sent the SNI name to verify, the names left out.
  std::vector<std::string> older;
  for (const std::string& name : xds::CapabilitySet::All().Names()) {
    if (name != "backend-tls") older.push_back(name);
  }
  const NodeResources& old = Translated("frontend-0", older);
  const xds::Cluster* old_cluster = Named(old.clusters, "outbound|80||echo.default");
  ASSERT_NE(old_cluster, nullptr);
  EXPECT_EQ(old_cluster->tls().subject_alt_names_size(), 0);
  EXPECT_EQ(old_cluster->tls().sni(), "abc.example.com");
  EXPECT_NE(Named(old.secrets, "backend-tls/default/echo-tls"), nullptr);
}

TEST_F(BackendTlsTest, WithoutACaTheBackendIsNotReachedAtAll) {
  AddPolicy("echo-tls", 1, "echo", {"broken"});
  const NodeResources& r = Translated("frontend-0");
  const xds::Cluster* cluster = Named(r.clusters, "outbound|80||echo.default");
  ASSERT_NE(cluster, nullptr);
  EXPECT_FALSE(cluster->tls().enabled());
  EXPECT_EQ(Named(r.secrets, "backend-tls/default/echo-tls"), nullptr);
  const xds::ClusterLoadAssignment* assignment = Assignment(r, "outbound|80||echo.default");
  ASSERT_NE(assignment, nullptr);
  EXPECT_EQ(assignment->endpoints_size(), 0);
  // Once the ConfigMap is fixed, the same cluster originates TLS.
  bundles_[{"default", "broken"}] = BackendCaBundle{.pem = kCaPem};
  const NodeResources& fixed = Translated("frontend-0");
  EXPECT_TRUE(Named(fixed.clusters, "outbound|80||echo.default")->tls().enabled());
  EXPECT_EQ(Assignment(fixed, "outbound|80||echo.default")->endpoints_size(), 1);
}

TEST_F(BackendTlsTest, WellKnownSystemCertificatesAreTheControlPlanesSystemBundle) {
  AddPolicy("system", 1, "echo/http", {}, "    wellKnownCACertificates: System\n");
  RouteToEcho();
  // No system bundle read (no --system-ca-file): no CA, not reached.
  const BackendTlsState none = EvaluateBackendTls(
      policy_, bundles_, *policy_.backend_tls_policies.Find("default", "system"));
  EXPECT_TRUE(none.ca_pem.empty());
  EXPECT_NE(none.well_known_message.find("--system-ca-file"), std::string::npos)
      << none.well_known_message;
  EXPECT_EQ(StatusOf("system"),
            std::vector<std::string>{
                "default/edge Accepted=False/NoValidCACertificate ResolvedRefs=True/ResolvedRefs"});
  EXPECT_EQ(Assignment(Translated("frontend-0"), "outbound|80||echo.default")->endpoints_size(), 0);

  // A bundle that could not be read says why.
  bundles_[kSystemCaBundle] = BackendCaBundle{.error = "/etc/ssl/x.crt: No such file"};
  EXPECT_EQ(
      EvaluateBackendTls(policy_, bundles_, *policy_.backend_tls_policies.Find("default", "system"))
          .well_known_message,
      "wellKnownCACertificates System: /etc/ssl/x.crt: No such file");

  // The system's certificates: the cluster originates TLS verified with them, sent inline.
  bundles_[kSystemCaBundle] = BackendCaBundle{.pem = kCaPem};
  EXPECT_EQ(StatusOf("system"),
            std::vector<std::string>{
                "default/edge Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs"});
  const NodeResources& r = Translated("frontend-0");
  const xds::Cluster* cluster = Named(r.clusters, "outbound|80||echo.default");
  ASSERT_NE(cluster, nullptr);
  EXPECT_TRUE(cluster->tls().enabled());
  EXPECT_EQ(cluster->tls().sni(), "abc.example.com");
  EXPECT_EQ(cluster->tls().secret_name(), kBackendTlsSystemSecret);
  const xds::Secret* secret = Named(r.secrets, cluster->tls().secret_name());
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ(secret->trust_bundle_pem(), kCaPem);
  EXPECT_EQ(Assignment(r, "outbound|80||echo.default")->endpoints_size(), 1);
  // A second System policy shares the one Secret: the bundle is sent once.
  AddPolicy("system-too", 2, "echo-v1", {}, "    wellKnownCACertificates: System\n");
  const NodeResources& both = Translated("frontend-0");
  EXPECT_EQ(Named(both.clusters, "outbound|80||echo-v1.default")->tls().secret_name(),
            kBackendTlsSystemSecret);
  EXPECT_EQ(std::count_if(both.secrets.begin(), both.secrets.end(),
                          [](const xds::Secret& s) {
                            return absl::StartsWith(s.name(), kBackendTlsSecretPrefix);
                          }),
            1);
  // No ConfigMap is read for it.
  EXPECT_TRUE(BackendCaConfigMapRefs(policy_).empty());
}

}  // namespace
}  // namespace meshlet::controlplane::translate

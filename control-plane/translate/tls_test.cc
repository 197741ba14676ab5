// Mesh mTLS (tls.cc).

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

TEST_F(TranslatorTest, MeshMtlsWithWorkloadCertificates) {
  // Without a workload certificate the node gets plaintext, whatever the mode.
  NodeResources r = Translate(policy_, registry_, node_);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_tls());
  EXPECT_FALSE(Named(r.clusters, "outbound|9080||reviews.default")->has_tls());
  EXPECT_TRUE(r.secrets.empty());

  for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  registry_.workloads[3].service_account = "reviews-canary";
  TranslateOptions options;
  options.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----\n";
  r = Translate(policy_, registry_, node_, options);
  const xds::Listener* inbound = Named(r.listeners, "inbound");
  ASSERT_TRUE(inbound->has_tls());
  EXPECT_EQ(inbound->tls().mode(), xds::DownstreamTls::PERMISSIVE);
  EXPECT_TRUE(inbound->tls().workload_certificate());
  EXPECT_TRUE(inbound->tls().secret_name().empty());
  EXPECT_EQ(inbound->tls().trust_bundle_secret(), kTrustBundleSecret);
  // The control plane never emits per-connection peer lists (authorization instead).
  EXPECT_EQ(inbound->tls().allowed_peer_ids_size(), 0);
  ASSERT_EQ(r.secrets.size(), 1u);
  EXPECT_EQ(r.secrets[0].name(), kTrustBundleSecret);
  EXPECT_EQ(r.secrets[0].trust_bundle_pem(), options.trust_bundle_pem);
  EXPECT_TRUE(r.secrets[0].private_key_pem().empty());

  // Outbound: the workload certificate, expecting exactly the members' identities.
  const xds::Cluster* all = Named(r.clusters, "outbound|9080||reviews.default");
  ASSERT_TRUE(all->tls().enabled());
  // Sidecar to sidecar over mTLS, the HTTP/1.1 service's requests travel over HTTP/2.
  EXPECT_EQ(all->protocol(), xds::UPSTREAM_MESH_HTTP2);
  EXPECT_TRUE(all->tls().workload_certificate());
  EXPECT_EQ(all->tls().trust_bundle_secret(), kTrustBundleSecret);
  EXPECT_EQ(std::vector<std::string>(all->tls().expected_peer_ids().begin(),
                                     all->tls().expected_peer_ids().end()),
            (std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/reviews",
                                      "spiffe://cluster.local/ns/default/sa/reviews-canary"}));
  const xds::Cluster* v1 = Named(r.clusters, "outbound|9080|version=v1|reviews.default");
  ASSERT_EQ(v1->tls().expected_peer_ids_size(), 1);
  EXPECT_EQ(v1->tls().expected_peer_ids(0), "spiffe://cluster.local/ns/default/sa/reviews");

  // Each endpoint must present exactly its own identity.
  auto endpoint_tls = [&](absl::string_view cluster) {
    std::vector<std::pair<std::string, std::string>> out;  // (address, identity or "plaintext")
    for (const xds::Endpoint& e : Assignment(r, cluster)->endpoints()) {
      out.emplace_back(e.address(), e.plaintext() ? "plaintext" : e.identity());
    }
    return out;
  };
  using EndpointTls = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(
      endpoint_tls("outbound|9080||reviews.default"),
      (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                   {"10.0.1.2:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                   {"10.0.2.1:15006", "spiffe://cluster.local/ns/default/sa/reviews-canary"}}));

  // Automatic mTLS per endpoint: a member without a certificate cannot answer mTLS, so in
  // PERMISSIVE it alone is reached in plaintext while the cluster keeps mTLS for the others.
  registry_.workloads[2].workload_certificate = false;
  r = Translate(policy_, registry_, node_, options);
  const xds::Cluster* mixed = Named(r.clusters, "outbound|9080|version=v1|reviews.default");
  ASSERT_TRUE(mixed->tls().enabled());
  EXPECT_TRUE(mixed->tls().workload_certificate());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                         {"10.0.1.2:15006", "plaintext"}}));
  EXPECT_EQ(endpoint_tls("outbound|9080||reviews.default")[1],
            (std::pair<std::string, std::string>{"10.0.1.2:15006", "plaintext"}));
  EXPECT_EQ(
      endpoint_tls("outbound|9080|version=v2|reviews.default"),
      (EndpointTls{{"10.0.2.1:15006", "spiffe://cluster.local/ns/default/sa/reviews-canary"}}));
  // No member with a certificate: plaintext as a whole, nothing marked per endpoint.
  registry_.workloads[1].workload_certificate = false;
  r = Translate(policy_, registry_, node_, options);
  EXPECT_FALSE(Named(r.clusters, "outbound|9080|version=v1|reviews.default")->has_tls());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", ""}, {"10.0.1.2:15006", ""}}));
  // STRICT keeps mTLS to every member (a member refuses plaintext anyway), each with the
  // identity its service account gives it.
  policy_.traffic_policies[0].mutable_spec()->set_mtls("STRICT");
  r = Translate(policy_, registry_, node_, options);
  EXPECT_TRUE(Named(r.clusters, "outbound|9080|version=v1|reviews.default")->tls().enabled());
  EXPECT_EQ(endpoint_tls("outbound|9080|version=v1|reviews.default"),
            (EndpointTls{{"10.0.1.1:15006", "spiffe://cluster.local/ns/default/sa/reviews"},
                         {"10.0.1.2:15006", "spiffe://cluster.local/ns/default/sa/reviews"}}));
  // A subset without members (none has version v3) expects any identity of the trust domain: a
  // narrower pattern cannot be expressed, and an id pattern the sidecar cannot compile would make
  // it refuse the whole configuration.
  (*policy_.http_routes[0]
        .mutable_spec()
        ->mutable_rules(0)
        ->mutable_backends(0)
        ->mutable_subset())["version"] = "v3";
  r = Translate(policy_, registry_, node_, options);
  const xds::Cluster* empty = Named(r.clusters, "outbound|9080|version=v3|reviews.default");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(std::vector<std::string>(empty->tls().expected_peer_ids().begin(),
                                     empty->tls().expected_peer_ids().end()),
            (std::vector<std::string>{"spiffe://cluster.local/*"}));

  // DISABLE: plaintext both ways.
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_mtls("DISABLE");
  policy_.mesh_config = mesh;
  policy_.traffic_policies[0].mutable_spec()->clear_mtls();
  r = Translate(policy_, registry_, node_, options);
  EXPECT_FALSE(Named(r.listeners, "inbound")->has_tls());
  EXPECT_FALSE(Named(r.clusters, "outbound|9080||reviews.default")->has_tls());
  EXPECT_EQ(Named(r.clusters, "outbound|9080||reviews.default")->protocol(), xds::UPSTREAM_HTTP1);
}

// The steps on their own.

class TlsStepsTest : public TranslatorTest {
 protected:
  void SetUp() override {
    TranslatorTest::SetUp();
    for (registry::Workload& w : registry_.workloads) w.workload_certificate = true;
  }
  // mTLS of the cluster to reviews' subset `version` as the node sees it, or "plaintext".
  std::string Upstream(const std::string& mode, const std::string& version,
                       const TranslateOptions& options = {}) {
    const MeshIndex index = BuildIndex(policy_, registry_);
    const TranslationContext ctx(policy_, registry_, index, node_, options);
    xds::Cluster cluster;
    if (!SetUpstreamMtls(ctx, *index.services.at({"default", "reviews"}), {{"version", version}},
                         mode, cluster)) {
      EXPECT_FALSE(cluster.has_tls());
      return "plaintext";
    }
    EXPECT_TRUE(cluster.tls().workload_certificate());
    return absl::StrCat(absl::StrJoin(cluster.tls().expected_peer_ids(), ","),
                        " bundle=", cluster.tls().trust_bundle_secret());
  }
};

TEST_F(TlsStepsTest, UpstreamMtlsNeedsTheNodesCertificateAndAMemberThatAnswers) {
  EXPECT_EQ(Upstream("PERMISSIVE", "v1"), "spiffe://cluster.local/ns/default/sa/reviews bundle=");
  TranslateOptions bundle;
  bundle.trust_bundle_pem = "roots";
  EXPECT_EQ(Upstream("STRICT", "v1", bundle),
            "spiffe://cluster.local/ns/default/sa/reviews bundle=mesh-trust-bundle");
  EXPECT_EQ(Upstream("DISABLE", "v1"), "plaintext");
  // No member of the subset: PERMISSIVE stays plaintext, STRICT expects the trust domain.
  EXPECT_EQ(Upstream("PERMISSIVE", "v9"), "plaintext");
  EXPECT_EQ(Upstream("STRICT", "v9"), "spiffe://cluster.local/* bundle=");
  pb::MeshConfig mesh;
  mesh.mutable_spec()->set_trust_domain("example.org");
  policy_.mesh_config = mesh;
  EXPECT_EQ(Upstream("STRICT", "v9"), "spiffe://example.org/* bundle=");
  EXPECT_EQ(Upstream("STRICT", "v2"), "spiffe://example.org/ns/default/sa/reviews bundle=");
  // The node without a certificate originates none.
  registry_.workloads[0].workload_certificate = false;
  EXPECT_EQ(Upstream("STRICT", "v1"), "plaintext");
}

TEST_F(TlsStepsTest, EachEndpointPresentsItsOwnIdentityOrIsMarkedPlaintext) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  const TranslationContext ctx(policy_, registry_, index, node_, kDefaultOptions);
  auto endpoint = [&](const registry::Workload& w, bool mtls, const std::string& mode) {
    xds::Endpoint e;
    SetEndpointTls(ctx, w, mtls, mode, e);
    return e.plaintext() ? std::string("plaintext") : e.identity();
  };
  registry::Workload with = registry_.workloads[1];
  registry::Workload without = with;
  without.workload_certificate = false;
  registry::Workload anonymous = with;
  anonymous.service_account.clear();
  const std::string id = "spiffe://cluster.local/ns/default/sa/reviews";
  EXPECT_EQ(endpoint(with, true, "PERMISSIVE"), id);
  EXPECT_EQ(endpoint(without, true, "PERMISSIVE"), "plaintext");
  EXPECT_EQ(endpoint(without, true, "STRICT"), id);
  EXPECT_EQ(endpoint(anonymous, true, "PERMISSIVE"), "plaintext");  // no certificate to show
  EXPECT_EQ(endpoint(anonymous, true, "STRICT"), "");
  EXPECT_EQ(endpoint(with, false, "PERMISSIVE"), id);  // a cluster without mTLS: told anyway
  EXPECT_EQ(endpoint(without, false, "PERMISSIVE"), "");
}

TEST_F(TlsStepsTest, TheInboundListenerServesTheWorkloadCertificateInItsMode) {
  const MeshIndex index = BuildIndex(policy_, registry_);
  TranslateOptions bundle;
  bundle.trust_bundle_pem = "roots";
  const TranslationContext ctx(policy_, registry_, index, node_, bundle);
  xds::Listener strict;
  SetDownstreamTls(ctx, "STRICT", strict);
  EXPECT_EQ(strict.tls().mode(), xds::DownstreamTls::STRICT);
  EXPECT_TRUE(strict.tls().require_client_certificate());
  EXPECT_TRUE(strict.tls().workload_certificate());
  EXPECT_EQ(strict.tls().trust_bundle_secret(), kTrustBundleSecret);
  xds::Listener permissive;
  SetDownstreamTls(ctx, "PERMISSIVE", permissive);
  EXPECT_EQ(permissive.tls().mode(), xds::DownstreamTls::PERMISSIVE);
  EXPECT_FALSE(permissive.tls().require_client_certificate());
  xds::Listener disabled;
  SetDownstreamTls(ctx, "DISABLE", disabled);
  EXPECT_FALSE(disabled.has_tls());
  NodeResources resources;
  AddTrustBundle(ctx, resources);
  ASSERT_EQ(resources.secrets.size(), 1u);
  EXPECT_EQ(resources.secrets[0].trust_bundle_pem(), "roots");
  EXPECT_EQ(MeshTlsKey(ctx), "workload+bundle");

  // Without a certificate: no TLS, no bundle, whatever the mode.
  registry_.workloads[0].workload_certificate = false;
  const TranslationContext plain(policy_, registry_, index, node_, bundle);
  xds::Listener none;
  SetDownstreamTls(plain, "STRICT", none);
  EXPECT_FALSE(none.has_tls());
  NodeResources nothing;
  AddTrustBundle(plain, nothing);
  EXPECT_TRUE(nothing.secrets.empty());
  EXPECT_EQ(MeshTlsKey(plain), "plaintext");
  EXPECT_EQ(MeshTlsKey(TranslationContext(policy_, registry_, index, xds::Node(), kDefaultOptions)),
            "plaintext");
}

}  // namespace
}  // namespace meshlet::controlplane::translate

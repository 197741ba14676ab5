#include "sidecar/server/tls_contexts.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/tls/test_certificates.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {

using cluster::ClusterConfig;
using cluster::UpstreamProtocol;

namespace {

using tls::testing::TestCa;
using tls::testing::TestCertificate;

// Cluster `name` on the workload certificate, expecting its own SPIFFE id.
std::shared_ptr<ClusterConfig> WorkloadCluster(const std::string& name) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = name;
  cluster->tls.enabled = true;
  cluster->tls.workload_certificate = true;
  cluster->tls.expected_peer_ids = {absl::StrCat("spiffe://cluster.local/ns/default/sa/", name)};
  return cluster;
}

class TlsContextsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCa> ca = TestCa::Create();
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<TestCa>(*std::move(ca));
  }

  TestCertificate Leaf(const std::string& id) {
    absl::StatusOr<TestCertificate> leaf = ca_->Issue({.spiffe_id = id});
    EXPECT_TRUE(leaf.ok()) << leaf.status();
    return leaf.ok() ? *leaf : TestCertificate{};
  }

  // `cert` as the workload certificate, issued by ca_.
  WorkloadTlsMaterial Material(const TestCertificate& cert) {
    return WorkloadTlsMaterial{.certificate_chain_pem = cert.chain_pem,
                               .private_key_pem = cert.key_pem,
                               .trust_bundle_pem = ca_->cert_pem()};
  }

  // One STRICT listener "inbound" and one TLS cluster "mesh", both on secret "workload".
  config::Snapshot MakeSnapshot(const TestCertificate& cert) {
    config::Snapshot snapshot;
    snapshot.secrets["workload"] = config::SecretConfig{.name = "workload",
                                                        .certificate_chain_pem = cert.chain_pem,
                                                        .private_key_pem = cert.key_pem,
                                                        .trust_bundle_pem = ca_->cert_pem()};
    config::ListenerConfig listener;
    listener.name = "inbound";
    listener.tls.mode = config::DownstreamTlsConfig::Mode::kStrict;
    listener.tls.secret_name = "workload";
    listener.tls.require_client_certificate = true;
    listener.tls.allowed_peer_ids = {"spiffe://cluster.local/*"};
    snapshot.listeners.push_back(listener);
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = "mesh";
    cluster->tls.enabled = true;
    cluster->tls.secret_name = "workload";
    cluster->tls.expected_peer_ids = {"spiffe://cluster.local/ns/default/sa/server"};
    snapshot.clusters["mesh"] = cluster;
    return snapshot;
  }

  // MakeSnapshot and `count` clusters svc-<i> on the workload certificate, applied to `contexts`
  // after giving it a workload certificate.
  config::Snapshot ApplyWorkloadClusters(TlsContexts& contexts, int count) {
    contexts.SetWorkloadCertificate(Material(Leaf("spiffe://cluster.local/ns/default/sa/a")));
    config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/static"));
    for (int i = 0; i < count; ++i) {
      const std::string name = absl::StrCat("svc-", i);
      snapshot.clusters[name] = WorkloadCluster(name);
    }
    EXPECT_TRUE(contexts.Apply(snapshot).ok());
    return snapshot;
  }

  // Clusters svc-0..svc-<count - 1> all on `context`, given once since their first.
  static void ExpectRotated(const TlsContexts& contexts, int count,
                            const std::shared_ptr<const tls::TlsContext>& context) {
    for (int i = 0; i < count; ++i) {
      std::shared_ptr<const tls::TlsContextProvider> provider =
          contexts.ForCluster(absl::StrCat("svc-", i));
      ASSERT_NE(provider, nullptr) << i;
      EXPECT_EQ(provider->Current(), context) << i;
      EXPECT_EQ(provider->generation(), 2u) << i;
    }
  }

  std::unique_ptr<TestCa> ca_;
};

TEST_F(TlsContextsTest, UnchangedSecretKeepsTheContextAndAChangedOneSwapsIt) {
  TlsContexts contexts;
  const TestCertificate first = Leaf("spiffe://cluster.local/ns/default/sa/a");
  ASSERT_TRUE(contexts.Apply(MakeSnapshot(first)).ok());
  std::shared_ptr<const tls::TlsContextProvider> listener = contexts.ForListener("inbound");
  std::shared_ptr<const tls::TlsContextProvider> cluster = contexts.ForCluster("mesh");
  ASSERT_NE(listener, nullptr);
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(contexts.ForListener("other"), nullptr);
  const std::shared_ptr<const tls::TlsContext> old_context = listener->Current();
  EXPECT_TRUE(old_context->is_server());
  EXPECT_EQ(old_context->client_certificate(), tls::ClientCertificateMode::kRequire);
  EXPECT_FALSE(cluster->Current()->is_server());
  EXPECT_EQ(cluster->Current()->alpn_protocols(), std::vector<std::string>{"http/1.1"});

  // The same inputs again: nothing is rebuilt.
  ASSERT_TRUE(contexts.Apply(MakeSnapshot(first)).ok());
  EXPECT_EQ(listener->generation(), 1u);
  EXPECT_EQ(listener->Current(), old_context);

  // A rotated certificate: same providers, new contexts; the old one lives on for its holders.
  ASSERT_TRUE(contexts.Apply(MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/a"))).ok());
  EXPECT_EQ(contexts.ForListener("inbound"), listener);
  EXPECT_EQ(listener->generation(), 2u);
  EXPECT_EQ(cluster->generation(), 2u);
  EXPECT_NE(listener->Current(), old_context);
  EXPECT_TRUE(old_context->is_server());
}

// A gateway's HTTPS listener: TLS without client certificates and a certificate by SNI; a new
// SNI certificate makes a new context (new handshakes), the old one lives on for its holders.
TEST_F(TlsContextsTest, ServerCertificatesBySniAndTheirRotation) {
  const TestCertificate workload = Leaf("spiffe://cluster.local/ns/default/sa/a");
  const TestCertificate fallback = Leaf("");
  auto with_shop = [&](const TestCertificate& shop) {
    config::Snapshot snapshot = MakeSnapshot(workload);
    snapshot.secrets["fallback"] = config::SecretConfig{.name = "fallback",
                                                        .certificate_chain_pem = fallback.chain_pem,
                                                        .private_key_pem = fallback.key_pem};
    snapshot.secrets["shop"] = config::SecretConfig{
        .name = "shop", .certificate_chain_pem = shop.chain_pem, .private_key_pem = shop.key_pem};
    config::ListenerConfig& gateway = snapshot.listeners.emplace_back();
    gateway.name = "gateway|443";
    gateway.tls.mode = config::DownstreamTlsConfig::Mode::kTls;
    gateway.tls.secret_name = "fallback";
    gateway.tls.server_certificates = {
        {.server_names = {"shop.example.com"}, .secret_name = "shop"}};
    return snapshot;
  };
  TlsContexts contexts;
  const config::Snapshot first = with_shop(Leaf(""));
  ASSERT_TRUE(contexts.Apply(first).ok());
  std::shared_ptr<const tls::TlsContextProvider> gateway = contexts.ForListener("gateway|443");
  ASSERT_NE(gateway, nullptr);
  const std::shared_ptr<const tls::TlsContext> old_context = gateway->Current();
  EXPECT_EQ(old_context->client_certificate(), tls::ClientCertificateMode::kNone);
  EXPECT_EQ(old_context->SniIndexFor("shop.example.com"), 0);
  ASSERT_TRUE(contexts.Apply(first).ok());
  EXPECT_EQ(gateway->Current(), old_context);  // unchanged: not rebuilt
  config::Snapshot rotated = first;
  const TestCertificate next = Leaf("");
  rotated.secrets["shop"].certificate_chain_pem = next.chain_pem;
  rotated.secrets["shop"].private_key_pem = next.key_pem;
  ASSERT_TRUE(contexts.Apply(rotated).ok());
  EXPECT_NE(gateway->Current(), old_context);
  EXPECT_EQ(gateway->Current()->SniIndexFor("shop.example.com"), 0);
}

TEST_F(TlsContextsTest, ARemovedListenerLosesItsProviderAndOpenHoldersKeepTheirs) {
  TlsContexts contexts;
  const config::Snapshot with = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/a"));
  ASSERT_TRUE(contexts.Apply(with).ok());
  std::shared_ptr<const tls::TlsContextProvider> held = contexts.ForListener("inbound");
  ASSERT_NE(held, nullptr);
  const std::shared_ptr<const tls::TlsContext> context = held->Current();

  // The listener goes: the provider is no longer held here, but a holder (a worker's listener
  // context, an open session) keeps its provider and context.
  config::Snapshot without = with;
  without.listeners.clear();
  ASSERT_TRUE(contexts.Apply(without).ok());
  EXPECT_EQ(contexts.ForListener("inbound"), nullptr);
  EXPECT_EQ(held->Current(), context);
  EXPECT_TRUE(context->is_server());

  // Back: a fresh provider. Then TLS turned off: gone again, and nothing else holds it.
  ASSERT_TRUE(contexts.Apply(with).ok());
  std::weak_ptr<const tls::TlsContextProvider> back = contexts.ForListener("inbound");
  ASSERT_FALSE(back.expired());
  EXPECT_NE(back.lock(), held);
  config::Snapshot plaintext = with;
  plaintext.listeners[0].tls.mode = config::DownstreamTlsConfig::Mode::kDisable;
  ASSERT_TRUE(contexts.Apply(plaintext).ok());
  EXPECT_EQ(contexts.ForListener("inbound"), nullptr);
  EXPECT_TRUE(back.expired());

  // Churn does not grow: a hundred listeners come and go, none stays.
  std::vector<std::weak_ptr<const tls::TlsContextProvider>> churned;
  for (int i = 0; i < 100; ++i) {
    config::Snapshot one = with;
    one.listeners[0].name = absl::StrCat("inbound-", i);
    ASSERT_TRUE(contexts.Apply(one).ok());
    churned.push_back(contexts.ForListener(one.listeners[0].name));
    ASSERT_FALSE(churned.back().expired()) << i;
  }
  ASSERT_TRUE(contexts.Apply(without).ok());
  for (size_t i = 0; i < churned.size(); ++i) EXPECT_TRUE(churned[i].expired()) << i;
}

TEST_F(TlsContextsTest, ASecretThatDoesNotLoadRefusesTheSnapshotAndPublishesNothing) {
  TlsContexts contexts;
  TestCertificate broken = Leaf("spiffe://cluster.local/ns/default/sa/a");
  broken.key_pem = Leaf("spiffe://cluster.local/ns/default/sa/b").key_pem;  // not its key
  absl::Status status = contexts.Apply(MakeSnapshot(broken));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("listener \"inbound\": tls (secret \"workload\")"),
            absl::string_view::npos)
      << status;
  EXPECT_EQ(contexts.ForListener("inbound"), nullptr);
  EXPECT_EQ(contexts.ForCluster("mesh"), nullptr);
}

TEST_F(TlsContextsTest, WorkloadCertificateRotationSwapsOnlyTheContextsThatUseIt) {
  TlsContexts contexts;
  config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/static"));
  config::ListenerConfig workload_listener = snapshot.listeners[0];
  workload_listener.name = "inbound-workload";
  workload_listener.tls.secret_name.clear();
  workload_listener.tls.workload_certificate = true;
  snapshot.listeners.push_back(workload_listener);
  auto workload_cluster = std::make_shared<ClusterConfig>(*snapshot.clusters["mesh"]);
  workload_cluster->name = "mesh-workload";
  workload_cluster->tls.secret_name.clear();
  workload_cluster->tls.workload_certificate = true;
  snapshot.clusters["mesh-workload"] = workload_cluster;

  // No workload certificate yet: the snapshot is refused, naming what needs it.
  absl::Status status = contexts.Apply(snapshot);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("listener \"inbound-workload\": tls.workload_certificate"),
            absl::string_view::npos)
      << status;
  EXPECT_FALSE(contexts.has_workload_certificate());

  contexts.SetWorkloadCertificate(Material(Leaf("spiffe://cluster.local/ns/default/sa/a")));
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  auto listener = contexts.ForListener("inbound-workload");
  auto cluster = contexts.ForCluster("mesh-workload");
  auto static_listener = contexts.ForListener("inbound");
  ASSERT_NE(listener, nullptr);
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(listener->Current()->certificate_chain_info().size(), 1u);
  EXPECT_EQ(listener->Current()->certificate_chain_info()[0].spiffe_id,
            "spiffe://cluster.local/ns/default/sa/a");
  EXPECT_EQ(listener->Current()->client_certificate(), tls::ClientCertificateMode::kRequire);
  const auto old_context = listener->Current();

  // Rotation: new contexts for the workload users, the Secret-based ones untouched.
  const TestCertificate rotated = Leaf("spiffe://cluster.local/ns/default/sa/a");
  contexts.SetWorkloadCertificate(Material(rotated));
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_EQ(listener->generation(), 2u);
  EXPECT_EQ(cluster->generation(), 2u);
  EXPECT_EQ(static_listener->generation(), 1u);
  EXPECT_NE(listener->Current(), old_context);
  EXPECT_NE(listener->Current()->certificate_chain_info()[0].serial_hex,
            old_context->certificate_chain_info()[0].serial_hex);
}

TEST_F(TlsContextsTest, ClustersThatDifferOnlyInPeerIdsShareOneContext) {
  TlsContexts contexts;
  config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/a"));
  constexpr int kClusters = 50;
  for (int i = 0; i < kClusters; ++i) {
    auto cluster = std::make_shared<ClusterConfig>(*snapshot.clusters["mesh"]);
    cluster->name = absl::StrCat("svc-", i);
    cluster->tls.sni = absl::StrCat("svc-", i, ".default.svc.cluster.local");
    cluster->tls.expected_peer_ids = {absl::StrCat("spiffe://cluster.local/ns/default/sa/svc-", i)};
    snapshot.clusters[cluster->name] = std::move(cluster);
  }
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  const std::shared_ptr<const tls::TlsContextProvider> mesh = contexts.ForCluster("mesh");
  ASSERT_NE(mesh, nullptr);
  const std::shared_ptr<const tls::TlsContext> shared = mesh->Current();
  for (int i = 0; i < kClusters; ++i) {
    std::shared_ptr<const tls::TlsContextProvider> provider =
        contexts.ForCluster(absl::StrCat("svc-", i));
    ASSERT_NE(provider, nullptr) << i;
    EXPECT_EQ(provider->Current(), shared) << i;
  }
  // The context carries no identity: each connection checks its cluster's.
  EXPECT_FALSE(shared->peer_identity().has_value());
  // One server context (the listener) and one client context.
  EXPECT_EQ(contexts.context_count(), 2u);

  // Another cluster's ids, or another SNI, change nothing.
  auto changed = std::make_shared<ClusterConfig>(*snapshot.clusters["svc-0"]);
  changed->tls.expected_peer_ids = {"spiffe://cluster.local/ns/default/sa/renamed"};
  snapshot.clusters["svc-0"] = changed;
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_EQ(contexts.ForCluster("svc-0")->generation(), 1u);
  EXPECT_EQ(contexts.ForCluster("svc-0")->Current(), shared);

  // Other material (ALPN) is another context; the rest keep sharing.
  auto h2 = std::make_shared<ClusterConfig>(*snapshot.clusters["svc-1"]);
  h2->protocol = UpstreamProtocol::kHttp2;
  snapshot.clusters["svc-1"] = h2;
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_NE(contexts.ForCluster("svc-1")->Current(), shared);
  EXPECT_EQ(contexts.ForCluster("svc-1")->Current()->alpn_protocols(),
            std::vector<std::string>{"h2"});
  EXPECT_EQ(contexts.ForCluster("svc-2")->Current(), shared);
  EXPECT_EQ(contexts.context_count(), 3u);

  // A bad expected id still refuses the snapshot, naming the cluster.
  auto bad = std::make_shared<ClusterConfig>(*snapshot.clusters["svc-2"]);
  bad->tls.expected_peer_ids = {"not-a-spiffe-id"};
  snapshot.clusters["svc-2"] = bad;
  absl::Status status = contexts.Apply(snapshot);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("cluster \"svc-2\": tls.expected_peer_ids"),
            absl::string_view::npos)
      << status;
}

TEST_F(TlsContextsTest, RotationGivesEverySharingClusterTheNewContextOnce) {
  TlsContexts contexts;
  config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/static"));
  snapshot.clusters.clear();
  for (int i = 0; i < 10; ++i) {
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = absl::StrCat("svc-", i);
    cluster->tls.enabled = true;
    cluster->tls.workload_certificate = true;
    cluster->tls.expected_peer_ids = {absl::StrCat("spiffe://cluster.local/ns/default/sa/svc-", i)};
    snapshot.clusters[cluster->name] = std::move(cluster);
  }
  contexts.SetWorkloadCertificate(Material(Leaf("spiffe://cluster.local/ns/default/sa/a")));
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  const std::shared_ptr<const tls::TlsContext> before = contexts.ForCluster("svc-0")->Current();
  contexts.SetWorkloadCertificate(Material(Leaf("spiffe://cluster.local/ns/default/sa/a")));
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  const std::shared_ptr<const tls::TlsContext> after = contexts.ForCluster("svc-0")->Current();
  EXPECT_NE(after, before);
  ExpectRotated(contexts, 10, after);
  // Connections made before keep theirs: the old context lives while they hold it.
  EXPECT_EQ(before.use_count(), 1);
  EXPECT_EQ(contexts.context_count(), 2u);
}

TEST_F(TlsContextsTest, OneClusterAddedToAThousandHeldExaminesOne) {
  TlsContexts contexts;
  config::Snapshot snapshot = ApplyWorkloadClusters(contexts, 1000);
  const std::shared_ptr<const tls::TlsContextProvider> held = contexts.ForCluster("svc-7");
  ASSERT_NE(held, nullptr);

  snapshot.clusters["svc-new"] = WorkloadCluster("svc-new");
  const std::vector<std::string> changed = {"svc-new"};
  absl::StatusOr<TlsContexts::Prepared> prepared = contexts.Prepare(snapshot, &changed);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_FALSE(prepared->whole);
  EXPECT_EQ(prepared->clusters_examined, 1u);
  contexts.Commit(*std::move(prepared));
  EXPECT_EQ(contexts.commit_clusters_examined(), 1u);
  ASSERT_NE(contexts.ForCluster("svc-new"), nullptr);
  // The shared context: found, not built again.
  EXPECT_EQ(contexts.ForCluster("svc-new")->Current(), held->Current());
  EXPECT_EQ(held->generation(), 1u);
  EXPECT_NE(contexts.ForCluster("svc-999"), nullptr);
  EXPECT_EQ(contexts.context_count(), 3u);  // the listener's, "mesh"'s, the workload one

  // Without the changed names the whole set is walked, as before.
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_GT(contexts.commit_clusters_examined(), 1000u);
}

TEST_F(TlsContextsTest, ARemovedClusterLosesItsProviderAndItsUnusedContext) {
  TlsContexts contexts(TlsContextLimits{.removed_cluster_grace = {}});
  config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/a"));
  const TestCertificate other = Leaf("spiffe://cluster.local/ns/default/sa/other");
  snapshot.secrets["other"] = config::SecretConfig{.name = "other",
                                                   .certificate_chain_pem = other.chain_pem,
                                                   .private_key_pem = other.key_pem,
                                                   .trust_bundle_pem = ca_->cert_pem()};
  auto aged = std::make_shared<ClusterConfig>(*snapshot.clusters["mesh"]);
  aged->name = "aged";
  aged->tls.secret_name = "other";
  snapshot.clusters["aged"] = aged;
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_EQ(contexts.context_count(), 3u);
  std::shared_ptr<const tls::TlsContextProvider> provider = contexts.ForCluster("aged");
  ASSERT_NE(provider, nullptr);
  const std::weak_ptr<const tls::TlsContext> context = provider->Current();

  // Removed by a whole build (on-demand aging rebuilds the set).
  snapshot.clusters.erase("aged");
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_EQ(contexts.ForCluster("aged"), nullptr);
  EXPECT_EQ(contexts.context_count(), 2u);
  // A connection made before keeps it through its own reference...
  EXPECT_FALSE(context.expired());
  EXPECT_NE(provider->Current(), nullptr);
  // ...and it goes with the last one.
  provider.reset();
  EXPECT_TRUE(context.expired());

  // The name comes back: a fresh provider.
  snapshot.clusters["aged"] = aged;
  const std::vector<std::string> changed = {"aged"};
  ASSERT_TRUE(contexts.Apply(snapshot, &changed).ok());
  provider = contexts.ForCluster("aged");
  ASSERT_NE(provider, nullptr);
  EXPECT_EQ(provider->generation(), 1u);
  EXPECT_EQ(contexts.context_count(), 3u);

  // Named as changed and gone (or without TLS now): dropped the same way.
  snapshot.clusters.erase("aged");
  ASSERT_TRUE(contexts.Apply(snapshot, &changed).ok());
  EXPECT_EQ(contexts.ForCluster("aged"), nullptr);
  EXPECT_EQ(contexts.context_count(), 2u);
  EXPECT_NE(contexts.ForCluster("mesh"), nullptr);
}

// A worker still on the previous snapshot may build a just-removed cluster on first use: it still
// finds the provider for the grace, and a name back within the grace takes its provider again.
TEST_F(TlsContextsTest, ARemovedClusterKeepsItsProviderForTheGrace) {
  TlsContexts contexts(TlsContextLimits{.removed_cluster_grace = std::chrono::milliseconds(200)});
  config::Snapshot snapshot = ApplyWorkloadClusters(contexts, 3);
  const std::shared_ptr<const tls::TlsContextProvider> provider = contexts.ForCluster("svc-1");
  ASSERT_NE(provider, nullptr);

  const std::shared_ptr<const ClusterConfig> removed = snapshot.clusters["svc-1"];
  snapshot.clusters.erase("svc-1");
  ASSERT_TRUE(contexts.Apply(snapshot).ok());
  EXPECT_EQ(contexts.ForCluster("svc-1"), provider);
  EXPECT_NE(provider->Current(), nullptr);

  snapshot.clusters["svc-1"] = removed;
  const std::vector<std::string> changed = {"svc-1"};
  ASSERT_TRUE(contexts.Apply(snapshot, &changed).ok());
  EXPECT_EQ(contexts.ForCluster("svc-1"), provider);

  // Removed again; past the grace, the next commit drops it.
  snapshot.clusters.erase("svc-1");
  ASSERT_TRUE(contexts.Apply(snapshot, &changed).ok());
  EXPECT_EQ(contexts.ForCluster("svc-1"), provider);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  ASSERT_TRUE(contexts.Apply(snapshot, &changed).ok());
  EXPECT_EQ(contexts.ForCluster("svc-1"), nullptr);
  EXPECT_NE(contexts.ForCluster("svc-0"), nullptr);
}

TEST_F(TlsContextsTest, RotationReachesEveryClusterWhenOnlyOneChanged) {
  TlsContexts contexts;
  config::Snapshot snapshot = ApplyWorkloadClusters(contexts, 10);
  const std::shared_ptr<const tls::TlsContext> before = contexts.ForCluster("svc-0")->Current();

  contexts.SetWorkloadCertificate(Material(Leaf("spiffe://cluster.local/ns/default/sa/a")));
  snapshot.clusters["svc-new"] = WorkloadCluster("svc-new");
  const std::vector<std::string> changed = {"svc-new"};
  absl::StatusOr<TlsContexts::Prepared> prepared = contexts.Prepare(snapshot, &changed);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_TRUE(prepared->whole);
  contexts.Commit(*std::move(prepared));
  const std::shared_ptr<const tls::TlsContext> after = contexts.ForCluster("svc-new")->Current();
  EXPECT_NE(after, before);
  ExpectRotated(contexts, 10, after);
  EXPECT_EQ(contexts.ForCluster("mesh")->generation(), 1u);
  EXPECT_EQ(before.use_count(), 1);  // released: no cluster uses it
  EXPECT_EQ(contexts.context_count(), 3u);

  // Once committed, the next change is by name again.
  snapshot.clusters["svc-newer"] = WorkloadCluster("svc-newer");
  const std::vector<std::string> newer = {"svc-newer"};
  ASSERT_TRUE(contexts.Apply(snapshot, &newer).ok());
  EXPECT_EQ(contexts.commit_clusters_examined(), 1u);
  EXPECT_EQ(contexts.ForCluster("svc-newer")->Current(), after);
}

TEST_F(TlsContextsTest, CacheLimitsApplyToTheSharedContexts) {
  const config::Snapshot snapshot = MakeSnapshot(Leaf("spiffe://cluster.local/ns/default/sa/a"));
  TlsContexts defaults;
  ASSERT_TRUE(defaults.Apply(snapshot).ok());
  EXPECT_TRUE(defaults.ForCluster("mesh")->Current()->KeepsClientSessions());
  // --upstream-tls-session-cache=0: no client resumption at all.
  TlsContexts without(TlsContextLimits{.upstream_sessions = 0, .verified_chains = 16});
  ASSERT_TRUE(without.Apply(snapshot).ok());
  EXPECT_FALSE(without.ForCluster("mesh")->Current()->KeepsClientSessions());
}

TEST_F(TlsContextsTest, ClusterAlpnFollowsTheUpstreamProtocol) {
  ClusterConfig cluster;
  cluster.protocol = UpstreamProtocol::kHttp2;
  EXPECT_EQ(ClusterAlpn(cluster), std::vector<std::string>{"h2"});
  cluster.protocol = UpstreamProtocol::kSameAsDownstream;
  EXPECT_TRUE(ClusterAlpn(cluster).empty());
  cluster.tls.alpn = {"custom"};
  EXPECT_EQ(ClusterAlpn(cluster), std::vector<std::string>{"custom"});
}

}  // namespace
}  // namespace meshlet::sidecar::server

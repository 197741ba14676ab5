// UpstreamTransportFactory: the transport each endpoint of a cluster gets (plaintext, the
// cluster's TLS, or TLS narrowed to the endpoint's identity), checked with real handshakes over
// memory against servers presenting chosen SPIFFE ids.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/net/buffer.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/server/tls_contexts.h"
#include "sidecar/server/upstream_transport.h"

namespace meshlet::sidecar::server {

using cluster::ClusterConfig;
using cluster::EndpointTlsConfig;
using cluster::EndpointTransportFactory;

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using tls::testing::TestCa;
using tls::testing::TestCertificate;

constexpr char kCaller[] = "spiffe://cluster.local/ns/default/sa/caller";
constexpr char kBackend[] = "spiffe://cluster.local/ns/default/sa/backend";
constexpr char kOther[] = "spiffe://cluster.local/ns/default/sa/other";

class UpstreamTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCa> ca = TestCa::Create();
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<TestCa>(*std::move(ca));
    cluster_ = std::make_shared<ClusterConfig>();
    cluster_->name = "backend";
    cluster_->tls.enabled = true;
    cluster_->tls.secret_name = "caller";
    // The whole trust domain: only an endpoint's identity tells one workload from another.
    cluster_->tls.expected_peer_ids = {"spiffe://cluster.local/*"};
  }

  TestCertificate Leaf(const std::string& id) {
    absl::StatusOr<TestCertificate> leaf = ca_->Issue({.spiffe_id = id});
    EXPECT_TRUE(leaf.ok()) << leaf.status();
    return leaf.ok() ? *leaf : TestCertificate{};
  }

  // The per-endpoint factory of cluster_, built from committed contexts as the server does.
  EndpointTransportFactory Factory(const std::vector<std::shared_ptr<ClusterConfig>>& also = {}) {
    const TestCertificate caller = Leaf(kCaller);
    config::Snapshot snapshot;
    snapshot.secrets["caller"] = config::SecretConfig{.name = "caller",
                                                      .certificate_chain_pem = caller.chain_pem,
                                                      .private_key_pem = caller.key_pem,
                                                      .trust_bundle_pem = ca_->cert_pem()};
    snapshot.clusters["backend"] = cluster_;
    for (const auto& cluster : also) snapshot.clusters[cluster->name] = cluster;
    absl::Status applied = contexts_.Apply(snapshot);
    EXPECT_TRUE(applied.ok()) << applied;
    return UpstreamTransportFactory(&contexts_, *cluster_);
  }

  // A server context presenting `server_id`, asking for client certificates; issuing session
  // tickets when `tickets`.
  std::shared_ptr<const tls::TlsContext> ServerContext(const std::string& server_id,
                                                       bool tickets = false) {
    const TestCertificate cert = Leaf(server_id);
    tls::TlsContextConfig config{.certificate_chain_pem = cert.chain_pem,
                                 .private_key_pem = cert.key_pem,
                                 .trust_bundle_pem = ca_->cert_pem(),
                                 .client_certificate = tls::ClientCertificateMode::kRequire,
                                 .session_tickets = tickets};
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer(config);
    EXPECT_TRUE(context.ok()) << context.status();
    return context.ok() ? *std::move(context) : nullptr;
  }

  // A handshake over memory between a connection `factory` makes (to `address`) and a server
  // presenting `server_id`: the client's status once both sides are done talking.
  absl::Status HandshakeWith(const net::TransportFactory& factory, const std::string& server_id) {
    return HandshakeWith(factory, ServerContext(server_id), net::Address());
  }
  absl::Status HandshakeWith(const net::TransportFactory& factory,
                             std::shared_ptr<const tls::TlsContext> server_context,
                             const net::Address& address, bool* resumed = nullptr) {
    absl::StatusOr<std::unique_ptr<tls::TlsTransport>> server =
        tls::TlsTransport::Create(std::move(server_context));
    if (!server.ok()) return server.status();
    std::unique_ptr<net::Transport> client = factory();
    net::Buffer to_server, to_client, client_app, server_app;
    absl::Status status = client->Start(address, to_server);
    for (int turn = 0; status.ok() && turn < 10; ++turn) {
      if (to_server.empty() && to_client.empty()) break;
      // A server that refuses the client is not what these tests look at; the client's verdict
      // on the server is.
      (void)(*server)->OnReceived(to_server, server_app, to_client);
      status = client->OnReceived(to_client, client_app, to_server);
    }
    if (status.ok() && !client->HandshakeComplete()) {
      return absl::InternalError("handshake did not complete");
    }
    if (resumed != nullptr && status.ok()) {
      // Data both ways, so a TLS 1.3 client has read the tickets the server sends after the
      // handshake.
      net::Buffer reply, request;
      reply.Append("hello");
      request.Append("hello back");
      (void)(*server)->Send(reply, to_client);
      status = client->OnReceived(to_client, client_app, to_server);
      if (status.ok()) status = client->Send(request, to_server);
      (void)(*server)->OnReceived(to_server, server_app, to_client);
    }
    if (resumed != nullptr) {
      const auto* tls_client = dynamic_cast<const tls::TlsTransport*>(client.get());
      *resumed = tls_client != nullptr && tls_client->session() != nullptr &&
                 tls_client->session()->session_resumed();
    }
    return status;
  }

  // Another cluster on the same secret as cluster_, expecting `peer_ids`.
  std::shared_ptr<ClusterConfig> Sibling(const std::string& name,
                                         std::vector<std::string> peer_ids) {
    auto sibling = std::make_shared<ClusterConfig>(*cluster_);
    sibling->name = name;
    sibling->tls.expected_peer_ids = std::move(peer_ids);
    return sibling;
  }

  std::unique_ptr<TestCa> ca_;
  std::shared_ptr<ClusterConfig> cluster_;
  TlsContexts contexts_;
};

TEST_F(UpstreamTransportTest, PlaintextEndpointsOfATlsClusterGetNoTls) {
  EndpointTransportFactory factory = Factory();
  ASSERT_NE(factory, nullptr);
  EXPECT_EQ(factory(EndpointTlsConfig{.plaintext = true}), nullptr);
  // The others do, with the cluster's identities.
  net::TransportFactory tls = factory(EndpointTlsConfig{});
  ASSERT_NE(tls, nullptr);
  EXPECT_TRUE(HandshakeWith(tls, kBackend).ok());
  EXPECT_TRUE(HandshakeWith(tls, kOther).ok());
  // A cluster without TLS has no transports at all.
  cluster_->tls.enabled = false;
  EXPECT_EQ(UpstreamTransportFactory(&contexts_, *cluster_), nullptr);
}

TEST_F(UpstreamTransportTest, AnEndpointMustPresentExactlyItsIdentity) {
  EndpointTransportFactory factory = Factory();
  net::TransportFactory backend = factory(EndpointTlsConfig{.identity = kBackend});
  ASSERT_NE(backend, nullptr);
  EXPECT_TRUE(HandshakeWith(backend, kBackend).ok());
  // Another workload of the trust domain satisfies the cluster but not the endpoint: refused,
  // naming what it presented and what was expected.
  absl::Status status = HandshakeWith(backend, kOther);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(kOther), HasSubstr(kBackend)));
}

TEST_F(UpstreamTransportTest, AnEndpointIdentityNeverWidensTheClusters) {
  cluster_->tls.expected_peer_ids = {kBackend};
  EndpointTransportFactory factory = Factory();
  net::TransportFactory other = factory(EndpointTlsConfig{.identity = kOther});
  ASSERT_NE(other, nullptr);
  // Its connections fail before any byte is sent, even to a peer that is what the endpoint says.
  std::unique_ptr<net::Transport> transport = other();
  net::Buffer out;
  absl::Status status = transport->Start(net::Address(), out);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr(kOther), HasSubstr(kBackend)));
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(HandshakeWith(other, kOther).ok());
  // The endpoint that is among them is checked as usual.
  EXPECT_TRUE(HandshakeWith(factory(EndpointTlsConfig{.identity = kBackend}), kBackend).ok());
}

TEST_F(UpstreamTransportTest, ClustersShareAContextAndEachChecksItsOwnIdentities) {
  cluster_->tls.expected_peer_ids = {kBackend};
  std::shared_ptr<ClusterConfig> other = Sibling("other", {kOther});
  EndpointTransportFactory backend_factory = Factory({other});
  EndpointTransportFactory other_factory = UpstreamTransportFactory(&contexts_, *other);
  // One context for both: they differ only in the identities they expect.
  ASSERT_NE(contexts_.ForCluster("other"), nullptr);
  EXPECT_EQ(contexts_.ForCluster("backend")->Current(), contexts_.ForCluster("other")->Current());

  net::TransportFactory backend = backend_factory(EndpointTlsConfig{});
  net::TransportFactory to_other = other_factory(EndpointTlsConfig{});
  EXPECT_TRUE(HandshakeWith(backend, kBackend).ok());
  EXPECT_TRUE(HandshakeWith(to_other, kOther).ok());
  // A server presenting the other cluster's identity is still refused, as before the sharing.
  absl::Status status = HandshakeWith(backend, kOther);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr(absl::StrCat("peer identity ", kOther, " is not allowed")),
                    HasSubstr(absl::StrCat("[", kBackend, "]"))));
  status = HandshakeWith(to_other, kBackend);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  // So is one an endpoint narrows to, through the same shared context.
  status = HandshakeWith(backend_factory(EndpointTlsConfig{.http1_only = true}), kOther);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
}

TEST_F(UpstreamTransportTest, ASessionIsNeverResumedByAClusterExpectingOtherIdentities) {
  // Both clusters accept the server (one by exact id, one by trust domain), share one context and
  // connect to the same address with the same SNI: only the identities they expect differ.
  cluster_->tls.expected_peer_ids = {kBackend};
  std::shared_ptr<ClusterConfig> domain = Sibling("domain", {"spiffe://cluster.local/*"});
  EndpointTransportFactory backend_factory = Factory({domain});
  EndpointTransportFactory domain_factory = UpstreamTransportFactory(&contexts_, *domain);
  ASSERT_EQ(contexts_.ForCluster("backend")->Current(), contexts_.ForCluster("domain")->Current());
  const std::shared_ptr<const tls::TlsContext> server = ServerContext(kBackend, /*tickets=*/true);
  absl::StatusOr<net::Address> address = net::Address::Parse("10.0.0.1:8443");
  ASSERT_TRUE(address.ok()) << address.status();
  net::TransportFactory backend = backend_factory(EndpointTlsConfig{});
  net::TransportFactory by_domain = domain_factory(EndpointTlsConfig{});

  bool resumed = true;
  ASSERT_TRUE(HandshakeWith(backend, server, *address, &resumed).ok());
  EXPECT_FALSE(resumed);
  // The same cluster resumes (so resumption is on and tickets arrive)...
  ASSERT_TRUE(HandshakeWith(backend, server, *address, &resumed).ok());
  EXPECT_TRUE(resumed);
  // ...the other one does a full handshake, its own identities checked against a fresh chain.
  ASSERT_TRUE(HandshakeWith(by_domain, server, *address, &resumed).ok());
  EXPECT_FALSE(resumed);
  ASSERT_TRUE(HandshakeWith(by_domain, server, *address, &resumed).ok());
  EXPECT_TRUE(resumed);
}

}  // namespace
}  // namespace meshlet::sidecar::server

// UpstreamTransportFactory: the transport each endpoint of a cluster gets (plaintext, the
// cluster's TLS, or TLS narrowed to the endpoint's identity), checked with real handshakes over
// memory against servers presenting chosen SPIFFE ids.

#include <memory>
#include <string>

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
  EndpointTransportFactory Factory() {
    const TestCertificate caller = Leaf(kCaller);
    config::Snapshot snapshot;
    snapshot.secrets["caller"] = config::SecretConfig{.name = "caller",
                                                      .certificate_chain_pem = caller.chain_pem,
                                                      .private_key_pem = caller.key_pem,
                                                      .trust_bundle_pem = ca_->cert_pem()};
    snapshot.clusters["backend"] = cluster_;
    absl::Status applied = contexts_.Apply(snapshot);
    EXPECT_TRUE(applied.ok()) << applied;
    return UpstreamTransportFactory(&contexts_, *cluster_);
  }

  // A handshake over memory between a connection `factory` makes and a server presenting
  // `server_id`: the client's status once both sides are done talking.
  absl::Status HandshakeWith(const net::TransportFactory& factory, const std::string& server_id) {
    const TestCertificate cert = Leaf(server_id);
    tls::TlsContextConfig config{.certificate_chain_pem = cert.chain_pem,
                                 .private_key_pem = cert.key_pem,
                                 .trust_bundle_pem = ca_->cert_pem(),
                                 .client_certificate = tls::ClientCertificateMode::kRequire};
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer(config);
    if (!context.ok()) return context.status();
    absl::StatusOr<std::unique_ptr<tls::TlsTransport>> server =
        tls::TlsTransport::Create(*std::move(context));
    if (!server.ok()) return server.status();
    std::unique_ptr<net::Transport> client = factory();
    net::Buffer to_server, to_client, client_app, server_app;
    absl::Status status = client->Start(net::Address(), to_server);
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
    return status;
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

}  // namespace
}  // namespace meshlet::sidecar::server

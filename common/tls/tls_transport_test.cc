#include "common/tls/tls_transport.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/logging.h"
#include "common/net/buffer.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context_provider.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::tls {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TestCa;
using testing::TestCertificate;
using testing::ValueOrDie;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/default/sa/frontend";
constexpr char kBackend[] = "spiffe://cluster.local/ns/default/sa/backend";

// One side of a connection as net::Connection would drive it: its four buffers.
struct Endpoint {
  std::unique_ptr<net::Transport> transport;
  net::Buffer wire_in;
  net::Buffer app_in;
  net::Buffer app_out;
  net::Buffer wire_out;
  absl::Status status;

  void Receive() {
    if (!status.ok()) return;
    status = transport->OnReceived(wire_in, app_in, wire_out);
    if (status.ok() && !app_out.empty()) status = transport->Send(app_out, wire_out);
  }
};

// Delivers wire bytes both ways until quiet. `piece` > 0 delivers them that many bytes at a
// time, so records arrive split across reads.
void Pump(Endpoint& client, Endpoint& server, size_t piece = 0) {
  for (int i = 0; i < 100000; ++i) {
    bool moved = false;
    for (auto [from, to] : {std::pair{&client, &server}, std::pair{&server, &client}}) {
      while (!from->wire_out.empty()) {
        moved = true;
        if (piece == 0) {
          to->wire_in.Move(from->wire_out);
        } else {
          to->wire_in.Move(from->wire_out, piece);
        }
        to->Receive();
      }
    }
    if (!moved) return;
  }
  ADD_FAILURE() << "endpoints kept talking";
}

class TlsTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TestCa(ValueOrDie(TestCa::Create("mesh root")));
    frontend_ = new TestCertificate(ValueOrDie(
        root_->Issue({.spiffe_id = kFrontend, .attestation = "join-token:00000000000000aa"})));
    backend_ = new TestCertificate(ValueOrDie(root_->Issue({.spiffe_id = kBackend})));
  }
  static void TearDownTestSuite() {
    delete backend_;
    delete frontend_;
    delete root_;
  }

  static std::shared_ptr<const TlsContext> ClientContext(const std::string& expected_peer) {
    TlsContextConfig config{.certificate_chain_pem = frontend_->chain_pem,
                            .private_key_pem = frontend_->key_pem,
                            .trust_bundle_pem = root_->cert_pem(),
                            .alpn_protocols = {"h2", "http/1.1"}};
    config.peer_identity = ValueOrDie(SpiffeIdMatcher::Create({expected_peer}, {}));
    return ValueOrDie(TlsContext::CreateClient(config));
  }
  static std::shared_ptr<const TlsContext> ServerContext(const TestCertificate& cert) {
    TlsContextConfig config{.certificate_chain_pem = cert.chain_pem,
                            .private_key_pem = cert.key_pem,
                            .trust_bundle_pem = root_->cert_pem(),
                            .alpn_protocols = {"h2", "http/1.1"},
                            .client_certificate = ClientCertificateMode::kRequire};
    config.peer_identity = ValueOrDie(SpiffeIdMatcher::Create({}, {"cluster.local"}));
    return ValueOrDie(TlsContext::CreateServer(config));
  }

  static void Connect(Endpoint& client, Endpoint& server, size_t piece = 0) {
    client.status = client.transport->Start(net::Address(), client.wire_out);
    ASSERT_TRUE(client.status.ok()) << client.status;
    EXPECT_FALSE(client.wire_out.empty()) << "ClientHello";
    ASSERT_TRUE(server.transport->Start(net::Address(), server.wire_out).ok());
    EXPECT_TRUE(server.wire_out.empty());
    Pump(client, server, piece);
  }

  static TestCa* root_;
  static TestCertificate* frontend_;
  static TestCertificate* backend_;
};
TestCa* TlsTransportTest::root_ = nullptr;
TestCertificate* TlsTransportTest::frontend_ = nullptr;
TestCertificate* TlsTransportTest::backend_ = nullptr;

TEST_F(TlsTransportTest, MutualTlsHandshakeAndData) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(
                      ClientContext(kBackend), {.server_name = "backend.default.svc"}))};
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*backend_)))};
  // Written before the handshake: stays queued in app_out until it completes.
  client.app_out.Append("hello over mTLS");
  ASSERT_TRUE(client.transport->Send(client.app_out, client.wire_out).ok());
  EXPECT_EQ(client.app_out.length(), 15u);
  EXPECT_TRUE(client.wire_out.empty());

  Connect(client, server);
  ASSERT_TRUE(client.status.ok()) << client.status;
  ASSERT_TRUE(server.status.ok()) << server.status;
  EXPECT_TRUE(client.transport->HandshakeComplete());
  EXPECT_TRUE(server.transport->HandshakeComplete());
  EXPECT_EQ(server.app_in.ToString(), "hello over mTLS");
  EXPECT_TRUE(client.app_out.empty());

  EXPECT_EQ(client.transport->peer().alpn, "h2");
  EXPECT_EQ(server.transport->peer().alpn, "h2");
  EXPECT_EQ(server.transport->peer().sni, "backend.default.svc");
  EXPECT_THAT(client.transport->peer().uri_sans, ElementsAre(kBackend));
  EXPECT_THAT(server.transport->peer().uri_sans, ElementsAre(kFrontend));
  EXPECT_TRUE(server.transport->peer().peer_certificate_presented);
  // The client certificate's expiry and attestation reach the server; the server's certificate
  // has no attestation.
  EXPECT_GT(server.transport->peer().peer_not_after, absl::Now() + absl::Hours(23));
  EXPECT_LT(server.transport->peer().peer_not_after, absl::Now() + absl::Hours(25));
  EXPECT_EQ(server.transport->peer().peer_attestation, "join-token:00000000000000aa");
  EXPECT_EQ(client.transport->peer().peer_attestation, "");

  server.app_out.Append("hello back");
  ASSERT_TRUE(server.transport->Send(server.app_out, server.wire_out).ok());
  Pump(client, server);
  EXPECT_EQ(client.app_in.ToString(), "hello back");

  client.transport->Shutdown(client.wire_out);
  EXPECT_FALSE(client.wire_out.empty()) << "close_notify";
  Pump(client, server);
  const auto* session = static_cast<TlsTransport*>(server.transport.get())->session();
  EXPECT_TRUE(session->peer_closed());
  EXPECT_TRUE(server.transport->PeerClosed());  // the connection's end of stream
  EXPECT_FALSE(client.transport->PeerClosed());
  EXPECT_TRUE(server.status.ok()) << server.status;
}

TEST_F(TlsTransportTest, HandshakeCompleteCallbackRunsOnceWithPeerFilled) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*backend_)))};
  EXPECT_FALSE(server.transport->HandshakeInProgress());
  EXPECT_FALSE(client.transport->peer().tls);
  int client_calls = 0;
  int server_calls = 0;
  std::string server_alpn_seen;
  client.transport->SetHandshakeCompleteCallback([&] { ++client_calls; });
  server.transport->SetHandshakeCompleteCallback([&] {
    ++server_calls;
    server_alpn_seen = server.transport->peer().alpn;
    EXPECT_FALSE(server.transport->HandshakeInProgress());
  });
  client.status = client.transport->Start(net::Address(), client.wire_out);
  ASSERT_TRUE(client.status.ok()) << client.status;
  EXPECT_TRUE(client.transport->HandshakeInProgress()) << "the ClientHello is out";
  ASSERT_TRUE(server.transport->Start(net::Address(), server.wire_out).ok());
  // Record by record: the server is handshaking from its first bytes on.
  server.wire_in.Move(client.wire_out, 5);
  server.Receive();
  EXPECT_TRUE(server.transport->HandshakeInProgress());
  EXPECT_EQ(server_calls, 0);
  Pump(client, server, /*piece=*/7);
  ASSERT_TRUE(client.status.ok()) << client.status;
  ASSERT_TRUE(server.status.ok()) << server.status;
  EXPECT_EQ(client_calls, 1);
  EXPECT_EQ(server_calls, 1);
  EXPECT_EQ(server_alpn_seen, "h2");
  EXPECT_TRUE(server.transport->peer().tls);
  EXPECT_TRUE(client.transport->peer().tls);
  EXPECT_FALSE(client.transport->HandshakeInProgress());
  // Data after the handshake does not call it again.
  client.app_out.Append("more");
  ASSERT_TRUE(client.transport->Send(client.app_out, client.wire_out).ok());
  Pump(client, server);
  EXPECT_EQ(server.app_in.ToString(), "more");
  EXPECT_EQ(server_calls, 1);
}

TEST_F(TlsTransportTest, HandshakeCompleteCallbackDoesNotRunOnFailure) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*frontend_)))};
  int calls = 0;
  client.transport->SetHandshakeCompleteCallback([&] { ++calls; });
  Connect(client, server);
  EXPECT_FALSE(client.status.ok());
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(client.transport->HandshakeInProgress()) << "failed, not in progress";
}

TEST_F(TlsTransportTest, LargeTransferInSmallPieces) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*backend_)))};
  Connect(client, server, /*piece=*/7);  // every handshake record split across reads
  ASSERT_TRUE(server.transport->HandshakeComplete()) << server.status;

  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 2654435761u >> 13);
  client.app_out.Append(payload);
  ASSERT_TRUE(client.transport->Send(client.app_out, client.wire_out).ok());
  EXPECT_TRUE(client.app_out.empty());
  EXPECT_GT(client.wire_out.length(), payload.size());
  Pump(client, server, /*piece=*/5000);
  ASSERT_TRUE(server.status.ok()) << server.status;
  ASSERT_EQ(server.app_in.length(), payload.size());
  EXPECT_TRUE(server.app_in.ToString() == payload);
}

// Records go from the session straight into the connection's buffers and are read straight
// from them: once the blocks of the first exchange are back on the thread's free list, a request
// and its response through both transports allocate nothing of their own (BoringSSL's record
// buffers use malloc, which this does not count).
TEST_F(TlsTransportTest, ASteadyExchangeAllocatesNoBuffersOfItsOwn) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*backend_)))};
  Connect(client, server);
  ASSERT_TRUE(server.transport->HandshakeComplete()) << server.status;
  const std::string request(300, 'q');
  const std::string response(1500, 'r');
  // Sends `message` from one side and checks the other received exactly it (compared without
  // copying out: a copy would be an allocation).
  auto deliver = [&](Endpoint& from, Endpoint& to, const std::string& message) {
    from.app_out.Append(message);
    ASSERT_TRUE(from.transport->Send(from.app_out, from.wire_out).ok());
    Pump(client, server);
    ASSERT_EQ(to.app_in.length(), message.size());
    ASSERT_TRUE(to.app_in.StartsWith(message));
    to.app_in.Clear();
  };
  auto exchange = [&] {
    deliver(client, server, request);
    deliver(server, client, response);
  };
  exchange();  // session tickets and the buffers' first blocks
  exchange();
  AllocationScope scope;
  for (int i = 0; i < 10; ++i) exchange();
  EXPECT_EQ(scope.count(), 0u);
  ASSERT_TRUE(client.status.ok()) << client.status;
  ASSERT_TRUE(server.status.ok()) << server.status;
}

TEST_F(TlsTransportTest, WrongIdentityFailsWithAlert) {
  Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
  // The server presents the frontend identity.
  Endpoint server{.transport = ValueOrDie(TlsTransport::Create(ServerContext(*frontend_)))};
  Connect(client, server);
  EXPECT_EQ(client.status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(client.status.message(),
              HasSubstr(absl::StrCat("peer identity ", kFrontend, " is not allowed")));
  // The client's alert reached the server, which fails with the reason.
  EXPECT_EQ(server.status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(client.transport->HandshakeComplete());
  // Later calls keep failing; no data is produced.
  client.app_out.Append("x");
  EXPECT_FALSE(client.transport->Send(client.app_out, client.wire_out).ok());
}

TEST_F(TlsTransportTest, FactoryFollowsProviderRotation) {
  auto provider = std::make_shared<TlsContextProvider>(ServerContext(*backend_));
  net::TransportFactory factory = TlsTransport::Factory(provider);
  Endpoint old_server{.transport = factory()};

  TestCertificate rotated =
      ValueOrDie(root_->Issue({.spiffe_id = kBackend, .common_name = "rotated backend"}));
  provider->Update(ServerContext(rotated));
  Endpoint new_server{.transport = factory()};

  for (Endpoint* server : {&old_server, &new_server}) {
    Endpoint client{.transport = ValueOrDie(TlsTransport::Create(ClientContext(kBackend)))};
    Connect(client, *server);
    ASSERT_TRUE(client.transport->HandshakeComplete()) << client.status;
    const X509* cert =
        static_cast<TlsTransport*>(client.transport.get())->session()->peer_certificate();
    EXPECT_EQ(SubjectName(*cert).find("rotated backend") != std::string::npos,
              server == &new_server);
  }
}

TEST_F(TlsTransportTest, FactorySessionsShareTheirOptionsInsteadOfCopyingThem) {
  // A cluster's identities and SNI name are the same for each of its connections: every
  // session references the factory's one copy (no heap copy of the patterns per connection).
  auto provider = std::make_shared<TlsContextProvider>(ClientContext(kBackend));
  TlsSession::Options options{.server_name = "reviews.default.svc.cluster.local"};
  options.peer_identity = ValueOrDie(SpiffeIdMatcher::FromPatterns(
      {"spiffe://cluster.local/ns/default/sa/reviews", "spiffe://prod.example/*"}));
  net::TransportFactory factory = TlsTransport::Factory(provider, std::move(options));
  std::unique_ptr<net::Transport> first = factory();
  std::unique_ptr<net::Transport> second = factory();
  const TlsSession* a = static_cast<TlsTransport*>(first.get())->session();
  const TlsSession* b = static_cast<TlsTransport*>(second.get())->session();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->options().peer_identity.has_value());
  EXPECT_EQ(&a->options(), &b->options());
  EXPECT_EQ(&*a->options().peer_identity, &*b->options().peer_identity);
  EXPECT_EQ(a->options().server_name, "reviews.default.svc.cluster.local");
}

TEST_F(TlsTransportTest, FactoryReportsSessionErrors) {
  // A server context that requires client certificates accepts a per-session identity, but one
  // that does not ask for them rejects it: the transport carries that error.
  auto plain = ValueOrDie(TlsContext::CreateServer(
      {.certificate_chain_pem = backend_->chain_pem, .private_key_pem = backend_->key_pem}));
  auto plain_provider = std::make_shared<TlsContextProvider>(plain);
  net::TransportFactory factory =
      TlsTransport::Factory(plain_provider, {.peer_identity = SpiffeIdMatcher()});
  std::unique_ptr<net::Transport> transport = factory();
  net::Buffer out;
  EXPECT_EQ(transport->Start(net::Address(), out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(transport->HandshakeComplete());
  transport->Shutdown(out);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace meshlet::tls

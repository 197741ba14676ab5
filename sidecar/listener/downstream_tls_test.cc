#include "sidecar/listener/downstream_tls.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/base/logging.h"
#include "common/stats/stats.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using ::testing::HasSubstr;
using tls::HandshakeFailure;
using tls::testing::ValueOrDie;

constexpr char kAllowed[] = "spiffe://cluster.local/ns/default/sa/frontend";
constexpr char kIntruder[] = "spiffe://cluster.local/ns/other/sa/intruder";

TEST(TlsRefusalLogTest, OncePerAddressPerInterval) {
  FakeClock clock;
  TlsRefusalLog log(clock, std::chrono::minutes(1));
  EXPECT_TRUE(log.ShouldLog("10.0.0.1"));
  EXPECT_FALSE(log.ShouldLog("10.0.0.1"));
  EXPECT_TRUE(log.ShouldLog("10.0.0.2"));  // each address on its own
  clock.Advance(std::chrono::seconds(59));
  EXPECT_FALSE(log.ShouldLog("10.0.0.1"));
  clock.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(log.ShouldLog("10.0.0.1"));
  EXPECT_FALSE(log.ShouldLog("10.0.0.1"));
  EXPECT_EQ(log.size(), 2u);
}

TEST(TlsRefusalLogTest, RemembersAtMostItsCapacity) {
  FakeClock clock;
  TlsRefusalLog log(clock, std::chrono::minutes(1), /*max_addresses=*/2);
  EXPECT_TRUE(log.ShouldLog("10.0.0.1"));
  clock.Advance(std::chrono::seconds(30));
  EXPECT_TRUE(log.ShouldLog("10.0.0.2"));
  // Full, and nobody's minute is over: a new address is not logged (nor remembered).
  for (int i = 3; i < 100; ++i) EXPECT_FALSE(log.ShouldLog(absl::StrCat("10.0.0.", i)));
  EXPECT_EQ(log.size(), 2u);
  // The first address's minute is over: its entry makes room for one more.
  clock.Advance(std::chrono::seconds(30));
  EXPECT_TRUE(log.ShouldLog("10.0.0.3"));
  EXPECT_FALSE(log.ShouldLog("10.0.0.4"));
  EXPECT_FALSE(log.ShouldLog("10.0.0.2"));  // still remembered: its minute is not over
  EXPECT_EQ(log.size(), 2u);
}

// A STRICT listener's transport, driven in memory against a TLS client.
class DownstreamTlsTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new tls::testing::TestCa(ValueOrDie(tls::testing::TestCa::Create("mesh root")));
    server_ = new tls::testing::TestCertificate(
        ValueOrDie(root_->Issue({.spiffe_id = "spiffe://cluster.local/ns/default/sa/backend"})));
    intruder_ =
        new tls::testing::TestCertificate(ValueOrDie(root_->Issue({.spiffe_id = kIntruder})));
    allowed_ = new tls::testing::TestCertificate(ValueOrDie(root_->Issue({.spiffe_id = kAllowed})));
  }
  static void TearDownTestSuite() {
    delete allowed_;
    delete intruder_;
    delete server_;
    delete root_;
  }

  void SetUp() override {
    shard_ = registry_.CreateShard();
    counters_.handshake_error = Register("meshlet_test_handshake_error_total", {});
    for (HandshakeFailure failure : tls::kHandshakeFailures) {
      counters_.handshake_fail[static_cast<size_t>(failure)] =
          Register("meshlet_test_handshake_fail_total",
                   {{"reason", std::string(tls::HandshakeFailureName(failure))}});
    }
    tls::TlsContextConfig config{.certificate_chain_pem = server_->chain_pem,
                                 .private_key_pem = server_->key_pem,
                                 .trust_bundle_pem = root_->cert_pem(),
                                 .client_certificate = tls::ClientCertificateMode::kRequire};
    config.peer_identity = ValueOrDie(tls::SpiffeIdMatcher::Create({kAllowed}, {}));
    provider_ = std::make_shared<tls::TlsContextProvider>(
        ValueOrDie(tls::TlsContext::CreateServer(config)));
  }

  Counter Register(const std::string& name, const LabelSet& labels) {
    return ValueOrDie(shard_->RegisterCounter(name, "test", labels));
  }
  uint64_t Failures(HandshakeFailure failure) const {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series =
        stats.Find("meshlet_test_handshake_fail_total",
                   {{"reason", std::string(tls::HandshakeFailureName(failure))}});
    return series != nullptr ? series->counter : 0;
  }
  uint64_t Errors() const {
    const StatsSnapshot stats = registry_.Snapshot();
    const SeriesSnapshot* series = stats.Find("meshlet_test_handshake_error_total", {});
    return series != nullptr ? series->counter : 0;
  }

  // Runs a handshake of a client presenting `cert` (null: none) against a fresh server
  // transport from `peer`; returns the client's status and the server's.
  std::pair<absl::Status, absl::Status> Handshake(const tls::testing::TestCertificate* cert,
                                                  const net::Address& peer) {
    tls::TlsContextConfig config{.trust_bundle_pem = root_->cert_pem()};
    if (cert != nullptr) {
      config.certificate_chain_pem = cert->chain_pem;
      config.private_key_pem = cert->key_pem;
    }
    auto client = ValueOrDie(tls::TlsTransport::Create(
        ValueOrDie(tls::TlsContext::CreateClient(config)), {.server_name = "backend"}));
    DownstreamTlsTransport server(provider_, /*strict=*/true, counters_, "inbound", &log_);
    net::Buffer to_server, to_client, app;
    absl::Status client_status = client->Start(net::Address(), to_server);
    absl::Status server_status = server.Start(peer, to_client);
    for (int i = 0; i < 10 && (!to_server.empty() || !to_client.empty()); ++i) {
      if (!to_server.empty() && server_status.ok()) {
        server_status = server.OnReceived(to_server, app, to_client);
      }
      to_server.Clear();
      if (!to_client.empty() && client_status.ok()) {
        client_status = client->OnReceived(to_client, app, to_server);
      }
      to_client.Clear();
    }
    return {client_status, server_status};
  }

  static tls::testing::TestCa* root_;
  static tls::testing::TestCertificate* server_;
  static tls::testing::TestCertificate* intruder_;
  static tls::testing::TestCertificate* allowed_;

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  DownstreamTlsTransport::Counters counters_;
  std::shared_ptr<tls::TlsContextProvider> provider_;
  FakeClock clock_;
  TlsRefusalLog log_{clock_};
};
tls::testing::TestCa* DownstreamTlsTransportTest::root_ = nullptr;
tls::testing::TestCertificate* DownstreamTlsTransportTest::server_ = nullptr;
tls::testing::TestCertificate* DownstreamTlsTransportTest::intruder_ = nullptr;
tls::testing::TestCertificate* DownstreamTlsTransportTest::allowed_ = nullptr;

TEST_F(DownstreamTlsTransportTest, HandshakeCompleteCallbackSeesThePeer) {
  counters_.handshakes = Register("meshlet_test_handshakes_total", {});
  tls::TlsContextConfig config{.certificate_chain_pem = allowed_->chain_pem,
                               .private_key_pem = allowed_->key_pem,
                               .trust_bundle_pem = root_->cert_pem()};
  auto client = ValueOrDie(tls::TlsTransport::Create(
      ValueOrDie(tls::TlsContext::CreateClient(config)), {.server_name = "backend"}));
  DownstreamTlsTransport server(provider_, /*strict=*/true, counters_, "inbound", &log_);
  int calls = 0;
  std::string identity_seen;
  server.SetHandshakeCompleteCallback([&] {
    ++calls;
    identity_seen = SpiffeIdOf(server.peer());
    EXPECT_TRUE(server.peer().tls);
    EXPECT_TRUE(server.HandshakeComplete());
    EXPECT_FALSE(server.HandshakeInProgress());
  });
  net::Buffer to_server, to_client, app;
  ASSERT_TRUE(client->Start(net::Address(), to_server).ok());
  ASSERT_TRUE(server.Start(net::Address(), to_client).ok());
  EXPECT_FALSE(server.HandshakeInProgress()) << "nothing received yet";
  // The first bytes of a ClientHello: undecided, but a handshake is under way.
  net::Buffer first;
  first.Move(to_server, 3);
  ASSERT_TRUE(server.OnReceived(first, app, to_client).ok());
  EXPECT_TRUE(server.HandshakeInProgress());
  EXPECT_FALSE(server.HandshakeComplete());
  EXPECT_FALSE(server.peer().tls);
  first.Move(to_server);
  to_server.Move(first);
  for (int i = 0; i < 10 && (!to_server.empty() || !to_client.empty()); ++i) {
    if (!to_server.empty()) {
      ASSERT_TRUE(server.OnReceived(to_server, app, to_client).ok());
    }
    to_server.Clear();
    if (!to_client.empty()) {
      ASSERT_TRUE(client->OnReceived(to_client, app, to_server).ok());
    }
    to_client.Clear();
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(identity_seen, kAllowed);
  EXPECT_TRUE(server.peer().tls);
  const StatsSnapshot stats = registry_.Snapshot();
  const SeriesSnapshot* handshakes = stats.Find("meshlet_test_handshakes_total", {});
  ASSERT_NE(handshakes, nullptr);
  EXPECT_EQ(handshakes->counter, 1u);
}

TEST_F(DownstreamTlsTransportTest, PlaintextNeverCallsTheHandshakeCallback) {
  DownstreamTlsTransport server(provider_, /*strict=*/false, counters_, "inbound", &log_);
  int calls = 0;
  server.SetHandshakeCompleteCallback([&] { ++calls; });
  net::Buffer wire, app, out;
  ASSERT_TRUE(server.Start(net::Address(), out).ok());
  wire.Append("GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(server.OnReceived(wire, app, out).ok());
  EXPECT_EQ(app.ToString(), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(server.HandshakeComplete());
  EXPECT_FALSE(server.HandshakeInProgress());
  EXPECT_FALSE(server.peer().tls);
  EXPECT_EQ(calls, 0);
}

TEST_F(DownstreamTlsTransportTest, RefusalsAreCountedByReasonAndLoggedOncePerAddress) {
  std::vector<std::string> lines;
  ScopedLogSink sink([&](LogLevel level, absl::string_view line) {
    if (level == LogLevel::kInfo) lines.emplace_back(line);
  });
  const net::Address peer = ValueOrDie(net::Address::Parse("10.0.0.7:40312"));

  auto [client, server] = Handshake(intruder_, peer);
  EXPECT_EQ(server.code(), absl::StatusCode::kPermissionDenied);
  // The client learns why (TLS 1.3: on its first read after its Finished).
  EXPECT_THAT(client.message(), HasSubstr("access denied"));
  EXPECT_EQ(Failures(HandshakeFailure::kIdentityDenied), 1u);
  EXPECT_EQ(Errors(), 1u);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0],
              HasSubstr(absl::StrCat("listener inbound: TLS handshake from 10.0.0.7:40312 failed: "
                                     "identity_denied, peer ",
                                     kIntruder, ", sent alert \"access denied\": peer identity ",
                                     kIntruder, " is not allowed")));

  std::tie(client, server) = Handshake(nullptr, peer);
  EXPECT_EQ(server.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(client.message(), HasSubstr("certificate required"));
  EXPECT_EQ(Failures(HandshakeFailure::kNoCertificate), 1u);
  EXPECT_EQ(Errors(), 2u);
  EXPECT_EQ(lines.size(), 1u);  // the same address within the minute: counted, not logged

  clock_.Advance(TlsRefusalLog::kDefaultInterval);
  Handshake(nullptr, ValueOrDie(net::Address::Parse("10.0.0.7:40313")));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("from 10.0.0.7:40313 failed: no_certificate, sent alert "
                                  "\"certificate required\": peer presented no certificate"));
  EXPECT_EQ(Failures(HandshakeFailure::kNoCertificate), 2u);
}

}  // namespace
}  // namespace meshlet::sidecar::listener

#include "common/tls/tls_session.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/base/logging.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::tls {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::LeafOptions;
using testing::TestCa;
using testing::TestCertificate;
using testing::TestKeyType;
using testing::ValueOrDie;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/default/sa/frontend";
constexpr char kBackend[] = "spiffe://cluster.local/ns/default/sa/backend";

SpiffeIdMatcher Ids(std::vector<std::string> ids, std::vector<std::string> domains = {}) {
  return ValueOrDie(SpiffeIdMatcher::Create(ids, domains));
}

// Moves everything `from` wants to send into `to`, reading `to`'s plaintext into `to_plain`.
// Offers the bytes in pieces when `to`'s input ring is full, as a connection would.
bool Transfer(TlsSession& from, TlsSession& to, std::string& to_plain) {
  std::string wire(from.PendingCiphertextSize(), '\0');
  wire.resize(from.ReadCiphertext(absl::MakeSpan(wire)));
  size_t offset = 0;
  char buf[4096];
  for (int guard = 0; guard < 100000; ++guard) {
    offset += to.FeedCiphertext(absl::string_view(wire).substr(offset));
    while (true) {
      absl::StatusOr<size_t> n = to.ReadPlaintext(absl::MakeSpan(buf));
      if (!n.ok() || *n == 0) break;
      to_plain.append(buf, *n);
    }
    if (offset == wire.size()) break;
  }
  EXPECT_EQ(offset, wire.size());
  return !wire.empty();
}

struct Pair {
  std::unique_ptr<TlsSession> client;
  std::unique_ptr<TlsSession> server;
  std::string client_received;
  std::string server_received;

  // Shuttles bytes both ways until neither side has anything more to say.
  void Pump() {
    for (int i = 0; i < 10000; ++i) {
      bool moved = Transfer(*client, *server, server_received);
      moved |= Transfer(*server, *client, client_received);
      if (!moved) return;
    }
    ADD_FAILURE() << "sessions kept talking";
  }
  void Handshake() {
    ASSERT_TRUE(client->Handshake().ok());
    Pump();
  }
  // Writes all of `data` from `from`, pumping as needed.
  void Write(TlsSession& from, absl::string_view data) {
    while (!data.empty()) {
      absl::StatusOr<size_t> n = from.WritePlaintext(data);
      ASSERT_TRUE(n.ok()) << n.status();
      data.remove_prefix(*n);
      Pump();
    }
  }
};

class TlsSessionTest : public ::testing::TestWithParam<TlsVersion> {
 protected:
  static void SetUpTestSuite() {
    root_ = new TestCa(ValueOrDie(TestCa::Create("mesh root")));
    other_root_ = new TestCa(ValueOrDie(TestCa::Create("other root")));
    frontend_ = new TestCertificate(ValueOrDie(root_->Issue({.spiffe_id = kFrontend})));
    backend_ = new TestCertificate(
        ValueOrDie(root_->Issue({.spiffe_id = kBackend, .dns_names = {"backend.default.svc"}})));
    backend_rsa_ = new TestCertificate(
        ValueOrDie(root_->Issue({.spiffe_id = kBackend, .key_type = TestKeyType::kRsa2048})));
  }
  static void TearDownTestSuite() {
    delete backend_rsa_;
    delete backend_;
    delete frontend_;
    delete other_root_;
    delete root_;
  }

  TlsVersion version() const { return GetParam(); }

  // Client (frontend) and server (backend) configs pinned to the test's TLS version.
  TlsContextConfig ClientConfig(bool with_cert = false) const {
    TlsContextConfig config;
    config.trust_bundle_pem = root_->cert_pem();
    config.min_version = config.max_version = version();
    if (with_cert) {
      config.certificate_chain_pem = frontend_->chain_pem;
      config.private_key_pem = frontend_->key_pem;
    }
    return config;
  }
  TlsContextConfig ServerConfig(const TestCertificate& cert,
                                ClientCertificateMode mode = ClientCertificateMode::kNone) const {
    TlsContextConfig config;
    config.certificate_chain_pem = cert.chain_pem;
    config.private_key_pem = cert.key_pem;
    config.client_certificate = mode;
    if (mode != ClientCertificateMode::kNone) config.trust_bundle_pem = root_->cert_pem();
    config.min_version = config.max_version = version();
    return config;
  }

  static Pair MakePair(const TlsContextConfig& client_config, const TlsContextConfig& server_config,
                       TlsSession::Options client_options = {}) {
    Pair pair;
    auto client_ctx = TlsContext::CreateClient(client_config);
    auto server_ctx = TlsContext::CreateServer(server_config);
    CHECK(client_ctx.ok()) << client_ctx.status();
    CHECK(server_ctx.ok()) << server_ctx.status();
    pair.client = ValueOrDie(TlsSession::Create(*client_ctx, std::move(client_options)));
    pair.server = ValueOrDie(TlsSession::Create(*server_ctx));
    return pair;
  }

  static TestCa* root_;
  static TestCa* other_root_;
  static TestCertificate* frontend_;
  static TestCertificate* backend_;
  static TestCertificate* backend_rsa_;
};
TestCa* TlsSessionTest::root_ = nullptr;
TestCa* TlsSessionTest::other_root_ = nullptr;
TestCertificate* TlsSessionTest::frontend_ = nullptr;
TestCertificate* TlsSessionTest::backend_ = nullptr;
TestCertificate* TlsSessionTest::backend_rsa_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Versions, TlsSessionTest,
                         ::testing::Values(TlsVersion::kTls12, TlsVersion::kTls13),
                         [](const ::testing::TestParamInfo<TlsVersion>& info) {
                           return info.param == TlsVersion::kTls12 ? "Tls12" : "Tls13";
                         });

TEST_P(TlsSessionTest, ServerAuthenticatedTls) {
  TlsContextConfig client = ClientConfig();
  client.peer_identity = Ids({kBackend});
  Pair pair = MakePair(client, ServerConfig(*backend_), {.server_name = "backend.default.svc"});
  pair.Handshake();
  ASSERT_TRUE(pair.client->status().ok()) << pair.client->status();
  ASSERT_TRUE(pair.server->status().ok()) << pair.server->status();
  EXPECT_TRUE(pair.client->handshake_complete());
  EXPECT_TRUE(pair.server->handshake_complete());
  EXPECT_EQ(pair.client->protocol_version(),
            version() == TlsVersion::kTls13 ? "TLSv1.3" : "TLSv1.2");
  EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend);
  EXPECT_THAT(pair.client->peer_uri_sans(), ElementsAre(kBackend));
  EXPECT_TRUE(pair.client->peer_certificate_presented());
  EXPECT_FALSE(pair.server->peer_certificate_presented());
  EXPECT_EQ(pair.server->peer_spiffe_id(), "");
  EXPECT_EQ(pair.server->server_name(), "backend.default.svc");
  EXPECT_EQ(pair.client->alpn(), "");
  EXPECT_FALSE(pair.client->session_resumed());
}

// More certificates by SNI: an exact name, a wildcard for the rest of its domain, the default
// for any other name and for none.
TEST_P(TlsSessionTest, CertificatesChosenByServerName) {
  const TestCertificate shop =
      ValueOrDie(root_->Issue({.dns_names = {"shop.example.com"}, .common_name = "shop"}));
  const TestCertificate wildcard =
      ValueOrDie(root_->Issue({.dns_names = {"*.example.com"}, .common_name = "wildcard"}));
  TlsContextConfig server = ServerConfig(*backend_);
  server.sni_certificates = {{.server_names = {"shop.example.com"},
                              .certificate_chain_pem = shop.chain_pem,
                              .private_key_pem = shop.key_pem},
                             {.server_names = {"*.example.com"},
                              .certificate_chain_pem = wildcard.chain_pem,
                              .private_key_pem = wildcard.key_pem}};
  auto context = TlsContext::CreateServer(server);
  ASSERT_TRUE(context.ok()) << context.status();
  EXPECT_EQ((*context)->SniIndexFor("shop.example.com"), 0);
  EXPECT_EQ((*context)->SniIndexFor("SHOP.Example.com"), 0);
  EXPECT_EQ((*context)->SniIndexFor("api.example.com"), 1);
  EXPECT_EQ((*context)->SniIndexFor("a.b.example.com"), 1);
  EXPECT_EQ((*context)->SniIndexFor("example.com"), -1);
  EXPECT_EQ((*context)->SniIndexFor(""), -1);
  // Handshakes, each verifying the name it asked for.
  for (const char* name : {"shop.example.com", "api.example.com"}) {
    Pair pair = MakePair(ClientConfig(), server, {.server_name = name, .verify_peer_name = name});
    pair.Handshake();
    EXPECT_TRUE(pair.client->status().ok()) << name << ": " << pair.client->status();
    EXPECT_TRUE(pair.client->handshake_complete()) << name;
    EXPECT_EQ(pair.client->peer_spiffe_id(), "") << name;
  }
  for (const char* name : {"other.test", ""}) {
    Pair pair = MakePair(ClientConfig(), server, {.server_name = name});
    pair.Handshake();
    ASSERT_TRUE(pair.client->status().ok()) << name << ": " << pair.client->status();
    EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend) << name;
  }
  // Refused: a name twice, a CA certificate, a key of another certificate, a client context.
  TlsContextConfig twice = server;
  twice.sni_certificates[1].server_names = {"SHOP.example.com"};
  EXPECT_NE(TlsContext::CreateServer(twice).status().message().find("named by another"),
            std::string::npos);
  TlsContextConfig mismatched = server;
  mismatched.sni_certificates[1].private_key_pem = shop.key_pem;
  EXPECT_NE(TlsContext::CreateServer(mismatched).status().message().find("sni_certificates[1]"),
            std::string::npos);
  TlsContextConfig client = ClientConfig();
  client.sni_certificates = server.sni_certificates;
  EXPECT_FALSE(TlsContext::CreateClient(client).ok());
}

TEST_P(TlsSessionTest, VerifySubjectAltNamesAcceptsAnyListedNameInsteadOfThePeerName) {
  absl::StatusOr<TestCertificate> backend =
      root_->Issue({.extra_uri_sans = {"spiffe://backend.example/app"},
                    .dns_names = {"abc.example.com", "*.wild.example.com"}});
  ASSERT_TRUE(backend.ok()) << backend.status();
  using Type = SubjectAltName::Type;
  struct Case {
    std::vector<SubjectAltName> names;
    bool accepted;
  };
  const Case cases[] = {
      {{{Type::kDns, "abc.example.com"}}, true},
      {{{Type::kDns, "other.example.com"}, {Type::kDns, "x.wild.example.com"}}, true},
      {{{Type::kUri, "spiffe://backend.example/app"}}, true},
      {{{Type::kDns, "nothing.example.com"}, {Type::kUri, "spiffe://backend.example/app"}}, true},
      {{{Type::kDns, "other.example.com"}}, false},
      {{{Type::kDns, "a.b.wild.example.com"}}, false},
      {{{Type::kUri, "spiffe://backend.example/other"}}, false},
      // A URI is not matched as a DNS name, nor a DNS name as a URI.
      {{{Type::kUri, "abc.example.com"}}, false},
  };
  for (const Case& c : cases) {
    // The peer name (the SNI) is not what is checked once names are listed.
    Pair pair = MakePair(ClientConfig(), ServerConfig(*backend),
                         {.server_name = "sni.example.org",
                          .verify_peer_name = "sni.example.org",
                          .verify_subject_alt_names = c.names});
    pair.Handshake();
    const std::string what = SubjectAltNamesText(c.names);
    EXPECT_EQ(pair.client->handshake_complete(), c.accepted) << what;
    if (c.accepted) {
      EXPECT_TRUE(pair.client->status().ok()) << what << ": " << pair.client->status();
    } else {
      EXPECT_THAT(std::string(pair.client->status().message()),
                  HasSubstr(absl::StrCat("carries none of the subjectAltNames ", what)));
      EXPECT_EQ(pair.client->handshake_failure(), HandshakeFailure::kUntrusted) << what;
    }
  }
}

TEST_P(TlsSessionTest, VerifyPeerNameChecksTheServerCertificateNames) {
  absl::StatusOr<TestCertificate> api = root_->Issue({.dns_names = {"kubernetes.default.svc"}});
  ASSERT_TRUE(api.ok()) << api.status();
  Pair named =
      MakePair(ClientConfig(), ServerConfig(*api), {.verify_peer_name = "kubernetes.default.svc"});
  named.Handshake();
  EXPECT_TRUE(named.client->status().ok()) << named.client->status();
  EXPECT_TRUE(named.client->handshake_complete());

  for (const char* other : {"kubernetes.other.svc", "10.96.0.1"}) {
    Pair wrong = MakePair(ClientConfig(), ServerConfig(*api), {.verify_peer_name = other});
    wrong.Handshake();
    EXPECT_FALSE(wrong.client->handshake_complete());
    EXPECT_THAT(std::string(wrong.client->status().message()),
                HasSubstr(absl::StrCat("is not for \"", other, "\"")));
  }
}

TEST_P(TlsSessionTest, MutualTls) {
  TlsContextConfig client = ClientConfig(/*with_cert=*/true);
  client.peer_identity = Ids({kBackend});
  TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server.peer_identity = Ids({}, {"spiffe://cluster.local/"});
  Pair pair = MakePair(client, server);
  pair.Handshake();
  ASSERT_TRUE(pair.client->status().ok()) << pair.client->status();
  ASSERT_TRUE(pair.server->status().ok()) << pair.server->status();
  EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend);
  EXPECT_EQ(pair.server->peer_spiffe_id(), kFrontend);
  EXPECT_THAT(pair.server->peer_uri_sans(), ElementsAre(kFrontend));
  EXPECT_TRUE(pair.server->peer_certificate_presented());
}

TEST_P(TlsSessionTest, ApplicationDataBothWaysAndCloseNotify) {
  Pair pair =
      MakePair(ClientConfig(true), ServerConfig(*backend_, ClientCertificateMode::kRequire));
  pair.Handshake();
  ASSERT_TRUE(pair.server->handshake_complete());
  pair.Write(*pair.client, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(pair.server_received, "GET / HTTP/1.1\r\n\r\n");
  pair.Write(*pair.server, "HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(pair.client_received, "HTTP/1.1 200 OK\r\n\r\n");

  // Client half-closes; the server can still answer before closing its side.
  pair.client->Shutdown();
  EXPECT_TRUE(pair.client->shutdown_sent());
  pair.Pump();
  EXPECT_TRUE(pair.server->peer_closed());
  EXPECT_FALSE(pair.client->peer_closed());
  pair.Write(*pair.server, "bye");
  EXPECT_EQ(pair.client_received, "HTTP/1.1 200 OK\r\n\r\nbye");
  pair.server->Shutdown();
  pair.Pump();
  EXPECT_TRUE(pair.client->peer_closed());
  EXPECT_TRUE(pair.client->status().ok()) << pair.client->status();
  EXPECT_TRUE(pair.server->status().ok()) << pair.server->status();
  EXPECT_EQ(pair.client->WritePlaintext("late").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Other code on the thread (certificate parsing, a failed call elsewhere) can leave errors on
// BoringSSL's per-thread queue. SSL_read, SSL_write and SSL_do_handshake clear it before they
// start, which the session relies on instead of clearing it itself before every call: a stale
// error must not turn "no data yet" into a failure, in the handshake or after it.
TEST_P(TlsSessionTest, StaleErrorsOnTheThreadDoNotFailReads) {
  Pair pair =
      MakePair(ClientConfig(true), ServerConfig(*backend_, ClientCertificateMode::kRequire));
  const auto leave_stale_error = [] {
    OPENSSL_PUT_ERROR(SSL, SSL_R_DECODE_ERROR);
    ASSERT_NE(ERR_peek_error(), 0u);
  };
  leave_stale_error();
  ASSERT_TRUE(pair.client->Handshake().ok());
  EXPECT_EQ(ERR_peek_error(), 0u) << "SSL_do_handshake left the stale error";
  // The server's first read advances its handshake with nothing received yet.
  char buf[64];
  leave_stale_error();
  absl::StatusOr<size_t> n = pair.server->ReadPlaintext(absl::MakeSpan(buf));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  pair.Pump();
  ASSERT_TRUE(pair.client->handshake_complete());
  ASSERT_TRUE(pair.server->handshake_complete());

  leave_stale_error();
  n = pair.server->ReadPlaintext(absl::MakeSpan(buf));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(ERR_peek_error(), 0u) << "SSL_read left the stale error";
  leave_stale_error();
  absl::StatusOr<size_t> written = pair.client->WritePlaintext("ping");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, 4u);
  EXPECT_EQ(ERR_peek_error(), 0u) << "SSL_write left the stale error";
  pair.Pump();
  EXPECT_EQ(pair.server_received, "ping");
  EXPECT_TRUE(pair.client->status().ok()) << pair.client->status();
  EXPECT_TRUE(pair.server->status().ok()) << pair.server->status();
}

TEST_P(TlsSessionTest, LargeTransferBothWays) {
  Pair pair =
      MakePair(ClientConfig(true), ServerConfig(*backend_, ClientCertificateMode::kRequire));
  pair.Handshake();
  std::string upload(1 << 20, '\0');
  for (size_t i = 0; i < upload.size(); ++i)
    upload[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  std::string download(upload.rbegin(), upload.rend());
  pair.Write(*pair.client, upload);
  pair.Write(*pair.server, download);
  ASSERT_EQ(pair.server_received.size(), upload.size());
  EXPECT_TRUE(pair.server_received == upload);
  ASSERT_EQ(pair.client_received.size(), download.size());
  EXPECT_TRUE(pair.client_received == download);
}

TEST_P(TlsSessionTest, WritesWaitForHandshakeAndOutputIsBounded) {
  Pair pair = MakePair(ClientConfig(), ServerConfig(*backend_));
  // Before the handshake nothing is taken.
  EXPECT_EQ(*pair.client->WritePlaintext("early"), 0u);
  pair.Handshake();
  std::string big(1 << 20, 'x');
  size_t taken = 0;
  // Without draining, the session stops taking data at its pending-ciphertext watermark.
  while (true) {
    size_t n = *pair.client->WritePlaintext(absl::string_view(big).substr(taken));
    if (n == 0) break;
    EXPECT_LE(n, TlsSession::kMaxWriteChunk);
    taken += n;
  }
  EXPECT_GE(pair.client->PendingCiphertextSize(), TlsSession::kMaxPendingCiphertext);
  EXPECT_LT(pair.client->PendingCiphertextSize(),
            TlsSession::kMaxPendingCiphertext + 2 * TlsSession::kMaxWriteChunk);
  pair.Pump();
  EXPECT_EQ(pair.server_received.size(), taken);
}

TEST_P(TlsSessionTest, AlpnServerPreferenceWins) {
  TlsContextConfig client = ClientConfig();
  client.alpn_protocols = {"http/1.1", "h2"};
  TlsContextConfig server = ServerConfig(*backend_);
  server.alpn_protocols = {"h2", "http/1.1"};
  Pair pair = MakePair(client, server);
  pair.Handshake();
  ASSERT_TRUE(pair.client->handshake_complete()) << pair.client->status();
  EXPECT_EQ(pair.client->alpn(), "h2");
  EXPECT_EQ(pair.server->alpn(), "h2");
}

TEST_P(TlsSessionTest, AlpnNoOverlapContinuesWithoutProtocolByDefault) {
  TlsContextConfig client = ClientConfig();
  client.alpn_protocols = {"spdy/3"};
  TlsContextConfig server = ServerConfig(*backend_);
  server.alpn_protocols = {"h2", "http/1.1"};
  Pair pair = MakePair(client, server);
  pair.Handshake();
  ASSERT_TRUE(pair.client->handshake_complete()) << pair.client->status();
  EXPECT_EQ(pair.client->alpn(), "");
  EXPECT_EQ(pair.server->alpn(), "");
}

TEST_P(TlsSessionTest, AlpnNoOverlapFailsWhenRequired) {
  TlsContextConfig client = ClientConfig();
  client.alpn_protocols = {"spdy/3"};
  TlsContextConfig server = ServerConfig(*backend_);
  server.alpn_protocols = {"h2", "http/1.1"};
  server.require_alpn_match = true;
  Pair pair = MakePair(client, server);
  pair.Handshake();
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("no ALPN protocol in common"));
  EXPECT_THAT(pair.server->status().message(), HasSubstr("h2,http/1.1"));
  EXPECT_FALSE(pair.client->status().ok());
  EXPECT_THAT(pair.client->status().message(), HasSubstr("no ALPN protocol in common"));
  EXPECT_EQ(pair.server->handshake_failure(), HandshakeFailure::kProtocol);
  EXPECT_EQ(pair.server->alert_sent(), SSL_AD_NO_APPLICATION_PROTOCOL);
}

TEST_P(TlsSessionTest, ServerWithWrongIdentityRejectedByClient) {
  TlsContextConfig client = ClientConfig();
  client.peer_identity = Ids({kBackend});
  Pair pair = MakePair(client, ServerConfig(*frontend_));
  pair.Handshake();
  const absl::Status& status = pair.client->status();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("peer identity ", kFrontend)));
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("expected one of [", kBackend, "]")));
  EXPECT_FALSE(pair.client->handshake_complete());
  // The server learns why from the alert.
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("access denied"));
}

TEST_P(TlsSessionTest, ClientWithWrongIdentityRejectedByServer) {
  TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server.peer_identity = Ids({"spiffe://cluster.local/ns/default/sa/reviews"});
  Pair pair = MakePair(ClientConfig(true), server);
  pair.Handshake();
  const absl::Status& status = pair.server->status();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("peer identity ", kFrontend,
                                                       " is not allowed; expected one of "
                                                       "[spiffe://cluster.local/ns/default/sa/"
                                                       "reviews]")));
  // In TLS 1.3 the client finishes first and hears about the rejection on its next read.
  EXPECT_EQ(pair.client->status().code(), absl::StatusCode::kPermissionDenied)
      << pair.client->status();
}

// A server refusing a client says why with the alert RFC 8446 §6.2 names for the case, and
// classifies the refusal for its counters.
TEST_P(TlsSessionTest, RefusedClientsAreToldWhyAndClassified) {
  const TestCertificate stranger = ValueOrDie(other_root_->Issue({.spiffe_id = kFrontend}));
  const TestCertificate expired = ValueOrDie(root_->Issue({.spiffe_id = kFrontend,
                                                           .not_before_offset = -absl::Hours(48),
                                                           .not_after_offset = -absl::Hours(24)}));
  struct Case {
    const char* name;
    const TestCertificate* client_cert;  // null: none
    int alert;
    HandshakeFailure failure;
    const char* client_sees;
  };
  const bool tls13 = version() == TlsVersion::kTls13;
  const Case cases[] = {
      // TLS 1.2 has no certificate_required; BoringSSL sends handshake_failure there.
      {"no certificate", nullptr, tls13 ? SSL_AD_CERTIFICATE_REQUIRED : SSL_AD_HANDSHAKE_FAILURE,
       HandshakeFailure::kNoCertificate,
       tls13 ? "the peer requires a client certificate" : "handshake failure"},
      {"untrusted CA", &stranger, SSL_AD_UNKNOWN_CA, HandshakeFailure::kUntrusted,
       "the peer did not accept our certificate"},
      {"expired", &expired, SSL_AD_CERTIFICATE_EXPIRED, HandshakeFailure::kExpired,
       "certificate expired"},
      {"identity not allowed", frontend_, SSL_AD_ACCESS_DENIED, HandshakeFailure::kIdentityDenied,
       "the peer does not allow our identity"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TlsContextConfig client = ClientConfig();
    if (c.client_cert != nullptr) {
      client.certificate_chain_pem = c.client_cert->chain_pem;
      client.private_key_pem = c.client_cert->key_pem;
    }
    TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequire);
    server.peer_identity = Ids({"spiffe://cluster.local/ns/default/sa/reviews"});
    Pair pair = MakePair(client, server);
    pair.Handshake();
    EXPECT_FALSE(pair.server->handshake_complete());
    EXPECT_EQ(pair.server->handshake_failure(), c.failure) << pair.server->status();
    EXPECT_EQ(pair.server->alert_sent(), c.alert)
        << SSL_alert_desc_string_long(pair.server->alert_sent());
    EXPECT_EQ(pair.server->refused_spiffe_id(), c.client_cert != nullptr ? kFrontend : "");
    EXPECT_THAT(pair.client->status().message(), HasSubstr(c.client_sees));
  }
}

TEST_P(TlsSessionTest, AcceptedPeersSendNoAlert) {
  TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server.peer_identity = Ids({kFrontend});
  Pair pair = MakePair(ClientConfig(true), server);
  pair.Handshake();
  ASSERT_TRUE(pair.server->handshake_complete()) << pair.server->status();
  EXPECT_EQ(pair.server->handshake_failure(), HandshakeFailure::kNone);
  EXPECT_EQ(pair.server->alert_sent(), -1);
  EXPECT_EQ(pair.server->refused_spiffe_id(), "");
  pair.client->Shutdown();  // close_notify is a warning, not a refusal
  pair.Pump();
  EXPECT_EQ(pair.client->alert_sent(), -1);
}

TEST_P(TlsSessionTest, TrustDomainMismatchRejected) {
  TlsContextConfig client = ClientConfig();
  client.peer_identity = Ids({}, {"prod.example"});
  Pair pair = MakePair(client, ServerConfig(*backend_));
  pair.Handshake();
  EXPECT_EQ(pair.client->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(pair.client->status().message(), HasSubstr(kBackend));
  EXPECT_THAT(pair.client->status().message(), HasSubstr("spiffe://prod.example/*"));
}

TEST_P(TlsSessionTest, PerSessionIdentityOverridesContext) {
  TlsContextConfig client = ClientConfig();
  client.peer_identity = Ids({kBackend});
  Pair pair = MakePair(client, ServerConfig(*backend_), {.peer_identity = Ids({kFrontend})});
  pair.Handshake();
  EXPECT_EQ(pair.client->status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_P(TlsSessionTest, PeerWithoutSpiffeIdRejectedWhenIdentityRequired) {
  TestCertificate no_san = ValueOrDie(root_->Issue({.dns_names = {"backend.default.svc"}}));
  TlsContextConfig client = ClientConfig();
  client.peer_identity = Ids({kBackend});
  Pair pair = MakePair(client, ServerConfig(no_san));
  pair.Handshake();
  EXPECT_EQ(pair.client->status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(pair.client->status().message(), HasSubstr("no URI SAN"));
}

TEST_P(TlsSessionTest, UntrustedCaRejected) {
  TestCertificate stranger = ValueOrDie(other_root_->Issue({.spiffe_id = kBackend}));
  Pair pair = MakePair(ClientConfig(), ServerConfig(stranger));
  pair.Handshake();
  const absl::Status& status = pair.client->status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("peer certificate ", kBackend)));
  EXPECT_THAT(status.message(), HasSubstr("not issued by a trusted CA"));
  EXPECT_THAT(status.message(), HasSubstr("other root"));
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("unknown CA"));
  EXPECT_EQ(pair.client->handshake_failure(), HandshakeFailure::kUntrusted);
  EXPECT_EQ(pair.client->alert_sent(), SSL_AD_UNKNOWN_CA);
  // The server was refused by its peer.
  EXPECT_EQ(pair.server->handshake_failure(), HandshakeFailure::kPeerAlert);
  EXPECT_EQ(pair.server->alert_sent(), -1);
}

// SPIFFE federation (ADR 0101): the server trusts "cluster.local" (root_) and federates
// "other.example" (other_root_); each domain's certificates verify against its own roots only.
TlsContextConfig FederatedServer(const TlsContextConfig& base, const TestCa& foreign_root) {
  TlsContextConfig config = base;
  config.local_trust_domain = "cluster.local";
  config.federated_bundles_pem["other.example"] = foreign_root.cert_pem();
  return config;
}

constexpr char kForeign[] = "spiffe://other.example/ns/x/sa/y";

// `base` presenting `cert` as its client certificate.
TlsContextConfig PresentingCertificate(TlsContextConfig base, const TestCertificate& cert) {
  base.certificate_chain_pem = cert.chain_pem;
  base.private_key_pem = cert.key_pem;
  return base;
}

TEST_P(TlsSessionTest, FederatedPeerVerifiedByItsOwnDomainsRoots) {
  const TestCertificate foreign = ValueOrDie(other_root_->Issue({.spiffe_id = kForeign}));
  const TlsContextConfig client = PresentingCertificate(ClientConfig(false), foreign);
  TlsContextConfig server =
      FederatedServer(ServerConfig(*backend_, ClientCertificateMode::kRequire), *other_root_);
  server.peer_identity = Ids({kForeign});
  Pair pair = MakePair(client, server);
  pair.Handshake();
  ASSERT_TRUE(pair.server->handshake_complete()) << pair.server->status();
  EXPECT_EQ(pair.server->peer_spiffe_id(), kForeign);

  // Without the federation the same client is refused.
  TlsContextConfig plain = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  Pair refused = MakePair(client, plain);
  refused.Handshake();
  EXPECT_FALSE(refused.server->handshake_complete());
  EXPECT_THAT(refused.server->status().message(), HasSubstr("not issued by a trusted CA"));
}

TEST_P(TlsSessionTest, ForeignRootCannotVouchForTheLocalDomain) {
  // other_root_ is trusted for other.example only: a certificate it signed claiming
  // cluster.local is checked against the local roots, and refused.
  const TestCertificate forged = ValueOrDie(other_root_->Issue({.spiffe_id = kFrontend}));
  const TlsContextConfig server =
      FederatedServer(ServerConfig(*backend_, ClientCertificateMode::kRequire), *other_root_);
  Pair pair = MakePair(PresentingCertificate(ClientConfig(false), forged), server);
  pair.Handshake();
  EXPECT_FALSE(pair.server->handshake_complete());
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.server->status().message(),
              HasSubstr("is not in the trust bundle of its trust domain"));
  EXPECT_EQ(pair.server->alert_sent(), SSL_AD_UNKNOWN_CA);

  // And a local root does not vouch for a federated domain either.
  const TestCertificate forged_foreign = ValueOrDie(root_->Issue({.spiffe_id = kForeign}));
  Pair other = MakePair(PresentingCertificate(ClientConfig(false), forged_foreign), server);
  other.Handshake();
  EXPECT_FALSE(other.server->handshake_complete());
  EXPECT_THAT(other.server->status().message(), HasSubstr("not issued by a trusted CA"));
}

TEST_P(TlsSessionTest, UnknownTrustDomainAndMissingSpiffeIdRefused) {
  TlsContextConfig server =
      FederatedServer(ServerConfig(*backend_, ClientCertificateMode::kRequire), *other_root_);
  for (const std::string& id : {std::string("spiffe://third.example/ns/a/sa/b"), std::string()}) {
    const TestCertificate cert = ValueOrDie(root_->Issue({.spiffe_id = id}));
    TlsContextConfig client = PresentingCertificate(ClientConfig(false), cert);
    Pair pair = MakePair(client, server);
    pair.Handshake();
    EXPECT_FALSE(pair.server->handshake_complete()) << id;
    EXPECT_THAT(pair.server->status().message(),
                HasSubstr(id.empty() ? "no usable SPIFFE id" : "neither the local domain"))
        << id;
  }
}

TEST_P(TlsSessionTest, TrustDomainAliasVerifiedByLocalRoots) {
  constexpr char kOld[] = "spiffe://old.example/ns/default/sa/frontend";
  const TestCertificate old = ValueOrDie(root_->Issue({.spiffe_id = kOld}));
  TlsContextConfig client = PresentingCertificate(ClientConfig(false), old);
  TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server.local_trust_domain = "cluster.local";
  Pair without = MakePair(client, server);
  without.Handshake();
  EXPECT_THAT(without.server->status().message(), HasSubstr("neither the local domain"));

  server.trust_domain_aliases = {"old.example"};
  Pair with = MakePair(client, server);
  with.Handshake();
  ASSERT_TRUE(with.server->handshake_complete()) << with.server->status();
  EXPECT_EQ(with.server->peer_spiffe_id(), kOld);
}

TEST(TlsFederationConfigTest, InvalidConfigurationsAreNamed) {
  const TestCa root = ValueOrDie(TestCa::Create("root"));
  const TestCertificate server_cert =
      ValueOrDie(root.Issue({.spiffe_id = "spiffe://cluster.local/ns/a/sa/b"}));
  TlsContextConfig base;
  base.certificate_chain_pem = server_cert.chain_pem;
  base.private_key_pem = server_cert.key_pem;
  base.trust_bundle_pem = root.cert_pem();
  base.client_certificate = ClientCertificateMode::kRequire;
  struct Case {
    std::function<void(TlsContextConfig&)> change;
    std::string error;
  };
  const std::vector<Case> cases = {
      {[](TlsContextConfig& c) { c.federated_bundles_pem["other.example"] = "x"; },
       "need the local trust domain"},
      {[](TlsContextConfig& c) { c.local_trust_domain = "Bad Domain"; }, "local trust domain"},
      {[](TlsContextConfig& c) {
         c.local_trust_domain = "cluster.local";
         c.trust_domain_aliases = {"UPPER"};
       },
       "trust domain alias \"UPPER\""},
      {[&](TlsContextConfig& c) {
         c.local_trust_domain = "cluster.local";
         c.federated_bundles_pem["cluster.local"] = root.cert_pem();
       },
       "is the local trust domain"},
      {[](TlsContextConfig& c) {
         c.local_trust_domain = "cluster.local";
         c.federated_bundles_pem["other.example"] = "not pem";
       },
       "federated bundle of \"other.example\""},
      {[&](TlsContextConfig& c) {
         c.local_trust_domain = "cluster.local";
         c.federated_bundles_pem["other.example"] = server_cert.chain_pem;
       },
       "is not a CA certificate"},
  };
  for (const Case& c : cases) {
    TlsContextConfig config = base;
    c.change(config);
    absl::StatusOr<std::shared_ptr<const TlsContext>> ctx = TlsContext::CreateServer(config);
    ASSERT_FALSE(ctx.ok()) << c.error;
    EXPECT_THAT(ctx.status().message(), HasSubstr(c.error));
  }
  TlsContextConfig ok = base;
  ok.local_trust_domain = "cluster.local";
  ok.federated_bundles_pem["other.example"] = root.cert_pem();
  absl::StatusOr<std::shared_ptr<const TlsContext>> ctx = TlsContext::CreateServer(ok);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ((*ctx)->federated_bundle_info().at("other.example").size(), 1u);
}

TEST_P(TlsSessionTest, ExpiredCertificateRejected) {
  TestCertificate expired = ValueOrDie(root_->Issue({.spiffe_id = kBackend,
                                                     .not_before_offset = -absl::Hours(48),
                                                     .not_after_offset = -absl::Hours(24)}));
  Pair pair = MakePair(ClientConfig(), ServerConfig(expired));
  pair.Handshake();
  EXPECT_EQ(pair.client->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.client->status().message(), HasSubstr("expired at"));
  EXPECT_THAT(pair.server->status().message(), HasSubstr("certificate expired"));
}

TEST_P(TlsSessionTest, ExpiredClientCertificateRejectedByServer) {
  TestCertificate expired = ValueOrDie(root_->Issue({.spiffe_id = kFrontend,
                                                     .not_before_offset = -absl::Hours(48),
                                                     .not_after_offset = -absl::Minutes(1)}));
  TlsContextConfig client = ClientConfig();
  client = PresentingCertificate(client, expired);
  Pair pair = MakePair(client, ServerConfig(*backend_, ClientCertificateMode::kRequire));
  pair.Handshake();
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.server->status().message(),
              HasSubstr(absl::StrCat("peer certificate ", kFrontend, " expired at")));
}

TEST_P(TlsSessionTest, VerificationUsesTheConfiguredClock) {
  FakeClock clock;
  // A certificate valid for one hour either side of the fake clock's time.
  const absl::Duration to_fake = clock.WallNow() - absl::Now();
  TestCertificate cert = ValueOrDie(root_->Issue({.spiffe_id = kBackend,
                                                  .not_before_offset = to_fake - absl::Hours(1),
                                                  .not_after_offset = to_fake + absl::Hours(1)}));
  TlsContextConfig client = ClientConfig();
  client.clock = &clock;
  Pair valid = MakePair(client, ServerConfig(cert));
  valid.Handshake();
  EXPECT_TRUE(valid.client->handshake_complete()) << valid.client->status();

  clock.Advance(std::chrono::hours(2));
  Pair expired = MakePair(client, ServerConfig(cert));
  expired.Handshake();
  EXPECT_EQ(expired.client->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.client->status().message(), HasSubstr("expired at"));
}

TEST_P(TlsSessionTest, MissingClientCertificateRejectedWhenRequired) {
  Pair pair = MakePair(ClientConfig(/*with_cert=*/false),
                       ServerConfig(*backend_, ClientCertificateMode::kRequire));
  pair.Handshake();
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("peer presented no certificate"));
  EXPECT_FALSE(pair.client->status().ok());
}

TEST_P(TlsSessionTest, RequestedClientCertificateIsOptional) {
  Pair anonymous =
      MakePair(ClientConfig(false), ServerConfig(*backend_, ClientCertificateMode::kRequest));
  anonymous.Handshake();
  ASSERT_TRUE(anonymous.server->handshake_complete()) << anonymous.server->status();
  EXPECT_FALSE(anonymous.server->peer_certificate_presented());

  Pair identified =
      MakePair(ClientConfig(true), ServerConfig(*backend_, ClientCertificateMode::kRequest));
  identified.Handshake();
  ASSERT_TRUE(identified.server->handshake_complete()) << identified.server->status();
  EXPECT_EQ(identified.server->peer_spiffe_id(), kFrontend);

  // ...but one that is presented must verify.
  TestCertificate stranger = ValueOrDie(other_root_->Issue({.spiffe_id = kFrontend}));
  TlsContextConfig client = ClientConfig();
  client = PresentingCertificate(client, stranger);
  Pair bad = MakePair(client, ServerConfig(*backend_, ClientCertificateMode::kRequest));
  bad.Handshake();
  EXPECT_THAT(bad.server->status().message(), HasSubstr("not issued by a trusted CA"));
}

TEST_P(TlsSessionTest, RequestedClientCertificateWithIdentityPolicyIsRequired) {
  TlsContextConfig server = ServerConfig(*backend_, ClientCertificateMode::kRequest);
  server.peer_identity = Ids({kFrontend});
  Pair pair = MakePair(ClientConfig(false), server);
  pair.Handshake();
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("no certificate"));
}

TEST_P(TlsSessionTest, RsaAndEcdsaServerCertificates) {
  for (const TestCertificate* cert : {backend_, backend_rsa_}) {
    TlsContextConfig client = ClientConfig(true);
    client.peer_identity = Ids({kBackend});
    Pair pair = MakePair(client, ServerConfig(*cert, ClientCertificateMode::kRequire));
    pair.Handshake();
    ASSERT_TRUE(pair.client->handshake_complete()) << pair.client->status();
    ASSERT_TRUE(pair.server->handshake_complete()) << pair.server->status();
    EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend);
    if (version() == TlsVersion::kTls12) {
      EXPECT_THAT(pair.client->cipher_name(),
                  HasSubstr(cert == backend_rsa_ ? "ECDHE-RSA" : "ECDHE-ECDSA"));
    }
    pair.Write(*pair.client, "ping");
    EXPECT_EQ(pair.server_received, "ping");
  }
}

TEST_P(TlsSessionTest, TwoRootsInTrustBundleBothVerify) {
  TestCertificate from_other = ValueOrDie(other_root_->Issue({.spiffe_id = kBackend}));
  for (const TestCertificate* cert : {backend_, &from_other}) {
    TlsContextConfig client = ClientConfig();
    client.trust_bundle_pem = absl::StrCat(root_->cert_pem(), other_root_->cert_pem());
    Pair pair = MakePair(client, ServerConfig(*cert));
    pair.Handshake();
    EXPECT_TRUE(pair.client->handshake_complete()) << pair.client->status();
    EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend);
  }
}

TEST_P(TlsSessionTest, IntermediateCaChainVerifies) {
  TestCa intermediate = ValueOrDie(root_->CreateIntermediate("mesh intermediate"));
  TestCertificate leaf = ValueOrDie(intermediate.Issue({.spiffe_id = kBackend}));
  Pair pair = MakePair(ClientConfig(), ServerConfig(leaf));
  pair.Handshake();
  EXPECT_TRUE(pair.client->handshake_complete()) << pair.client->status();
  EXPECT_EQ(pair.client->peer_spiffe_id(), kBackend);
}

TEST_P(TlsSessionTest, GarbageFromPeerFailsCleanly) {
  Pair pair = MakePair(ClientConfig(), ServerConfig(*backend_));
  std::string garbage(3000, '\x16');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 37);
  EXPECT_EQ(pair.server->FeedCiphertext(garbage), garbage.size());
  char buf[64];
  absl::StatusOr<size_t> n = pair.server->ReadPlaintext(absl::MakeSpan(buf));
  EXPECT_FALSE(n.ok());
  EXPECT_EQ(pair.server->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(pair.server->status().message(), HasSubstr("TLS handshake failed"));
  // Sticky, and further input is discarded.
  EXPECT_FALSE(pair.server->Handshake().ok());
  EXPECT_EQ(pair.server->FeedCiphertext("more"), 4u);
}

TEST_P(TlsSessionTest, ContextSwapKeepsOldSessionsOnOldContext) {
  // Rotation from one root to another: before, the server presents a root_ certificate; after,
  // an other_root_ one. The client trusts both during the rotation.
  TestCertificate rotated = ValueOrDie(other_root_->Issue({.spiffe_id = kBackend}));
  auto old_ctx = ValueOrDie(TlsContext::CreateServer(ServerConfig(*backend_)));
  auto new_ctx = ValueOrDie(TlsContext::CreateServer(ServerConfig(rotated)));
  TlsContextProvider provider(old_ctx);
  std::weak_ptr<const TlsContext> old_weak = old_ctx;
  old_ctx.reset();

  TlsContextConfig client_config = ClientConfig();
  client_config.trust_bundle_pem = absl::StrCat(root_->cert_pem(), other_root_->cert_pem());
  auto client_ctx = ValueOrDie(TlsContext::CreateClient(client_config));

  Pair before;
  before.client = ValueOrDie(TlsSession::Create(client_ctx));
  before.server = ValueOrDie(TlsSession::Create(provider.Current()));
  EXPECT_EQ(provider.generation(), 1u);
  provider.Update(new_ctx);
  EXPECT_EQ(provider.generation(), 2u);
  EXPECT_EQ(provider.Current(), new_ctx);
  EXPECT_FALSE(old_weak.expired()) << "the session keeps its context alive";

  before.Handshake();  // the handshake runs after the swap, still on the old context
  ASSERT_TRUE(before.client->handshake_complete()) << before.client->status();
  EXPECT_THAT(IssuerName(*before.client->peer_certificate()), HasSubstr("mesh root"));

  Pair after;
  after.client = ValueOrDie(TlsSession::Create(client_ctx));
  after.server = ValueOrDie(TlsSession::Create(provider.Current()));
  after.Handshake();
  ASSERT_TRUE(after.client->handshake_complete()) << after.client->status();
  EXPECT_THAT(IssuerName(*after.client->peer_certificate()), HasSubstr("other root"));

  before.Write(*before.client, "still here");
  EXPECT_EQ(before.server_received, "still here");
  before.server.reset();
  EXPECT_TRUE(old_weak.expired()) << "the old context goes with its last session";
}

// Mutual TLS between one client context and one server context, connection after connection,
// as a sidecar's pool reconnecting to the same peer does.
class Reconnects {
 public:
  Reconnects(std::shared_ptr<const TlsContext> client, std::shared_ptr<const TlsContext> server)
      : client_(std::move(client)), server_(std::move(server)) {}

  // One connection to `peer_key` (the server's address); tickets and data both ways are
  // exchanged so a TLS 1.3 client has received its tickets when this returns.
  Pair Connect(const std::string& peer_key, TlsSession::Options options = {}) {
    Pair pair;
    pair.client = ValueOrDie(TlsSession::Create(client_, std::move(options)));
    pair.server = ValueOrDie(TlsSession::Create(server_));
    pair.client->SetResumptionKey(peer_key);
    pair.Handshake();
    if (pair.client->handshake_complete() && pair.server->handshake_complete()) {
      pair.Write(*pair.server, "hello");
      pair.Write(*pair.client, "hello back");
    }
    return pair;
  }
  void set_server(std::shared_ptr<const TlsContext> server) { server_ = std::move(server); }

 private:
  std::shared_ptr<const TlsContext> client_;
  std::shared_ptr<const TlsContext> server_;
};

TEST_P(TlsSessionTest, ResumesWithTicketsAndStillChecksThePeer) {
  TlsContextConfig client_config = ClientConfig(/*with_cert=*/true);
  client_config.client_session_cache_size = 8;
  client_config.peer_identity = Ids({kBackend});
  TlsContextConfig server_config = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server_config.session_tickets = true;
  server_config.peer_identity = Ids({kFrontend});
  auto client_ctx = ValueOrDie(TlsContext::CreateClient(client_config));
  Reconnects connections(client_ctx, ValueOrDie(TlsContext::CreateServer(server_config)));

  Pair first = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(first.client->status().ok()) << first.client->status();
  ASSERT_TRUE(first.server->status().ok()) << first.server->status();
  EXPECT_FALSE(first.client->session_resumed());
  EXPECT_EQ(client_ctx->resumable_peers(), 1u);

  Pair second = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(second.client->status().ok()) << second.client->status();
  ASSERT_TRUE(second.server->status().ok()) << second.server->status();
  EXPECT_TRUE(second.client->session_resumed());
  EXPECT_TRUE(second.server->session_resumed());
  // A resumed session still knows who is at the other end.
  EXPECT_EQ(second.client->peer_spiffe_id(), kBackend);
  EXPECT_EQ(second.server->peer_spiffe_id(), kFrontend);
  EXPECT_EQ(second.server_received, "hello back");

  // Another address has no session to resume.
  Pair elsewhere = connections.Connect("10.0.0.2:8443");
  ASSERT_TRUE(elsewhere.client->handshake_complete()) << elsewhere.client->status();
  EXPECT_FALSE(elsewhere.client->session_resumed());

  // This connection expects another identity: no session is offered (sessions are kept per
  // identity policy), and the full handshake refuses the peer.
  Pair wrong = connections.Connect("10.0.0.1:8443", {.peer_identity = Ids({kFrontend})});
  EXPECT_FALSE(wrong.client->handshake_complete());
  EXPECT_THAT(std::string(wrong.client->status().message()), HasSubstr("is not allowed"));
  EXPECT_EQ(wrong.client->handshake_failure(), HandshakeFailure::kIdentityDenied);
  EXPECT_EQ(wrong.client->alert_sent(), SSL_AD_ACCESS_DENIED);
  EXPECT_EQ(wrong.client->refused_spiffe_id(), kBackend);

  // A rotated server (a new context, new ticket keys) cannot read old tickets: a full handshake.
  connections.set_server(ValueOrDie(TlsContext::CreateServer(server_config)));
  Pair rotated = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(rotated.client->handshake_complete()) << rotated.client->status();
  EXPECT_FALSE(rotated.client->session_resumed());
}

TEST_P(TlsSessionTest, ASessionIsOfferedOnlyToConnectionsExpectingTheSameIdentities) {
  // One client context shared by connections that expect different identities, as a sidecar's
  // clusters on one workload certificate do; the server satisfies both.
  TlsContextConfig client_config = ClientConfig(/*with_cert=*/true);
  client_config.client_session_cache_size = 8;
  TlsContextConfig server_config = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server_config.session_tickets = true;
  auto client_ctx = ValueOrDie(TlsContext::CreateClient(client_config));
  Reconnects connections(client_ctx, ValueOrDie(TlsContext::CreateServer(server_config)));
  const TlsSession::Options exact{.peer_identity = Ids({kBackend})};
  const TlsSession::Options domain{.peer_identity = Ids({}, {"cluster.local"})};

  ASSERT_TRUE(connections.Connect("10.0.0.1:8443", exact).client->handshake_complete());
  Pair again = connections.Connect("10.0.0.1:8443", exact);
  ASSERT_TRUE(again.client->handshake_complete()) << again.client->status();
  EXPECT_TRUE(again.client->session_resumed());
  // Same address, same SNI, other expectations: no session of the first is offered.
  Pair other = connections.Connect("10.0.0.1:8443", domain);
  ASSERT_TRUE(other.client->handshake_complete()) << other.client->status();
  EXPECT_FALSE(other.client->session_resumed());
  // Nor one of a connection without an identity of its own.
  Pair plain = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(plain.client->handshake_complete()) << plain.client->status();
  EXPECT_FALSE(plain.client->session_resumed());
}

TEST_P(TlsSessionTest, WithoutAClientCacheNothingResumes) {
  TlsContextConfig server_config = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server_config.session_tickets = true;
  auto client_ctx = ValueOrDie(TlsContext::CreateClient(ClientConfig(/*with_cert=*/true)));
  Reconnects connections(client_ctx, ValueOrDie(TlsContext::CreateServer(server_config)));
  ASSERT_TRUE(connections.Connect("10.0.0.1:8443").client->handshake_complete());
  Pair second = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(second.client->handshake_complete()) << second.client->status();
  EXPECT_FALSE(second.client->session_resumed());
  EXPECT_EQ(client_ctx->resumable_peers(), 0u);
}

// Wall time = now + a settable offset, for certificates issued at the real time.
class OffsetClock final : public Clock {
 public:
  MonotonicTime Now() const override { return RealClock().Now(); }
  absl::Time WallNow() const override { return absl::Now() + offset_; }
  void Advance(absl::Duration d) { offset_ += d; }

 private:
  absl::Duration offset_;
};

TEST_P(TlsSessionTest, VerifiedChainsAreRememberedButNotPastTheirExpiry) {
  OffsetClock clock;
  TlsContextConfig server_config = ServerConfig(*backend_, ClientCertificateMode::kRequire);
  server_config.clock = &clock;
  auto server_ctx = ValueOrDie(TlsContext::CreateServer(server_config));
  Reconnects connections(ValueOrDie(TlsContext::CreateClient(ClientConfig(/*with_cert=*/true))),
                         server_ctx);
  ASSERT_TRUE(connections.Connect("10.0.0.1:8443").server->handshake_complete());
  EXPECT_EQ(server_ctx->verified_chain_cache_hits(), 0u);
  Pair again = connections.Connect("10.0.0.1:8443");
  ASSERT_TRUE(again.server->handshake_complete()) << again.server->status();
  EXPECT_EQ(again.server->peer_spiffe_id(), kFrontend);
  EXPECT_EQ(server_ctx->verified_chain_cache_hits(), 1u);

  // The client's certificate is valid for 24 hours: a day later the same chain is refused.
  clock.Advance(absl::Hours(25));
  Pair late = connections.Connect("10.0.0.1:8443");
  EXPECT_FALSE(late.server->handshake_complete());
  EXPECT_THAT(std::string(late.server->status().message()), HasSubstr("expired at"));
  EXPECT_EQ(server_ctx->verified_chain_cache_hits(), 1u);

  // Size 0 turns the cache off.
  server_config.verified_chain_cache_size = 0;
  clock.Advance(-absl::Hours(25));
  auto uncached = ValueOrDie(TlsContext::CreateServer(server_config));
  connections.set_server(uncached);
  ASSERT_TRUE(connections.Connect("10.0.0.1:8443").server->handshake_complete());
  ASSERT_TRUE(connections.Connect("10.0.0.1:8443").server->handshake_complete());
  EXPECT_EQ(uncached->verified_chain_cache_hits(), 0u);
}

TEST(TlsVersionMismatchTest, NoCommonVersionFails) {
  TestCa root = ValueOrDie(TestCa::Create());
  TestCertificate cert = ValueOrDie(root.Issue({.spiffe_id = kBackend}));
  TlsContextConfig client{.trust_bundle_pem = root.cert_pem(),
                          .min_version = TlsVersion::kTls12,
                          .max_version = TlsVersion::kTls12};
  TlsContextConfig server{.certificate_chain_pem = cert.chain_pem,
                          .private_key_pem = cert.key_pem,
                          .min_version = TlsVersion::kTls13};
  Pair pair;
  pair.client = ValueOrDie(TlsSession::Create(ValueOrDie(TlsContext::CreateClient(client))));
  pair.server = ValueOrDie(TlsSession::Create(ValueOrDie(TlsContext::CreateServer(server))));
  pair.Handshake();
  EXPECT_THAT(pair.server->status().message(), HasSubstr("no TLS version in common"));
  EXPECT_THAT(pair.client->status().message(), HasSubstr("no TLS version in common"));
}

TEST(TlsSessionDefaultsTest, SessionTicketsCanBeEnabled) {
  TestCa root = ValueOrDie(TestCa::Create());
  TestCertificate cert = ValueOrDie(root.Issue({.spiffe_id = kBackend}));
  Pair pair;
  pair.client = ValueOrDie(TlsSession::Create(
      ValueOrDie(TlsContext::CreateClient({.trust_bundle_pem = root.cert_pem()}))));
  pair.server = ValueOrDie(TlsSession::Create(
      ValueOrDie(TlsContext::CreateServer({.certificate_chain_pem = cert.chain_pem,
                                           .private_key_pem = cert.key_pem,
                                           .session_tickets = true}))));
  pair.Handshake();
  pair.Write(*pair.server, "data after the ticket");
  EXPECT_EQ(pair.client_received, "data after the ticket");
  EXPECT_TRUE(pair.client->status().ok()) << pair.client->status();
}

TEST(TlsContextProviderTest, ConcurrentReadersSeeWholeContexts) {
  TestCa root = ValueOrDie(TestCa::Create());
  TestCertificate cert = ValueOrDie(root.Issue({.spiffe_id = kBackend}));
  TlsContextConfig config{.certificate_chain_pem = cert.chain_pem, .private_key_pem = cert.key_pem};
  std::vector<std::shared_ptr<const TlsContext>> contexts;
  for (int i = 0; i < 4; ++i) contexts.push_back(ValueOrDie(TlsContext::CreateServer(config)));
  TlsContextProvider provider(contexts[0]);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      auto session = TlsSession::Create(provider.Current());
      CHECK(session.ok()) << session.status();
    }
  });
  for (int i = 0; i < 2000; ++i) provider.Update(contexts[i % contexts.size()]);
  stop.store(true);
  reader.join();
  EXPECT_EQ(provider.generation(), 2001u);
}

TEST(TlsSessionDefaultsTest, DefaultsNegotiateTls13) {
  TestCa root = ValueOrDie(TestCa::Create());
  TestCertificate cert = ValueOrDie(root.Issue({.spiffe_id = kBackend}));
  Pair pair;
  pair.client = ValueOrDie(TlsSession::Create(
      ValueOrDie(TlsContext::CreateClient({.trust_bundle_pem = root.cert_pem()}))));
  pair.server = ValueOrDie(TlsSession::Create(ValueOrDie(TlsContext::CreateServer(
      {.certificate_chain_pem = cert.chain_pem, .private_key_pem = cert.key_pem}))));
  pair.Handshake();
  ASSERT_TRUE(pair.client->handshake_complete()) << pair.client->status();
  EXPECT_EQ(pair.client->protocol_version(), "TLSv1.3");
  EXPECT_EQ(pair.server->protocol_version(), "TLSv1.3");
}

}  // namespace
}  // namespace meshlet::tls

namespace meshlet::tls {
namespace {

class TlsContextConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TestCa(ValueOrDie(TestCa::Create()));
    leaf_ = new TestCertificate(ValueOrDie(root_->Issue({.spiffe_id = kBackend})));
  }
  static void TearDownTestSuite() {
    delete leaf_;
    delete root_;
  }
  static TlsContextConfig Server() {
    return {.certificate_chain_pem = leaf_->chain_pem, .private_key_pem = leaf_->key_pem};
  }
  static std::string ServerError(const TlsContextConfig& config) {
    return std::string(TlsContext::CreateServer(config).status().message());
  }
  static std::string ClientError(const TlsContextConfig& config) {
    return std::string(TlsContext::CreateClient(config).status().message());
  }
  static TestCa* root_;
  static TestCertificate* leaf_;
};
TestCa* TlsContextConfigTest::root_ = nullptr;
TestCertificate* TlsContextConfigTest::leaf_ = nullptr;

TEST_F(TlsContextConfigTest, ValidConfigsWork) {
  EXPECT_TRUE(TlsContext::CreateServer(Server()).ok());
  auto client = TlsContext::CreateClient({.trust_bundle_pem = root_->cert_pem()});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_FALSE((*client)->is_server());
  auto server = TlsContext::CreateServer(Server());
  ASSERT_EQ((*server)->certificate_chain_info().size(), 1u);
  EXPECT_EQ((*server)->certificate_chain_info()[0].spiffe_id, kBackend);
}

TEST_F(TlsContextConfigTest, ReportsConfigurationErrors) {
  EXPECT_THAT(ServerError({}), HasSubstr("TLS server context: a server needs a certificate"));
  EXPECT_THAT(ClientError({}), HasSubstr("client needs a trust bundle"));

  TlsContextConfig config = Server();
  config.private_key_pem.clear();
  EXPECT_THAT(ServerError(config), HasSubstr("must be given together"));

  config = Server();
  config.private_key_pem = ValueOrDie(root_->Issue({.spiffe_id = kFrontend})).key_pem;
  EXPECT_THAT(ServerError(config), HasSubstr("does not match"));

  config = Server();
  config.min_version = TlsVersion::kTls13;
  config.max_version = TlsVersion::kTls12;
  EXPECT_THAT(ServerError(config), HasSubstr("min_version is above max_version"));

  config = Server();
  config.client_certificate = ClientCertificateMode::kRequire;
  EXPECT_THAT(ServerError(config), HasSubstr("needs a trust bundle"));

  config = Server();
  config.peer_identity = SpiffeIdMatcher();
  EXPECT_THAT(ServerError(config), HasSubstr("peer_identity needs client_certificate"));

  config = Server();
  config.cipher_list = "RC4-MD5:NOT-A-CIPHER";
  EXPECT_THAT(ServerError(config), HasSubstr("cipher list"));

  config = Server();
  config.curves = "P-192";
  EXPECT_THAT(ServerError(config), HasSubstr("curves"));

  config = Server();
  config.alpn_protocols = {""};
  EXPECT_THAT(ServerError(config), HasSubstr("ALPN protocol"));

  config = Server();
  config.certificate_chain_pem = root_->cert_pem();
  config.private_key_pem = root_->key_pem();
  EXPECT_THAT(ServerError(config), HasSubstr("is a CA certificate"));

  EXPECT_THAT(ClientError({.trust_bundle_pem = leaf_->chain_pem}),
              HasSubstr("trust bundle certificate #1"));
  EXPECT_THAT(ClientError({.trust_bundle_pem = "junk"}), HasSubstr("no PEM CERTIFICATE"));
  EXPECT_THAT(ClientError({.trust_bundle_pem = root_->cert_pem(),
                           .client_certificate = ClientCertificateMode::kRequire}),
              HasSubstr("server setting"));
}

TEST_F(TlsContextConfigTest, SessionOptionsValidated) {
  auto server = ValueOrDie(TlsContext::CreateServer(Server()));
  EXPECT_FALSE(TlsSession::Create(nullptr).ok());
  EXPECT_FALSE(TlsSession::Create(server, {.peer_identity = SpiffeIdMatcher()}).ok());
}

}  // namespace
}  // namespace meshlet::tls

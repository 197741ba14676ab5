// CertificateService over a real gRPC connection on 127.0.0.1 (the grpc client runtime against
// the grpc server runtime, over mTLS the way sidecars reach port 15012): join-token issuance,
// renewal with the issued certificate, Kubernetes attestation through a scripted TokenReviewer,
// and every refusal.

#include "control-plane/ca/certificate_service.h"

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "common/tls/certificate.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "control-plane/ca/test_csr.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"
#include "xds/ca.pb.h"

namespace meshlet::controlplane::ca {
namespace {

using http::grpc::StatusCode;
using meshlet::ca::v1::CreateCertificateRequest;
using meshlet::ca::v1::CreateCertificateResponse;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/default/sa/frontend";

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/casvc.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

// Answers every review with a canned response, on the loop thread (as a real client would).
class ScriptedReviewer : public identity::TokenReviewer {
 public:
  explicit ScriptedReviewer(event::Loop& loop) : loop_(loop) {}
  void Review(const std::string& request_json,
              std::function<void(absl::StatusOr<std::string>)> done) override {
    last_request = request_json;
    loop_.Post([done = std::move(done), answer = answer] { done(answer); });
  }
  absl::StatusOr<std::string> answer = absl::UnavailableError("no answer scripted");
  std::string last_request;

 private:
  event::Loop& loop_;
};

struct Result {
  std::optional<StatusCode> code;
  std::string message;
  CreateCertificateResponse response;
};

class CertificateServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = TempDir();
    auto authority = CertificateAuthority::LoadOrGenerateRoot(absl::StrCat(dir, "/ca"), {});
    ASSERT_TRUE(authority.ok()) << authority.status();
    authority_ = std::move(*authority);
    auto store = FileStore::Open(absl::StrCat(dir, "/store"));
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    tokens_ = std::make_unique<identity::JoinTokens>(*store_, RealClock::Get(), stats_);
    reviewer_ = std::make_unique<ScriptedReviewer>(loop_);
    service_ =
        std::make_unique<CertificateService>(authority_, tokens_.get(), reviewer_.get(), stats_);

    // The control plane's own serving certificate, from the same CA.
    auto server_csr = testing::MakeCsr();
    ASSERT_TRUE(server_csr.ok());
    auto server_cert = authority_->Sign(
        server_csr->csr_pem,
        *tls::SpiffeId::Parse("spiffe://cluster.local/ns/meshlet-system/sa/control-plane"),
        absl::Hours(1));
    ASSERT_TRUE(server_cert.ok());
    auto context =
        tls::TlsContext::CreateServer({.certificate_chain_pem = server_cert->chain_pem,
                                       .private_key_pem = server_csr->key_pem,
                                       .trust_bundle_pem = authority_->trust_bundle_pem(),
                                       .alpn_protocols = {"h2"},
                                       .require_alpn_match = true,
                                       .client_certificate = tls::ClientCertificateMode::kRequest});
    ASSERT_TRUE(context.ok()) << context.status();
    server_ = std::make_unique<http::grpc::Server>(
        loop_, http::grpc::ServerOptions{.transport_factory = tls::TlsTransport::Factory(
                                             std::make_shared<tls::TlsContextProvider>(*context))});
    ASSERT_TRUE(service_->Register(*server_).ok());
    ASSERT_TRUE(server_->Start(*net::Address::FromIp("127.0.0.1", 0)).ok());
  }

  void TearDown() override {
    server_.reset();
    loop_.RunUntilIdle();
  }

  // A client connection, optionally presenting a certificate.
  std::unique_ptr<http::grpc::Channel> Connect(const std::string& chain_pem = "",
                                               const std::string& key_pem = "") {
    auto context =
        tls::TlsContext::CreateClient({.certificate_chain_pem = chain_pem,
                                       .private_key_pem = key_pem,
                                       .trust_bundle_pem = authority_->trust_bundle_pem(),
                                       .alpn_protocols = {"h2"}});
    EXPECT_TRUE(context.ok()) << context.status();
    return std::make_unique<http::grpc::Channel>(
        loop_, server_->address(),
        http::grpc::ChannelOptions{.transport_factory = tls::TlsTransport::Factory(
                                       std::make_shared<tls::TlsContextProvider>(*context))});
  }

  Result Call(http::grpc::Channel& channel, const CreateCertificateRequest& request) {
    Result result;
    channel.Unary(kCreateCertificateMethod, request.SerializeAsString(),
                  {.timeout = std::chrono::seconds(5)},
                  [&](StatusCode code, const std::string& message, std::string response) {
                    result.code = code;
                    result.message = message;
                    EXPECT_TRUE(response.empty() || result.response.ParseFromString(response));
                  });
    EXPECT_TRUE(loop_.RunUntil([&] { return result.code.has_value(); }, std::chrono::seconds(10)));
    return result;
  }

  uint64_t Counter(const std::string& name, const LabelSet& labels) {
    const auto snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  std::string JoinToken(const std::string& ns, const std::string& sa, bool single_use = false) {
    auto created =
        tokens_->Create({.namespace_ = ns, .service_account = sa, .single_use = single_use});
    EXPECT_TRUE(created.ok());
    return created->token;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  std::shared_ptr<CertificateAuthority> authority_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<identity::JoinTokens> tokens_;
  std::unique_ptr<ScriptedReviewer> reviewer_;
  std::unique_ptr<CertificateService> service_;
  std::unique_ptr<http::grpc::Server> server_;
};

TEST_F(CertificateServiceTest, JoinTokenThenRenewalWithTheIssuedCertificate) {
  auto csr = testing::MakeCsr({.uri_sans = {"spiffe://cluster.local/ns/kube-system/sa/admin"}});
  ASSERT_TRUE(csr.ok());
  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  request.set_ttl_seconds(600);
  request.set_spiffe_id(kFrontend);
  request.set_join_token(JoinToken("default", "frontend", /*single_use=*/true));

  auto channel = Connect();
  Result first = Call(*channel, request);
  ASSERT_EQ(first.code, StatusCode::kOk) << first.message;
  EXPECT_EQ(first.response.spiffe_id(), kFrontend);
  EXPECT_EQ(first.response.trust_bundle_pem(), authority_->trust_bundle_pem());
  EXPECT_EQ(first.response.not_after_unix_seconds() - absl::ToUnixSeconds(absl::Now()), 600);
  auto chain = tls::ParsePemCertificates(first.response.certificate_chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(tls::UriSans(*chain->front()), std::vector<std::string>{kFrontend});
  EXPECT_EQ(tls::SerialNumberHex(*chain->front()), first.response.serial_number());
  EXPECT_EQ(Counter("meshlet_ca_certificates_issued_total", {{"attestation", "join_token"}}), 1u);

  // The single-use token is spent.
  Result reused = Call(*channel, request);
  EXPECT_EQ(reused.code, StatusCode::kPermissionDenied);

  // Renewal: no token, the connection's client certificate is the credential.
  auto renewing = Connect(first.response.certificate_chain_pem(), csr->key_pem);
  auto next_csr = testing::MakeCsr();
  ASSERT_TRUE(next_csr.ok());
  CreateCertificateRequest renew;
  renew.set_csr_pem(next_csr->csr_pem);
  Result renewed = Call(*renewing, renew);
  ASSERT_EQ(renewed.code, StatusCode::kOk) << renewed.message;
  EXPECT_EQ(renewed.response.spiffe_id(), kFrontend);
  EXPECT_NE(renewed.response.serial_number(), first.response.serial_number());
  EXPECT_EQ(Counter("meshlet_ca_certificates_issued_total", {{"attestation", "certificate"}}), 1u);

  // A renewal cannot switch identity.
  renew.set_spiffe_id("spiffe://cluster.local/ns/default/sa/backend");
  Result switched = Call(*renewing, renew);
  EXPECT_EQ(switched.code, StatusCode::kPermissionDenied);
  EXPECT_NE(switched.message.find("proves ns/default/sa/frontend, not the requested "
                                  "ns/default/sa/backend"),
            std::string::npos)
      << switched.message;
}

TEST_F(CertificateServiceTest, RevokedJoinTokenEndsTheRenewalsThatDescendFromIt) {
  auto csr = testing::MakeCsr();
  ASSERT_TRUE(csr.ok());
  const std::string token = JoinToken("default", "frontend", /*single_use=*/true);
  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  request.set_join_token(token);
  auto channel = Connect();
  Result first = Call(*channel, request);
  ASSERT_EQ(first.code, StatusCode::kOk) << first.message;
  auto chain = tls::ParsePemCertificates(first.response.certificate_chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(tls::AttestationOf(*chain->front()),
            absl::StrCat("join-token:", identity::JoinTokens::IdOf(token)));

  // A renewal keeps the lineage...
  CreateCertificateRequest renew;
  renew.set_csr_pem(csr->csr_pem);
  auto renewing = Connect(first.response.certificate_chain_pem(), csr->key_pem);
  Result renewed = Call(*renewing, renew);
  ASSERT_EQ(renewed.code, StatusCode::kOk) << renewed.message;
  auto renewed_chain = tls::ParsePemCertificates(renewed.response.certificate_chain_pem());
  ASSERT_TRUE(renewed_chain.ok());
  EXPECT_EQ(tls::AttestationOf(*renewed_chain->front()), tls::AttestationOf(*chain->front()));

  // ...and once the (already used) token is revoked, neither certificate renews.
  EXPECT_TRUE(absl::IsNotFound(tokens_->Revoke(identity::JoinTokens::IdOf(token))));
  for (const Result* held : {&first, &renewed}) {
    auto again = Connect(held->response.certificate_chain_pem(), csr->key_pem);
    Result refused = Call(*again, renew);
    EXPECT_EQ(refused.code, StatusCode::kPermissionDenied);
    EXPECT_NE(refused.message.find("was revoked"), std::string::npos) << refused.message;
  }
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "revoked"}}), 2u);

  // A certificate that names no attestation (issued before they carried one) still renews, and
  // is counted apart.
  auto legacy = authority_->Sign(csr->csr_pem, *tls::SpiffeId::Parse(kFrontend), absl::Hours(1));
  ASSERT_TRUE(legacy.ok());
  auto old_channel = Connect(legacy->chain_pem, csr->key_pem);
  EXPECT_EQ(Call(*old_channel, renew).code, StatusCode::kOk);
  EXPECT_EQ(
      Counter("meshlet_ca_certificates_issued_total", {{"attestation", "certificate_unattested"}}),
      1u);
}

TEST_F(CertificateServiceTest, TokenForAnotherIdentityIsRefusedLoggedAndCounted) {
  auto csr = testing::MakeCsr();
  ASSERT_TRUE(csr.ok());
  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  request.set_spiffe_id("spiffe://cluster.local/ns/payments/sa/ledger");
  request.set_join_token(JoinToken("default", "frontend"));
  auto channel = Connect();
  Result result = Call(*channel, request);
  EXPECT_EQ(result.code, StatusCode::kPermissionDenied);
  EXPECT_NE(result.message.find("not the requested ns/payments/sa/ledger"), std::string::npos)
      << result.message;
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "identity_mismatch"}}), 1u);
  EXPECT_EQ(Counter("meshlet_ca_certificates_issued_total", {{"attestation", "join_token"}}), 0u);
}

TEST_F(CertificateServiceTest, RefusesRequestsWithoutAValidCredentialOrCsr) {
  auto csr = testing::MakeCsr();
  auto rsa = testing::MakeCsr({.key_type = testing::CsrKeyType::kRsa2048});
  ASSERT_TRUE(csr.ok() && rsa.ok());
  auto channel = Connect();

  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  Result none = Call(*channel, request);
  EXPECT_EQ(none.code, StatusCode::kUnauthenticated);
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "no_credential"}}), 1u);

  request.set_join_token("mjt1.0123456789abcdef.bm9wZQ");
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kPermissionDenied);
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "attestation_failed"}}), 1u);

  request.set_join_token(JoinToken("default", "frontend"));
  request.set_csr_pem(rsa->csr_pem);
  Result bad_key = Call(*channel, request);
  EXPECT_EQ(bad_key.code, StatusCode::kInvalidArgument);
  EXPECT_NE(bad_key.message.find("P-256"), std::string::npos) << bad_key.message;

  request.set_csr_pem(csr->csr_pem);
  request.set_spiffe_id("spiffe://elsewhere.example/ns/default/sa/frontend");
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kInvalidArgument);
  request.set_spiffe_id("spiffe://cluster.local/not/a/workload");
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kInvalidArgument);
  request.clear_spiffe_id();
  request.set_ttl_seconds(-1);
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kInvalidArgument);
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "invalid_request"}}), 4u);
}

TEST_F(CertificateServiceTest, KubernetesServiceAccountToken) {
  const int64_t exp = absl::ToUnixSeconds(absl::Now()) + 3600;
  std::string payload;
  absl::WebSafeBase64Escape(
      absl::StrCat(
          R"({"aud":["meshlet"],"exp":)", exp,
          R"(,"kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"cart"},)"
          R"("pod":{"name":"cart-5f7c9-abcde","uid":"7d6c1c1e-0d3b-4a8e-9f5e-3b2f1a0c9d8e"}},)"
          R"("sub":"system:serviceaccount:shop:cart"})"),
      &payload);
  const std::string jwt = absl::StrCat("eyJhbGciOiJSUzI1NiJ9.", payload, ".c2ln");
  reviewer_->answer =
      std::string(R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","status":{)"
                  R"("authenticated":true,"user":{"username":"system:serviceaccount:shop:cart"},)"
                  R"("audiences":["meshlet"]}})");
  auto csr = testing::MakeCsr();
  ASSERT_TRUE(csr.ok());
  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  request.set_kubernetes_token(jwt);
  auto channel = Connect();
  Result ok = Call(*channel, request);
  ASSERT_EQ(ok.code, StatusCode::kOk) << ok.message;
  EXPECT_EQ(ok.response.spiffe_id(), "spiffe://cluster.local/ns/shop/sa/cart");
  EXPECT_NE(reviewer_->last_request.find(R"("audiences":["meshlet"])"), std::string::npos);
  // The certificate names the pod the token is bound to.
  auto chain = tls::ParsePemCertificates(ok.response.certificate_chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(tls::AttestationOf(*chain->front()),
            "kubernetes:shop/cart-5f7c9-abcde/7d6c1c1e-0d3b-4a8e-9f5e-3b2f1a0c9d8e");

  // Renewing it with the certificate alone is refused: only a token of the pod shows the pod is
  // still there.
  {
    auto renewing = Connect(ok.response.certificate_chain_pem(), csr->key_pem);
    CreateCertificateRequest renew;
    renew.set_csr_pem(csr->csr_pem);
    Result refused = Call(*renewing, renew);
    EXPECT_EQ(refused.code, StatusCode::kPermissionDenied);
    EXPECT_NE(refused.message.find("renew with the pod's service-account token"), std::string::npos)
        << refused.message;
    EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "renewal_needs_token"}}),
              1u);
  }

  // A token bound to no pod buys nothing.
  {
    std::string unbound_payload;
    absl::WebSafeBase64Escape(
        absl::StrCat(R"({"aud":["meshlet"],"exp":)", exp,
                     R"(,"kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"cart"}},)"
                     R"("sub":"system:serviceaccount:shop:cart"})"),
        &unbound_payload);
    CreateCertificateRequest unbound = request;
    unbound.set_kubernetes_token(absl::StrCat("eyJhbGciOiJSUzI1NiJ9.", unbound_payload, ".c2ln"));
    Result refused = Call(*channel, unbound);
    EXPECT_EQ(refused.code, StatusCode::kPermissionDenied);
    EXPECT_NE(refused.message.find("not bound to a pod"), std::string::npos) << refused.message;
  }

  // Asking for another service account with this token.
  request.set_spiffe_id("spiffe://cluster.local/ns/shop/sa/admin");
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kPermissionDenied);
  EXPECT_EQ(Counter("meshlet_ca_requests_refused_total", {{"reason", "identity_mismatch"}}), 1u);

  // The API server says no.
  request.clear_spiffe_id();
  reviewer_->answer =
      std::string(R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","status":{)"
                  R"("authenticated":false,"error":"token has been invalidated"}})");
  Result denied = Call(*channel, request);
  EXPECT_EQ(denied.code, StatusCode::kPermissionDenied);
  EXPECT_NE(denied.message.find("invalidated"), std::string::npos) << denied.message;
  // The API server is unreachable.
  reviewer_->answer = absl::UnavailableError("connection refused");
  EXPECT_EQ(Call(*channel, request).code, StatusCode::kUnavailable);
}

TEST_F(CertificateServiceTest, UnconfiguredAttestationIsRefused) {
  CertificateService bare(authority_, nullptr, nullptr, stats_);
  http::grpc::Server plain(loop_);
  ASSERT_TRUE(bare.Register(plain).ok());
  ASSERT_TRUE(plain.Start(*net::Address::FromIp("127.0.0.1", 0)).ok());
  http::grpc::Channel channel(loop_, plain.address());
  auto csr = testing::MakeCsr();
  ASSERT_TRUE(csr.ok());
  CreateCertificateRequest request;
  request.set_csr_pem(csr->csr_pem);
  request.set_kubernetes_token("a.b.c");
  EXPECT_EQ(Call(channel, request).code, StatusCode::kFailedPrecondition);
  request.set_join_token("mjt1.0123456789abcdef.x");
  EXPECT_EQ(Call(channel, request).code, StatusCode::kFailedPrecondition);
  // Plaintext: no certificate to renew with.
  request.clear_join_token();
  EXPECT_EQ(Call(channel, request).code, StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace meshlet::controlplane::ca

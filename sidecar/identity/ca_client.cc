#include "sidecar/identity/ca_client.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/http/grpc/status.h"
#include "common/tls/certificate.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "xds/ca.pb.h"

namespace meshlet::sidecar::identity {

namespace {
constexpr char kMethod[] = "/meshlet.ca.v1.CertificateService/CreateCertificate";
}  // namespace

GrpcCertificateSigner::GrpcCertificateSigner(event::Loop& loop, CaClientOptions options)
    : loop_(loop), options_(std::move(options)) {
  UseChannel(options_.transport_factory);
}

GrpcCertificateSigner::~GrpcCertificateSigner() = default;

void GrpcCertificateSigner::UseChannel(net::TransportFactory transport_factory) {
  if (channel_ != nullptr) {
    // A request may be completing on the old channel's stack: release it from the loop later.
    loop_.Post([old = std::move(channel_)] {});
  }
  transport_factory_ = std::move(transport_factory);
  channel_ = std::make_shared<http::grpc::Channel>(
      loop_, options_.server_addresses[server_index_],
      http::grpc::ChannelOptions{.transport_factory = transport_factory_,
                                 .authority = options_.authority});
}

void GrpcCertificateSigner::SetClientCertificate(std::string certificate_chain_pem,
                                                 std::string private_key_pem,
                                                 absl::Time not_after) {
  client_chain_pem_ = std::move(certificate_chain_pem);
  client_key_pem_ = std::move(private_key_pem);
  client_not_after_ = not_after;
  channel_has_client_certificate_ = false;  // rebuilt before the next request
  certificate_refused_ = false;
}

void GrpcCertificateSigner::SetPushedRoots(std::string trust_bundle_pem) {
  if (trust_bundle_pem == pushed_roots_pem_) return;
  pushed_roots_pem_ = std::move(trust_bundle_pem);
  channel_stale_ = true;
}

bool GrpcCertificateSigner::RenewWithCertificate() const {
  if (!options_.tls_config.has_value() || client_chain_pem_.empty()) return false;
  // A pod's certificate is renewed with the pod's own token, which the kubelet keeps fresh: the
  // CA renews it only while the pod exists, which a certificate cannot show.
  if (!options_.kubernetes_token_file.empty()) return false;
  const bool has_token = !options_.join_token.empty() || !options_.kubernetes_token_file.empty();
  // An expired certificate fails the handshake; keep a margin for the request itself.
  if (absl::Now() + absl::Seconds(1) >= client_not_after_) return !has_token;
  return !(certificate_refused_ && has_token);
}

void GrpcCertificateSigner::RequestCertificate(
    const std::string& csr_pem, const tls::SpiffeId& identity, absl::Duration ttl,
    std::function<void(absl::StatusOr<SignedCertificate>)> done) {
  meshlet::ca::v1::CreateCertificateRequest request;
  request.set_csr_pem(csr_pem);
  request.set_ttl_seconds(absl::ToInt64Seconds(ttl));
  request.set_spiffe_id(identity.ToString());
  const bool with_certificate = RenewWithCertificate();
  if ((with_certificate != channel_has_client_certificate_ || channel_stale_) &&
      options_.tls_config.has_value()) {
    tls::TlsContextConfig config = *options_.tls_config;
    if (!pushed_roots_pem_.empty()) {
      absl::StrAppend(&config.trust_bundle_pem, "\n", pushed_roots_pem_);
    }
    if (with_certificate) {
      config.certificate_chain_pem = client_chain_pem_;
      config.private_key_pem = client_key_pem_;
    }
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateClient(config);
    if (!context.ok()) {
      loop_.Post([done = std::move(done), status = context.status()] {
        done(absl::Status(status.code(), absl::StrCat("CA channel: ", status.message())));
      });
      return;
    }
    UseChannel(tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context)));
    channel_has_client_certificate_ = with_certificate;
    channel_stale_ = false;
  }
  if (with_certificate) {
    // Renewal: the certificate on the connection is the credential.
  } else if (!options_.join_token.empty()) {
    request.set_join_token(options_.join_token);
  } else if (!options_.kubernetes_token_file.empty()) {
    absl::StatusOr<std::string> token = tls::ReadSmallFile(options_.kubernetes_token_file);
    if (!token.ok()) {
      loop_.Post([done = std::move(done), status = token.status()] { done(status); });
      return;
    }
    request.set_kubernetes_token(std::string(absl::StripAsciiWhitespace(*token)));
  }
  channel_->Unary(
      kMethod, request.SerializeAsString(), {.timeout = options_.timeout},
      [this, with_certificate, done = std::move(done)](
          http::grpc::StatusCode code, const std::string& message, std::string response_bytes) {
        // After a renewal with the certificate failed, one attempt with the token; then the
        // certificate again.
        certificate_refused_ = with_certificate && code != http::grpc::StatusCode::kOk;
        if ((code == http::grpc::StatusCode::kUnavailable ||
             code == http::grpc::StatusCode::kDeadlineExceeded) &&
            options_.server_addresses.size() > 1) {
          // That replica may be gone: the next request (the caller retries) goes to another.
          server_index_ = (server_index_ + 1) % options_.server_addresses.size();
          UseChannel(transport_factory_);
        }
        if (code != http::grpc::StatusCode::kOk) {
          // gRPC and absl share the numbering.
          done(absl::Status(static_cast<absl::StatusCode>(static_cast<int>(code)),
                            absl::StrCat("CA: ", http::grpc::StatusCodeName(code), ": ", message)));
          return;
        }
        meshlet::ca::v1::CreateCertificateResponse response;
        if (!response.ParseFromString(response_bytes)) {
          done(absl::InternalError("CA: the response does not parse"));
          return;
        }
        done(SignedCertificate{
            .certificate_chain_pem = response.certificate_chain_pem(),
            .trust_bundle_pem = response.trust_bundle_pem(),
            .serial_hex = response.serial_number(),
            .not_after = absl::FromUnixSeconds(response.not_after_unix_seconds())});
      });
}

}  // namespace meshlet::sidecar::identity

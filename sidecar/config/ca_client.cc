#include "sidecar/config/ca_client.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/http/grpc/status.h"
#include "common/tls/certificate.h"
#include "xds/ca.pb.h"

namespace meshlet::sidecar::config {

namespace {
constexpr char kMethod[] = "/meshlet.ca.v1.CertificateService/CreateCertificate";
}  // namespace

GrpcCertificateSigner::GrpcCertificateSigner(event::Loop& loop, CaClientOptions options)
    : loop_(loop), options_(std::move(options)) {
  channel_ = std::make_unique<http::grpc::Channel>(
      loop_, options_.server_address,
      http::grpc::ChannelOptions{.transport_factory = options_.transport_factory,
                                 .authority = options_.authority});
}

GrpcCertificateSigner::~GrpcCertificateSigner() = default;

void GrpcCertificateSigner::RequestCertificate(
    const std::string& csr_pem, const tls::SpiffeId& identity, absl::Duration ttl,
    std::function<void(absl::StatusOr<identity::SignedCertificate>)> done) {
  meshlet::ca::v1::CreateCertificateRequest request;
  request.set_csr_pem(csr_pem);
  request.set_ttl_seconds(absl::ToInt64Seconds(ttl));
  request.set_spiffe_id(identity.ToString());
  if (!options_.join_token.empty()) {
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
      [done = std::move(done)](http::grpc::StatusCode code, const std::string& message,
                               std::string response_bytes) {
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
        done(identity::SignedCertificate{
            .certificate_chain_pem = response.certificate_chain_pem(),
            .trust_bundle_pem = response.trust_bundle_pem(),
            .serial_hex = response.serial_number(),
            .not_after = absl::FromUnixSeconds(response.not_after_unix_seconds())});
      });
}

}  // namespace meshlet::sidecar::config

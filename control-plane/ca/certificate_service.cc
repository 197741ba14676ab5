#include "control-plane/ca/certificate_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::ca {
namespace {

using http::grpc::ServerCall;
using http::grpc::StatusCode;
using meshlet::ca::v1::CreateCertificateRequest;
using meshlet::ca::v1::CreateCertificateResponse;

// absl and gRPC share the numbering.
StatusCode ToGrpc(absl::StatusCode code) { return static_cast<StatusCode>(static_cast<int>(code)); }

}  // namespace

CertificateService::CertificateService(std::shared_ptr<const CertificateAuthority> authority,
                                       identity::JoinTokens* join_tokens,
                                       identity::TokenReviewer* token_reviewer,
                                       StatsRegistry& stats, const Clock& clock,
                                       CertificateServiceOptions options)
    : authority_(std::move(authority)),
      join_tokens_(join_tokens),
      token_reviewer_(token_reviewer),
      stats_(stats),
      clock_(clock),
      options_(std::move(options)) {
  CHECK(authority_ != nullptr);
}

absl::string_view CertificateService::AttestationName(Attestation attestation) {
  switch (attestation) {
    case Attestation::kJoinToken:
      return "join_token";
    case Attestation::kKubernetes:
      return "kubernetes";
    case Attestation::kCertificate:
      return "certificate";
  }
  return "unknown";
}

void CertificateService::SetAuthority(std::shared_ptr<const CertificateAuthority> authority) {
  CHECK(authority != nullptr);
  authority_ = std::move(authority);
}

absl::Status CertificateService::Register(http::grpc::Server& server) {
  return server.RegisterMethod(kCreateCertificateMethod, [this](std::shared_ptr<ServerCall> call) {
    call->OnUnaryRequest<CreateCertificateRequest>(
        [this, call](std::optional<CreateCertificateRequest> request) {
          if (!request.has_value()) {
            Refuse(call, "invalid_request",
                   absl::InvalidArgumentError("no CreateCertificateRequest was sent"));
            return;
          }
          Handle(call, *request);
        });
  });
}

void CertificateService::Refuse(const std::shared_ptr<ServerCall>& call, absl::string_view reason,
                                const absl::Status& status) {
  auto counter = stats_.shared_shard().RegisterCounter(
      "meshlet_ca_requests_refused_total",
      "Certificate requests refused, by reason (no_credential, attestation_failed, "
      "identity_mismatch, invalid_request, not_configured, store_busy, internal).",
      {{"reason", std::string(reason)}});
  if (counter.ok()) counter->Inc();
  LOG(WARN) << "certificate request from " << call->peer_address().ToString() << " refused ("
            << reason << "): " << status.message();
  call->Finish(ToGrpc(status.code()), status.message());
}

absl::StatusOr<identity::WorkloadIdentity> CertificateService::IdentityFromSpiffeId(
    const tls::SpiffeId& id) const {
  if (id.trust_domain() != authority_->options().trust_domain) {
    return absl::PermissionDeniedError(absl::StrCat(id.ToString(), " is not in trust domain ",
                                                    authority_->options().trust_domain));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(id.path(), '/');
  // "/ns/<ns>/sa/<sa>" splits into "", "ns", <ns>, "sa", <sa>.
  if (parts.size() != 5 || parts[1] != "ns" || parts[3] != "sa") {
    return absl::InvalidArgumentError(
        absl::StrCat(id.ToString(), " is not a workload id (spiffe://<td>/ns/<ns>/sa/<sa>)"));
  }
  identity::WorkloadIdentity identity{std::string(parts[2]), std::string(parts[4])};
  if (absl::Status valid = identity::ValidateWorkloadIdentity(identity); !valid.ok()) {
    return valid;
  }
  return identity;
}

void CertificateService::Handle(const std::shared_ptr<ServerCall>& call,
                                const CreateCertificateRequest& request) {
  if (request.csr_pem().empty()) {
    Refuse(call, "invalid_request", absl::InvalidArgumentError("csr_pem: must not be empty"));
    return;
  }
  if (request.ttl_seconds() < 0) {
    Refuse(call, "invalid_request", absl::InvalidArgumentError("ttl_seconds: must be >= 0"));
    return;
  }
  std::optional<identity::WorkloadIdentity> requested;
  if (!request.spiffe_id().empty()) {
    absl::StatusOr<tls::SpiffeId> id = tls::SpiffeId::Parse(request.spiffe_id());
    absl::StatusOr<identity::WorkloadIdentity> workload =
        id.ok() ? IdentityFromSpiffeId(*id)
                : absl::StatusOr<identity::WorkloadIdentity>(id.status());
    if (!workload.ok()) {
      Refuse(call, "invalid_request",
             absl::InvalidArgumentError(absl::StrCat("spiffe_id: ", workload.status().message())));
      return;
    }
    requested = *workload;
  }

  switch (request.credential_case()) {
    case CreateCertificateRequest::kJoinToken: {
      if (join_tokens_ == nullptr) {
        Refuse(call, "not_configured",
               absl::FailedPreconditionError("join-token attestation is not configured"));
        return;
      }
      auto redeem = [tokens = join_tokens_, token = request.join_token(), requested] {
        return tokens->Redeem(token, requested.has_value() ? &*requested : nullptr);
      };
      if (options_.store_worker == nullptr) {
        Complete(call, request, requested, Attestation::kJoinToken, redeem());
        return;
      }
      if (!options_.store_worker->Run<absl::StatusOr<identity::WorkloadIdentity>>(
              std::move(redeem), [this, alive = std::weak_ptr<bool>(alive_), call, request,
                                  requested](absl::StatusOr<identity::WorkloadIdentity> attested) {
                if (alive.expired() || call->ended()) return;
                Complete(call, request, requested, Attestation::kJoinToken, std::move(attested));
              })) {
        Refuse(call, "store_busy",
               absl::UnavailableError("the control plane's store is slow to answer; retry"));
      }
      return;
    }
    case CreateCertificateRequest::kKubernetesToken: {
      if (token_reviewer_ == nullptr) {
        Refuse(
            call, "not_configured",
            absl::FailedPreconditionError(
                "Kubernetes service-account attestation is not configured (the control plane needs "
                "--kubernetes-api, or to run in a pod)"));
        return;
      }
      const std::string token = request.kubernetes_token();
      token_reviewer_->Review(
          identity::BuildTokenReviewRequest(token, options_.token_review.audience),
          [this, call, request, requested, token](absl::StatusOr<std::string> response) {
            if (call->ended()) return;  // the client gave up meanwhile
            if (!response.ok()) {
              Refuse(call, "attestation_failed",
                     absl::UnavailableError(
                         absl::StrCat("TokenReview failed: ", response.status().message())));
              return;
            }
            Complete(call, request, requested, Attestation::kKubernetes,
                     identity::CheckTokenReview(*response, token, options_.token_review,
                                                clock_.WallNow()));
          });
      return;
    }
    case CreateCertificateRequest::CREDENTIAL_NOT_SET:
      break;
  }

  // Renewal with the connection's verified mesh certificate.
  const net::PeerInfo& peer = call->peer();
  if (!peer.peer_certificate_presented || peer.uri_sans.empty()) {
    Refuse(call, "no_credential",
           absl::UnauthenticatedError(
               "no credential: send a join_token or kubernetes_token, or renew over mTLS with the "
               "current mesh certificate"));
    return;
  }
  absl::StatusOr<tls::SpiffeId> peer_id = tls::SpiffeIdFromUriSans(peer.uri_sans);
  absl::StatusOr<identity::WorkloadIdentity> attested =
      peer_id.ok() ? IdentityFromSpiffeId(*peer_id)
                   : absl::StatusOr<identity::WorkloadIdentity>(peer_id.status());
  if (!attested.ok()) {
    attested = absl::PermissionDeniedError(
        absl::StrCat("client certificate: ", attested.status().message()));
  }
  Complete(call, request, requested, Attestation::kCertificate, std::move(attested));
}

void CertificateService::Complete(const std::shared_ptr<ServerCall>& call,
                                  const CreateCertificateRequest& request,
                                  const std::optional<identity::WorkloadIdentity>& requested,
                                  Attestation attestation,
                                  absl::StatusOr<identity::WorkloadIdentity> attested) {
  if (!attested.ok()) {
    const bool mismatch =
        identity::JoinTokens::RefusalReason(attested.status()) == "wrong_identity";
    // A malformed credential is still a failed attestation to the caller.
    const absl::Status status = absl::IsInvalidArgument(attested.status())
                                    ? absl::PermissionDeniedError(attested.status().message())
                                    : attested.status();
    const char* reason = mismatch                   ? "identity_mismatch"
                         : absl::IsInternal(status) ? "internal"
                                                    : "attestation_failed";
    Refuse(call, reason, status);
    return;
  }
  if (requested.has_value() && !(*requested == *attested)) {
    Refuse(call, "identity_mismatch",
           absl::PermissionDeniedError(
               absl::StrCat("the credential proves ", identity::ToString(*attested),
                            ", not the requested ", identity::ToString(*requested))));
    return;
  }
  absl::StatusOr<tls::SpiffeId> id = WorkloadSpiffeId(
      authority_->options().trust_domain, attested->namespace_, attested->service_account);
  if (!id.ok()) {
    Refuse(call, "internal", absl::InternalError(id.status().message()));
    return;
  }
  absl::StatusOr<IssuedCertificate> issued =
      authority_->Sign(request.csr_pem(), *id, absl::Seconds(request.ttl_seconds()));
  if (!issued.ok()) {
    Refuse(call, absl::IsInvalidArgument(issued.status()) ? "invalid_request" : "internal",
           issued.status());
    return;
  }
  CreateCertificateResponse response;
  response.set_certificate_chain_pem(issued->chain_pem);
  response.set_trust_bundle_pem(issued->trust_bundle_pem);
  response.set_spiffe_id(issued->spiffe_id);
  response.set_serial_number(issued->serial_hex);
  response.set_not_before_unix_seconds(absl::ToUnixSeconds(issued->not_before));
  response.set_not_after_unix_seconds(absl::ToUnixSeconds(issued->not_after));

  auto counter = stats_.shared_shard().RegisterCounter(
      "meshlet_ca_certificates_issued_total",
      "Workload certificates issued, by attestation (join_token, kubernetes, certificate).",
      {{"attestation", std::string(AttestationName(attestation))}});
  if (counter.ok()) counter->Inc();
  LOG(INFO) << "issued certificate " << issued->serial_hex << " for " << issued->spiffe_id << " ("
            << AttestationName(attestation) << ", expires " << absl::FormatTime(issued->not_after)
            << ") to " << call->peer_address().ToString();
  call->SendProto(response);
  call->Finish(StatusCode::kOk);
}

}  // namespace meshlet::controlplane::ca

#include "control-plane/ca/certificate_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "control-plane/identity/caller.h"

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
    case Attestation::kCertificateUnattested:
      return "certificate_unattested";
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
      "identity_mismatch, revoked, renewal_needs_token, invalid_request, not_configured, "
      "store_busy, internal, signer_denied and signer_failed: the Kubernetes CSR API's signer).",
      {{"reason", std::string(reason)}});
  if (counter.ok()) counter->Inc();
  LOG(WARN) << "certificate request from " << call->peer_address().ToString() << " refused ("
            << reason << "): " << status.message();
  call->Finish(ToGrpc(status.code()), status.message());
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
        id.ok() ? identity::IdentityFromSpiffeId(*id, authority_->options().trust_domain)
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
      // The certificate names the token it was bought with, so revoking the token also ends
      // the renewals that descend from it.
      auto redeem = [tokens = join_tokens_, token = request.join_token(),
                     requested]() -> absl::StatusOr<Attested> {
        ASSIGN_OR_RETURN(identity::WorkloadIdentity identity,
                         tokens->Redeem(token, requested.has_value() ? &*requested : nullptr));
        identity::Attestation origin;
        origin.kind = identity::Attestation::Kind::kJoinToken;
        origin.join_token_id = identity::JoinTokens::IdOf(token);
        return Attested{.identity = std::move(identity),
                        .lineage = identity::FormatAttestation(origin)};
      };
      RunOnStore(call, request, requested, Attestation::kJoinToken, std::move(redeem));
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
                     ReviewedPod(*response, token));
          });
      return;
    }
    case CreateCertificateRequest::CREDENTIAL_NOT_SET:
      break;
  }

  // Renewal with the connection's verified mesh certificate.
  absl::StatusOr<identity::Caller> caller = identity::AuthenticateCaller(
      call->peer(), authority_->options().trust_domain, clock_.WallNow());
  if (!caller.ok()) {
    if (absl::IsUnauthenticated(caller.status())) {
      Refuse(call, "no_credential",
             absl::UnauthenticatedError(
                 "no credential: send a join_token or kubernetes_token, or renew over mTLS with "
                 "the current mesh certificate"));
    } else {
      Complete(call, request, requested, Attestation::kCertificate, caller.status());
    }
    return;
  }
  // The renewed certificate keeps the lineage of the presented one; the credential at its origin
  // must still stand.
  const std::string lineage = caller->attestation;
  const std::optional<identity::Attestation> origin = identity::ParseAttestation(lineage);
  Attested attested{.identity = caller->identity, .lineage = lineage};
  if (!origin.has_value()) {
    // Issued before certificates carried their attestation: renewable, and counted, until the
    // workload next presents a credential.
    Complete(call, request, requested, Attestation::kCertificateUnattested, std::move(attested));
    return;
  }
  switch (origin->kind) {
    case identity::Attestation::Kind::kKubernetesPod:
      // Only a token of the pod shows the pod still exists (the API server refuses a bound token
      // once its pod is gone).
      Refuse(call, "renewal_needs_token",
             absl::PermissionDeniedError(
                 absl::StrCat("the certificate was issued to pod ", origin->pod_namespace, "/",
                              origin->pod_name, ": renew with the pod's service-account token")));
      return;
    case identity::Attestation::Kind::kJoinToken:
      if (join_tokens_ == nullptr) {
        Refuse(call, "not_configured",
               absl::FailedPreconditionError("join-token attestation is not configured"));
        return;
      }
      RunOnStore(call, request, requested, Attestation::kCertificate,
                 [tokens = join_tokens_, id = origin->join_token_id,
                  attested = std::move(attested)]() -> absl::StatusOr<Attested> {
                   ASSIGN_OR_RETURN(bool revoked, tokens->IsRevoked(id));
                   if (revoked) return identity::JoinTokens::RevokedError(id);
                   return attested;
                 });
      return;
  }
}

absl::StatusOr<CertificateService::Attested> CertificateService::ReviewedPod(
    const std::string& response, const std::string& token) const {
  ASSIGN_OR_RETURN(
      identity::WorkloadIdentity reviewed,
      identity::CheckTokenReview(response, token, options_.token_review, clock_.WallNow()));
  Attested attested{.identity = std::move(reviewed), .lineage = ""};
  absl::StatusOr<identity::BoundPod> pod = identity::BoundPodOfToken(token);
  if (pod.ok()) {
    identity::Attestation origin;
    origin.kind = identity::Attestation::Kind::kKubernetesPod;
    origin.pod_namespace = attested.identity.namespace_;
    origin.pod_name = pod->name;
    origin.pod_uid = pod->uid;
    attested.lineage = identity::FormatAttestation(origin);
    // A name or uid the attestation cannot carry is no pod the CA can vouch for.
    if (!identity::ParseAttestation(attested.lineage).has_value()) {
      return absl::PermissionDeniedError(
          "service-account token refused: its pod name or uid is not valid");
    }
  } else if (options_.token_review.require_bound_pod) {
    return absl::PermissionDeniedError(pod.status().message());
  }
  return attested;
}

void CertificateService::RunOnStore(const std::shared_ptr<ServerCall>& call,
                                    const CreateCertificateRequest& request,
                                    const std::optional<identity::WorkloadIdentity>& requested,
                                    Attestation attestation,
                                    std::function<absl::StatusOr<Attested>()> work) {
  if (options_.store_worker == nullptr) {
    Complete(call, request, requested, attestation, work());
    return;
  }
  if (!options_.store_worker->Run<absl::StatusOr<Attested>>(
          std::move(work), [this, alive = std::weak_ptr<bool>(alive_), call, request, requested,
                            attestation](absl::StatusOr<Attested> attested) {
            if (alive.expired() || call->ended()) return;
            Complete(call, request, requested, attestation, std::move(attested));
          })) {
    Refuse(call, "store_busy",
           absl::UnavailableError("the control plane's store is slow to answer; retry"));
  }
}

void CertificateService::Complete(const std::shared_ptr<ServerCall>& call,
                                  const CreateCertificateRequest& request,
                                  const std::optional<identity::WorkloadIdentity>& requested,
                                  Attestation attestation, absl::StatusOr<Attested> attested) {
  if (!attested.ok()) {
    const std::string token_refusal = identity::JoinTokens::RefusalReason(attested.status());
    const bool mismatch = token_refusal == "wrong_identity";
    // A malformed credential is still a failed attestation to the caller.
    const absl::Status status = absl::IsInvalidArgument(attested.status())
                                    ? absl::PermissionDeniedError(attested.status().message())
                                    : attested.status();
    const char* reason = mismatch                     ? "identity_mismatch"
                         : token_refusal == "revoked" ? "revoked"
                         : absl::IsInternal(status)   ? "internal"
                                                      : "attestation_failed";
    Refuse(call, reason, status);
    return;
  }
  if (requested.has_value() && !(*requested == attested->identity)) {
    Refuse(call, "identity_mismatch",
           absl::PermissionDeniedError(
               absl::StrCat("the credential proves ", identity::ToString(attested->identity),
                            ", not the requested ", identity::ToString(*requested))));
    return;
  }
  absl::StatusOr<tls::SpiffeId> id =
      WorkloadSpiffeId(authority_->options().trust_domain, attested->identity.namespace_,
                       attested->identity.service_account);
  if (!id.ok()) {
    Refuse(call, "internal", absl::InternalError(id.status().message()));
    return;
  }
  if (options_.csr_signer != nullptr) {
    SignExternally(call, request, *id, attestation);
    return;
  }
  absl::StatusOr<IssuedCertificate> issued = authority_->Sign(
      request.csr_pem(), *id, absl::Seconds(request.ttl_seconds()), attested->lineage);
  if (!issued.ok()) {
    Refuse(call, absl::IsInvalidArgument(issued.status()) ? "invalid_request" : "internal",
           issued.status());
    return;
  }
  Answer(call, *issued, attestation);
}

void CertificateService::SignExternally(const std::shared_ptr<ServerCall>& call,
                                        const CreateCertificateRequest& request,
                                        const tls::SpiffeId& id, Attestation attestation) {
  const std::string spiffe_id = id.ToString();
  if (absl::Status fit = CheckCsrForSigner(request.csr_pem(), spiffe_id); !fit.ok()) {
    Refuse(call, "invalid_request", fit);
    return;
  }
  // The lifetime this CA would give (its default, capped), for the signer to shorten if it must.
  const absl::Duration asked = request.ttl_seconds() > 0 ? absl::Seconds(request.ttl_seconds())
                                                         : authority_->options().default_ttl;
  const absl::Duration ttl = std::min(asked, authority_->options().max_ttl);
  options_.csr_signer->Sign(
      request.csr_pem(), spiffe_id, ttl,
      [this, alive = alive_, call, csr = request.csr_pem(), spiffe_id, attestation,
       authority = authority_](absl::StatusOr<std::string> chain) {
        if (!*alive) return;
        if (!chain.ok()) {
          Refuse(call, absl::IsPermissionDenied(chain.status()) ? "signer_denied" : "signer_failed",
                 chain.status());
          return;
        }
        IssuedCertificate issued;
        if (absl::Status ok =
                CheckIssuedChain(*chain, csr, spiffe_id, authority->trust_bundle_pem(), absl::Now(),
                                 &issued.not_before, &issued.not_after, &issued.serial_hex);
            !ok.ok()) {
          Refuse(call, "signer_failed", absl::InternalError(ok.message()));
          return;
        }
        issued.chain_pem = *std::move(chain);
        issued.trust_bundle_pem = authority->trust_bundle_pem();
        issued.spiffe_id = spiffe_id;
        Answer(call, issued, attestation);
      });
}

void CertificateService::Answer(const std::shared_ptr<ServerCall>& call,
                                const IssuedCertificate& issued_certificate,
                                Attestation attestation) {
  const IssuedCertificate* issued = &issued_certificate;
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

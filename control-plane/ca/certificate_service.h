#pragma once

// CertificateService: the gRPC face of the CA, `meshlet.ca.v1.CertificateService/
// CreateCertificate` (xds/ca.proto), registered on a grpc::Server (the control plane's 15012
// port, beside the ADS).
//
// Every request is attested before anything is signed, by exactly one of:
//   join_token        redeemed with JoinTokens (bound namespace + service account);
//   kubernetes_token  reviewed by the API server (TokenReviewer) and checked by CheckTokenReview,
//                     and bound to a pod (BoundPodOfToken);
//   neither           renewal: the TLS connection's verified client certificate is a mesh
//                     certificate of this trust domain, and its identity is the one renewed.
// The certificate carries how its identity was first attested (identity::Attestation: the join
// token's id, or the pod), and a renewal copies it. A renewal is refused when that join token
// was revoked (JoinTokens::IsRevoked, on the store worker); a certificate issued to a pod is
// renewed only with the pod's token again, which the API server refuses once the pod is gone.
// If the request names a spiffe_id, the attested identity must be exactly that; otherwise the
// attested identity is used. Refusals are PERMISSION_DENIED (UNAUTHENTICATED without any
// credential), logged with the peer address and counted by reason; nothing is signed.
//
// Renewal trusts the connection's peer certificate, so the server's TLS context must verify
// client certificates against the mesh trust bundle (ClientCertificateMode::kRequest): a
// plaintext server never sees one and only accepts tokens.
//
// Threading: loop thread only (the server's). A TokenReviewer must call back on that thread; join
// tokens are redeemed on the store worker when one is given, which answers on that thread too.
// The service must outlive the server it is registered on.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/http/grpc/server.h"
#include "common/stats/stats.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/kubernetes_csr_signer.h"
#include "control-plane/identity/join_tokens.h"
#include "control-plane/identity/token_review.h"
#include "control-plane/identity/workload_identity.h"
#include "control-plane/store/store_worker.h"
#include "xds/ca.pb.h"

namespace meshlet::controlplane::ca {

inline constexpr char kCreateCertificateMethod[] =
    "/meshlet.ca.v1.CertificateService/CreateCertificate";

struct CertificateServiceOptions {
  identity::TokenReviewPolicy token_review;
  // Redeems join tokens there (the store may be slow); null: on the loop thread. Not owned; must
  // outlive the service.
  StoreWorker* store_worker = nullptr;
  // Set: workload certificates are signed by the Kubernetes CSR API's signer
  // (kubernetes_csr_signer.h) instead of the authority, which still gives the trust bundle and
  // signs nothing for workloads. The request's SAN must be exactly the attested identity, and the
  // answer must be a leaf for the request's key and identity that verifies up to the trust
  // bundle. Its certificates carry no attestation: their renewals count as
  // certificate_unattested. Not owned; must outlive the service.
  KubernetesCsrSigner* csr_signer = nullptr;
};

class CertificateService {
 public:
  // `join_tokens` and `token_reviewer` may be null: that attestation is then refused with
  // FAILED_PRECONDITION ("not configured").
  CertificateService(std::shared_ptr<const CertificateAuthority> authority,
                     identity::JoinTokens* join_tokens, identity::TokenReviewer* token_reviewer,
                     StatsRegistry& stats, const Clock& clock = RealClock::Get(),
                     CertificateServiceOptions options = {});

  absl::Status Register(http::grpc::Server& server);

  // Replaces the signing CA (root rotation, a renewed intermediate); later requests use it.
  void SetAuthority(std::shared_ptr<const CertificateAuthority> authority);
  const CertificateAuthority& authority() const { return *authority_; }

 private:
  // kCertificateUnattested: a renewal of a certificate that names no attestation (issued before
  // certificates carried one).
  enum class Attestation { kJoinToken, kKubernetes, kCertificate, kCertificateUnattested };
  // An attested identity and the attestation text its certificate will carry.
  struct Attested {
    identity::WorkloadIdentity identity;
    std::string lineage;
  };
  static absl::string_view AttestationName(Attestation attestation);

  void Handle(const std::shared_ptr<http::grpc::ServerCall>& call,
              const meshlet::ca::v1::CreateCertificateRequest& request);
  // Signs for `attested` once attestation finished (either synchronously or from a review).
  void Complete(const std::shared_ptr<http::grpc::ServerCall>& call,
                const meshlet::ca::v1::CreateCertificateRequest& request,
                const std::optional<identity::WorkloadIdentity>& requested, Attestation attestation,
                absl::StatusOr<Attested> attested);
  // Runs `work` on the store worker (or here without one), then Complete().
  void RunOnStore(const std::shared_ptr<http::grpc::ServerCall>& call,
                  const meshlet::ca::v1::CreateCertificateRequest& request,
                  const std::optional<identity::WorkloadIdentity>& requested,
                  Attestation attestation, std::function<absl::StatusOr<Attested>()> work);
  // A TokenReview's verdict on `token`, bound to its pod (TokenReviewPolicy::require_bound_pod).
  absl::StatusOr<Attested> ReviewedPod(const std::string& response, const std::string& token) const;
  // Answers with what the Kubernetes CSR API's signer issues for `id` (options_.csr_signer).
  void SignExternally(const std::shared_ptr<http::grpc::ServerCall>& call,
                      const meshlet::ca::v1::CreateCertificateRequest& request,
                      const tls::SpiffeId& id, Attestation attestation);
  // The response for an issued certificate, counted and logged.
  void Answer(const std::shared_ptr<http::grpc::ServerCall>& call, const IssuedCertificate& issued,
              Attestation attestation);
  // Ends the call with `status` (not OK), logging and counting `reason`.
  void Refuse(const std::shared_ptr<http::grpc::ServerCall>& call, absl::string_view reason,
              const absl::Status& status);

  std::shared_ptr<const CertificateAuthority> authority_;
  identity::JoinTokens* const join_tokens_;
  identity::TokenReviewer* const token_reviewer_;
  StatsRegistry& stats_;
  const Clock& clock_;
  const CertificateServiceOptions options_;
  // Checked by answers from the store worker: gone once this is destroyed.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::controlplane::ca

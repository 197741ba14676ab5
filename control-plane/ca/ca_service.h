#pragma once

// CaService: plugs the workload CA into the control-plane binary, in two steps. Init(), after
// ControlPlane::Init(), loads the signing material (an operator's CA from --ca-cert/--ca-key,
// else the root generated in <data-dir>/ca on first start), enables join tokens on the REST API
// (/api/v1/tokens, stored hashed in the control plane's store) and serves the trust bundle there
// (/api/v1/trust-bundle); the authority is then ready to issue the discovery port's own
// certificate (serving_certificate.h) before that port opens.
// Register() then serves meshlet.ca.v1.CertificateService on the gRPC server it is given — the
// discovery server on 15012. Expired join tokens are purged hourly.
//
// Kubernetes service-account attestation is on when an API server is known (--kubernetes-api, or
// KUBERNETES_SERVICE_HOST/PORT inside a pod): tokens are then reviewed by that API server
// (KubernetesTokenReviewer). Otherwise such requests are refused with FAILED_PRECONDITION.
//
// Threading: the ControlPlane's loop thread.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/certificate_service.h"
#include "control-plane/identity/join_tokens.h"
#include "control-plane/identity/kubernetes_reviewer.h"
#include "control-plane/server/control_plane.h"

namespace meshlet::controlplane::ca {

struct CaServiceOptions {
  // An operator's CA (certs/make-ca.sh): chain file (signing certificate first) and key file;
  // both or neither. Neither: a root generated in <data-dir>/ca.
  std::string cert_chain_file;
  std::string key_file;
  // Extra trust-bundle roots (the other root during a root rotation; the root when the chain
  // file does not end in one).
  std::string trust_bundle_file;
  AuthorityOptions authority;
  // Kubernetes service-account attestation; off while kubernetes.api is empty.
  identity::KubernetesApiOptions kubernetes;
  identity::TokenReviewPolicy token_review;
};

// The defaults, with the Kubernetes API server from KUBERNETES_SERVICE_HOST/PORT when set.
CaServiceOptions DefaultCaServiceOptions();

// The CA's flags for the control plane's command line (control-plane/command_line.h), writing
// into `options`: --ca-cert FILE, --ca-key FILE, --ca-trust-bundle FILE, --trust-domain NAME,
// --cert-ttl DURATION (default lifetime, 24h), --cert-max-ttl DURATION (cap, 24h).
std::vector<flags::Flag> CaFlags(CaServiceOptions& options);
// Kubernetes service-account attestation: --kubernetes-api ADDRESS, --kubernetes-token-file FILE,
// --kubernetes-ca-file FILE, --kubernetes-audience NAME (meshlet), --kubernetes-timeout DURATION
// (5s).
std::vector<flags::Flag> KubernetesAttestationFlags(CaServiceOptions& options);
// What the flags cannot check one at a time: --ca-cert and --ca-key go together; the lifetimes
// and the trust domain are valid together.
absl::Status CheckCaFlags(const CaServiceOptions& options);

class CaService {
 public:
  CaService(ControlPlane& control_plane, CaServiceOptions options);
  ~CaService();

  // Loads the CA and mounts its API routes. Errors name the file or step that failed.
  absl::Status Init();
  // After Init(): serves CertificateService on `grpc_server`. Not owned; the server calls into
  // this CaService, so it must be destroyed before this CaService is.
  absl::Status Register(http::grpc::Server& grpc_server);

  // Valid after Init().
  const CertificateAuthority& authority() const { return *authority_; }
  identity::JoinTokens& join_tokens() { return *join_tokens_; }

 private:
  ControlPlane& control_plane_;
  const CaServiceOptions options_;
  std::shared_ptr<const CertificateAuthority> authority_;
  std::unique_ptr<identity::JoinTokens> join_tokens_;
  std::unique_ptr<identity::KubernetesTokenReviewer> token_reviewer_;
  std::unique_ptr<CertificateService> service_;
  std::unique_ptr<event::Timer> purge_timer_;
};

}  // namespace meshlet::controlplane::ca

#pragma once

// KubernetesCsrSigner: workload certificates signed outside the control plane, by whatever
// signer a cluster runs for a signerName, through the Kubernetes CertificateSigningRequest API
// (certificates.k8s.io/v1; docs/security.md "External signers", ADR 0100). The control plane
// never approves or signs: it only creates the request and reads the answer, so the signing key
// is never in its memory, store or logs.
//
// Sign() creates one CertificateSigningRequest per workload certificate (metadata.generateName
// "meshlet-", spec.request the sidecar's CSR, signerName, expirationSeconds the lifetime asked,
// usages digital signature, key encipherment, client auth, server auth), then reads it every
// poll_interval until status.certificate is set (done: the PEM chain), a Denied or Failed
// condition appears (PermissionDenied / Internal with the signer's message), or `timeout` passes
// (DeadlineExceeded). The request is deleted afterwards whatever the outcome (best effort; its
// failure is counted). The caller checks the chain (CheckIssuedChain).
//
// Needs RBAC create, get and delete on certificatesigningrequests (docs/kubernetes.md).
// Stats: meshlet_cp_ca_csr_total{result=issued|denied|failed|timeout|error},
// meshlet_cp_ca_csr_pending, meshlet_cp_ca_csr_delete_failures_total.
//
// Threading: the loop thread (the KubernetesApi's); `done` runs there, never inside Sign().
// Outstanding requests end without calling back when the signer is destroyed.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::ca {

struct KubernetesCsrSignerOptions {
  std::string signer_name;                     // --ca-csr-signer-name
  absl::Duration timeout = absl::Seconds(30);  // --ca-csr-timeout
  absl::Duration poll_interval = absl::Milliseconds(200);
};

class KubernetesCsrSigner {
 public:
  // `api` must outlive this.
  KubernetesCsrSigner(event::Loop& loop, kubernetes::KubernetesApi& api, StatsRegistry& stats,
                      KubernetesCsrSignerOptions options);
  ~KubernetesCsrSigner();
  KubernetesCsrSigner(const KubernetesCsrSigner&) = delete;
  KubernetesCsrSigner& operator=(const KubernetesCsrSigner&) = delete;

  using Done = std::function<void(absl::StatusOr<std::string> chain_pem)>;
  // `csr_pem` for `spiffe_id` (named in the log and the request's annotation), `ttl` asked.
  void Sign(const std::string& csr_pem, const std::string& spiffe_id, absl::Duration ttl,
            Done done);

  const KubernetesCsrSignerOptions& options() const { return options_; }
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending;
  void Poll(uint64_t id);
  void OnRead(uint64_t id, kubernetes::ApiResult result);
  void Finish(uint64_t id, absl::string_view result, absl::StatusOr<std::string> chain);

  event::Loop& loop_;
  kubernetes::KubernetesApi& api_;
  const KubernetesCsrSignerOptions options_;
  std::map<uint64_t, std::unique_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
  std::map<std::string, Counter, std::less<>> results_;
  Gauge pending_gauge_;
  Counter delete_failures_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Whether `csr_pem` is fit to be sent: it parses, its signature verifies (the requester holds
// the key), and its SubjectAlternativeName holds exactly `spiffe_id` (an external signer signs
// what the request says). InvalidArgument naming what is wrong.
absl::Status CheckCsrForSigner(const std::string& csr_pem, const std::string& spiffe_id);

// Whether `chain_pem` an external signer returned is a certificate for the CSR: the leaf's public
// key is the CSR's, its URI SANs are exactly `spiffe_id`, it is valid now, and it verifies up to a
// root of `trust_bundle_pem` (with the chain's other certificates as intermediates).
// InvalidArgument naming what is wrong. On success the leaf's validity is in *not_before /
// *not_after and its serial (hex) in *serial_hex.
absl::Status CheckIssuedChain(const std::string& chain_pem, const std::string& csr_pem,
                              const std::string& spiffe_id, const std::string& trust_bundle_pem,
                              absl::Time now, absl::Time* not_before, absl::Time* not_after,
                              std::string* serial_hex);

}  // namespace meshlet::controlplane::ca

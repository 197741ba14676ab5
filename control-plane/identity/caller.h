#pragma once

// Who is calling the control plane's discovery port (15012): the identity a caller proved with
// its client certificate, which TLS has already verified against the mesh trust bundle (chain,
// validity dates) before any of this runs. The discovery service (ADS), the golden-metrics
// Report, the replicas' telemetry Forward and certificate renewal all decide on it, never on
// what a request says about its sender (docs/security.md, "The discovery port").
//
// Also the attestation a workload certificate carries (tls::AttestationOf): how its identity was
// first proved, copied into every renewal, so that revoking the credential (a join token) or the
// end of what it was bound to (a pod) also ends renewals.
//
// Pure functions; any thread.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/net/transport.h"
#include "common/tls/spiffe.h"
#include "control-plane/identity/workload_identity.h"

namespace meshlet::controlplane::identity {

// How a workload certificate's identity was attested, as its attestation extension records it:
//   "join-token:<id>"                        a join token (its id, not its secret)
//   "kubernetes:<namespace>/<pod>/<uid>"     a Kubernetes service-account token bound to a pod
struct Attestation {
  enum class Kind { kJoinToken, kKubernetesPod };
  Kind kind = Kind::kJoinToken;
  std::string join_token_id;  // kJoinToken
  std::string pod_namespace;  // kKubernetesPod
  std::string pod_name;
  std::string pod_uid;
  friend bool operator==(const Attestation&, const Attestation&) = default;
};
std::string FormatAttestation(const Attestation& attestation);
// nullopt for text that is not one of the forms above (unknown kinds included).
std::optional<Attestation> ParseAttestation(absl::string_view text);

// The workload identity of a SPIFFE id "spiffe://<trust_domain>/ns/<ns>/sa/<sa>". Errors:
// PermissionDenied for another trust domain, InvalidArgument for another path shape or invalid
// names.
absl::StatusOr<WorkloadIdentity> IdentityFromSpiffeId(const tls::SpiffeId& id,
                                                      absl::string_view trust_domain);

// A caller that presented a verified workload certificate.
struct Caller {
  WorkloadIdentity identity;
  std::string spiffe_id;
  // The certificate's notAfter: a stream must not outlive it.
  absl::Time not_after = absl::InfiniteFuture();
  // The certificate's attestation extension, verbatim ("" without one).
  std::string attestation;
};

// The caller of a call on a TLS connection whose peer is `peer`. Unauthenticated without a client
// certificate, or with one that has expired by `now` (TLS checked it at the handshake, but a
// connection may outlive it); PermissionDenied when the certificate names no workload of
// `trust_domain`.
absl::StatusOr<Caller> AuthenticateCaller(const net::PeerInfo& peer, absl::string_view trust_domain,
                                          absl::Time now);
// The counter label of an AuthenticateCaller error: "no_certificate" (a plaintext connection, or
// TLS without a client certificate), "certificate_expired" or "not_a_workload" (no single
// workload SPIFFE id of the trust domain).
const char* CallerRefusalReason(const absl::Status& status);

}  // namespace meshlet::controlplane::identity

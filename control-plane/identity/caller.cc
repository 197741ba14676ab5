#include "control-plane/identity/caller.h"

#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::identity {
namespace {

constexpr absl::string_view kJoinTokenPrefix = "join-token:";
// Marks an AuthenticateCaller refusal for an expired certificate.
constexpr absl::string_view kRefusalPayload = "type.meshlet.dev/caller-refusal";
constexpr absl::string_view kKubernetesPrefix = "kubernetes:";

// Join token ids are 16 lowercase hex digits (join_tokens.h); pod names are DNS subdomains and
// uids UUIDs; all are kept to characters that cannot hide a separator.
bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}
bool IsPlainPart(absl::string_view part) {
  if (part.empty() || part.size() > 253) return false;
  for (char c : part) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

}  // namespace

std::string FormatAttestation(const Attestation& attestation) {
  switch (attestation.kind) {
    case Attestation::Kind::kJoinToken:
      return absl::StrCat(kJoinTokenPrefix, attestation.join_token_id);
    case Attestation::Kind::kKubernetesPod:
      return absl::StrCat(kKubernetesPrefix, attestation.pod_namespace, "/", attestation.pod_name,
                          "/", attestation.pod_uid);
  }
  return "";
}

std::optional<Attestation> ParseAttestation(absl::string_view text) {
  Attestation out;
  if (absl::ConsumePrefix(&text, kJoinTokenPrefix)) {
    if (!IsPlainPart(text)) return std::nullopt;
    out.kind = Attestation::Kind::kJoinToken;
    out.join_token_id = std::string(text);
    return out;
  }
  if (absl::ConsumePrefix(&text, kKubernetesPrefix)) {
    std::vector<absl::string_view> parts = absl::StrSplit(text, '/');
    if (parts.size() != 3) return std::nullopt;
    for (absl::string_view part : parts) {
      if (!IsPlainPart(part)) return std::nullopt;
    }
    out.kind = Attestation::Kind::kKubernetesPod;
    out.pod_namespace = std::string(parts[0]);
    out.pod_name = std::string(parts[1]);
    out.pod_uid = std::string(parts[2]);
    return out;
  }
  return std::nullopt;
}

absl::StatusOr<WorkloadIdentity> IdentityFromSpiffeId(const tls::SpiffeId& id,
                                                      absl::string_view trust_domain) {
  if (id.trust_domain() != trust_domain) {
    return absl::PermissionDeniedError(
        absl::StrCat(id.ToString(), " is not in trust domain ", trust_domain));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(id.path(), '/');
  // "/ns/<ns>/sa/<sa>" splits into "", "ns", <ns>, "sa", <sa>.
  if (parts.size() != 5 || parts[1] != "ns" || parts[3] != "sa") {
    return absl::InvalidArgumentError(
        absl::StrCat(id.ToString(), " is not a workload id (spiffe://<td>/ns/<ns>/sa/<sa>)"));
  }
  WorkloadIdentity identity{std::string(parts[2]), std::string(parts[4])};
  if (absl::Status valid = ValidateWorkloadIdentity(identity); !valid.ok()) return valid;
  return identity;
}

absl::StatusOr<Caller> AuthenticateCaller(const net::PeerInfo& peer, absl::string_view trust_domain,
                                          absl::Time now) {
  if (!peer.tls || !peer.peer_certificate_presented) {
    return absl::UnauthenticatedError(
        peer.tls ? "no client certificate: present the workload certificate from the mesh CA"
                 : "not a TLS connection: present the workload certificate from the mesh CA");
  }
  if (peer.peer_not_after <= now) {
    absl::Status expired = absl::UnauthenticatedError(
        absl::StrCat("the client certificate of this connection expired at ",
                     absl::FormatTime(absl::RFC3339_sec, peer.peer_not_after, absl::UTCTimeZone()),
                     ": reconnect with the current one"));
    expired.SetPayload(kRefusalPayload, absl::Cord("certificate_expired"));
    return expired;
  }
  absl::StatusOr<tls::SpiffeId> id = tls::SpiffeIdFromUriSans(peer.uri_sans);
  absl::StatusOr<WorkloadIdentity> workload = id.ok()
                                                  ? IdentityFromSpiffeId(*id, trust_domain)
                                                  : absl::StatusOr<WorkloadIdentity>(id.status());
  if (!workload.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("client certificate: ", workload.status().message()));
  }
  Caller caller;
  caller.identity = *std::move(workload);
  caller.spiffe_id = id->ToString();
  caller.not_after = peer.peer_not_after;
  caller.attestation = peer.peer_attestation;
  return caller;
}

const char* CallerRefusalReason(const absl::Status& status) {
  if (status.GetPayload(kRefusalPayload).has_value()) return "certificate_expired";
  return absl::IsUnauthenticated(status) ? "no_certificate" : "not_a_workload";
}

}  // namespace meshlet::controlplane::identity

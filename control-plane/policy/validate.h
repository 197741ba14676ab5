#pragma once

// Semantic validation of policy resources, run by the API before anything is stored (and by
// meshctl before anything is sent). Every problem is reported, each with the field path in the
// JSON spelling users write (`spec.rules[0].backends[1].weight`), so a document can be fixed in
// one pass.
//
// Errors make the resource unacceptable. Warnings do not: they describe references that do not
// resolve yet (an HTTPRoute backend naming a Service that does not exist), because documents of
// one `meshctl apply` arrive in file order and a route may come before its Service; the
// translator answers such a route with 503 until the Service exists.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/net/ip_prefix.h"
#include "control-plane/policy/snapshot.h"

namespace google::protobuf {
class Message;
}

namespace meshlet::controlplane::policy {

// The JWT claim an AuthorizationPolicy `when` key reads, from the payload's top level down:
// {NAME} of "request.auth.claims[NAME]", {A, B} of "request.auth.claims[A][B]" (a nested claim,
// at most kMaxClaimDepth levels), {"aud"} of "request.auth.audiences", {"azp"} of
// "request.auth.presenter" (as Istio reads them); empty for any other key.
inline constexpr int kMaxClaimDepth = 8;
std::vector<std::string> ClaimPathOfKey(absl::string_view key);
// The `when` key on the valid token's "<iss>/<sub>" (its values are request principal patterns,
// ANDed with the rule's from.requestPrincipals).
inline constexpr absl::string_view kRequestPrincipalKey = "request.auth.principal";

// The OpenID Connect discovery document of `issuer`: "<issuer>/.well-known/openid-configuration"
// (one slash between them).
std::string OidcDiscoveryUrl(absl::string_view issuer);
// The URL a RequestAuthentication rule's keys come from, which the control plane fetches: its
// jwksUri, else (no inline jwks) its issuer's discovery document; empty for inline keys.
std::string JwksSourceOf(const meshlet::policy::JwtRule& rule);

struct FieldError {
  std::string field;  // "spec.retries.attempts"; empty for the document as a whole
  std::string message;
};

struct ValidationResult {
  std::vector<FieldError> errors;
  std::vector<std::string> warnings;

  bool ok() const { return errors.empty(); }
  // "field: message" per line.
  std::string ErrorText() const;
};

// Limits that keep a single resource from making every sidecar's configuration huge.
struct ValidationLimits {
  size_t max_rules = 256;
  size_t max_backends = 64;
  size_t max_matches = 64;
  size_t max_hostnames = 64;
  size_t max_ports = 64;
  size_t max_addresses = 16;  // Service spec.addresses
  uint32_t max_retry_attempts = 10;
  uint32_t max_weight = 1000000;
};

// `existing` (may be null) is the current policy, for reference checks (warnings).
ValidationResult Validate(const google::protobuf::Message& resource, const PolicySnapshot* existing,
                          const ValidationLimits& limits = {});

// Why `address` cannot be a Service's virtual address ("unspecified", "loopback", "link-local",
// "multicast", "broadcast"), or empty when it can be one.
absl::string_view ReservedAddressKind(const net::IpAddress& address);

}  // namespace meshlet::controlplane::policy

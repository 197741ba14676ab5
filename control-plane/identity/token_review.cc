#include "control-plane/identity/token_review.h"

#include <cmath>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/status.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::identity {
namespace {

constexpr absl::string_view kServiceAccountPrefix = "system:serviceaccount:";
constexpr size_t kMaxTokenBytes = 16 * 1024;

absl::Status Refused(absl::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat("service-account token refused: ", why));
}

bool Contains(const std::vector<std::string>& list, absl::string_view value) {
  for (const auto& item : list) {
    if (item == value) return true;
  }
  return false;
}

// The JWT's payload claims, decoded but not verified (the API server verified the signature).
absl::StatusOr<JsonObject> JwtClaims(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Refused("not a JWT (header.payload.signature)");
  std::string payload;
  if (!absl::WebSafeBase64Unescape(parts[1], &payload)) {
    return Refused("JWT payload is not base64url");
  }
  absl::StatusOr<JsonObject> claims = JsonObject::Parse(payload);
  if (!claims.ok()) return Refused("JWT payload is not a JSON object");
  return claims;
}

}  // namespace

std::string BuildTokenReviewRequest(absl::string_view token, absl::string_view audience) {
  return absl::StrCat(
      R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":)",
      JsonQuote(token), R"(,"audiences":[)", JsonQuote(audience), R"(]}})");
}

absl::StatusOr<WorkloadIdentity> CheckTokenReview(absl::string_view response_json,
                                                  absl::string_view token,
                                                  const TokenReviewPolicy& policy, absl::Time now) {
  if (token.empty() || token.size() > kMaxTokenBytes) return Refused("empty or oversized token");
  ASSIGN_OR_RETURN(JsonObject review, JsonObject::Parse(response_json));
  if (review.String("kind").value_or("") != "TokenReview" ||
      !absl::StartsWith(review.String("apiVersion").value_or(""), "authentication.k8s.io/")) {
    return absl::InvalidArgumentError("the API server's answer is not a TokenReview");
  }
  if (std::string error = review.String("status/error").value_or(""); !error.empty()) {
    return Refused(absl::StrCat("the API server says: ", error));
  }
  if (!review.Bool("status/authenticated").value_or(false)) {
    return Refused("the API server did not authenticate it");
  }
  absl::StatusOr<std::vector<std::string>> audiences = review.Strings("status/audiences");
  if (!audiences.ok() || !Contains(*audiences, policy.audience)) {
    return Refused(absl::StrCat("not valid for audience \"", policy.audience, "\""));
  }
  const std::string username = review.String("status/user/username").value_or("");
  if (!absl::StartsWith(username, kServiceAccountPrefix)) {
    return Refused(absl::StrCat("user \"", username, "\" is not a service account"));
  }
  std::vector<std::string> names =
      absl::StrSplit(absl::string_view(username).substr(kServiceAccountPrefix.size()), ':');
  if (names.size() != 2) {
    return Refused(absl::StrCat("malformed service-account user \"", username, "\""));
  }
  WorkloadIdentity identity{.namespace_ = names[0], .service_account = names[1]};
  if (absl::Status valid = ValidateWorkloadIdentity(identity); !valid.ok()) {
    return Refused(valid.message());
  }

  ASSIGN_OR_RETURN(JsonObject claims, JwtClaims(token));
  absl::StatusOr<double> exp = claims.Number("exp");
  if (!exp.ok() || !std::isfinite(*exp)) {
    return Refused("the JWT has no exp claim (only projected, expiring tokens are accepted)");
  }
  if (absl::FromUnixSeconds(static_cast<int64_t>(*exp)) + policy.clock_skew <= now) {
    return Refused("the JWT has expired");
  }
  if (absl::StatusOr<double> nbf = claims.Number("nbf");
      nbf.ok() && absl::FromUnixSeconds(static_cast<int64_t>(*nbf)) - policy.clock_skew > now) {
    return Refused("the JWT is not valid yet (nbf)");
  }
  absl::StatusOr<std::vector<std::string>> aud = claims.Strings("aud");
  if (!aud.ok() || !Contains(*aud, policy.audience)) {
    return Refused(absl::StrCat("the JWT's aud does not contain \"", policy.audience, "\""));
  }
  // Projected tokens carry the pod's namespace and service account; they must agree with what
  // the API server answered (a mismatch means the answer belongs to another token).
  absl::StatusOr<std::string> claimed_ns = claims.String("kubernetes.io/namespace");
  absl::StatusOr<std::string> claimed_sa = claims.String("kubernetes.io/serviceaccount/name");
  if ((claimed_ns.ok() && *claimed_ns != identity.namespace_) ||
      (claimed_sa.ok() && *claimed_sa != identity.service_account)) {
    return Refused("the JWT's kubernetes.io claims name another service account than the review");
  }
  if (absl::StatusOr<std::string> sub = claims.String("sub"); sub.ok() && *sub != username) {
    return Refused("the JWT's sub is not the reviewed user");
  }
  return identity;
}

absl::StatusOr<BoundPod> BoundPodOfToken(absl::string_view token) {
  ASSIGN_OR_RETURN(JsonObject claims, JwtClaims(token));
  absl::StatusOr<std::string> name = claims.String("kubernetes.io/pod/name");
  absl::StatusOr<std::string> uid = claims.String("kubernetes.io/pod/uid");
  if (!name.ok() || !uid.ok() || name->empty() || uid->empty()) {
    return absl::NotFoundError(
        "service-account token refused: it is not bound to a pod (use a projected token, "
        "serviceAccountToken in a projected volume)");
  }
  return BoundPod{.name = *std::move(name), .uid = *std::move(uid)};
}

}  // namespace meshlet::controlplane::identity

#include "control-plane/access/gate.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"

namespace meshlet::controlplane::access {

AccessGate::AccessGate(const OperatorTokens& tokens, StatsRegistry* stats)
    : tokens_(tokens), stats_(stats) {
  if (stats_ != nullptr) {
    absl::StatusOr<Counter> c = stats_->shared_shard().RegisterCounter(
        "meshlet_cp_api_auth_failures_total",
        "API requests refused (401) for a missing, wrong, revoked or expired bearer token.");
    CHECK_OK(c);
    auth_failures_ = *c;
  }
}

absl::string_view AccessGate::BearerToken(const http::ServerRequest& request) {
  std::optional<absl::string_view> auth = request.headers.Get("authorization");
  if (!auth.has_value() || !absl::StartsWithIgnoreCase(*auth, "bearer ")) return "";
  return absl::StripAsciiWhitespace(auth->substr(7));
}

absl::StatusOr<Principal> AccessGate::Check(const http::ServerRequest& request, Role needed,
                                            Principal* identified) {
  const absl::string_view bearer = BearerToken(request);
  if (bearer.empty()) {
    return Judge(absl::UnauthenticatedError(
                     request.headers.Get("authorization").has_value()
                         ? "the Authorization header is not \"Bearer <token>\""
                         : "missing Authorization: Bearer <token> (an operator token from meshctl "
                           "operator-token create, or the bootstrap token: the control plane's "
                           "data directory, file api-token)"),
                 needed, request);
  }
  absl::StatusOr<Principal> principal = tokens_.Authenticate(bearer);
  if (principal.ok() && identified != nullptr) *identified = *principal;
  if (absl::IsNotFound(principal.status())) {
    if (kubernetes_ != nullptr) return principal;  // the caller asks the API server
    principal = absl::UnauthenticatedError("wrong bearer token");
  }
  return Judge(std::move(principal), needed, request);
}

void AccessGate::CheckKubernetes(const http::ServerRequest& request, Role needed,
                                 std::function<void(absl::StatusOr<Principal>)> done) {
  CHECK(kubernetes_ != nullptr) << "Kubernetes users are off";
  // The request may be gone when the answer comes: keep what Judge needs.
  http::ServerRequest head;
  head.headers.Add(":method", request.method());
  head.headers.Add(":path", request.path());
  kubernetes_->Authorize(std::string(BearerToken(request)), needed,
                         [this, needed, head = std::move(head),
                          done = std::move(done)](absl::StatusOr<Principal> principal) {
                           done(Judge(std::move(principal), needed, head));
                         });
}

absl::StatusOr<Principal> AccessGate::Judge(absl::StatusOr<Principal> result, Role needed,
                                            const http::ServerRequest& request) {
  auto count = [this](absl::string_view name, absl::string_view help, absl::string_view label,
                      absl::string_view value) {
    if (stats_ == nullptr) return;
    absl::StatusOr<Counter> c = stats_->shared_shard().RegisterCounter(
        name, help, {{std::string(label), std::string(value)}});
    if (c.ok()) c->Inc();
  };
  auto count_forbidden = [&] {
    count("meshlet_cp_api_forbidden_total",
          "API requests refused (403) because the caller's role is below the one needed, by the "
          "role needed.",
          "needed", RoleName(needed));
  };
  if (!result.ok()) {
    if (absl::IsUnauthenticated(result.status())) {
      auth_failures_.Inc();
      LOG_EVERY_N_SEC(INFO, 10) << "API: refused " << request.method() << " " << request.path()
                                << ": " << result.status().message();
    } else if (absl::IsPermissionDenied(result.status())) {
      count_forbidden();
    }
    return result;
  }
  if (!Grants(result->role, needed)) {
    count_forbidden();
    return absl::PermissionDeniedError(
        absl::StrCat(result->credential == "kubernetes" ? "Kubernetes user" : result->credential,
                     " \"", result->name, "\" has the role ", RoleName(result->role), "; ",
                     request.method(), " ", request.path(), " needs ", RoleName(needed)));
  }
  count("meshlet_cp_api_authenticated_total",
        "API requests let in, by the credential that proved the caller (api-token, "
        "operator-token, kubernetes).",
        "credential", result->credential);
  return result;
}

}  // namespace meshlet::controlplane::access

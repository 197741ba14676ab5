#pragma once

// AccessGate: who may make a control-plane API request. The API (control-plane/api) says which
// role a request needs (PolicyApi::RequiredRole); the gate reads its `Authorization: Bearer`
// token and decides:
//
//   the bootstrap token or an operator token (operator_tokens.h)  its role, at once
//   any other token, with Kubernetes users on (SetKubernetesUsers) the API server decides:
//                                                                 TokenReview, then a
//                                                                 SubjectAccessReview for the
//                                                                 role's verb (kubernetes_users.h)
//   otherwise                                                     refused
//
// Refusals are statuses the API turns into answers: Unauthenticated (401: no token, a wrong,
// revoked or expired one), PermissionDenied (403: a role below the one needed), Unavailable
// (503: the Kubernetes API server could not be asked). Each is counted:
// meshlet_cp_api_auth_failures_total (401), meshlet_cp_api_forbidden_total{needed} (403); and
// meshlet_cp_api_authenticated_total{credential} counts the requests let in, by credential.
//
// Threading: the control plane's loop thread (the Kubernetes reviews answer there).

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/access/operator_tokens.h"
#include "control-plane/access/roles.h"

namespace meshlet::controlplane::access {

// Kubernetes users: whether a bearer token the API server knows is a user granted `needed`.
// `done` gets the principal (its role: `needed`), Unauthenticated, PermissionDenied or
// Unavailable; on the loop thread, never from inside Authorize().
class KubernetesUsers {
 public:
  virtual ~KubernetesUsers() = default;
  virtual void Authorize(const std::string& bearer, Role needed,
                         std::function<void(absl::StatusOr<Principal>)> done) = 0;
};

class AccessGate {
 public:
  // `tokens` must outlive this; `stats` may be null.
  AccessGate(const OperatorTokens& tokens, StatsRegistry* stats);

  // Not owned; null turns Kubernetes users off. Loop thread, before serving.
  void SetKubernetesUsers(KubernetesUsers* users) { kubernetes_ = users; }

  // Decides `request` needing `needed` from the tokens the control plane knows. NotFound means
  // only the Kubernetes API server can tell (Kubernetes users are on and the token is not one of
  // ours): call CheckKubernetes with the same request. `identified` (optional) gets whom the token
  // proved, also when its role is too low (for the audit log).
  absl::StatusOr<Principal> Check(const http::ServerRequest& request, Role needed,
                                  Principal* identified = nullptr);
  // After Check's NotFound: asks the Kubernetes API server; `done` as KubernetesUsers'.
  void CheckKubernetes(const http::ServerRequest& request, Role needed,
                       std::function<void(absl::StatusOr<Principal>)> done);

  // The bearer token of `request` ("" without one).
  static absl::string_view BearerToken(const http::ServerRequest& request);

 private:
  // Counts `result` and, for a principal below `needed`, makes it PermissionDenied.
  absl::StatusOr<Principal> Judge(absl::StatusOr<Principal> result, Role needed,
                                  const http::ServerRequest& request);

  const OperatorTokens& tokens_;
  StatsRegistry* stats_;
  KubernetesUsers* kubernetes_ = nullptr;
  Counter auth_failures_;
};

}  // namespace meshlet::controlplane::access

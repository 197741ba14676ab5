#pragma once

// KubernetesApiUsers: the API's Kubernetes users (gate.h's KubernetesUsers), so that the RBAC of
// `kubectl` users governs meshctl. A bearer token that is not one of the control plane's own is
// asked about twice:
//
//   TokenReview           POST /apis/authentication.k8s.io/v1/tokenreviews {spec: {token,
//                         audiences}}: who the token belongs to (user name, uid, groups, extra),
//                         or that it is not valid (401)
//   SubjectAccessReview   POST /apis/authorization.k8s.io/v1/subjectaccessreviews for that user,
//                         resourceAttributes {group: meshlet.io, resource: meshes, verb: view |
//                         edit | admin} (roles.h's KubernetesVerb): allowed, or 403 with the
//                         API server's reason
//
// k8s/base/rbac.yaml ships the ClusterRoles meshlet-viewer, meshlet-editor and meshlet-admin that
// grant those verbs (bind them with a ClusterRoleBinding: the review names no namespace), and
// lets the control plane's service account create both reviews. The API server's answers are
// kept for `cache_ttl` (by the SHA-256 of the token, never the token; at most `cache_size` of
// each kind), so a user's requests cost reviews only that often; a revoked binding takes effect
// within cache_ttl.
//
// Every review is counted in meshlet_cp_api_kubernetes_reviews_total{review=token|access,result}
// (result: the API client's: ok, connect_failed, tls_failed, timeout, http_error, too_large,
// no_credentials, overloaded; or malformed, an answer that is not the review asked for).
//
// Threading: the control plane's loop thread; `done` runs there, never from inside Authorize().

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/flags/flags.h"
#include "common/stats/stats.h"
#include "control-plane/access/gate.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::access {

struct KubernetesUsersOptions {
  // Whether Kubernetes users may use the API when the Kubernetes API server is known.
  bool enabled = true;
  // TokenReview spec.audiences; empty: the API server's own (what `kubectl` users' tokens are
  // for).
  std::vector<std::string> audiences;
  absl::Duration cache_ttl = absl::Seconds(10);
  size_t cache_size = 1024;
};

// --api-kubernetes-users, --api-kubernetes-audiences, --api-kubernetes-cache-ttl,
// --api-kubernetes-cache-size.
std::vector<flags::Flag> KubernetesUsersFlags(KubernetesUsersOptions& options);

// A TokenReview's verdict (for tests and KubernetesApiUsers): the user, or Unauthenticated
// saying why; InvalidArgument for an answer that is not a TokenReview.
struct KubernetesUser {
  std::string username;
  std::string uid;
  std::vector<std::string> groups;
  std::string extra_json;  // status.user.extra as the API server sent it ("{}" without)
};
std::string BuildUserTokenReview(absl::string_view token,
                                 const std::vector<std::string>& audiences);
absl::StatusOr<KubernetesUser> ParseUserTokenReview(absl::string_view response_json,
                                                    const std::vector<std::string>& audiences);
// The SubjectAccessReview for `user` and `role`, and its verdict: OK when allowed,
// PermissionDenied with the API server's reason otherwise.
std::string BuildAccessReview(const KubernetesUser& user, Role role);
absl::Status ParseAccessReview(absl::string_view response_json, const KubernetesUser& user,
                               Role role);

class KubernetesApiUsers final : public KubernetesUsers {
 public:
  // Errors name the flag at fault (the Kubernetes API client's). Loop, clock and stats must
  // outlive this.
  static absl::StatusOr<std::unique_ptr<KubernetesApiUsers>> Create(
      event::Loop& loop, const kubernetes::KubernetesApiOptions& api,
      KubernetesUsersOptions options, const Clock& clock, StatsRegistry& stats);
  ~KubernetesApiUsers() override;

  void Authorize(const std::string& bearer, Role needed,
                 std::function<void(absl::StatusOr<Principal>)> done) override;

 private:
  struct TokenVerdict {
    absl::StatusOr<KubernetesUser> user;
    absl::Time expires;
  };
  struct AccessVerdict {
    absl::Status allowed;
    absl::Time expires;
  };

  KubernetesApiUsers(event::Loop& loop, std::unique_ptr<kubernetes::KubernetesApi> api,
                     KubernetesUsersOptions options, const Clock& clock, StatsRegistry& stats);
  void Count(absl::string_view review, absl::string_view result);
  // `answer` for `done` on a later loop turn (a cached verdict).
  void Later(std::function<void(absl::StatusOr<Principal>)> done, absl::StatusOr<Principal> answer);
  // The second step, once the user is known.
  void Review(const std::string& key, const KubernetesUser& user, Role needed,
              std::function<void(absl::StatusOr<Principal>)> done);
  // Makes room in a cache of at most options_.cache_size entries: expired ones go, and if that
  // is not enough, all.
  template <typename Map>
  void MakeRoom(Map& cache);

  event::Loop& loop_;
  std::unique_ptr<kubernetes::KubernetesApi> api_;
  const KubernetesUsersOptions options_;
  const Clock& clock_;
  StatsRegistry& stats_;
  // By the token's SHA-256 (and, for access, the verb).
  absl::flat_hash_map<std::string, TokenVerdict> tokens_;
  absl::flat_hash_map<std::string, AccessVerdict> access_;
};

}  // namespace meshlet::controlplane::access

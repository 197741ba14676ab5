#pragma once

// Kubernetes service-account attestation. A sidecar in a pod presents its projected
// service-account token (a JWT bound to the audience the control plane expects); the control
// plane asks the API server whether it is valid with the TokenReview API
// (POST /apis/authentication.k8s.io/v1/tokenreviews) and derives the identity from the answer.
//
// The API server checks the JWT's signature, expiry and audience and whether the pod still
// exists; this file checks what the API server answered, and repeats the audience and expiry
// checks on the JWT's own claims so a response for another token or audience cannot be mistaken
// for this one:
//   - status.error empty and status.authenticated true;
//   - status.audiences contains the expected audience (the API server echoes the audiences the
//     token was valid for; a token without a matching audience is refused);
//   - status.user.username is "system:serviceaccount:<namespace>:<name>", both valid names;
//   - the JWT payload has exp in the future (projected tokens always do; legacy non-expiring
//     secret tokens are refused), nbf (if any) not in the future, aud containing the audience,
//     and, when present, kubernetes.io.namespace / kubernetes.io.serviceaccount.name equal to
//     the username's.
//
// The HTTP call itself is behind TokenReviewer (KubernetesTokenReviewer in production). This
// code follows the documented API; it has been tested against recorded-shape responses and a
// fake API server, not against a live cluster.

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "control-plane/identity/workload_identity.h"

namespace meshlet::controlplane::identity {

struct TokenReviewPolicy {
  // The audience sidecars request for their projected token (serviceAccountToken.audience).
  std::string audience = "meshlet";
  // Only tokens bound to a pod (projected service-account tokens carry kubernetes.io.pod) buy a
  // certificate; the certificate then names that pod, and a renewal must show a token of it
  // again, which the API server refuses once the pod is gone.
  bool require_bound_pod = true;
  // Tolerated clock difference for exp/nbf.
  absl::Duration clock_skew = absl::Seconds(30);
};

// The JSON body to POST to /apis/authentication.k8s.io/v1/tokenreviews.
std::string BuildTokenReviewRequest(absl::string_view token, absl::string_view audience);

// Checks a TokenReview response for `token` (see the file comment) and returns the identity it
// proves. Every refusal is PermissionDenied with the reason; a response that is not a
// TokenReview at all is InvalidArgument.
absl::StatusOr<WorkloadIdentity> CheckTokenReview(absl::string_view response_json,
                                                  absl::string_view token,
                                                  const TokenReviewPolicy& policy, absl::Time now);

// The pod a projected service-account token is bound to (its kubernetes.io.pod claims). Call it
// after CheckTokenReview accepted the token: the API server verified the signature, and refuses a
// bound token whose pod no longer exists. NotFound for a token bound to no pod.
struct BoundPod {
  std::string name;
  std::string uid;
};
absl::StatusOr<BoundPod> BoundPodOfToken(absl::string_view token);

// Sends a TokenReview to the API server; `done` gets the response body (any HTTP status other
// than 2xx is an error status). KubernetesTokenReviewer (kubernetes_reviewer.h) is the in-cluster
// HTTPS client; tests script their own.
class TokenReviewer {
 public:
  virtual ~TokenReviewer() = default;
  virtual void Review(const std::string& request_json,
                      std::function<void(absl::StatusOr<std::string> response_json)> done) = 0;
};

}  // namespace meshlet::controlplane::identity

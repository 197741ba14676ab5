#pragma once

// KubernetesTokenReviewer: the production TokenReviewer. It POSTs a TokenReview to
// /apis/authentication.k8s.io/v1/tokenreviews with the control plane's Kubernetes API client
// (control-plane/kubernetes/api_client.h: HTTPS verified against the cluster CA, the control
// plane's own service-account token, one deadline, bounded answers, at most max_in_flight at
// once) and hands the JSON answer to CheckTokenReview when it is a TokenReview.
//
// Every outcome is counted in meshlet_ca_token_reviews_total{result}: the client's result (ok,
// connect_failed, tls_failed, timeout, http_error, too_large, no_credentials, overloaded), or
// malformed for a 2xx answer that is not a TokenReview object.
//
// Threading: loop thread only; `done` is called on it, never from inside Review(). Destroying
// the reviewer drops reviews in flight without calling their callbacks.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "control-plane/identity/token_review.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::identity {

using kubernetes::InClusterApiFromEnvironment;
using kubernetes::KubernetesApiOptions;

class KubernetesTokenReviewer final : public TokenReviewer {
 public:
  // Reads the CA file and parses the address; errors name the flag's value that is wrong.
  static absl::StatusOr<std::unique_ptr<KubernetesTokenReviewer>> Create(
      event::Loop& loop, const KubernetesApiOptions& options, StatsRegistry& stats);
  ~KubernetesTokenReviewer() override;

  void Review(const std::string& request_json,
              std::function<void(absl::StatusOr<std::string> response_json)> done) override;

  const net::Address& address() const { return api_->address(); }
  size_t in_flight() const { return api_->in_flight(); }

 private:
  KubernetesTokenReviewer(std::unique_ptr<kubernetes::KubernetesApi> api, StatsRegistry& stats)
      : api_(std::move(api)), stats_(stats) {}
  void Count(absl::string_view result);

  std::unique_ptr<kubernetes::KubernetesApi> api_;
  StatsRegistry& stats_;
};

}  // namespace meshlet::controlplane::identity

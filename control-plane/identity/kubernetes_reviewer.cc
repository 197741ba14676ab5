#include "control-plane/identity/kubernetes_reviewer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::identity {

absl::StatusOr<std::unique_ptr<KubernetesTokenReviewer>> KubernetesTokenReviewer::Create(
    event::Loop& loop, const KubernetesApiOptions& options, StatsRegistry& stats) {
  absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
      kubernetes::KubernetesApi::Create(loop, options);
  if (!api.ok()) return api.status();
  return std::unique_ptr<KubernetesTokenReviewer>(
      new KubernetesTokenReviewer(*std::move(api), stats));
}

KubernetesTokenReviewer::~KubernetesTokenReviewer() = default;

void KubernetesTokenReviewer::Count(absl::string_view result) {
  auto counter = stats_.shared_shard().RegisterCounter(
      "meshlet_ca_token_reviews_total",
      "TokenReview calls to the Kubernetes API server, by result (ok, connect_failed, "
      "tls_failed, timeout, http_error, malformed, too_large, no_credentials, overloaded).",
      {{"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
}

void KubernetesTokenReviewer::Review(
    const std::string& request_json,
    std::function<void(absl::StatusOr<std::string> response_json)> done) {
  api_->Call(
      {.method = "POST",
       .path = "/apis/authentication.k8s.io/v1/tokenreviews",
       .content_type = "application/json",
       .body = request_json,
       .forbidden_hint = "the control plane's own service-account token was refused, or "
                         "it may not create tokenreviews: it needs the "
                         "system:auth-delegator role"},
      [this, done = std::move(done)](kubernetes::ApiResult result) {
        if (!result.body.ok()) {
          Count(result.result);
          done(std::move(result.body).status());
          return;
        }
        absl::StatusOr<JsonObject> json = JsonObject::Parse(*result.body);
        absl::StatusOr<std::string> kind =
            json.ok() ? json->String("kind") : absl::StatusOr<std::string>(json.status());
        if (!kind.ok() || *kind != "TokenReview") {
          Count("malformed");
          done(absl::UnavailableError("the API server's answer is not a TokenReview object"));
          return;
        }
        Count("ok");
        done(std::move(result.body));
      });
}

}  // namespace meshlet::controlplane::identity

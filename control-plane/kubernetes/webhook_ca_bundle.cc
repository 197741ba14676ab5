#include "control-plane/kubernetes/webhook_ca_bundle.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/clock.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {
WebhookCaBundle::WebhookCaBundle(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                                 std::string trust_bundle_pem, WebhookCaBundleOptions options)
    : loop_(loop),
      api_(api),
      stats_(stats),
      ca_bundle_(absl::Base64Escape(trust_bundle_pem)),
      options_(std::move(options)),
      path_(absl::StrCat("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/",
                         options_.configuration_name)),
      timer_(loop, [this] { Check(); }) {}

WebhookCaBundle::~WebhookCaBundle() { *alive_ = false; }

void WebhookCaBundle::SetTrustBundle(const std::string& trust_bundle_pem) {
  ca_bundle_ = absl::Base64Escape(trust_bundle_pem);
}

void WebhookCaBundle::Start() { Check(); }

void WebhookCaBundle::Check() {
  api_.Call({.method = "GET",
             .path = path_,
             .forbidden_hint = "the control plane needs get and patch on this "
                               "mutatingwebhookconfiguration (k8s/base/rbac.yaml)"},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnRead(std::move(result));
            });
}

void WebhookCaBundle::OnRead(ApiResult result) {
  if (result.http_status == 404) {
    Done("not_found",
         absl::StrCat("no MutatingWebhookConfiguration \"", options_.configuration_name,
                      "\": pods are not injected at creation (install k8s/install, or give "
                      "--webhook-configuration= to stop looking)"));
    return;
  }
  if (!result.body.ok()) {
    Done("failed", std::string(result.body.status().message()));
    return;
  }
  YAML::Node configuration;
  try {
    configuration = YAML::Load(*result.body);
  } catch (const YAML::Exception& e) {
    Done("failed", absl::StrCat("GET ", path_, ": the answer is not JSON: ", e.what()));
    return;
  }
  const std::string resource_version =
      ScalarAt(NodeAt(configuration, "metadata"), "resourceVersion");
  const YAML::Node webhooks = NodeAt(configuration, "webhooks");
  if (ScalarAt(configuration, "kind") != "MutatingWebhookConfiguration" ||
      resource_version.empty() || !webhooks.IsSequence()) {
    Done("failed",
         absl::StrCat("GET ", path_,
                      ": the answer is not a MutatingWebhookConfiguration with webhooks"));
    return;
  }
  std::vector<std::string> ops = {
      absl::StrCat(R"({"op":"test","path":"/metadata/resourceVersion","value":)",
                   JsonQuote(resource_version), "}")};
  for (size_t i = 0; i < webhooks.size(); ++i) {
    const YAML::Node client_config = NodeAt(webhooks[i], "clientConfig");
    if (!client_config.IsMap()) continue;
    if (ScalarAt(client_config, "caBundle") == ca_bundle_) continue;
    ops.push_back(absl::StrCat(R"({"op":"add","path":"/webhooks/)", i,
                               R"(/clientConfig/caBundle","value":)", JsonQuote(ca_bundle_), "}"));
  }
  if (ops.size() == 1) {
    Done("current", "");
    return;
  }
  const size_t changed = ops.size() - 1;
  api_.Call({.method = "PATCH",
             .path = path_,
             .content_type = "application/json-patch+json",
             .body = absl::StrCat("[", absl::StrJoin(ops, ","), "]"),
             .forbidden_hint = "the control plane needs get and patch on this "
                               "mutatingwebhookconfiguration (k8s/base/rbac.yaml)"},
            [this, alive = alive_, changed](ApiResult patched) {
              if (!*alive) return;
              if (!patched.body.ok()) {
                Done("failed", std::string(patched.body.status().message()));
                return;
              }
              Done("updated", absl::StrCat("caBundle of MutatingWebhookConfiguration \"",
                                           options_.configuration_name, "\" set to the CA's ",
                                           "trust bundle (", changed, " webhook(s))"));
            });
}

void WebhookCaBundle::Done(absl::string_view result, const std::string& message) {
  absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_webhook_ca_bundle_checks_total",
      "Checks of the injection webhook configuration's caBundle, by result: current, updated, "
      "not_found, failed.",
      {{"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
  const bool failed = result == "failed" || result == "not_found";
  if (result == "updated" || (failed && last_outcome_ != message)) {
    if (failed) {
      LOG(WARN) << "webhook: " << message;
    } else {
      LOG(INFO) << "webhook: " << message;
    }
  }
  last_outcome_ = failed ? message : std::string(result);
  Duration next = options_.check_interval;
  if (result == "failed") {
    next = DoublingRetryDelay(++consecutive_failures_, options_.retry_base, options_.retry_cap);
  } else {
    consecutive_failures_ = 0;
  }
  timer_.Enable(next);
}

}  // namespace meshlet::controlplane::kubernetes

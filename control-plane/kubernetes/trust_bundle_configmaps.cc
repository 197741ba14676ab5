#include "control-plane/kubernetes/trust_bundle_configmaps.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/http/client.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {
namespace {

constexpr char kRbacHint[] =
    "the control plane needs list on namespaces, create on configmaps, and get and patch on the "
    "meshlet-trust ConfigMaps (k8s/base/rbac.yaml)";

}  // namespace

TrustBundleConfigMaps::TrustBundleConfigMaps(event::Loop& loop, KubernetesApi& api,
                                             StatsRegistry& stats, std::string trust_bundle_pem,
                                             TrustBundleConfigMapsOptions options)
    : loop_(loop),
      api_(api),
      stats_(stats),
      pem_(std::move(trust_bundle_pem)),
      options_(std::move(options)),
      timer_(loop, [this] { Round(); }) {}

TrustBundleConfigMaps::~TrustBundleConfigMaps() { *alive_ = false; }

void TrustBundleConfigMaps::Start() { Round(); }

void TrustBundleConfigMaps::Round() {
  round_failed_ = false;
  pending_.clear();
  if (options_.more_namespaces) {
    for (std::string& ns : options_.more_namespaces()) {
      if (std::find(options_.excluded_namespaces.begin(), options_.excluded_namespaces.end(), ns) ==
          options_.excluded_namespaces.end()) {
        pending_.push_back(std::move(ns));
      }
    }
  }
  selectors_left_ = {options_.namespace_selector};
  if (options_.more_selectors) {
    for (std::string& selector : options_.more_selectors()) {
      selectors_left_.push_back(std::move(selector));
    }
  }
  ListNamespaces();
}

void TrustBundleConfigMaps::ListNamespaces() {
  const std::string selector = selectors_left_.back();
  selectors_left_.pop_back();
  api_.Call({.method = "GET",
             .path = absl::StrCat("/api/v1/namespaces?labelSelector=", http::QueryEscape(selector)),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnNamespaces(std::move(result));
            });
}

void TrustBundleConfigMaps::OnNamespaces(ApiResult result) {
  if (!result.body.ok()) {
    Fail(std::string(result.body.status().message()));
    EndRound();
    return;
  }
  YAML::Node list;
  try {
    list = YAML::Load(*result.body);
  } catch (const YAML::Exception&) {
    list = YAML::Node();
  }
  const YAML::Node items = NodeAt(list, "items");
  if (!items.IsSequence()) {
    Fail("GET /api/v1/namespaces: the answer is not a NamespaceList");
    EndRound();
    return;
  }
  for (const YAML::Node& item : items) {
    const std::string ns = ScalarAt(NodeAt(item, "metadata"), "name");
    if (ns.empty()) continue;
    if (std::find(options_.excluded_namespaces.begin(), options_.excluded_namespaces.end(), ns) ==
            options_.excluded_namespaces.end() &&
        std::find(pending_.begin(), pending_.end(), ns) == pending_.end()) {
      pending_.push_back(ns);
    }
  }
  if (!selectors_left_.empty()) {
    ListNamespaces();
    return;
  }
  Next();
}

void TrustBundleConfigMaps::Next() {
  if (pending_.empty()) {
    EndRound();
    return;
  }
  const std::string ns = pending_.back();
  pending_.pop_back();
  api_.Call({.method = "GET",
             .path = absl::StrCat("/api/v1/namespaces/", ns, "/configmaps/", options_.config_map),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, ns](ApiResult result) {
              if (*alive) OnConfigMap(ns, std::move(result));
            });
}

void TrustBundleConfigMaps::OnConfigMap(const std::string& ns, ApiResult result) {
  const std::string data = absl::StrCat("{", JsonQuote(options_.key), ":", JsonQuote(pem_), "}");
  if (result.http_status == 404) {
    Write(
        ns, "POST", absl::StrCat("/api/v1/namespaces/", ns, "/configmaps"), "application/json",
        absl::StrCat(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":)",
                     JsonQuote(options_.config_map), R"(,"namespace":)", JsonQuote(ns),
                     R"(,"labels":{"app.kubernetes.io/managed-by":"meshlet"}},"data":)", data, "}"),
        "created");
    return;
  }
  if (!result.body.ok()) {
    Fail(std::string(result.body.status().message()));
    Next();
    return;
  }
  std::string current;
  try {
    const YAML::Node map = YAML::Load(*result.body);
    current = ScalarAt(NodeAt(map, "data"), options_.key.c_str());
  } catch (const YAML::Exception&) {
    Fail(absl::StrCat("GET ConfigMap ", ns, "/", options_.config_map, ": the answer is not JSON"));
    Next();
    return;
  }
  if (current == pem_) {
    Count("current");
    Next();
    return;
  }
  Write(ns, "PATCH", absl::StrCat("/api/v1/namespaces/", ns, "/configmaps/", options_.config_map),
        "application/merge-patch+json", absl::StrCat(R"({"data":)", data, "}"), "updated");
}

void TrustBundleConfigMaps::Write(const std::string& ns, const std::string& method,
                                  const std::string& path, const std::string& content_type,
                                  std::string body, absl::string_view result) {
  api_.Call({.method = method,
             .path = path,
             .content_type = content_type,
             .body = std::move(body),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, ns, what = std::string(result)](ApiResult written) {
              if (!*alive) return;
              if (!written.body.ok()) {
                Fail(std::string(written.body.status().message()));
              } else {
                Count(what);
                LOG(INFO) << "trust bundle: ConfigMap " << ns << "/" << options_.config_map << " "
                          << what;
              }
              Next();
            });
}

void TrustBundleConfigMaps::Count(absl::string_view result) {
  absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_trust_bundle_configmaps_total",
      "The trust-bundle ConfigMaps of injected namespaces, by outcome: created, updated, "
      "current, failed.",
      {{"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
}

void TrustBundleConfigMaps::Fail(const std::string& message) {
  Count("failed");
  round_failed_ = true;
  if (message != last_failure_) LOG(WARN) << "trust bundle: " << message;
  last_failure_ = message;
}

void TrustBundleConfigMaps::EndRound() {
  Duration next = options_.interval;
  if (round_failed_) {
    next =
        DoublingRetryDelay(++consecutive_failed_rounds_, options_.retry_base, options_.retry_cap);
  } else {
    consecutive_failed_rounds_ = 0;
    last_failure_.clear();
  }
  timer_.Enable(next);
}

}  // namespace meshlet::controlplane::kubernetes

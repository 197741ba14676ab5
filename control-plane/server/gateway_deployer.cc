#include "control-plane/server/gateway_deployer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"
#include "common/tls/digest.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"
#include "control-plane/kubernetes/policy_mirror.h"
#include "control-plane/kubernetes/yaml_fields.h"
#include "control-plane/translate/gateway_status.h"

namespace meshlet::controlplane {
namespace {

constexpr char kRbacHint[] =
    "the control plane needs get on gateways and get, create and patch on serviceaccounts, "
    "services and deployments (k8s/gateway/rbac.yaml, meshctl install --set gateway=true)";

// The infrastructure keys (of `annotation`'s list) `current` carries that `desired` no longer
// has, set to null in `desired`'s metadata (for a Deployment, its pod template's too) so that the
// merge patch removes them.
void RemoveDropped(const YAML::Node& current, YAML::Node& desired, const char* annotation,
                   const char* field) {
  const std::string listed = kubernetes::ScalarAt(
      kubernetes::NodeAt(kubernetes::NodeAt(current, "metadata"), "annotations"), annotation);
  if (listed.empty()) return;
  std::vector<YAML::Node> metadatas = {desired["metadata"]};
  if (desired["kind"].Scalar() == "Deployment") {
    metadatas.push_back(desired["spec"]["template"]["metadata"]);
  }
  for (absl::string_view key : absl::StrSplit(listed, ',', absl::SkipEmpty())) {
    const std::string k(key);
    for (YAML::Node& metadata : metadatas) {
      if (!metadata[field][k].IsDefined() || metadata[field][k].IsNull()) {
        metadata[field][k] = YAML::Node(YAML::NodeType::Null);
      }
    }
  }
  if (!desired["metadata"]["annotations"][annotation].IsDefined()) {
    desired["metadata"]["annotations"][annotation] = YAML::Node(YAML::NodeType::Null);
  }
}

// The API path of a namespaced object's collection.
std::string CollectionPath(const YAML::Node& object) {
  const std::string api_version = object["apiVersion"].Scalar();
  const std::string kind = object["kind"].Scalar();
  const std::string ns = object["metadata"]["namespace"].Scalar();
  std::string plural = kind == "ServiceAccount" ? "serviceaccounts"
                       : kind == "Deployment"   ? "deployments"
                                                : "services";
  const std::string prefix =
      api_version == "v1" ? std::string("/api/v1") : absl::StrCat("/apis/", api_version);
  return absl::StrCat(prefix, "/namespaces/", ns, "/", plural);
}

std::string ObjectPath(const YAML::Node& object) {
  return absl::StrCat(CollectionPath(object), "/", object["metadata"]["name"].Scalar());
}

std::string Describe(const YAML::Node& object) {
  return absl::StrCat(object["kind"].Scalar(), " ", object["metadata"]["namespace"].Scalar(), "/",
                      object["metadata"]["name"].Scalar());
}

bool Deploys(const gateway::Gateway& gateway, const GatewayDeployerOptions& options) {
  const auto& labels = gateway.metadata().labels();
  auto rev = labels.find(inject::kRevisionLabel);
  if (rev != labels.end()) return rev->second == options.inject.revision;
  return options.default_revision == nullptr || options.default_revision();
}

}  // namespace

std::vector<RenderedGateway> RenderGateways(const policy::PolicySnapshot& policy,
                                            const GatewayDeployerOptions& options) {
  std::vector<RenderedGateway> out;
  for (const gateway::Gateway& gateway : policy.gateways) {
    const auto& annotations = gateway.metadata().annotations();
    auto managed = annotations.find(kubernetes::kManagedByAnnotation);
    if (managed == annotations.end() || managed->second != kubernetes::kManagedByKubernetes) {
      continue;  // applied with meshctl: there is no Kubernetes object to own the Deployment
    }
    if (!translate::IsMeshletClass(policy, gateway.spec().gateway_class_name()) ||
        !Deploys(gateway, options)) {
      continue;
    }
    inject::GatewayDeploymentSpec spec;
    spec.namespace_ = gateway.metadata().namespace_();
    spec.name = gateway.metadata().name();
    spec.class_name = gateway.spec().gateway_class_name();
    for (const auto& listener : gateway.spec().listeners()) spec.ports.push_back(listener.port());
    spec.annotations.insert(annotations.begin(), annotations.end());
    const auto& infrastructure = gateway.spec().infrastructure();
    spec.infrastructure_labels.insert(infrastructure.labels().begin(),
                                      infrastructure.labels().end());
    spec.infrastructure_annotations.insert(infrastructure.annotations().begin(),
                                           infrastructure.annotations().end());
    spec.addresses =
        translate::JudgeGatewayAddresses(policy, gateway, options.address_ranges).usable;
    out.push_back({spec.namespace_, spec.name, inject::GatewayManifests(spec, options.inject)});
  }
  return out;
}

GatewayDeployer::GatewayDeployer(event::Loop& loop, kubernetes::KubernetesApi& api,
                                 StatsRegistry& stats, GatewayDeployerOptions options)
    : loop_(loop),
      api_(api),
      stats_(stats),
      options_(std::move(options)),
      timer_(loop, [this] { Next(); }),
      resync_timer_(loop, [this] {
        for (auto& [key, gateway] : gateways_) gateway.done_hash.clear();
        Next();
        resync_timer_.Enable(options_.resync);
      }) {
  deployed_ =
      OrDiscard(stats_.shared_shard().RegisterGauge(
                    "meshlet_cp_gateway_deployments",
                    "meshlet's Gateways whose proxy Deployment this control plane keeps.", {}),
                "meshlet_cp_gateway_deployments");
}

GatewayDeployer::~GatewayDeployer() { *alive_ = false; }

void GatewayDeployer::SetPolicy(const policy::PolicySnapshot& policy) {
  std::map<std::string, Gateway> next;
  for (RenderedGateway& rendered : RenderGateways(policy, options_)) {
    const std::string key = absl::StrCat(rendered.namespace_, "/", rendered.name);
    if (!rendered.objects.ok()) {
      Count("invalid");
      if (logged_.insert(std::string(rendered.objects.status().message())).second) {
        LOG(WARN) << "gateway deployment: " << rendered.objects.status().message();
      }
      continue;
    }
    Gateway& gateway = next[key];
    std::string all;
    for (YAML::Node& object : *rendered.objects) {
      const std::string hash = tls::Sha256Hex(inject::ToCompactJson(object)).substr(0, 16);
      object["metadata"]["annotations"][kGatewaySpecHashAnnotation] = inject::StringNode(hash);
      absl::StrAppend(&all, hash);
    }
    gateway.objects = *std::move(rendered.objects);
    gateway.hash = all;
    if (auto it = gateways_.find(key); it != gateways_.end()) {
      gateway.done_hash = it->second.done_hash;
      gateway.failures = it->second.failures;
    }
  }
  // A Gateway being written keeps its entry until its answer (OnGateway/OnObject find it).
  if (!in_flight_.empty() && next.find(in_flight_) == next.end()) {
    auto it = gateways_.find(in_flight_);
    if (it != gateways_.end()) {
      Gateway& kept = next[in_flight_];
      kept = std::move(it->second);
      kept.hash.clear();
      kept.done_hash.clear();
    }
  }
  gateways_ = std::move(next);
  deployed_.Set(static_cast<int64_t>(gateways_.size()));
  Next();
}

void GatewayDeployer::SetActive(bool active) {
  if (active == active_) return;
  active_ = active;
  if (active_) {
    for (auto& [key, gateway] : gateways_) gateway.done_hash.clear();
    resync_timer_.Enable(options_.resync);
    Next();
  } else {
    resync_timer_.Disable();
    timer_.Disable();
  }
}

std::vector<std::string> GatewayDeployer::namespaces() const {
  std::set<std::string> out;
  for (const auto& [key, gateway] : gateways_) {
    if (!gateway.hash.empty()) out.insert(key.substr(0, key.find('/')));
  }
  return {out.begin(), out.end()};
}

bool GatewayDeployer::idle() const {
  if (!active_ || !in_flight_.empty()) return false;
  for (const auto& [key, gateway] : gateways_) {
    if (!gateway.hash.empty() && gateway.hash != gateway.done_hash) return false;
  }
  return true;
}

void GatewayDeployer::Next() {
  if (!active_ || !in_flight_.empty()) return;
  // The Gateway that failed least recently is tried first; one that failed waits its backoff.
  for (auto& [key, gateway] : gateways_) {
    if (gateway.hash.empty() || gateway.hash == gateway.done_hash) continue;
    if (gateway.failures > 0 && timer_.enabled()) continue;
    in_flight_ = key;
    gateway.next = 0;
    const size_t slash = key.find('/');
    api_.Call({.method = "GET",
               .path = absl::StrCat("/apis/gateway.networking.k8s.io/v1/namespaces/",
                                    key.substr(0, slash), "/gateways/", key.substr(slash + 1)),
               .forbidden_hint = kRbacHint},
              [this, alive = alive_, key](kubernetes::ApiResult result) {
                if (*alive) OnGateway(key, std::move(result));
              });
    return;
  }
}

void GatewayDeployer::OnGateway(const std::string& key, kubernetes::ApiResult result) {
  auto it = gateways_.find(key);
  if (!active_ || it == gateways_.end() || it->second.hash.empty()) {
    Finish(key, true, "");
    return;
  }
  if (result.http_status == 404) {  // deleted since: its mirror's removal follows
    it->second.done_hash = it->second.hash;
    Finish(key, true, "");
    return;
  }
  if (!result.body.ok()) {
    Finish(key, false, std::string(result.body.status().message()));
    return;
  }
  std::string uid;
  try {
    uid = kubernetes::ScalarAt(kubernetes::NodeAt(YAML::Load(*result.body), "metadata"), "uid");
  } catch (const YAML::Exception&) {
  }
  if (uid.empty()) {
    Finish(key, false, absl::StrCat("GET Gateway ", key, ": the answer has no metadata.uid"));
    return;
  }
  it->second.uid = uid;
  WriteObject(key);
}

void GatewayDeployer::WriteObject(const std::string& key) {
  Gateway& gateway = gateways_[key];
  if (gateway.next >= gateway.objects.size()) {
    gateway.done_hash = gateway.hash;
    Finish(key, true, "");
    return;
  }
  api_.Call({.method = "GET",
             .path = ObjectPath(gateway.objects[gateway.next]),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, key](kubernetes::ApiResult result) {
              if (*alive) OnObject(key, std::move(result));
            });
}

void GatewayDeployer::OnObject(const std::string& key, kubernetes::ApiResult result) {
  auto it = gateways_.find(key);
  if (!active_ || it == gateways_.end() || it->second.hash.empty()) {
    Finish(key, true, "");
    return;
  }
  Gateway& gateway = it->second;
  YAML::Node desired = YAML::Clone(gateway.objects[gateway.next]);
  YAML::Node owner = inject::MapNode();
  owner["apiVersion"] = inject::StringNode("gateway.networking.k8s.io/v1");
  owner["kind"] = inject::StringNode("Gateway");
  owner["name"] = inject::StringNode(key.substr(key.find('/') + 1));
  owner["uid"] = inject::StringNode(gateway.uid);
  owner["controller"] = inject::BoolNode(true);
  desired["metadata"]["ownerReferences"].push_back(owner);
  const std::string what = Describe(desired);

  if (result.http_status == 404) {
    api_.Call({.method = "POST",
               .path = CollectionPath(desired),
               .content_type = "application/json",
               .body = inject::ToCompactJson(desired),
               .forbidden_hint = kRbacHint},
              [this, alive = alive_, key](kubernetes::ApiResult written) {
                if (*alive) OnWritten(key, "created", std::move(written));
              });
    return;
  }
  if (!result.body.ok()) {
    Finish(key, false, std::string(result.body.status().message()));
    return;
  }
  YAML::Node current;
  try {
    current = YAML::Load(*result.body);
  } catch (const YAML::Exception&) {
    Finish(key, false, absl::StrCat("GET ", what, ": the answer is not JSON"));
    return;
  }
  const YAML::Node metadata = kubernetes::NodeAt(current, "metadata");
  const std::string managed_by =
      kubernetes::ScalarAt(kubernetes::NodeAt(metadata, "labels"), inject::kManagedByLabel);
  if (managed_by != "meshlet") {
    Count("conflict");
    if (logged_.insert(absl::StrCat("conflict ", what)).second)
      LOG(WARN) << "gateway deployment: " << what
                << " exists and is not meshlet's (no label app.kubernetes.io/managed-by=meshlet): "
                   "left as it is; the Gateway's proxy is not deployed until it is removed";
    Finish(key, false, "");
    return;
  }
  const std::string hash =
      kubernetes::ScalarAt(kubernetes::NodeAt(metadata, "annotations"), kGatewaySpecHashAnnotation);
  if (hash == desired["metadata"]["annotations"][kGatewaySpecHashAnnotation].Scalar()) {
    Count("unchanged");
    ++gateway.next;
    WriteObject(key);
    return;
  }
  // Labels and annotations the Gateway's spec.infrastructure no longer lists are removed.
  RemoveDropped(current, desired, inject::kInfrastructureLabelsAnnotation, "labels");
  RemoveDropped(current, desired, inject::kInfrastructureAnnotationsAnnotation, "annotations");
  desired["metadata"]["resourceVersion"] =
      inject::StringNode(kubernetes::ScalarAt(metadata, "resourceVersion"));
  api_.Call({.method = "PATCH",
             .path = ObjectPath(desired),
             .content_type = "application/merge-patch+json",
             .body = inject::ToCompactJson(desired),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, key](kubernetes::ApiResult written) {
              if (*alive) OnWritten(key, "updated", std::move(written));
            });
}

void GatewayDeployer::OnWritten(const std::string& key, absl::string_view result,
                                kubernetes::ApiResult written) {
  auto it = gateways_.find(key);
  if (!active_ || it == gateways_.end() || it->second.hash.empty()) {
    Finish(key, true, "");
    return;
  }
  if (!written.body.ok()) {
    Finish(key, false, std::string(written.body.status().message()));
    return;
  }
  Gateway& gateway = it->second;
  Count(result);
  LOG(INFO) << "gateway deployment: " << Describe(gateway.objects[gateway.next]) << " " << result;
  ++gateway.next;
  WriteObject(key);
}

void GatewayDeployer::Finish(const std::string& key, bool ok, const std::string& why) {
  in_flight_.clear();
  auto it = gateways_.find(key);
  if (it != gateways_.end() && it->second.hash.empty()) gateways_.erase(it);  // gone meanwhile
  it = gateways_.find(key);
  if (ok) {
    if (it != gateways_.end()) it->second.failures = 0;
    Next();
    return;
  }
  if (!why.empty()) {
    Count("failed");
    LOG(WARN) << "gateway deployment: Gateway " << key << ": " << why;
  }
  int failures = 1;
  if (it != gateways_.end()) failures = ++it->second.failures;
  timer_.Disable();
  timer_.Enable(DoublingRetryDelay(failures, options_.retry_base, options_.retry_cap));
  Next();  // the others meanwhile
}

void GatewayDeployer::Count(absl::string_view result) {
  absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_gateway_deployments_total",
      "Writes of the objects that run meshlet's Gateways' proxies, by result: created, updated, "
      "unchanged, conflict (an object of that name that is not meshlet's), invalid (a Gateway "
      "that cannot be deployed), failed.",
      {{"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
}

}  // namespace meshlet::controlplane

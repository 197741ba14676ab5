#include "control-plane/kubernetes/policy_mirror.h"

#include <yaml-cpp/yaml.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "control-plane/kubernetes/route_status_writer.h"
#include "control-plane/kubernetes/yaml_fields.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::kubernetes {
namespace {

constexpr char kRbacHint[] =
    "the control plane needs list and watch on meshlet.io's resources and on httproutes, "
    "grpcroutes, referencegrants, gateways and gatewayclasses (gateway.networking.k8s.io; "
    "k8s/base/rbac.yaml)";
constexpr char kEventsRbacHint[] =
    "the control plane needs create on events.k8s.io events (k8s/base/rbac.yaml)";
constexpr char kLastApplied[] = "kubectl.kubernetes.io/last-applied-configuration";
// An Event's note is at most 1 kB (events.k8s.io/v1).
constexpr size_t kMaxNote = 1000;

bool IsGatewayRoute(absl::string_view kind, absl::string_view api_version) {
  return (kind == "HTTPRoute" || kind == "GRPCRoute") &&
         absl::StartsWith(api_version, absl::StrCat(policy::kGatewayGroup, "/"));
}

std::string Message(const http::ServerResponse& response) {
  try {
    const YAML::Node status = YAML::Load(response.body);
    const std::string message = ScalarAt(status, "message");
    if (!message.empty()) return message;
  } catch (const YAML::Exception&) {
  }
  return absl::StrCat("HTTP ", response.status);
}

}  // namespace

struct PolicyMirror::Resource {
  std::string kind;
  std::string plural;
  std::string api_path;     // "/apis/meshlet.io/v1": where the kind is, in both APIs
  std::string api_version;  // "meshlet.io/v1"
  bool namespaced = true;
  std::unique_ptr<Reflector<Object>> reflector;
  // Each key's document as last written or refused (nothing more to do for it).
  std::map<std::string, std::string> written;
  // A list completed since the last pass: the store is pruned of what it lacks.
  bool prune = false;

  std::string ApiPath(absl::string_view namespace_, absl::string_view name) const {
    std::string path = absl::StrCat(api_path, "/");
    if (namespaced) absl::StrAppend(&path, "namespaces/", namespace_, "/");
    absl::StrAppend(&path, plural);
    if (!name.empty()) absl::StrAppend(&path, "/", name);
    return path;
  }
};

struct PolicyMirror::Action {
  enum class Type { kPut, kDelete, kPrune };
  Type type;
  Resource* resource;
  std::string key;
  Object object;  // kPut: what is written; kDelete: its namespace and name
};

namespace {

// What the mirror writes of a reflected object (policy_mirror.h).
std::optional<PolicyMirror::Object> ParseObject(const std::string& kind,
                                                const std::string& api_version, bool namespaced,
                                                const YAML::Node& object) {
  const YAML::Node metadata = NodeAt(object, "metadata");
  PolicyMirror::Object out;
  out.kind = kind;
  out.api_version = api_version;
  out.name = ScalarAt(metadata, "name");
  if (namespaced) out.namespace_ = ScalarAt(metadata, "namespace");
  out.uid = ScalarAt(metadata, "uid");
  if (IsGatewayRoute(kind, api_version)) {
    (void)absl::SimpleAtoi(ScalarAt(metadata, "generation"), &out.generation);
    if (const YAML::Node refs = NodeAt(NodeAt(object, "spec"), "parentRefs"); refs.IsSequence()) {
      AppendNodeJson(refs, &out.parent_refs);
    }
  }
  std::string& doc = out.document;
  absl::StrAppend(&doc, R"({"apiVersion":)", JsonQuote(api_version), R"(,"kind":)", JsonQuote(kind),
                  R"(,"metadata":{"name":)", JsonQuote(out.name));
  if (namespaced) absl::StrAppend(&doc, R"(,"namespace":)", JsonQuote(out.namespace_));
  if (const YAML::Node labels = NodeAt(metadata, "labels"); labels.IsMap()) {
    doc += R"(,"labels":)";
    AppendNodeJson(labels, &doc);
  }
  doc += R"(,"annotations":{)";
  if (const YAML::Node annotations = NodeAt(metadata, "annotations"); annotations.IsMap()) {
    for (const auto& entry : annotations) {
      const std::string name = entry.first.Scalar();
      if (name == kLastApplied || name == kManagedByAnnotation ||
          name == kKubernetesGenerationAnnotation) {
        continue;
      }
      AppendJsonString(&doc, name);
      doc.push_back(':');
      AppendNodeJson(entry.second, &doc);
      doc.push_back(',');
    }
  }
  absl::StrAppend(&doc, JsonQuote(kManagedByAnnotation), ":", JsonQuote(kManagedByKubernetes), ",",
                  JsonQuote(kKubernetesGenerationAnnotation), ":",
                  JsonQuote(ScalarAt(metadata, "generation")), "}}");
  if (const YAML::Node spec = NodeAt(object, "spec"); spec.IsDefined()) {
    doc += R"(,"spec":)";
    AppendNodeJson(spec, &doc);
  }
  doc += "}";
  return out;
}

}  // namespace

PolicyMirror::PolicyMirror(event::Loop& loop, KubernetesApi& api, PolicyWriteFn write,
                           StatsRegistry& stats, const Clock& clock, PolicyMirrorOptions options)
    : loop_(loop),
      api_(api),
      write_(std::move(write)),
      stats_(stats),
      clock_(clock),
      options_(std::move(options)),
      pass_timer_(loop, [this] { Pass(); }),
      next_timer_(loop, [this] { Next(); }) {
  for (const char* result : {"ok", "failed"}) {
    absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
        "meshlet_cp_kubernetes_policy_events_total",
        "Kubernetes Events the control plane posted about policy objects it refused, by result.",
        {{"result", result}});
    if (counter.ok()) (std::string(result) == "ok" ? events_ok_ : events_failed_) = *counter;
  }
}

PolicyMirror::~PolicyMirror() { Stop(); }

void PolicyMirror::Count(absl::string_view result) {
  auto it = writes_.find(result);
  if (it == writes_.end()) {
    absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
        "meshlet_cp_kubernetes_policy_writes_total",
        "Policy writes mirrored from Kubernetes into the store, by result (applied, unchanged, "
        "deleted, pruned, invalid, failed).",
        {{"result", std::string(result)}});
    it = writes_.emplace(std::string(result), counter.ok() ? *counter : Counter()).first;
  }
  it->second.Inc();
}

void PolicyMirror::Start() {
  if (running()) return;
  alive_ = std::make_shared<bool>(true);
  for (const policy::KindInfo& info : policy::AllKinds()) {
    auto resource = std::make_unique<Resource>();
    resource->kind = std::string(info.kind);
    resource->plural = std::string(info.plural);
    resource->api_path = info.ApiPath();
    resource->api_version = info.ApiVersion();
    resource->namespaced = info.namespaced;
    Resource* r = resource.get();
    resource->reflector = std::make_unique<Reflector<Object>>(
        loop_, api_, stats_, options_.reflector,
        ReflectorConfig{.resource = absl::StrCat(info.plural, ".", info.group),
                        .path = absl::StrCat(r->api_path, "/", info.plural),
                        .forbidden_hint = kRbacHint,
                        .namespaced = info.namespaced,
                        .optional = true},
        [kind = r->kind, version = r->api_version, namespaced = r->namespaced](
            const YAML::Node& object) { return ParseObject(kind, version, namespaced, object); },
        [this, r](bool relisted) { Changed(*r, relisted); });
    resources_.push_back(std::move(resource));
  }
  LOG(INFO) << "kubernetes: mirroring policy objects (meshlet.io, gateway.networking.k8s.io) "
               "into the store";
  for (auto& resource : resources_) resource->reflector->Start();
}

void PolicyMirror::Stop() {
  if (!running()) return;
  *alive_ = false;
  queue_.clear();
  resources_.clear();
  busy_ = dirty_ = false;
  failures_ = 0;
  pass_timer_.Disable();
  next_timer_.Disable();
  LOG(INFO) << "kubernetes: no longer mirroring policy objects (another replica does)";
}

bool PolicyMirror::synced() const {
  if (!running() || busy_ || dirty_ || !queue_.empty()) return false;
  for (const auto& resource : resources_) {
    if (!resource->reflector->listed() || resource->prune) return false;
    for (const auto& [key, object] : resource->reflector->objects()) {
      auto it = resource->written.find(key);
      if (it == resource->written.end() || it->second != object.document) return false;
    }
    if (resource->written.size() != resource->reflector->objects().size()) return false;
  }
  return true;
}

void PolicyMirror::Changed(Resource& resource, bool relisted) {
  if (relisted) resource.prune = true;
  dirty_ = true;
  if (!busy_) pass_timer_.Enable(Duration::zero());
}

void PolicyMirror::Pass() {
  if (busy_) return;  // Next() passes again once the queue is done
  dirty_ = false;
  queue_.clear();
  for (auto& resource : resources_) {
    Resource* r = resource.get();
    if (!r->reflector->listed()) continue;
    const auto& objects = r->reflector->objects();
    for (const auto& [key, object] : objects) {
      auto it = r->written.find(key);
      if (it == r->written.end() || it->second != object.document) {
        queue_.push_back({Action::Type::kPut, r, key, object});
      }
    }
    for (const auto& [key, document] : r->written) {
      if (objects.count(key) == 0) {
        Object gone;
        const size_t slash = key.find('/');
        gone.namespace_ = slash == std::string::npos ? "" : key.substr(0, slash);
        gone.name = slash == std::string::npos ? key : key.substr(slash + 1);
        queue_.push_back({Action::Type::kDelete, r, key, std::move(gone)});
      }
    }
    if (r->prune) {
      r->prune = false;
      queue_.push_back({Action::Type::kPrune, r, "", {}});
    }
  }
  Next();
}

void PolicyMirror::Next() {
  if (queue_.empty()) {
    busy_ = false;
    if (dirty_) Pass();
    return;
  }
  busy_ = true;
  Action action = std::move(queue_.front());
  queue_.erase(queue_.begin());
  http::ServerRequest request;
  const Resource& r = *action.resource;
  switch (action.type) {
    case Action::Type::kPut:
      request.headers.Add(":method", "PUT");
      request.headers.Add(":path", r.ApiPath(action.object.namespace_, action.object.name));
      request.headers.Add("content-type", "application/json");
      request.body = action.object.document;
      break;
    case Action::Type::kDelete:
      request.headers.Add(":method", "DELETE");
      request.headers.Add(":path", r.ApiPath(action.object.namespace_, action.object.name));
      break;
    case Action::Type::kPrune:
      request.headers.Add(":method", "GET");
      request.headers.Add(":path", absl::StrCat(r.api_path, "/", r.plural));
      break;
  }
  write_(std::move(request),
         [this, alive = alive_, action = std::move(action)](http::ServerResponse response) {
           if (!*alive) return;
           if (action.type == Action::Type::kPrune) {
             Pruned(action, response);
           } else {
             Written(action, response);
           }
           // The next one on a later loop turn (`done` may run inside write_).
           if (busy_) next_timer_.Enable(Duration::zero());
         });
}

void PolicyMirror::Written(const Action& action, const http::ServerResponse& response) {
  Resource& r = *action.resource;
  const std::string what =
      absl::StrCat(r.kind, " ", action.object.namespace_,
                   action.object.namespace_.empty() ? "" : "/", action.object.name);
  if (action.type == Action::Type::kDelete) {
    if (response.status == 200 || response.status == 404) {
      r.written.erase(action.key);
      RouteRefused(action.object, "");
      Count("deleted");
      LOG(INFO) << "kubernetes: " << what << " deleted from the store (gone from Kubernetes)";
      failures_ = 0;
      return;
    }
  } else if (response.status == 200 || response.status == 201) {
    r.written[action.key] = action.object.document;
    RouteRefused(action.object, "");
    const bool unchanged = response.headers.Get("x-meshlet-result").value_or("") == "unchanged";
    Count(unchanged ? "unchanged" : "applied");
    if (!unchanged) LOG(INFO) << "kubernetes: " << what << " written to the store";
    failures_ = 0;
    return;
  } else if (response.status == 400 || response.status == 422) {
    // Invalid: not applied; the same version is not tried again.
    r.written[action.key] = action.object.document;
    Count("invalid");
    const std::string message = Message(response);
    LOG(WARN) << "kubernetes: " << what << " is not applied: " << message;
    PostEvent(action.object, message);
    RouteRefused(action.object, message);
    return;
  }
  Count("failed");
  LOG_EVERY_N_SEC(WARN, 10) << "kubernetes: " << what << " not mirrored: " << Message(response);
  Retry();
}

void PolicyMirror::Pruned(const Action& action, const http::ServerResponse& response) {
  Resource& r = *action.resource;
  if (response.status != 200) {
    Count("failed");
    LOG_EVERY_N_SEC(WARN, 10) << "kubernetes: listing stored " << r.plural
                              << " failed: " << Message(response);
    r.prune = true;
    Retry();
    return;
  }
  YAML::Node list;
  try {
    list = YAML::Load(response.body);
  } catch (const YAML::Exception& e) {
    Count("failed");
    return;
  }
  const YAML::Node items = NodeAt(list, "items");
  if (!items.IsSequence()) return;
  const auto& objects = r.reflector->objects();
  for (const YAML::Node& item : items) {
    const YAML::Node metadata = NodeAt(item, "metadata");
    if (ScalarAt(NodeAt(metadata, "annotations"), kManagedByAnnotation) != kManagedByKubernetes) {
      continue;
    }
    const std::string key = ReflectorBase::Key(item, r.namespaced);
    if (key.empty() || objects.count(key) > 0) continue;
    Object gone;
    gone.name = ScalarAt(metadata, "name");
    if (r.namespaced) gone.namespace_ = ScalarAt(metadata, "namespace");
    queue_.push_back({Action::Type::kDelete, &r, key, std::move(gone)});
    Count("pruned");
  }
}

void PolicyMirror::Retry() {
  // The rest waits: a pass after the backoff starts over from what is reflected then.
  queue_.clear();
  busy_ = false;
  dirty_ = true;
  const Duration delay = DoublingRetryDelay(++failures_, options_.retry_base, options_.retry_cap);
  pass_timer_.Enable(delay);
}

void PolicyMirror::RouteRefused(const Object& object, absl::string_view message) {
  if (!options_.refused_route) return;
  policy::RouteStatusUpdate update;
  update.kind = object.kind;
  update.namespace_ = object.namespace_;
  update.name = object.name;
  if (message.empty()) {
    options_.refused_route(std::move(update), false);
    return;
  }
  if (!IsGatewayRoute(object.kind, object.api_version) || object.parent_refs.empty()) return;
  update.generation = object.generation;
  YAML::Node refs;
  try {
    refs = YAML::Load(object.parent_refs);
  } catch (const YAML::Exception&) {
    return;
  }
  for (const YAML::Node& ref : refs) {
    meshlet::gateway::RouteParentStatus* parent = update.status.add_parents();
    meshlet::gateway::ParentReference* p = parent->mutable_parent_ref();
    p->set_group(ScalarAt(ref, "group"));
    p->set_kind(ScalarAt(ref, "kind"));
    p->set_namespace_(ScalarAt(ref, "namespace"));
    p->set_name(ScalarAt(ref, "name"));
    p->set_section_name(ScalarAt(ref, "sectionName"));
    if (int32_t port = 0; absl::SimpleAtoi(ScalarAt(ref, "port"), &port)) p->set_port(port);
    parent->set_controller_name(kControllerName);
    meshlet::gateway::Condition* accepted = parent->add_conditions();
    accepted->set_type("Accepted");
    accepted->set_status("False");
    accepted->set_reason("UnsupportedValue");
    accepted->set_message(std::string(message.substr(0, kMaxNote)));
  }
  options_.refused_route(std::move(update), true);
}

void PolicyMirror::PostEvent(const Object& object, absl::string_view message) {
  const std::string namespace_ = object.namespace_.empty() ? "default" : object.namespace_;
  const std::string note(message.substr(0, kMaxNote));
  const std::string now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone());
  std::string body =
      absl::StrCat(R"({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"generateName":)",
                   JsonQuote(absl::StrCat(object.name, ".")), R"(,"namespace":)",
                   JsonQuote(namespace_), R"(},"eventTime":)", JsonQuote(now),
                   R"(,"reportingController":"meshlet.io/control-plane","reportingInstance":)",
                   JsonQuote(options_.replica_name),
                   R"(,"action":"Apply","reason":"Invalid","type":"Warning","note":)",
                   JsonQuote(note), R"(,"regarding":{"apiVersion":)", JsonQuote(object.api_version),
                   R"(,"kind":)", JsonQuote(object.kind), R"(,"name":)", JsonQuote(object.name));
  if (!object.namespace_.empty())
    absl::StrAppend(&body, R"(,"namespace":)", JsonQuote(object.namespace_));
  if (!object.uid.empty()) absl::StrAppend(&body, R"(,"uid":)", JsonQuote(object.uid));
  body += "}}";
  api_.Call({.method = "POST",
             .path = absl::StrCat("/apis/events.k8s.io/v1/namespaces/", namespace_, "/events"),
             .content_type = "application/json",
             .body = std::move(body),
             .forbidden_hint = kEventsRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (!*alive) return;
              if (result.body.ok()) {
                events_ok_.Inc();
              } else {
                events_failed_.Inc();
                LOG_EVERY_N_SEC(WARN, 60)
                    << "kubernetes: an Event was not posted: " << result.body.status().message();
              }
            });
}

}  // namespace meshlet::controlplane::kubernetes

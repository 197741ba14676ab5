#include "control-plane/kubernetes/route_status_writer.h"

#include <yaml-cpp/yaml.h>

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {
namespace {

// The field manager the API server records for the status this writes (managedFields).
constexpr char kFieldManager[] = "meshlet-control-plane";

constexpr char kRbacHint[] =
    "the control plane needs get on httproutes, grpcroutes, gateways and gatewayclasses and patch "
    "on their status (gateway.networking.k8s.io; k8s/base/rbac.yaml)";
constexpr char kGatewayApi[] = "/apis/gateway.networking.k8s.io/v1/";

// One field of a canonical JSON object: left out when empty.
void Field(std::string* out, absl::string_view name, absl::string_view value, bool number = false) {
  if (value.empty()) return;
  if (out->back() != '{') out->push_back(',');
  AppendJsonString(out, name);
  out->push_back(':');
  if (number) {
    out->append(value.data(), value.size());
  } else {
    AppendJsonString(out, value);
  }
}

std::string RefJson(absl::string_view group, absl::string_view kind, absl::string_view namespace_,
                    absl::string_view name, absl::string_view section, absl::string_view port) {
  std::string out = "{";
  Field(&out, "group", group);
  Field(&out, "kind", kind);
  Field(&out, "namespace", namespace_);
  Field(&out, "name", name);
  Field(&out, "sectionName", section);
  Field(&out, "port", port, /*number=*/true);
  return out + "}";
}

std::string RefJson(const meshlet::gateway::ParentReference& ref) {
  return RefJson(ref.group(), ref.kind(), ref.namespace_(), ref.name(), ref.section_name(),
                 ref.has_port() ? absl::StrCat(ref.port()) : "");
}

std::string RefJson(const YAML::Node& ref) {
  return RefJson(ScalarAt(ref, "group"), ScalarAt(ref, "kind"), ScalarAt(ref, "namespace"),
                 ScalarAt(ref, "name"), ScalarAt(ref, "sectionName"), ScalarAt(ref, "port"));
}

std::string ConditionJson(absl::string_view type, absl::string_view status,
                          absl::string_view generation, absl::string_view time,
                          absl::string_view reason, absl::string_view message) {
  std::string out = "{";
  Field(&out, "type", type);
  Field(&out, "status", status);
  Field(&out, "observedGeneration", generation, /*number=*/true);
  Field(&out, "lastTransitionTime", time);
  Field(&out, "reason", reason);
  // Required by the schema, possibly empty.
  if (out.back() != '{') out.push_back(',');
  absl::StrAppend(&out, R"("message":)", JsonQuote(message));
  return out + "}";
}

// A route's status lists "parents", each naming its "parentRef"; a policy's (BackendTLSPolicy)
// lists "ancestors", each naming its "ancestorRef".
struct StatusFields {
  const char* list;
  const char* ref;
};
StatusFields FieldsOf(absl::string_view kind) {
  if (kind == "BackendTLSPolicy") return {"ancestors", "ancestorRef"};
  return {"parents", "parentRef"};
}

std::string ParentJson(const StatusFields& fields, absl::string_view ref,
                       absl::string_view controller, const std::vector<std::string>& conditions) {
  return absl::StrCat(R"({")", fields.ref, R"(":)", ref, R"(,"controllerName":)",
                      JsonQuote(controller), R"(,"conditions":[)", absl::StrJoin(conditions, ","),
                      "]}");
}

std::string Fingerprint(const policy::RouteStatusUpdate& update) {
  return absl::StrCat(update.generation, "/", update.status.SerializeAsString());
}

std::string Fingerprint(const GatewayObjectStatus& update) {
  return absl::StrCat(update.generation, "/", update.gateway_class.SerializeAsString(), "/",
                      update.gateway.SerializeAsString());
}

// `computed` in canonical JSON with observedGeneration `generation`, each keeping the
// lastTransitionTime `shown` (a conditions list as the object shows it) has for its type and
// status, else `now`.
std::vector<std::string> ConditionsJson(
    const google::protobuf::RepeatedPtrField<meshlet::gateway::Condition>& computed,
    const YAML::Node& shown, const std::string& generation, const std::string& now) {
  std::vector<std::string> out;
  for (const meshlet::gateway::Condition& c : computed) {
    std::string time = c.last_transition_time().empty() ? now : c.last_transition_time();
    if (shown.IsSequence()) {
      for (const YAML::Node& old : shown) {
        if (ScalarAt(old, "type") == c.type() && ScalarAt(old, "status") == c.status() &&
            !ScalarAt(old, "lastTransitionTime").empty()) {
          time = ScalarAt(old, "lastTransitionTime");
        }
      }
    }
    out.push_back(ConditionJson(c.type(), c.status(), generation, time, c.reason(), c.message()));
  }
  return out;
}

// A conditions list as the object shows it, in the same canonical form.
std::vector<std::string> ConditionsJson(const YAML::Node& shown) {
  std::vector<std::string> out;
  if (!shown.IsSequence()) return out;
  for (const YAML::Node& c : shown) {
    out.push_back(ConditionJson(
        ScalarAt(c, "type"), ScalarAt(c, "status"), ScalarAt(c, "observedGeneration"),
        ScalarAt(c, "lastTransitionTime"), ScalarAt(c, "reason"), ScalarAt(c, "message")));
  }
  return out;
}

// An entry as the route shows it, in the same canonical form.
std::string ParentJson(const StatusFields& fields, const YAML::Node& parent) {
  return ParentJson(fields, RefJson(NodeAt(parent, fields.ref)), ScalarAt(parent, "controllerName"),
                    ConditionsJson(NodeAt(parent, "conditions")));
}

std::string GroupKindJson(absl::string_view group, absl::string_view kind) {
  std::string out = "{";
  Field(&out, "group", group);
  Field(&out, "kind", kind);
  return out + "}";
}

std::string AddressJson(absl::string_view type, absl::string_view value) {
  std::string out = "{";
  Field(&out, "type", type);
  Field(&out, "value", value);
  return out + "}";
}

std::string ListenerJson(absl::string_view name, const std::vector<std::string>& kinds,
                         absl::string_view attached, const std::vector<std::string>& conditions) {
  std::string out = "{";
  Field(&out, "name", name);
  absl::StrAppend(&out, R"(,"supportedKinds":[)", absl::StrJoin(kinds, ","), "]");
  Field(&out, "attachedRoutes", attached, /*number=*/true);
  absl::StrAppend(&out, R"(,"conditions":[)", absl::StrJoin(conditions, ","), "]");
  return out + "}";
}

// A GatewayClass's or Gateway's status, canonical: conditions, and for a Gateway addresses and
// listeners (each list present, possibly empty).
std::string ObjectStatusJson(bool gateway, const std::vector<std::string>& conditions,
                             const std::vector<std::string>& addresses,
                             const std::vector<std::string>& listeners) {
  std::string out = absl::StrCat(R"({"conditions":[)", absl::StrJoin(conditions, ","), "]");
  if (gateway) {
    absl::StrAppend(&out, R"(,"addresses":[)", absl::StrJoin(addresses, ","), R"(],"listeners":[)",
                    absl::StrJoin(listeners, ","), "]");
  }
  return out + "}";
}

// The API path of the object `kind` names.
std::string ObjectPath(absl::string_view kind, absl::string_view namespace_,
                       absl::string_view name) {
  if (kind == "GatewayClass") return absl::StrCat(kGatewayApi, "gatewayclasses/", name);
  const absl::string_view plural = kind == "GRPCRoute"          ? "grpcroutes"
                                   : kind == "Gateway"          ? "gateways"
                                   : kind == "BackendTLSPolicy" ? "backendtlspolicies"
                                                                : "httproutes";
  return absl::StrCat(kGatewayApi, "namespaces/", namespace_, "/", plural, "/", name);
}

}  // namespace

struct RouteStatusWriter::Route {
  policy::RouteStatusUpdate update;           // a route's (kind, namespace and name set for all)
  std::optional<GatewayObjectStatus> object;  // a GatewayClass's or Gateway's
  std::string desired;                        // Fingerprint(update)
  std::string written;                        // the fingerprint the route is known to show
  MonotonicTime not_before{};
};

RouteStatusWriter::RouteStatusWriter(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                                     const Clock& clock, RouteStatusWriterOptions options)
    : loop_(loop),
      api_(api),
      stats_(stats),
      clock_(clock),
      options_(std::move(options)),
      timer_(loop, [this] { Next(); }) {}

RouteStatusWriter::~RouteStatusWriter() { *alive_ = false; }

void RouteStatusWriter::Count(absl::string_view result) {
  auto it = writes_.find(result);
  if (it == writes_.end()) {
    absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
        "meshlet_cp_route_status_writes_total",
        "Route status write-backs to the Kubernetes API server, by result (written, unchanged, "
        "conflict, not_found, failed).",
        {{"result", std::string(result)}});
    it = writes_.emplace(std::string(result), counter.ok() ? *counter : Counter()).first;
  }
  it->second.Inc();
}

namespace {
std::string KeyOf(const policy::RouteStatusUpdate& update) {
  return absl::StrCat(update.kind, "/", update.namespace_, "/", update.name);
}
}  // namespace

void RouteStatusWriter::Update(std::vector<policy::RouteStatusUpdate> updates) {
  computed_.clear();
  for (policy::RouteStatusUpdate& update : updates) {
    const std::string key = KeyOf(update);
    computed_[key] = std::move(update);
  }
  Rebuild();
}

void RouteStatusWriter::SetRefused(policy::RouteStatusUpdate update, bool refused) {
  const std::string key = KeyOf(update);
  if (refused) {
    refused_[key] = std::move(update);
  } else if (refused_.erase(key) == 0) {
    return;
  }
  Rebuild();
}

void RouteStatusWriter::UpdateGateways(std::vector<GatewayObjectStatus> updates) {
  gateways_.clear();
  for (GatewayObjectStatus& update : updates) {
    const std::string key = absl::StrCat(update.kind, "/", update.namespace_, "/", update.name);
    gateways_[key] = std::move(update);
  }
  Rebuild();
}

void RouteStatusWriter::Rebuild() {
  std::map<std::string, std::unique_ptr<Route>> next;
  auto take = [&](const std::string& key) {
    auto it = routes_.find(key);
    std::unique_ptr<Route> route =
        it != routes_.end() ? std::move(it->second) : std::make_unique<Route>();
    return &*(next[key] = std::move(route));
  };
  auto add = [&](const std::string& key, const policy::RouteStatusUpdate& update) {
    Route* route = take(key);
    route->desired = Fingerprint(update);
    route->update = update;
    route->object.reset();
  };
  for (const auto& [key, update] : gateways_) {
    Route* route = take(key);
    route->desired = Fingerprint(update);
    route->update = {};
    route->update.kind = update.kind;
    route->update.namespace_ = update.namespace_;
    route->update.name = update.name;
    route->object = update;
  }
  for (const auto& [key, update] : refused_) add(key, update);
  for (const auto& [key, update] : computed_) {
    if (refused_.count(key) == 0) add(key, update);
  }
  routes_ = std::move(next);
  Schedule();
}

void RouteStatusWriter::SetActive(bool active) {
  if (active == active_) return;
  active_ = active;
  *alive_ = false;  // answers to requests of the previous term are ignored
  alive_ = std::make_shared<bool>(true);
  in_flight_.clear();
  failures_ = 0;
  // Another replica may have written meanwhile: every route is read again.
  for (auto& [key, route] : routes_) route->written.clear();
  Schedule();
}

bool RouteStatusWriter::idle() const {
  if (!active_ || !in_flight_.empty()) return false;
  for (const auto& [key, route] : routes_) {
    if (route->written != route->desired) return false;
  }
  return true;
}

void RouteStatusWriter::Schedule() {
  if (active_ && in_flight_.empty()) timer_.Enable(Duration::zero());
}

void RouteStatusWriter::Next() {
  if (!active_ || !in_flight_.empty()) return;
  const MonotonicTime now = clock_.Now();
  MonotonicTime earliest = MonotonicTime::max();
  for (auto& [key, route] : routes_) {
    if (route->written == route->desired) continue;
    if (route->not_before > now) {
      earliest = std::min(earliest, route->not_before);
      continue;
    }
    in_flight_ = key;
    in_flight_fingerprint_ = route->desired;
    const policy::RouteStatusUpdate& u = route->update;
    api_.Call({.method = "GET",
               .path = ObjectPath(u.kind, u.namespace_, u.name),
               .forbidden_hint = kRbacHint},
              [this, alive = alive_, key = key](ApiResult result) {
                if (*alive) OnRead(key, std::move(result));
              });
    return;
  }
  if (earliest != MonotonicTime::max()) timer_.Enable(earliest - now);
}

void RouteStatusWriter::OnRead(const std::string& key, ApiResult result) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return Done(key, "", false);  // no longer computed
  Route& route = *it->second;
  if (result.http_status == 404) return Done(key, "not_found", true);
  if (!result.body.ok()) return Failed(key, "failed", result.body.status().message());
  YAML::Node object;
  try {
    object = YAML::Load(*result.body);
  } catch (const YAML::Exception& e) {
    return Failed(key, "failed", absl::StrCat("the object is not JSON: ", e.what()));
  }
  const std::string now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", clock_.WallNow(), absl::UTCTimeZone());
  // The patch is built from what is desired now (it may have changed since the read began).
  in_flight_fingerprint_ = route.desired;
  const std::string body =
      route.object.has_value() ? GatewayPatch(route, object, now) : RoutePatch(route, object, now);
  if (body.empty()) return Done(key, "unchanged", true);
  const policy::RouteStatusUpdate& u = route.update;
  api_.Call({.method = "PATCH",
             .path = absl::StrCat(ObjectPath(u.kind, u.namespace_, u.name),
                                  "/status?fieldManager=", kFieldManager),
             .content_type = "application/merge-patch+json",
             .body = body,
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, key](ApiResult result) {
              if (*alive) OnPatched(key, std::move(result));
            });
}

std::string RouteStatusWriter::RoutePatch(const Route& route, const YAML::Node& object,
                                          const std::string& now) {
  auto is_ours = [this](const std::string& name) {
    return name == options_.controller_name || name == options_.gateway_controller_name;
  };
  std::vector<std::string> others;
  std::vector<YAML::Node> ours;
  std::vector<std::string> shown;  // ours, as the route shows them
  const StatusFields fields = FieldsOf(route.update.kind);
  if (const YAML::Node parents = NodeAt(NodeAt(object, "status"), fields.list);
      parents.IsSequence()) {
    for (const YAML::Node& p : parents) {
      if (is_ours(ScalarAt(p, "controllerName"))) {
        ours.push_back(p);
        shown.push_back(ParentJson(fields, p));
      } else {
        std::string json;
        AppendNodeJson(p, &json);
        others.push_back(std::move(json));
      }
    }
  }
  const std::string generation = absl::StrCat(route.update.generation);
  std::vector<std::string> computed;
  for (const meshlet::gateway::RouteParentStatus& parent : route.update.status.parents()) {
    const std::string ref = RefJson(parent.parent_ref());
    const std::string controller =
        parent.controller_name().empty() ? options_.controller_name : parent.controller_name();
    const YAML::Node* before = nullptr;
    for (const YAML::Node& p : ours) {
      if (RefJson(NodeAt(p, fields.ref)) == ref && ScalarAt(p, "controllerName") == controller) {
        before = &p;
      }
    }
    computed.push_back(
        ParentJson(fields, ref, controller,
                   ConditionsJson(parent.conditions(),
                                  before != nullptr ? NodeAt(*before, "conditions") : YAML::Node(),
                                  generation, now)));
  }
  if (computed == shown) return "";
  others.insert(others.end(), computed.begin(), computed.end());
  return absl::StrCat(R"({"metadata":{"resourceVersion":)",
                      JsonQuote(ScalarAt(NodeAt(object, "metadata"), "resourceVersion")),
                      R"(},"status":{")", fields.list, R"(":[)", absl::StrJoin(others, ","), "]}}");
}

std::string RouteStatusWriter::GatewayPatch(const Route& route, const YAML::Node& object,
                                            const std::string& now) {
  const GatewayObjectStatus& u = *route.object;
  const bool gateway = u.kind == "Gateway";
  const std::string generation = absl::StrCat(u.generation);
  const YAML::Node status = NodeAt(object, "status");
  // What the object shows, canonical.
  std::vector<std::string> shown_addresses, shown_listeners;
  if (const YAML::Node list = NodeAt(status, "addresses"); list.IsSequence()) {
    for (const YAML::Node& a : list) {
      shown_addresses.push_back(AddressJson(ScalarAt(a, "type"), ScalarAt(a, "value")));
    }
  }
  std::map<std::string, YAML::Node> listener_conditions;  // by name, as shown
  if (const YAML::Node list = NodeAt(status, "listeners"); list.IsSequence()) {
    for (const YAML::Node& l : list) {
      std::vector<std::string> kinds;
      if (const YAML::Node k = NodeAt(l, "supportedKinds"); k.IsSequence()) {
        for (const YAML::Node& gk : k) {
          kinds.push_back(GroupKindJson(ScalarAt(gk, "group"), ScalarAt(gk, "kind")));
        }
      }
      listener_conditions[ScalarAt(l, "name")] = NodeAt(l, "conditions");
      shown_listeners.push_back(ListenerJson(ScalarAt(l, "name"), kinds,
                                             ScalarAt(l, "attachedRoutes"),
                                             ConditionsJson(NodeAt(l, "conditions"))));
    }
  }
  const std::string shown = ObjectStatusJson(gateway, ConditionsJson(NodeAt(status, "conditions")),
                                             shown_addresses, shown_listeners);
  // What was computed, canonical, with the times of conditions whose status held.
  const auto& conditions = gateway ? u.gateway.conditions() : u.gateway_class.conditions();
  std::vector<std::string> addresses, listeners;
  for (const meshlet::gateway::GatewaySpecAddress& a : u.gateway.addresses()) {
    addresses.push_back(AddressJson(a.type(), a.value()));
  }
  for (const meshlet::gateway::ListenerStatus& l : u.gateway.listeners()) {
    std::vector<std::string> kinds;
    for (const meshlet::gateway::RouteGroupKind& gk : l.supported_kinds()) {
      kinds.push_back(GroupKindJson(gk.group(), gk.kind()));
    }
    auto before = listener_conditions.find(l.name());
    listeners.push_back(ListenerJson(
        l.name(), kinds, absl::StrCat(l.attached_routes()),
        ConditionsJson(l.conditions(),
                       before != listener_conditions.end() ? before->second : YAML::Node(),
                       generation, now)));
  }
  const std::string computed = ObjectStatusJson(
      gateway, ConditionsJson(conditions, NodeAt(status, "conditions"), generation, now), addresses,
      listeners);
  if (computed == shown) return "";
  return absl::StrCat(R"({"metadata":{"resourceVersion":)",
                      JsonQuote(ScalarAt(NodeAt(object, "metadata"), "resourceVersion")),
                      R"(},"status":)", computed, "}");
}

void RouteStatusWriter::OnPatched(const std::string& key, ApiResult result) {
  if (result.body.ok()) return Done(key, "written", true);
  if (result.http_status == 404) return Done(key, "not_found", true);
  if (result.http_status == 409) {
    // Changed since it was read (another controller's status, a new generation): read again.
    Count("conflict");
    in_flight_.clear();
    Schedule();
    return;
  }
  Failed(key, "failed", result.body.status().message());
}

void RouteStatusWriter::Done(const std::string& key, absl::string_view result, bool written) {
  if (!result.empty()) Count(result);
  auto it = routes_.find(key);
  if (written && it != routes_.end()) {
    // What was written, not what is desired now: a status computed while the write was in
    // flight is written next.
    it->second->written = in_flight_fingerprint_;
    it->second->not_before = {};
  }
  failures_ = 0;
  in_flight_.clear();
  Schedule();
}

void RouteStatusWriter::Failed(const std::string& key, absl::string_view result,
                               absl::string_view why) {
  Count(result);
  const Duration delay = DoublingRetryDelay(++failures_, options_.retry_base, options_.retry_cap);
  LOG_EVERY_N_SEC(WARN, 10) << "route status of " << key << " not written: " << why << " (again in "
                            << absl::FormatDuration(absl::FromChrono(delay)) << ")";
  auto it = routes_.find(key);
  if (it != routes_.end()) it->second->not_before = clock_.Now() + delay;
  in_flight_.clear();
  Schedule();
}

}  // namespace meshlet::controlplane::kubernetes

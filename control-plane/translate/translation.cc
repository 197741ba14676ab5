// The context of one node's translation: the node as registered, the services it reaches, and
// the settings (TrafficPolicy over MeshConfig) that apply to a service.

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

// Retries: the most specific non-empty setting per field (rule, then TrafficPolicy, then mesh).
void MergeRetries(const pb::Retries& in, pb::Retries& out) {
  if (in.has_attempts()) *out.mutable_attempts() = in.attempts();
  if (in.retry_on_size() > 0) *out.mutable_retry_on() = in.retry_on();
  if (in.retriable_status_codes_size() > 0) {
    *out.mutable_retriable_status_codes() = in.retriable_status_codes();
  }
  if (in.has_backoff_base()) *out.mutable_backoff_base() = in.backoff_base();
  if (in.has_backoff_max()) *out.mutable_backoff_max() = in.backoff_max();
  if (in.has_budget_percent()) *out.mutable_budget_percent() = in.budget_percent();
  if (in.has_budget_min_retries_per_second()) {
    *out.mutable_budget_min_retries_per_second() = in.budget_min_retries_per_second();
  }
  if (in.retry_non_idempotent()) out.set_retry_non_idempotent(true);
}

}  // namespace

TranslationContext::TranslationContext(const PolicySnapshot& policy,
                                       const RegistrySnapshot& registry, const MeshIndex& index,
                                       const NodeInput& node, const TranslateOptions& options)
    : policy(policy),
      registry(registry),
      index(index),
      options(options),
      discovered_(node.discovered) {
  if (const Workload* registered = registry.Find(node.node.id())) {
    self = *registered;
  } else {
    self = registry::WorkloadFromNode(node.node);
  }
  if (policy.mesh_config.has_value()) mesh = policy.mesh_config->spec();
  capabilities = xds::CapabilitiesOf(node.node);
  looks_up = node.delta && capabilities.Has(xds::Capability::kOnDemand) &&
             capabilities.Has(xds::Capability::kServiceRoutes);
  mode = EffectiveMode(self, mesh, looks_up);
  if (self.labels.contains(std::string(kGatewayLabel))) {
    gateway_proxy = true;
    gateway = GatewayOfNode(policy, self);
    mode = DiscoveryMode::kDeclared;
    return;
  }
  dependencies_.insert({self.namespace_, self.service});
  auto it = self.labels.find(std::string(kDependenciesLabel));
  if (it == self.labels.end()) return;
  for (absl::string_view dep : absl::StrSplit(it->second, ',', absl::SkipWhitespace())) {
    dep = absl::StripAsciiWhitespace(dep);
    std::vector<std::string> parts = absl::StrSplit(dep, absl::MaxSplits('.', 1));
    std::string ns = parts.size() > 1 ? parts[1] : self.namespace_;
    if (parts[0] == "*") {
      dependency_namespaces_.insert(std::move(ns));
    } else {
      dependencies_.insert({std::move(ns), parts[0]});
    }
  }
}

bool TranslationContext::Reachable(const ServiceView& service) const {
  if (mode == DiscoveryMode::kWholeMesh) return true;
  const ServiceKey key(service.namespace_, service.name);
  return dependency_namespaces_.contains(service.namespace_) || dependencies_.contains(key) ||
         (mode == DiscoveryMode::kOnDemand && discovered_ != nullptr && discovered_->contains(key));
}

bool TranslationContext::MayDiscover(const ServiceView& service) const {
  return mode == DiscoveryMode::kOnDemand || Reachable(service);
}

std::vector<ServiceKey> TranslationContext::ReachableKeys() const {
  std::vector<ServiceKey> keys;
  if (mode == DiscoveryMode::kWholeMesh) {
    keys.reserve(index.services.size());
    for (const auto& [key, service] : index.services) keys.push_back(key);
    return keys;
  }
  std::set<ServiceKey> found;
  for (const ServiceKey& key : dependencies_) {
    if (index.services.contains(key)) found.insert(key);
  }
  for (const std::string& ns : dependency_namespaces_) {
    for (auto it = index.services.lower_bound({ns, ""});
         it != index.services.end() && it->first.first == ns; ++it) {
      found.insert(it->first);
    }
  }
  if (mode == DiscoveryMode::kOnDemand && discovered_ != nullptr) {
    for (const ServiceKey& key : *discovered_) {
      if (index.services.contains(key)) found.insert(key);
    }
  }
  return {found.begin(), found.end()};
}

const pb::TrafficPolicySpec* TranslationContext::PolicyFor(const ServiceView& s) const {
  auto it = index.by_target->traffic_policies.find({s.namespace_, s.name});
  return it == index.by_target->traffic_policies.end() ? nullptr : &it->second->spec();
}

const pb::TrafficPolicy* TranslationContext::TrafficPolicyFor(const ServiceView& s) const {
  auto it = index.by_target->traffic_policies.find({s.namespace_, s.name});
  return it == index.by_target->traffic_policies.end() ? nullptr : it->second;
}

void SetPolicySource(absl::string_view kind, absl::string_view ns, absl::string_view name, int rule,
                     int match, xds::PolicySource& source) {
  source.set_kind(std::string(kind));
  source.set_namespace_(std::string(ns.empty() ? "default" : ns));
  source.set_name(std::string(name));
  source.set_rule(rule);
  source.set_match(match);
}

void SetMeshConfigSource(xds::PolicySource& source) {
  source.set_kind("MeshConfig");
  source.clear_namespace_();
  source.set_name(std::string(policy::kMeshConfigName));
  source.set_rule(-1);
  source.set_match(-1);
}

void SetTimeoutSources(const TranslationContext& ctx, const ServiceView& s,
                       const xds::PolicySource* route, bool rule_timeout, bool rule_per_try,
                       xds::RouteAction& action) {
  const pb::TrafficPolicy* tp = ctx.TrafficPolicyFor(s);
  auto positive = [](const google::protobuf::Duration& d) {
    return d.seconds() > 0 || (d.seconds() == 0 && d.nanos() > 0);
  };
  auto set = [&](bool from_rule, bool from_tp, bool from_mesh, xds::PolicySource& out) {
    if (from_rule && route != nullptr) {
      SetPolicySource(route->kind(), route->namespace_(), route->name(), -1, -1, out);
    } else if (from_tp) {
      SetPolicySource("TrafficPolicy", tp->metadata().namespace_(), tp->metadata().name(), -1, -1,
                      out);
    } else if (from_mesh) {
      SetMeshConfigSource(out);
    }
  };
  if (action.has_timeout() && positive(action.timeout())) {
    set(rule_timeout, tp != nullptr && tp->spec().timeouts().has_request(),
        ctx.mesh.default_timeouts().has_request(), *action.mutable_timeout_source());
    if (action.timeout_source().kind().empty()) action.clear_timeout_source();
  }
  if (action.has_retry_policy() && action.retry_policy().has_per_try_timeout() &&
      positive(action.retry_policy().per_try_timeout())) {
    set(rule_per_try, tp != nullptr && tp->spec().timeouts().has_per_try(),
        ctx.mesh.default_timeouts().has_per_try(), *action.mutable_per_try_timeout_source());
    if (action.per_try_timeout_source().kind().empty()) action.clear_per_try_timeout_source();
  }
}

const std::vector<const pb::HTTPRoute*>& TranslationContext::RoutesFor(const ServiceView& s) const {
  static const std::vector<const pb::HTTPRoute*> kNone;
  auto it = index.by_target->routes.find({s.namespace_, s.name});
  return it == index.by_target->routes.end() ? kNone : it->second;
}

pb::Timeouts TranslationContext::EffectiveTimeouts(const pb::TrafficPolicySpec* tp) const {
  pb::Timeouts t = mesh.default_timeouts();
  if (tp != nullptr && tp->has_timeouts()) t.MergeFrom(tp->timeouts());
  return t;
}

pb::Retries TranslationContext::EffectiveRetries(const pb::TrafficPolicySpec* tp,
                                                 const pb::Retries* rule) const {
  pb::Retries r;
  if (mesh.has_default_retries()) MergeRetries(mesh.default_retries(), r);
  if (tp != nullptr && tp->has_retries()) MergeRetries(tp->retries(), r);
  if (rule != nullptr) MergeRetries(*rule, r);
  return r;
}

std::string TranslationContext::MtlsMode(const pb::TrafficPolicySpec* tp) const {
  if (tp != nullptr && !tp->mtls().empty()) return tp->mtls();
  return mesh.mtls().empty() ? "PERMISSIVE" : mesh.mtls();
}

std::string TranslationContext::TrustDomain() const {
  if (!mesh.trust_domain().empty()) return mesh.trust_domain();
  return options.trust_domain.empty() ? "cluster.local" : options.trust_domain;
}

}  // namespace meshlet::controlplane::translate

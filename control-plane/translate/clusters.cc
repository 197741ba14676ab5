// Clusters: the outbound cluster of each (service, port, subset) a route or a capture destination
// names, with the TrafficPolicy's settings and the ready members as its endpoints; the inbound
// clusters to the local app.

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "control-plane/translate/backend_tls.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

xds::UpstreamProtocol UpstreamProtocolFor(absl::string_view protocol) {
  return protocol == "HTTP2" || protocol == "GRPC" ? xds::UPSTREAM_HTTP2 : xds::UPSTREAM_HTTP1;
}

// Endpoints: registered workloads of the service (matching the selector and the subset) that are
// ready. One that is not (its sidecar drains) is left out rather than sent as UNHEALTHY: a caller
// in panic mode balances over unhealthy hosts too, and a draining sidecar refuses new
// connections. The cluster itself does not change.
//
// A linked cluster's members (Workload::remote) are its east-west gateway, reached over mesh mTLS
// only; `local_only` leaves them out, and the members that cannot answer mTLS (an east-west
// gateway's cluster: it passes mTLS through).
xds::ClusterLoadAssignment LoadAssignment(const TranslationContext& ctx, const std::string& name,
                                          const ServiceView& s, const pb::ServicePort& port,
                                          const std::map<std::string, std::string>& subset,
                                          bool mtls, const std::string& mode,
                                          bool local_only = false) {
  xds::ClusterLoadAssignment assignment;
  assignment.set_cluster_name(name);
  // Ordered by address before the messages are built: sorting built messages copies them.
  std::vector<std::pair<std::string, const Workload*>> chosen;
  for (const Workload* w : s.members) {
    if (!w->ready || !Matches(subset, w->labels)) continue;
    if (w->remote != nullptr && (!mtls || local_only)) continue;
    if (local_only && !HasCertificate(*w)) continue;
    // A member whose traffic is captured is reached on its app port: its packet filter
    // redirects the connection to its inbound listener, which reads the port to find the app.
    const uint32_t endpoint_port = w->capture ? AppPort(s.ports, port, SortedPorts(w->ports))
                                   : w->inbound_port != 0 ? w->inbound_port
                                                          : registry::kDefaultInboundPort;
    for (const std::string& address : w->addresses) {
      chosen.emplace_back(FormatAddress(address, endpoint_port), w);
    }
  }
  std::sort(chosen.begin(), chosen.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  assignment.mutable_endpoints()->Reserve(static_cast<int>(chosen.size()));
  for (auto& [address, w] : chosen) {
    xds::Endpoint* e = assignment.add_endpoints();
    e->set_address(std::move(address));
    for (const auto& [key, value] : w->labels) {
      if (!absl::StartsWith(key, "meshlet.io/")) (*e->mutable_labels())[key] = value;
    }
    SetEndpointTls(ctx, *w, mtls, mode, *e);
    // A linked cluster's gateway weighs as many members as it stands for.
    if (w->remote != nullptr && w->remote->members > 1) e->set_weight(w->remote->members);
    // Where the member runs (its sidecar's Node.locality): callers balancing by locality
    // compare it with their own.
    if (w->locality.ByteSizeLong() > 0) *e->mutable_locality() = w->locality;
  }
  return assignment;
}

}  // namespace

void ApplyTrafficPolicy(const TranslationContext& ctx, const pb::TrafficPolicySpec* tp,
                        xds::Cluster& cluster) {
  std::string lb = tp != nullptr && !tp->load_balancer().empty() ? tp->load_balancer()
                                                                 : ctx.mesh.load_balancer();
  xds::LbPolicy lb_policy = xds::LEAST_REQUEST;
  if (!lb.empty()) xds::LbPolicy_Parse(lb, &lb_policy);
  cluster.set_lb_policy(lb_policy);
  const pb::Timeouts timeouts = ctx.EffectiveTimeouts(tp);
  if (timeouts.has_connect()) SetDuration(cluster.mutable_connect_timeout(), timeouts.connect());
  if (tp == nullptr) return;
  if (tp->has_circuit_breaker()) {
    const pb::CircuitBreaker& cb = tp->circuit_breaker();
    xds::CircuitBreakers* out = cluster.mutable_circuit_breakers();
    if (cb.has_max_connections()) *out->mutable_max_connections() = cb.max_connections();
    if (cb.has_max_pending_requests()) {
      *out->mutable_max_pending_requests() = cb.max_pending_requests();
    }
    if (cb.has_max_requests()) *out->mutable_max_requests() = cb.max_requests();
    if (cb.has_max_retries()) *out->mutable_max_retries() = cb.max_retries();
    if (cb.consecutive_failures() > 0) {
      out->mutable_consecutive_failures()->set_failure_threshold(cb.consecutive_failures());
      if (cb.has_open_duration()) {
        SetDuration(out->mutable_consecutive_failures()->mutable_open_duration(),
                    cb.open_duration());
      }
    }
  }
  const pb::Retries retries = ctx.EffectiveRetries(tp, nullptr);
  if (retries.has_budget_percent() || retries.has_budget_min_retries_per_second()) {
    xds::RetryBudget* budget = cluster.mutable_circuit_breakers()->mutable_retry_budget();
    budget->set_budget_percent(retries.has_budget_percent() ? retries.budget_percent().value()
                                                            : 20.0);
    budget->set_min_retries_per_second(retries.has_budget_min_retries_per_second()
                                           ? retries.budget_min_retries_per_second().value()
                                           : 10);
  }
  if (tp->has_connection_pool()) {
    const pb::ConnectionPoolPolicy& in = tp->connection_pool();
    xds::ConnectionPool* out = cluster.mutable_pool();
    if (in.has_idle_timeout()) SetDuration(out->mutable_idle_timeout(), in.idle_timeout());
    if (in.has_max_requests_per_connection()) {
      out->set_max_requests_per_connection(in.max_requests_per_connection().value());
    }
    if (in.has_max_connection_duration()) {
      SetDuration(out->mutable_max_connection_duration(), in.max_connection_duration());
    }
  }
  if (tp->has_locality() && (!tp->locality().has_enabled() || tp->locality().enabled().value())) {
    const pb::LocalityPolicy& in = tp->locality();
    xds::LocalityLb* out = cluster.mutable_locality_lb();
    out->set_enabled(true);
    if (in.has_overprovisioning_percent()) {
      *out->mutable_overprovisioning_percent() = in.overprovisioning_percent();
    }
    if (in.has_max_inflight_per_host()) {
      out->set_max_inflight_per_host(in.max_inflight_per_host().value());
    }
    if (in.has_max_latency()) SetDuration(out->mutable_max_latency(), in.max_latency());
  }
  if (tp->has_overload()) {
    const pb::OverloadPolicy& in = tp->overload();
    xds::Overload* out = cluster.mutable_overload();
    if (in.has_enabled()) out->set_disabled(!in.enabled().value());
    if (in.has_ejection_time()) SetDuration(out->mutable_ejection_time(), in.ejection_time());
    if (in.has_max_ejection_time()) {
      SetDuration(out->mutable_max_ejection_time(), in.max_ejection_time());
    }
    if (in.has_max_ejection_percent()) {
      *out->mutable_max_ejection_percent() = in.max_ejection_percent();
    }
    if (in.has_penalty()) *out->mutable_penalty() = in.penalty();
    if (in.has_penalty_time()) SetDuration(out->mutable_penalty_time(), in.penalty_time());
  }
  if (tp->has_outlier_detection()) {
    const pb::OutlierDetectionPolicy& od = tp->outlier_detection();
    xds::OutlierDetection* out = cluster.mutable_outlier_detection();
    if (od.has_consecutive_5xx()) *out->mutable_consecutive_5xx() = od.consecutive_5xx();
    if (od.has_consecutive_gateway_failures()) {
      *out->mutable_consecutive_gateway_failure() = od.consecutive_gateway_failures();
    }
    if (od.has_interval()) SetDuration(out->mutable_interval(), od.interval());
    if (od.has_base_ejection_time()) {
      SetDuration(out->mutable_base_ejection_time(), od.base_ejection_time());
    }
    if (od.has_max_ejection_time()) {
      SetDuration(out->mutable_max_ejection_time(), od.max_ejection_time());
    }
    if (od.has_max_ejection_percent()) {
      *out->mutable_max_ejection_percent() = od.max_ejection_percent();
    }
  }
}

const std::string& UseCluster(const TranslationContext& ctx, TranslationOutput& out,
                              const ServiceView& s, const pb::ServicePort& port,
                              const std::map<std::string, std::string>& subset, bool opaque) {
  std::string name = ClusterName(s, port.port(), subset, opaque);
  auto it = out.clusters.find(name);
  if (it != out.clusters.end()) return it->first;
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.set_type(xds::Cluster::EDS);
  cluster.set_protocol(UpstreamProtocolFor(port.protocol()));
  const pb::TrafficPolicy* policy = ctx.TrafficPolicyFor(s);
  const pb::TrafficPolicySpec* tp = policy != nullptr ? &policy->spec() : nullptr;
  ApplyTrafficPolicy(ctx, tp, cluster);
  // A Kubernetes Service's own topology settings: PreferClose turns locality-aware balancing on
  // (with its defaults, unless the TrafficPolicy set it), internalTrafficPolicy: Local keeps
  // each caller to its own node's endpoints.
  if (s.kubernetes != nullptr && s.kubernetes->prefer_close &&
      !(tp != nullptr && tp->has_locality())) {
    cluster.mutable_locality_lb()->set_enabled(true);
  }
  if (s.kubernetes != nullptr && s.kubernetes->node_local) {
    cluster.mutable_locality_lb()->set_node_local(true);
  }
  if (policy != nullptr) {
    SetPolicySource("TrafficPolicy", policy->metadata().namespace_(), policy->metadata().name(), -1,
                    -1, *cluster.mutable_traffic_policy());
  }
  if (!subset.empty()) {
    cluster.set_subset(absl::StrJoin(subset, ",", absl::PairFormatter("=")));
  }
  const std::string mode = ctx.MtlsMode(tp);
  // A BackendTLSPolicy on the port replaces mesh mTLS: TLS with the policy's CA, SNI and names.
  const gw::BackendTLSPolicy* backend_tls =
      BackendTlsPolicyFor(ctx.policy, s.namespace_, s.name, port.name());
  const bool backend_tls_set = backend_tls != nullptr && SetBackendTls(ctx, *backend_tls, cluster);
  const bool mtls = backend_tls == nullptr && SetUpstreamMtls(ctx, s, subset, mode, cluster);
  // Sidecar to sidecar, an HTTP/1.1 service's requests travel over HTTP/2 (one multiplexed
  // connection instead of a pool of them); the members' sidecars translate back. Over mTLS
  // only, where ALPN agrees on it with each peer sidecar; plaintext members keep HTTP/1.1.
  // Opaque (TCP) ports are proxied as bytes, never as HTTP/2.
  if (mtls && cluster.protocol() == xds::UPSTREAM_HTTP1 && IsHttpProtocol(port.protocol()) &&
      !opaque) {
    cluster.set_protocol(xds::UPSTREAM_MESH_HTTP2);
  }
  xds::ClusterLoadAssignment& assignment = out.endpoints[name] =
      LoadAssignment(ctx, name, s, port, subset, mtls, mode);
  // Members in linked clusters (ADR 0106): their gateway routes the connection by its server
  // name, and they are the farthest locality level, called when the local ones fail or are
  // overloaded.
  if (mtls && std::any_of(assignment.endpoints().begin(), assignment.endpoints().end(),
                          [](const xds::Endpoint& e) { return !e.locality().cluster().empty(); })) {
    cluster.mutable_tls()->set_sni(EastWestServerName(s.namespace_, s.name, port.port()));
    if (!cluster.has_locality_lb()) cluster.mutable_locality_lb()->set_enabled(true);
  }
  if (backend_tls != nullptr) {
    // The members are reached as the policy says, not as mesh peers; without a CA that resolves
    // they are not reached at all (connections fail, 503) rather than in plaintext.
    for (xds::Endpoint& e : *assignment.mutable_endpoints()) {
      e.clear_identity();
      e.clear_plaintext();
    }
    if (!backend_tls_set) assignment.clear_endpoints();
  }
  if (out.origins != nullptr) {
    out.origins->emplace(name, ClusterOrigin{{s.namespace_, s.name}, port.port(), subset, opaque});
  }
  return out.clusters.emplace(name, std::move(cluster)).first->first;
}

std::string EastWestServerName(absl::string_view namespace_, absl::string_view service,
                               uint32_t port) {
  return absl::StrCat(port, ".", service, ".", namespace_, kEastWestServerNameSuffix);
}

bool Exported(const ServiceView& s) {
  if (s.kubernetes != nullptr && s.kubernetes->exported) return true;
  if (s.resource == nullptr) return false;
  auto it = s.resource->metadata().labels().find(std::string(kExportLabel));
  return it != s.resource->metadata().labels().end() && it->second == "true";
}

const std::string& UseEastWestCluster(const TranslationContext& ctx, TranslationOutput& out,
                                      const ServiceView& s, const pb::ServicePort& port) {
  std::string name = absl::StrCat("eastwest|", port.port(), "||", s.Fqdn());
  auto it = out.clusters.find(name);
  if (it != out.clusters.end()) return it->first;
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.set_type(xds::Cluster::EDS);
  // Connect timeout, breakers and outlier detection as the Service's callers have them.
  const pb::TrafficPolicy* policy = ctx.TrafficPolicyFor(s);
  ApplyTrafficPolicy(ctx, policy != nullptr ? &policy->spec() : nullptr, cluster);
  cluster.clear_locality_lb();
  xds::ClusterLoadAssignment& assignment = out.endpoints[name] =
      LoadAssignment(ctx, name, s, port, {}, /*mtls=*/true, "STRICT", /*local_only=*/true);
  for (xds::Endpoint& e : *assignment.mutable_endpoints()) e.clear_identity();
  return out.clusters.emplace(std::move(name), std::move(cluster)).first->first;
}

xds::Cluster InboundCluster(const TranslationContext& ctx, const std::string& name,
                            absl::string_view protocol, uint32_t app_port) {
  xds::Cluster cluster;
  cluster.set_name(name);
  cluster.set_type(xds::Cluster::STATIC);
  cluster.set_protocol(UpstreamProtocolFor(protocol));
  cluster.mutable_load_assignment()->set_cluster_name(name);
  cluster.mutable_load_assignment()->add_endpoints()->set_address(
      FormatAddress(ctx.options.local_app_host, app_port));
  return cluster;
}

}  // namespace meshlet::controlplane::translate

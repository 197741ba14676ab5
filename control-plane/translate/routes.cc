// Routes: the route configuration "outbound" — one virtual host per reachable Service port, the
// HTTPRoute rules of the Service (matches, backends, redirects, direct responses, rewrites, header
// edits, faults) and a default route, with the timeouts and retries TrafficPolicy and MeshConfig
// give them; inline, or one ServiceRoute per Service port for a node that reads them — and the
// inbound route to the local app.

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "control-plane/translate/translation.h"

namespace meshlet::controlplane::translate {
namespace {

bool HasRetries(const pb::Retries& r) { return r.ByteSizeLong() > 0; }

template <typename Map>
std::vector<std::pair<std::string, std::string>> Sorted(const Map& map) {
  std::vector<std::pair<std::string, std::string>> out(map.begin(), map.end());
  std::sort(out.begin(), out.end());
  return out;
}

void AddHeaderEdits(const pb::HeaderModifier& hm,
                    google::protobuf::RepeatedPtrField<xds::HeaderValueOption>* add,
                    google::protobuf::RepeatedPtrField<std::string>* remove) {
  for (const auto& [name, value] : Sorted(hm.set())) {
    xds::HeaderValueOption* h = add->Add();
    h->set_name(name);
    h->set_value(value);
    h->set_append(false);
  }
  for (const auto& [name, value] : Sorted(hm.add())) {
    xds::HeaderValueOption* h = add->Add();
    h->set_name(name);
    h->set_value(value);
    h->set_append(true);
  }
  for (const std::string& name : hm.remove()) *remove->Add() = name;
}

// The route action for a rule's backends, or false when none of them resolves.
bool BackendAction(const TranslationContext& ctx, TranslationOutput& out, const ServiceView& target,
                   const pb::ServicePort& target_port, const pb::HTTPRouteRule& rule,
                   const std::string& where, xds::RouteAction& action) {
  struct Choice {
    std::string cluster;
    uint32_t weight;
  };
  std::vector<Choice> choices;
  bool all_unweighted = true;
  for (const pb::HTTPBackend& b : rule.backends()) all_unweighted &= b.weight() == 0;
  for (int i = 0; i < rule.backends_size(); ++i) {
    const pb::HTTPBackend& b = rule.backends(i);
    auto it = ctx.index.services.find({target.namespace_, b.service()});
    if (it == ctx.index.services.end()) {
      out.Warn(absl::StrCat(where, ".backends[", i, "]: Service \"", b.service(),
                            "\" in namespace \"", target.namespace_,
                            "\" does not exist; its share of traffic gets 503"));
      continue;
    }
    const ServiceView& backend = *it->second;
    const pb::ServicePort* port = nullptr;
    const uint32_t wanted = b.port() != 0 ? b.port() : &backend == &target ? target_port.port() : 0;
    for (const pb::ServicePort& p : backend.ports) {
      if (wanted == 0 ? IsHttpProtocol(p.protocol()) : p.port() == wanted) {
        port = &p;
        break;
      }
    }
    if (port == nullptr) {
      out.Warn(absl::StrCat(where, ".backends[", i, "]: Service \"", b.service(),
                            "\" has no such HTTP port; its share of traffic gets 503"));
      continue;
    }
    const uint32_t weight = all_unweighted ? 1 : b.weight();
    if (weight == 0) continue;
    std::map<std::string, std::string> subset(b.subset().begin(), b.subset().end());
    choices.push_back({UseCluster(ctx, out, backend, *port, subset), weight});
  }
  if (choices.empty()) return false;
  if (choices.size() == 1 && static_cast<int>(choices.size()) == rule.backends_size()) {
    action.set_cluster(choices.front().cluster);
  } else {
    // A missing backend keeps the others at their share; the sidecar spreads by weight.
    for (const Choice& c : choices) {
      auto* cw = action.mutable_weighted_clusters()->add_clusters();
      cw->set_name(c.cluster);
      cw->set_weight(c.weight);
    }
  }
  return true;
}

// What every route of a rule shares whatever it matches: the action (a redirect, a direct
// response, or the backends with the route's timeouts and retries), header edits and faults.
// `where` names the rule in warnings.
xds::Route RuleRoute(const TranslationContext& ctx, TranslationOutput& out,
                     const ServiceView& target, const pb::ServicePort& port,
                     const pb::HTTPRouteRule& rule, const std::string& where) {
  xds::Route base;
  if (rule.has_redirect()) {
    xds::RedirectAction* r = base.mutable_redirect();
    r->set_host(rule.redirect().host());
    r->set_path(rule.redirect().path());
    r->set_scheme(rule.redirect().scheme());
    r->set_port(rule.redirect().port());
    r->set_response_code(rule.redirect().status_code());
  } else if (rule.has_direct_response()) {
    base.mutable_direct_response()->set_status(rule.direct_response().status());
    base.mutable_direct_response()->set_body(rule.direct_response().body());
  } else {
    xds::RouteAction action;
    if (BackendAction(ctx, out, target, port, rule, where, action)) {
      ApplyRouteDefaults(ctx, target, action, &rule);
      if (rule.has_rewrite()) {
        action.set_prefix_rewrite(rule.rewrite().path_prefix());
        action.set_host_rewrite(rule.rewrite().host());
      }
      *base.mutable_route() = std::move(action);
    } else {
      base.mutable_direct_response()->set_status(503);
      base.mutable_direct_response()->set_body("meshlet: no backend of this route exists\n");
    }
  }
  if (rule.has_request_headers()) {
    AddHeaderEdits(rule.request_headers(), base.mutable_request_headers_to_add(),
                   base.mutable_request_headers_to_remove());
  }
  if (rule.has_response_headers()) {
    AddHeaderEdits(rule.response_headers(), base.mutable_response_headers_to_add(),
                   base.mutable_response_headers_to_remove());
  }
  if (rule.has_fault()) {
    const pb::Fault& f = rule.fault();
    xds::FaultInjection* fault = base.mutable_fault();
    if (f.has_delay()) {
      SetDuration(fault->mutable_delay()->mutable_fixed_delay(), f.delay().fixed());
      fault->mutable_delay()->set_percentage(f.delay().percent());
    }
    if (f.has_abort()) {
      fault->mutable_abort()->set_http_status(f.abort().http_status());
      fault->mutable_abort()->set_grpc_status(f.abort().grpc_status());
      fault->mutable_abort()->set_percentage(f.abort().percent());
    }
  }
  return base;
}

// One match of a rule (null: the rule has none, everything matches).
void SetMatch(const pb::HTTPRouteMatch* in, xds::RouteMatch& match) {
  if (in == nullptr || !in->has_path()) {
    match.set_prefix("/");
  } else if (in->path().type() == "Exact") {
    match.set_path(in->path().value());
  } else {
    match.set_prefix(in->path().value());
  }
  if (in == nullptr) return;
  for (const auto& h : in->headers()) {
    xds::HeaderMatcher* hm = match.add_headers();
    hm->set_name(absl::AsciiStrToLower(h.name()));
    if (h.type() == "Present") {
      hm->set_present(true);
    } else if (h.type() == "Prefix") {
      hm->set_prefix(h.value());
    } else {
      hm->set_exact(h.value());
    }
    hm->set_invert(h.invert());
  }
  if (!in->method().empty()) match.add_methods(in->method());
}

// The routes of one HTTPRoute rule, one per match, in order.
void AddRuleRoutes(const TranslationContext& ctx, TranslationOutput& out, const ServiceView& target,
                   const pb::ServicePort& port, const pb::HTTPRoute& route, int rule_index,
                   xds::VirtualHost& vhost) {
  const pb::HTTPRouteRule& rule = route.spec().rules(rule_index);
  const std::string where = absl::StrCat(
      "HTTPRoute ",
      route.metadata().namespace_().empty() ? "default" : route.metadata().namespace_(), "/",
      route.metadata().name(), " spec.rules[", rule_index, "]");
  const xds::Route base = RuleRoute(ctx, out, target, port, rule, where);
  const std::string rule_name =
      rule.name().empty() ? absl::StrCat("rule-", rule_index) : rule.name();
  const int match_count = std::max(1, rule.matches_size());
  for (int m = 0; m < match_count; ++m) {
    xds::Route r = base;
    r.set_name(absl::StrCat(route.metadata().name(), ".", rule_name,
                            rule.matches_size() > 1 ? absl::StrCat(".", m) : ""));
    SetMatch(rule.matches_size() == 0 ? nullptr : &rule.matches(m), *r.mutable_match());
    SetPolicySource("HTTPRoute", route.metadata().namespace_(), route.metadata().name(), rule_index,
                    rule.matches_size() == 0 ? -1 : m, *r.mutable_source());
    if (r.has_route()) {
      // The rule's own timeout, else its TrafficPolicy's or the mesh's; per try never the rule's.
      SetTimeoutSources(ctx, target, &r.source(), rule.has_timeout(), false, *r.mutable_route());
    }
    *vhost.add_routes() = std::move(r);
  }
}

}  // namespace

xds::RetryPolicy ToRetryPolicy(const pb::Retries& r, const pb::Timeouts& t) {
  xds::RetryPolicy out;
  if (r.has_attempts()) *out.mutable_num_retries() = r.attempts();
  std::vector<std::string> retry_on(r.retry_on().begin(), r.retry_on().end());
  if (r.retriable_status_codes_size() > 0 &&
      std::find(retry_on.begin(), retry_on.end(), "retriable-status-codes") == retry_on.end()) {
    // Listing status codes means retrying on them.
    if (retry_on.empty()) retry_on = {"connect-failure", "refused-stream", "reset"};
    retry_on.push_back("retriable-status-codes");
  }
  for (const std::string& value : retry_on) out.add_retry_on(value);
  *out.mutable_retriable_status_codes() = r.retriable_status_codes();
  if (t.has_per_try()) SetDuration(out.mutable_per_try_timeout(), t.per_try());
  if (r.has_backoff_base()) SetDuration(out.mutable_base_interval(), r.backoff_base());
  if (r.has_backoff_max()) SetDuration(out.mutable_max_interval(), r.backoff_max());
  out.set_retry_non_idempotent(r.retry_non_idempotent());
  return out;
}

void ApplyRouteDefaults(const TranslationContext& ctx, const ServiceView& s,
                        xds::RouteAction& action, const pb::HTTPRouteRule* rule) {
  const pb::TrafficPolicySpec* tp = ctx.PolicyFor(s);
  const pb::Timeouts timeouts = ctx.EffectiveTimeouts(tp);
  if (rule != nullptr && rule->has_timeout()) {
    SetDuration(action.mutable_timeout(), rule->timeout());
  } else if (timeouts.has_request()) {
    SetDuration(action.mutable_timeout(), timeouts.request());
  }
  const pb::Retries retries =
      ctx.EffectiveRetries(tp, rule != nullptr && rule->has_retries() ? &rule->retries() : nullptr);
  if (HasRetries(retries) || timeouts.has_per_try()) {
    *action.mutable_retry_policy() = ToRetryPolicy(retries, timeouts);
  }
}

// The host names of a Service port; with `addresses`, its virtual addresses too (what a
// client that called the address sends as Host).
std::vector<std::string> Domains(const TranslationContext& ctx, const ServiceView& s, uint32_t port,
                                 bool bare, bool addresses) {
  std::vector<std::string> names = {s.name, s.Fqdn(), absl::StrCat(s.Fqdn(), ".svc"),
                                    absl::StrCat(s.Fqdn(), ".svc.", ctx.options.cluster_domain)};
  if (addresses) {
    for (const std::string& address : s.addresses) names.push_back(AddressHost(address));
  }
  std::vector<std::string> out;
  for (const std::string& n : names) {
    if (bare) out.push_back(n);
    out.push_back(absl::StrCat(n, ":", port));
  }
  return out;
}

namespace {

// The host names a Service port claims: Domains() (bare too on its first HTTP port, its
// addresses too for a captured node) and, on its first HTTP port, its HTTPRoutes' hostnames.
std::vector<std::string> ClaimedDomains(const TranslationContext& ctx, const ServiceView& service,
                                        uint32_t port, bool first_http_port) {
  std::vector<std::string> domains = Domains(ctx, service, port, first_http_port, ctx.self.capture);
  if (first_http_port) {
    for (const pb::HTTPRoute* route : ctx.RoutesFor(service)) {
      for (const std::string& host : route->spec().hostnames()) domains.push_back(host);
    }
  }
  return domains;
}

// Calls `f(port, first_http_port)` for each HTTP port of `service`, in port order.
template <typename F>
void ForEachHttpPort(const ServiceView& service, F f) {
  bool first_http_port = true;
  for (const pb::ServicePort& port : service.ports) {
    if (!IsHttpProtocol(port.protocol())) continue;
    f(port, first_http_port);
    first_http_port = false;
  }
}

std::string PortName(const ServiceView& service, uint32_t port) {
  return absl::StrCat(service.Fqdn(), ":", port);
}

// The host-name owners of the mesh for a node of this variant (OwnHostNames).
HostOwners BuildHostOwners(const TranslationContext& ctx) {
  HostOwners owners;
  // Every Service, reachable or not: a node scoped to some of them sees the owners any other
  // node sees, so the virtual host of a Service port is the same for every node that reaches it.
  for (uint32_t i = 0; i < ctx.index.ordered.size(); ++i) {
    const ServiceView& service = *ctx.index.ordered[i];
    ForEachHttpPort(service, [&](const pb::ServicePort& port, bool first_http_port) {
      const ServicePortRef owner{i, port.port()};
      for (const std::string& domain : ClaimedDomains(ctx, service, port.port(), first_http_port)) {
        owners.try_emplace(absl::AsciiStrToLower(domain), owner);
      }
    });
  }
  return owners;
}

}  // namespace

void AnswerEverything(xds::VirtualHost& vhost, absl::string_view route_name, uint32_t status,
                      absl::string_view body) {
  vhost.clear_routes();
  xds::Route* route = vhost.add_routes();
  route->set_name(std::string(route_name));
  route->mutable_match()->set_prefix("/");
  route->mutable_direct_response()->set_status(status);
  route->mutable_direct_response()->set_body(std::string(body));
}

const HostOwners& HostOwnersCache::Get(bool capture, const std::string& cluster_domain,
                                       const std::function<HostOwners()>& build) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<const HostOwners>& owners = owners_[{capture, cluster_domain}];
  if (owners == nullptr) {
    owners = std::make_unique<const HostOwners>(build());
    ++tables_built_;
  }
  return *owners;
}

const AddressOwners& HostOwnersCache::Addresses(const std::function<AddressOwners()>& build) {
  std::lock_guard<std::mutex> lock(mu_);
  if (addresses_ == nullptr) {
    addresses_ = std::make_unique<const AddressOwners>(build());
    ++tables_built_;
  }
  return *addresses_;
}

const std::vector<std::string>& HostOwnersCache::OnDemandRanges(
    const std::function<std::vector<std::string>()>& build) {
  std::lock_guard<std::mutex> lock(mu_);
  if (on_demand_ranges_ == nullptr) {
    on_demand_ranges_ = std::make_unique<const std::vector<std::string>>(build());
    ++tables_built_;
  }
  return *on_demand_ranges_;
}

const HostOwners& OwnHostNames(const TranslationContext& ctx) {
  return ctx.index.host_owners->Get(ctx.self.capture, ctx.options.cluster_domain,
                                    [&ctx] { return BuildHostOwners(ctx); });
}

std::vector<ServicePortRoute> RouteServicePorts(const TranslationContext& ctx,
                                                const HostOwners& owners,
                                                const ServiceView& service,
                                                TranslationOutput& out) {
  std::vector<ServicePortRoute> routes;
  // Captured connections to the Service's addresses are matched by address and port.
  const bool destinations = ctx.self.capture && !service.addresses.empty();
  bool first_http_port = true;
  for (const pb::ServicePort& port : service.ports) {
    ServicePortRoute route;
    route.name = PortName(service, port.port());
    if (destinations) route.destination = ServiceDestination(service, port);
    if (!IsHttpProtocol(port.protocol())) {
      if (!ctx.self.capture) {
        out.Warn(absl::StrCat("Service ", service.namespace_, "/", service.name, " port ",
                              port.port(), ": TCP ports are not routed by the outbound listener"));
      } else if (service.addresses.empty()) {
        out.Warn(absl::StrCat("Service ", service.namespace_, "/", service.name, " port ",
                              port.port(),
                              ": TCP, and the Service has no address to recognise it by"));
      } else {
        // Captured connections to the Service's addresses on this port (the destination).
        UseCluster(ctx, out, service, port, {});
        routes.push_back(std::move(route));
      }
      continue;
    }
    if (IsAutoProtocol(port.protocol()) && destinations) {
      // Captured connections to the address that turn out not to be HTTP.
      UseCluster(ctx, out, service, port, {}, /*opaque=*/true);
    }
    xds::VirtualHost vhost;
    vhost.set_name(route.name);
    absl::flat_hash_set<std::string> added;  // lower-cased, as owners are
    for (std::string& domain : ClaimedDomains(ctx, service, port.port(), first_http_port)) {
      std::string key = absl::AsciiStrToLower(domain);
      auto owner = owners.find(key);
      if (owner != owners.end() && &ctx.index.service(owner->second) == &service &&
          owner->second.port == port.port() && added.insert(std::move(key)).second) {
        vhost.add_domains(std::move(domain));
      } else {
        out.Warn(absl::StrCat("host name \"", domain, "\" of ", vhost.name(),
                              " is already used by another service; ignored"));
      }
    }
    first_http_port = false;
    if (vhost.domains().empty()) {
      if (route.destination) routes.push_back(std::move(route));
      continue;
    }
    if (ctx.self.capture) {
      // The Service port is the frontend (GAMMA): connections captured on their way to its
      // addresses use this virtual host whatever their Host says.
      for (const std::string& address : service.addresses) {
        vhost.add_destinations(absl::StrCat(AddressHost(address), ":", port.port()));
      }
    }
    if (AddGatewayRoutes(ctx, out, service, port, vhost)) {
      // Gateway API routes own the port; the Service's own HTTPRoutes stand aside (ADR 0060).
      for (const pb::HTTPRoute* http_route : ctx.RoutesFor(service)) {
        out.Warn(absl::StrCat("HTTPRoute ", service.namespace_, "/", http_route->metadata().name(),
                              ": Gateway API routes are attached to ", vhost.name(),
                              " and win; this HTTPRoute is ignored for that port"));
      }
      route.virtual_host = std::move(vhost);
      routes.push_back(std::move(route));
      continue;
    }
    for (const pb::HTTPRoute* http_route : ctx.RoutesFor(service)) {
      for (int i = 0; i < http_route->spec().rules_size(); ++i) {
        AddRuleRoutes(ctx, out, service, port, *http_route, i, vhost);
      }
    }
    xds::Route fallback;
    fallback.set_name("default");
    fallback.mutable_match()->set_prefix("/");
    SetPolicySource("Service", service.namespace_, service.name, -1, -1,
                    *fallback.mutable_source());
    xds::RouteAction* action = fallback.mutable_route();
    action->set_cluster(UseCluster(ctx, out, service, port, {}));
    ApplyRouteDefaults(ctx, service, *action, nullptr);
    SetTimeoutSources(ctx, service, nullptr, false, false, *action);
    *vhost.add_routes() = std::move(fallback);
    route.virtual_host = std::move(vhost);
    routes.push_back(std::move(route));
  }
  return routes;
}

xds::ServiceRoute ToServiceRoute(const TranslationContext& ctx, ServicePortRoute route,
                                 TranslationOutput& out) {
  xds::ServiceRoute resource;
  resource.set_name(route.name);
  resource.set_route_config_name(std::string(kOutboundName));
  if (route.virtual_host) *resource.mutable_virtual_host() = std::move(*route.virtual_host);
  if (route.destination) *resource.mutable_destination() = std::move(*route.destination);
  const size_t limit = ctx.options.max_resource_bytes;
  if (limit != 0 && resource.has_virtual_host() && resource.ByteSizeLong() > limit) {
    // Sent as it is, it would be refused with the whole response (or hold back every other
    // change of the type); the rest of the mesh keeps working without it.
    const size_t size = resource.ByteSizeLong();
    AnswerEverything(*resource.mutable_virtual_host(), "too-large", 503,
                     absl::StrCat("meshlet: route table of ", route.name, " too large\n"));
    out.Warn(absl::StrCat("ServiceRoute ", route.name, ": ", size,
                          " bytes, more than the limit of ", limit,
                          " (--xds-max-resource-bytes); its requests get 503 until its routes "
                          "shrink"));
    ++out.resources.oversized_service_routes;
  }
  return resource;
}

void BuildServiceRoutes(const TranslationContext& ctx, const ServiceView& service,
                        TranslationOutput& out) {
  for (ServicePortRoute& route : RouteServicePorts(ctx, OwnHostNames(ctx), service, out)) {
    out.resources.service_routes.push_back(ToServiceRoute(ctx, std::move(route), out));
  }
}

void BuildOutboundRoutes(const TranslationContext& ctx, TranslationOutput& out, bool services) {
  xds::RouteConfiguration routes;
  routes.set_name(std::string(kOutboundName));
  const bool split = SplitsRouteTable(ctx);
  const HostOwners& owners = OwnHostNames(ctx);
  for (const auto& [key, view] : ctx.index.services) {
    const ServiceView& service = *view;
    if (!services) break;
    if (!ctx.Reachable(service)) continue;
    if (split) {
      BuildServiceRoutes(ctx, service, out);
      continue;
    }
    for (ServicePortRoute& route : RouteServicePorts(ctx, owners, service, out)) {
      // The destination goes into the capture listener (listeners.cc).
      if (route.virtual_host) *routes.add_virtual_hosts() = std::move(*route.virtual_host);
    }
  }
  xds::VirtualHost unknown;
  unknown.set_name("unknown-host");
  unknown.add_domains("*");
  AnswerEverything(unknown, "no-service", 404,
                   "meshlet: no service for this host (known to this sidecar)\n");
  *routes.add_virtual_hosts() = std::move(unknown);
  out.resources.routes.push_back(std::move(routes));
}

// The inbound route to the local app's `cluster`.
xds::Route AppRoute(const std::string& cluster, const pb::TrafficPolicy* policy) {
  const pb::TrafficPolicySpec* tp = policy != nullptr ? &policy->spec() : nullptr;
  xds::Route route;
  route.set_name("app");
  route.mutable_match()->set_prefix("/");
  route.mutable_route()->set_cluster(cluster);
  // The caller's deadline governs; the inbound hop adds none of its own.
  route.mutable_route()->mutable_timeout()->set_seconds(0);
  // Retries belong to the caller's sidecar, where the route's policy and the cluster's budget
  // live: retrying responses or resets here as well would multiply attempts at every hop.
  // This hop retries only what provably never reached the app (no connection to it, or a
  // stream it refused), with the default attempt count; those cannot multiply.
  xds::RetryPolicy* inbound_retries = route.mutable_route()->mutable_retry_policy();
  inbound_retries->add_retry_on("connect-failure");
  inbound_retries->add_retry_on("refused-stream");
  if (tp != nullptr && tp->has_rate_limit()) {
    route.mutable_rate_limit()->set_requests_per_second(tp->rate_limit().requests_per_second());
    route.mutable_rate_limit()->set_burst(tp->rate_limit().burst());
    // A bucket per calling workload (its SPIFFE id), so one noisy caller cannot spend the
    // others' budget.
    route.mutable_rate_limit()->set_per_principal(tp->rate_limit().per_source_identity());
    SetPolicySource("TrafficPolicy", policy->metadata().namespace_(), policy->metadata().name(), -1,
                    -1, *route.mutable_rate_limit()->mutable_source());
  }
  return route;
}

}  // namespace meshlet::controlplane::translate

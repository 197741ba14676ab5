#include "control-plane/telemetry/explain.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::telemetry {
namespace {

// meshlet.* attributes a sidecar writes (the collector's meshlet.source.* marks do not count).
bool IsSidecarSpan(const SpanRecord& span) {
  return std::any_of(span.attributes.begin(), span.attributes.end(), [](const auto& kv) {
    return absl::StartsWith(kv.first, "meshlet.") && !absl::StartsWith(kv.first, "meshlet.source.");
  });
}

std::string Attribute(const SpanRecord& span, absl::string_view name) {
  for (const auto& [key, value] : span.attributes) {
    if (key == name) return value;
  }
  return "";
}

// "endpoint=10.0.0.5:9080 outcome=timeout duration_ms=100 next=retry(per-try timeout)": key=value
// fields separated by spaces; a value's parentheses may hold spaces.
ExplainAttempt ParseAttempt(absl::string_view text) {
  ExplainAttempt attempt;
  text = absl::StripAsciiWhitespace(text);
  while (!text.empty()) {
    const size_t eq = text.find('=');
    if (eq == absl::string_view::npos) break;
    const absl::string_view key = absl::StripAsciiWhitespace(text.substr(0, eq));
    size_t end = eq + 1;
    int depth = 0;
    for (; end < text.size(); ++end) {
      if (text[end] == '(') ++depth;
      if (text[end] == ')' && depth > 0) --depth;
      if (text[end] == ' ' && depth == 0) break;
    }
    const std::string value(text.substr(eq + 1, end - eq - 1));
    if (key == "endpoint") {
      attempt.endpoint = value;
    } else if (key == "outcome") {
      attempt.outcome = value;
    } else if (key == "connect") {
      attempt.connect = value;
    } else if (key == "duration_ms") {
      if (!absl::SimpleAtoi(value, &attempt.duration_ms)) attempt.duration_ms = -1;
    } else if (key == "next") {
      attempt.next = value;
    } else if (key == "span_id") {
      attempt.span_id = value;
    }
    text = absl::StripLeadingAsciiWhitespace(text.substr(std::min(end, text.size())));
  }
  return attempt;
}

std::string Direction(const SpanRecord& span, absl::string_view cluster) {
  // What the sidecar says: its listener's direction.
  const std::string listener = Attribute(span, "meshlet.listener.direction");
  if (listener == "inbound" || listener == "outbound") return listener;
  // A sidecar that does not say (before 0.2): the control plane's cluster names tell, a verified
  // caller is an inbound matter, and the outbound route configuration's catch-all routes are
  // outbound ones.
  if (absl::StartsWith(cluster, "inbound|")) return "inbound";
  if (absl::StartsWith(cluster, "outbound|")) return "outbound";
  if (!Attribute(span, "meshlet.peer.identity").empty() ||
      !Attribute(span, "meshlet.peer").empty()) {
    return "inbound";
  }
  const std::string route = Attribute(span, "meshlet.route");
  if (route == "no-service" || route == "no-matching-route") return "outbound";
  // Only a capture listener's outbound side refuses unknown destinations.
  if (!Attribute(span, "meshlet.policy.destination").empty()) return "outbound";
  return "";
}

// Which overload limit shed the request, and the setting behind it (meshlet.shed.*): "more than
// 20 requests in flight on its worker (its share of --overload-max-active-requests 40)",
// "resident memory above --overload-max-rss-mb 512"; empty when the span does not say.
std::string ShedText(const SpanRecord& span) {
  const std::string reason = Attribute(span, "meshlet.shed.reason");
  const std::string limit = Attribute(span, "meshlet.shed.limit");
  if (reason == "memory") {
    return absl::StrCat("resident memory above --overload-max-rss-mb",
                        limit.empty() ? "" : absl::StrCat(" ", limit));
  }
  if (reason == "active_requests") {
    const std::string share = Attribute(span, "meshlet.shed.worker_limit");
    if (share.empty()) {
      return absl::StrCat("its worker's share of --overload-max-active-requests",
                          limit.empty() ? "" : absl::StrCat(" ", limit), " in flight");
    }
    return absl::StrCat("more than ", share, share == "1" ? " request" : " requests",
                        " in flight on its worker (its share of --overload-max-active-requests",
                        limit.empty() ? "" : absl::StrCat(" ", limit), ")");
  }
  return reason;
}

// The upstream host a span names, "ip:port": meshlet.upstream.address; from a sidecar before it,
// server.address, which then held the same (now the request's authority, without a port).
std::string UpstreamAddress(const SpanRecord& span) {
  std::string address = Attribute(span, "meshlet.upstream.address");
  if (address.empty()) address = Attribute(span, "meshlet.upstream");
  if (address.empty() && Attribute(span, "server.port").empty()) {
    address = Attribute(span, "server.address");
  }
  return address;
}

// An upstream attempt's span (a CLIENT span with its attempt number), rather than a request's:
// an outbound sidecar's span of a request it did not retry is a CLIENT span too, and a hop.
bool IsAttemptSpan(const SpanRecord& span) {
  return span.kind == SpanKind::kClient && !Attribute(span, "meshlet.retry_attempt").empty();
}

// A gateway proxy's hop: the Gateway its service names, and the class its verified identity's
// service account ("<name>-<class>", as gateway proxies run) tells.
void SetGateway(const SpanRecord& span, ExplainHop& hop) {
  absl::string_view rest = span.service;
  if (!absl::ConsumePrefix(&rest, xds::kGatewayServicePrefix)) return;
  const size_t dot = rest.rfind('.');
  if (dot == absl::string_view::npos || dot == 0 || dot + 1 == rest.size()) return;
  const absl::string_view name = rest.substr(0, dot);
  const absl::string_view ns = rest.substr(dot + 1);
  hop.gateway = absl::StrCat(ns, "/", name);
  hop.direction = "gateway";
  const std::string identity = Attribute(span, kSourceIdentityAttribute);
  absl::string_view account = identity;
  const std::string prefix = absl::StrCat("/ns/", ns, "/sa/", name, "-");
  const size_t at = account.find(prefix);
  if (at != absl::string_view::npos && absl::StartsWith(account, "spiffe://")) {
    account.remove_prefix(at + prefix.size());
    if (!account.empty() && account.find('/') == absl::string_view::npos) {
      hop.gateway_class = std::string(account);
    }
  }
}

ExplainHop MakeHop(const SpanRecord& span, const std::vector<const SpanRecord*>& attempt_spans) {
  ExplainHop hop;
  hop.span_id = span.span_id;
  hop.service = span.service;
  hop.node = Attribute(span, kSourceNodeAttribute);
  hop.operation = span.name;
  hop.status = Attribute(span, "http.response.status_code");
  hop.start_unix_nanos = span.start_unix_nanos;
  hop.duration_nanos = span.duration_nanos();
  hop.route = Attribute(span, "meshlet.route");
  hop.policy_route = Attribute(span, "meshlet.policy.route");
  hop.gateway_listener = Attribute(span, "meshlet.gateway.listener");
  hop.route_rule = Attribute(span, "meshlet.route.rule");
  hop.route_match = Attribute(span, "meshlet.route.match");
  hop.cluster = Attribute(span, "meshlet.cluster");
  hop.subset = Attribute(span, "meshlet.subset");
  hop.locality = Attribute(span, "meshlet.upstream.locality");
  hop.policy_traffic = Attribute(span, "meshlet.policy.traffic");
  hop.timeout_request_ms = Attribute(span, "meshlet.timeout.request_ms");
  hop.timeout_per_try_ms = Attribute(span, "meshlet.timeout.per_try_ms");
  hop.timeout_origin = Attribute(span, "meshlet.timeout.origin");
  hop.policy_timeout = Attribute(span, "meshlet.policy.timeout");
  hop.policy_per_try = Attribute(span, "meshlet.policy.per_try_timeout");
  hop.policy_destination = Attribute(span, "meshlet.policy.destination");
  hop.policy_rate_limit = Attribute(span, "meshlet.policy.rate_limit");
  hop.shed = ShedText(span);
  // A meshlet sidecar always says whether the parent is remote (bit 8); with it, the W3C sampled
  // bit clear marks an error span of an unsampled request.
  hop.sampled = (span.flags & 0x100) == 0 || (span.flags & 0x01) != 0;
  hop.authz = Attribute(span, "meshlet.authz");
  hop.policy_authz = Attribute(span, "meshlet.policy.authz");
  hop.peer = Attribute(span, "meshlet.peer.identity");
  if (hop.peer.empty()) hop.peer = Attribute(span, "meshlet.peer");
  hop.upstream = UpstreamAddress(span);
  hop.request_id = Attribute(span, kRequestIdAttribute);
  hop.response_flags = Attribute(span, "meshlet.response_flags");
  hop.error_reason = Attribute(span, "meshlet.error.reason");
  hop.direction = Direction(span, hop.cluster);
  SetGateway(span, hop);
  const std::string attempts = Attribute(span, "meshlet.attempts");
  if (!attempts.empty()) {
    for (absl::string_view entry : absl::StrSplit(attempts, ';', absl::SkipWhitespace())) {
      // The record keeps a few attempts and ends with "dropped=N" for the rest.
      absl::string_view rest = absl::StripAsciiWhitespace(entry);
      if (absl::ConsumePrefix(&rest, "dropped=")) {
        int64_t dropped = 0;
        if (absl::SimpleAtoi(rest, &dropped) && dropped > 0) hop.attempts_dropped += dropped;
        continue;
      }
      hop.attempts.push_back(ParseAttempt(entry));
    }
  } else {
    // Without a decision record, the attempts' client spans (retried requests export one each).
    for (const SpanRecord* a : attempt_spans) {
      ExplainAttempt attempt;
      attempt.endpoint = UpstreamAddress(*a);
      attempt.outcome = Attribute(*a, "http.response.status_code");
      if (attempt.outcome.empty()) attempt.outcome = a->status_message;
      attempt.duration_ms = a->duration_nanos() / 1000000;
      hop.attempts.push_back(std::move(attempt));
    }
  }
  return hop;
}

bool HasFlag(absl::string_view flags, absl::string_view flag) {
  for (absl::string_view f : absl::StrSplit(flags, ',')) {
    if (absl::StripAsciiWhitespace(f) == flag) return true;
  }
  return false;
}

std::string HopLabel(const ExplainHop& hop) {
  std::string label;
  if (!hop.gateway.empty()) {
    // "gateway default/edge (class meshlet, listener https)".
    std::vector<std::string> about;
    if (!hop.gateway_class.empty()) about.push_back(absl::StrCat("class ", hop.gateway_class));
    if (!hop.gateway_listener.empty()) {
      about.push_back(absl::StrCat("listener ", hop.gateway_listener));
    }
    label = absl::StrCat("gateway ", hop.gateway,
                         about.empty() ? "" : absl::StrCat(" (", absl::StrJoin(about, ", "), ")"));
  } else {
    label = absl::StrCat(hop.service, "'s ",
                         hop.direction.empty() ? "" : absl::StrCat(hop.direction, " "), "sidecar");
  }
  if (!hop.node.empty()) absl::StrAppend(&label, " (", hop.node, ")");
  return label;
}

// " (route HTTPRoute/default/reviews-split rule 0)", or the sidecar's route name without a
// decision record; empty without either.
std::string RouteClause(const ExplainHop& hop) {
  if (!hop.policy_route.empty()) {
    return absl::StrCat(" (route ", hop.policy_route,
                        hop.route_rule.empty() ? "" : absl::StrCat(" rule ", hop.route_rule), ")");
  }
  if (!hop.route.empty()) return absl::StrCat(" (route ", hop.route, ")");
  return "";
}

std::string Millis(absl::string_view ms) { return absl::StrCat(ms, "ms"); }

// Attempts made, also those past the decision record's cap.
int64_t AttemptCount(const ExplainHop& hop) {
  return static_cast<int64_t>(hop.attempts.size()) + hop.attempts_dropped;
}

std::string AttemptsClause(const ExplainHop& hop) {
  if (AttemptCount(hop) == 0) return "";
  return absl::StrCat(" after ", AttemptCount(hop),
                      AttemptCount(hop) == 1 ? " attempt" : " attempts");
}

// ": connection refused": why the last attempt got no connection, as its sidecar recorded it.
std::string ConnectFailureClause(const ExplainHop& hop) {
  if (hop.attempts.empty()) return "";
  const std::string& why = hop.attempts.back().connect;
  if (why == "refused") return ": connection refused";
  if (why == "timeout") return ": no connection within the connect timeout";
  if (why == "closed") return ": the connection closed before carrying the request";
  return "";
}

// " (by locality failover: ...)": the endpoint was not of the caller's own zone, and why.
std::string LocalityClause(const ExplainHop& hop) {
  if (hop.locality == "failover") {
    return " (by locality failover: too few healthy endpoints nearer the caller)";
  }
  if (hop.locality == "spillover") {
    return " (by locality spill-over: the endpoints nearest the caller were overloaded)";
  }
  return "";
}

std::string ClusterText(const ExplainHop& hop) {
  if (hop.cluster.empty()) return "the cluster";
  return absl::StrCat("cluster ", hop.cluster,
                      hop.subset.empty() ? "" : absl::StrCat(" (subset ", hop.subset, ")"),
                      LocalityClause(hop));
}

std::string FromTrafficPolicy(const ExplainHop& hop) {
  return hop.policy_traffic.empty() ? "" : absl::StrCat(" from ", hop.policy_traffic);
}

// " from HTTPRoute/default/ratings": the object that set the route timeout. A sidecar that says
// where its timeouts came from (meshlet.timeout.origin) names it, or none when the sidecar's own
// default or static configuration set it; an older one names only its TrafficPolicy.
std::string FromTimeoutPolicy(const ExplainHop& hop) {
  if (hop.timeout_origin.empty()) return FromTrafficPolicy(hop);
  return hop.policy_timeout.empty() ? "" : absl::StrCat(" from ", hop.policy_timeout);
}

std::string FromPerTryPolicy(const ExplainHop& hop) {
  if (hop.timeout_origin.empty()) return FromTrafficPolicy(hop);
  return hop.policy_per_try.empty() ? "" : absl::StrCat(" from ", hop.policy_per_try);
}

// "request timeout 300ms from HTTPRoute/default/ratings (route ...)": a hop's own route timeout.
std::string RequestTimeout(const ExplainHop& hop) {
  return absl::StrCat("request timeout",
                      hop.timeout_request_ms.empty() ? "" : " " + Millis(hop.timeout_request_ms),
                      FromTimeoutPolicy(hop), RouteClause(hop));
}

// What the failing hop's proxy did, by its response flags.
std::string ProxyFailure(const ExplainHop& hop) {
  const std::string& f = hop.response_flags;
  const std::string reason = hop.error_reason.empty() ? "" : hop.error_reason;
  if (HasFlag(f, "AZ")) {
    return absl::StrCat("denied by ",
                        hop.policy_authz.empty() ? "the authorization policies" : hop.policy_authz,
                        " for ", hop.peer.empty() ? "a caller without a mesh identity" : hop.peer);
  }
  if (HasFlag(f, "UA")) {
    // JWT authentication (RequestAuthentication) refused the token; the reason names the check.
    return absl::StrCat("JWT authentication refused the request's token",
                        reason.empty() ? "" : absl::StrCat(" (", reason, ")"), " from ",
                        hop.peer.empty() ? "a caller without a mesh identity" : hop.peer);
  }
  if (HasFlag(f, "UT")) {
    if (hop.timeout_origin == "caller") {
      return absl::StrCat("the caller's deadline",
                          hop.timeout_request_ms.empty()
                              ? ""
                              : absl::StrCat(" (", Millis(hop.timeout_request_ms), " left)"),
                          " expired", AttemptsClause(hop), RouteClause(hop));
    }
    return absl::StrCat(RequestTimeout(hop), " expired", AttemptsClause(hop));
  }
  if (HasFlag(f, "UPT")) {
    return absl::StrCat("per-try timeout",
                        hop.timeout_per_try_ms.empty() ? "" : " " + Millis(hop.timeout_per_try_ms),
                        FromPerTryPolicy(hop), RouteClause(hop),
                        AttemptCount(hop) == 0   ? " expired on the last attempt"
                        : AttemptCount(hop) == 1 ? " expired on its only attempt"
                                                 : absl::StrCat(" expired on the last of ",
                                                                AttemptCount(hop), " attempts"));
  }
  if (HasFlag(f, "UH")) {
    return absl::StrCat("no healthy endpoint in ", ClusterText(hop), RouteClause(hop));
  }
  if (HasFlag(f, "UO")) {
    return absl::StrCat(
        "a circuit-breaker limit of ", ClusterText(hop), " refused the request",
        hop.policy_traffic.empty() ? "" : absl::StrCat(" (limits from ", hop.policy_traffic, ")"),
        RouteClause(hop));
  }
  if (HasFlag(f, "BO")) {
    return absl::StrCat("the consecutive-failure breaker of ", ClusterText(hop), " is open",
                        hop.policy_traffic.empty()
                            ? ""
                            : absl::StrCat(" (outlier settings from ", hop.policy_traffic, ")"),
                        RouteClause(hop));
  }
  if (HasFlag(f, "RL")) {
    return absl::StrCat(
        "rate limited",
        hop.policy_rate_limit.empty() ? "" : absl::StrCat(" by ", hop.policy_rate_limit),
        RouteClause(hop));
  }
  if (HasFlag(f, "NM")) {
    return absl::StrCat(reason.empty() ? "unknown destination: the mesh does not know it"
                                       : absl::StrCat("unknown destination (", reason, ")"),
                        hop.policy_destination.empty()
                            ? ""
                            : absl::StrCat(": refused by ", hop.policy_destination,
                                           RegistryOnlyReason(hop.policy_destination)));
  }
  if (HasFlag(f, "NR")) {
    return absl::StrCat("unknown destination: no route matched the request",
                        hop.route.empty() ? "" : absl::StrCat(" (route ", hop.route, ")"));
  }
  if (HasFlag(f, "NC")) {
    // A backend the control plane could not resolve (a Gateway API backendRef to a Service that
    // does not exist: 500, and the route's status says ResolvedRefs False), else a cluster this
    // sidecar lacks.
    if (absl::StrContains(reason, "backend does not exist")) {
      return absl::StrCat(
          "the route's backend does not exist (the share of backendRefs the control "
          "plane could not resolve: see the route's ResolvedRefs status)",
          RouteClause(hop));
    }
    return absl::StrCat("the route names a cluster the sidecar has not got", RouteClause(hop));
  }
  if (HasFlag(f, "UF")) {
    // "upstream TLS handshake failed": the upstream's certificate or identity was refused.
    return absl::StrCat(
        absl::StrContains(reason, "TLS") ? "the TLS handshake with " : "connecting to ",
        ClusterText(hop), " failed", ConnectFailureClause(hop), AttemptsClause(hop),
        RouteClause(hop));
  }
  if (HasFlag(f, "UR")) {
    return absl::StrCat("the upstream reset the stream", AttemptsClause(hop), RouteClause(hop));
  }
  if (HasFlag(f, "OL")) {
    return hop.shed.empty() ? "the sidecar is overloaded and shed the request"
                            : absl::StrCat("the sidecar shed the request: ", hop.shed);
  }
  if (HasFlag(f, "FI"))
    return absl::StrCat("fault injection aborted the request", RouteClause(hop));
  return absl::StrCat(reason.empty() ? "the proxy answered itself" : reason, RouteClause(hop));
}

bool ErrorStatus(absl::string_view status) {
  int code = 0;
  return absl::SimpleAtoi(status, &code) && code >= 500;
}

}  // namespace

absl::string_view RegistryOnlyReason(absl::string_view source) {
  return absl::StartsWith(source, "Namespace/")
             ? " (label meshlet.io/outbound-traffic-policy: REGISTRY_ONLY)"
             : " (outboundTrafficPolicy REGISTRY_ONLY)";
}

absl::StatusOr<Explanation> Explain(const std::string& trace_id,
                                    const std::vector<SpanRecord>& spans) {
  if (spans.empty()) return absl::NotFoundError(absl::StrCat("trace ", trace_id, " has no spans"));
  Explanation out;
  out.trace_id = trace_id;
  std::map<std::string, const SpanRecord*> by_id;
  for (const SpanRecord& span : spans) by_id[span.span_id] = &span;
  // A hop is a sidecar's span of a request: a server span, an outbound sidecar's client span of
  // the call (docs/tracing.md), kind unspecified from a sender that did not say; its attempts are
  // its child attempt spans of the same service.
  auto is_hop = [](const SpanRecord& span) { return !IsAttemptSpan(span) && IsSidecarSpan(span); };
  // The client span ids of each hop's attempts, from its decision record: an unsampled request's
  // attempts export no client spans, so a next hop's span names a parent that is not there, and
  // is linked to the hop that made the attempt instead.
  std::map<std::string, const SpanRecord*> attempt_owner;
  for (const SpanRecord& span : spans) {
    if (!is_hop(span)) continue;
    const std::string attempts = Attribute(span, "meshlet.attempts");
    for (absl::string_view entry : absl::StrSplit(attempts, ';', absl::SkipWhitespace())) {
      const ExplainAttempt attempt = ParseAttempt(entry);
      if (!attempt.span_id.empty() && attempt.span_id != span.span_id &&
          by_id.find(attempt.span_id) == by_id.end()) {
        attempt_owner.emplace(attempt.span_id, &span);
      }
    }
  }
  // The nearest span above `span`: its parent, else the hop whose attempt it names.
  auto above = [&](const SpanRecord& span) -> const SpanRecord* {
    if (auto it = by_id.find(span.parent_span_id); it != by_id.end()) return it->second;
    if (auto it = attempt_owner.find(span.parent_span_id); it != attempt_owner.end()) {
      return it->second;
    }
    return nullptr;
  };
  // The nearest hop above a span, for depth and order.
  std::map<std::string, std::vector<const SpanRecord*>> children;  // hop id → hops under it
  std::map<std::string, std::vector<const SpanRecord*>> attempts;  // hop id → client spans
  std::vector<const SpanRecord*> roots;
  for (const SpanRecord& span : spans) {
    // Ancestors, nearest first, up to a hop (at most as many as there are spans: a malformed
    // trace may have a cycle).
    const SpanRecord* parent = nullptr;
    size_t steps = 0;
    for (const SpanRecord* up = above(span); up != nullptr && up != &span && steps < spans.size();
         up = above(*up), ++steps) {
      if (is_hop(*up)) {
        parent = up;
        break;
      }
    }
    if (is_hop(span)) {
      (parent == nullptr ? roots : children[parent->span_id]).push_back(&span);
    } else if (IsAttemptSpan(span) && parent != nullptr && span.parent_span_id == parent->span_id &&
               span.service == parent->service) {
      attempts[parent->span_id].push_back(&span);
    }
  }
  if (std::none_of(spans.begin(), spans.end(), is_hop)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "trace ", trace_id,
        " has no span from a meshlet sidecar (no meshlet.* attributes): nothing to explain"));
  }
  auto by_start = [](const SpanRecord* a, const SpanRecord* b) {
    return a->start_unix_nanos < b->start_unix_nanos;
  };
  std::sort(roots.begin(), roots.end(), by_start);
  // Spans come from senders the collector may not have verified: a span listed twice, parents
  // that form a cycle, or a chain as long as a trace may be must neither loop, nor lose a hop, nor
  // recurse that deep. Depth first, each hop's children in start order, with a stack of its own.
  std::set<const SpanRecord*> visited;
  struct Pending {
    const SpanRecord* span;
    int depth;
    int parent;  // index in out.hops
  };
  std::vector<Pending> stack;
  auto visit = [&](const SpanRecord* root) {
    stack.push_back({root, 0, -1});
    while (!stack.empty()) {
      const Pending next = stack.back();
      stack.pop_back();
      if (!visited.insert(next.span).second) continue;
      ExplainHop hop = MakeHop(*next.span, attempts[next.span->span_id]);
      hop.depth = next.depth;
      hop.parent = next.parent;
      const int index = static_cast<int>(out.hops.size());
      out.hops.push_back(std::move(hop));
      std::vector<const SpanRecord*>& below = children[next.span->span_id];
      std::sort(below.begin(), below.end(), by_start);
      for (auto it = below.rbegin(); it != below.rend(); ++it) {
        stack.push_back({*it, next.depth + 1, index});
      }
    }
  };
  for (const SpanRecord* root : roots) visit(root);
  // Hops no root leads to (their parents form a cycle) start chains of their own.
  std::vector<const SpanRecord*> unreached;
  for (const SpanRecord& span : spans) {
    if (is_hop(span) && visited.count(&span) == 0) unreached.push_back(&span);
  }
  std::sort(unreached.begin(), unreached.end(), by_start);
  for (const SpanRecord* span : unreached) visit(span);

  const ExplainHop& first = out.hops.front();
  out.status = first.status;
  out.duration_nanos = first.duration_nanos;
  for (const ExplainHop& hop : out.hops) {
    if (!hop.request_id.empty()) {
      out.request_id = hop.request_id;
      break;
    }
  }
  std::set<std::string> policies;
  for (const ExplainHop& hop : out.hops) {
    for (const std::string* p :
         {&hop.policy_route, &hop.policy_traffic, &hop.policy_authz, &hop.policy_timeout,
          &hop.policy_per_try, &hop.policy_destination, &hop.policy_rate_limit}) {
      if (!p->empty()) policies.insert(*p);
    }
    if (!hop.sampled) out.unsampled = true;
  }
  out.policies.assign(policies.begin(), policies.end());

  // What failed first: the proxy-made error that ended first; else the deepest hop passing on
  // an application's error status.
  for (size_t i = 0; i < out.hops.size(); ++i) {
    const ExplainHop& hop = out.hops[i];
    if (hop.error_reason.empty()) continue;  // not made by the proxy
    const int64_t end = hop.start_unix_nanos + hop.duration_nanos;
    if (out.first_failure < 0 || end < out.hops[out.first_failure].start_unix_nanos +
                                           out.hops[out.first_failure].duration_nanos) {
      out.first_failure = static_cast<int>(i);
    }
  }
  if (out.first_failure >= 0) {
    ExplainHop& hop = out.hops[out.first_failure];
    hop.failed_first = true;
    const std::string at =
        absl::StrCat(hop.status.empty() ? "failed" : hop.status, " at ", HopLabel(hop), ": ");
    if (HasFlag(hop.response_flags, "UT") && hop.timeout_origin == "caller") {
      // The deadline came from above: the nearest hop whose own route timeout set it.
      for (int up = hop.parent; up >= 0; up = out.hops[up].parent) {
        if (out.hops[up].timeout_origin == "route") {
          out.deadline_from = up;
          break;
        }
      }
    }
    if (out.deadline_from >= 0) {
      const ExplainHop& origin = out.hops[out.deadline_from];
      out.verdict =
          absl::StrCat(at, "the deadline of ", HopLabel(origin),
                       " ran out: ", RequestTimeout(origin), " expired", AttemptsClause(origin));
    } else {
      out.verdict = absl::StrCat(at, ProxyFailure(hop));
    }
    return out;
  }
  if (ErrorStatus(out.status)) {
    int deepest = 0;
    for (size_t i = 0; i < out.hops.size(); ++i) {
      if (out.hops[i].status == out.status && out.hops[i].depth >= out.hops[deepest].depth) {
        deepest = static_cast<int>(i);
      }
    }
    ExplainHop& hop = out.hops[deepest];
    hop.failed_first = true;
    out.first_failure = deepest;
    // A gateway has no application behind it: the answer came from the backend it called.
    out.verdict =
        hop.gateway.empty()
            ? absl::StrCat(out.status, " from the application behind ", HopLabel(hop),
                           ": no proxy made it (an upstream response passed through)")
            : absl::StrCat(out.status, " from the backend ", HopLabel(hop), " called",
                           hop.cluster.empty() ? "" : absl::StrCat(" (", hop.cluster, ")"),
                           LocalityClause(hop), ": no proxy made it (its response passed through)");
    return out;
  }
  const auto retried = std::find_if(out.hops.begin(), out.hops.end(),
                                    [](const ExplainHop& hop) { return AttemptCount(hop) > 1; });
  out.verdict =
      absl::StrCat(out.status.empty() ? "no status recorded" : out.status, ": no hop failed",
                   retried == out.hops.end() ? ""
                                             : absl::StrCat(" (", HopLabel(*retried), " needed ",
                                                            AttemptCount(*retried), " attempts)"));
  return out;
}

std::string ExplanationJson(const Explanation& e) {
  auto field = [](std::vector<std::string>& fields, absl::string_view name,
                  absl::string_view value) {
    if (!value.empty()) fields.push_back(absl::StrCat(JsonQuote(name), ":", JsonQuote(value)));
  };
  std::vector<std::string> hops;
  for (const ExplainHop& hop : e.hops) {
    std::vector<std::string> f;
    field(f, "spanId", hop.span_id);
    field(f, "service", hop.service);
    field(f, "node", hop.node);
    field(f, "direction", hop.direction);
    field(f, "gateway", hop.gateway);
    field(f, "gatewayClass", hop.gateway_class);
    field(f, "gatewayListener", hop.gateway_listener);
    field(f, "operation", hop.operation);
    field(f, "status", hop.status);
    f.push_back(absl::StrCat(R"("depth":)", hop.depth));
    f.push_back(absl::StrCat(R"("durationNanos":)", hop.duration_nanos));
    field(f, "route", hop.route);
    field(f, "routePolicy", hop.policy_route);
    field(f, "routeRule", hop.route_rule);
    field(f, "routeMatch", hop.route_match);
    field(f, "cluster", hop.cluster);
    field(f, "subset", hop.subset);
    field(f, "locality", hop.locality);
    field(f, "trafficPolicy", hop.policy_traffic);
    field(f, "requestTimeoutMs", hop.timeout_request_ms);
    field(f, "perTryTimeoutMs", hop.timeout_per_try_ms);
    field(f, "timeoutOrigin", hop.timeout_origin);
    field(f, "timeoutPolicy", hop.policy_timeout);
    field(f, "perTryTimeoutPolicy", hop.policy_per_try);
    field(f, "destinationPolicy", hop.policy_destination);
    field(f, "rateLimitPolicy", hop.policy_rate_limit);
    field(f, "shed", hop.shed);
    field(f, "authz", hop.authz);
    field(f, "authzPolicy", hop.policy_authz);
    field(f, "peer", hop.peer);
    field(f, "upstream", hop.upstream);
    field(f, "requestId", hop.request_id);
    field(f, "responseFlags", hop.response_flags);
    field(f, "errorReason", hop.error_reason);
    std::vector<std::string> attempts;
    for (const ExplainAttempt& a : hop.attempts) {
      std::vector<std::string> af;
      field(af, "endpoint", a.endpoint);
      field(af, "outcome", a.outcome);
      field(af, "connect", a.connect);
      if (a.duration_ms >= 0) af.push_back(absl::StrCat(R"("durationMs":)", a.duration_ms));
      field(af, "next", a.next);
      field(af, "spanId", a.span_id);
      attempts.push_back(absl::StrCat("{", absl::StrJoin(af, ","), "}"));
    }
    f.push_back(absl::StrCat(R"("attempts":[)", absl::StrJoin(attempts, ","), "]"));
    if (hop.attempts_dropped > 0) {
      f.push_back(absl::StrCat(R"("attemptsDropped":)", hop.attempts_dropped));
    }
    f.push_back(absl::StrCat(R"("failedFirst":)", hop.failed_first ? "true" : "false"));
    if (!hop.sampled) f.push_back(R"("sampled":false)");
    hops.push_back(absl::StrCat("{", absl::StrJoin(f, ","), "}"));
  }
  std::vector<std::string> policies;
  for (const std::string& p : e.policies) policies.push_back(JsonQuote(p));
  std::vector<std::string> f = {R"("kind":"TraceExplanation")"};
  field(f, "traceId", e.trace_id);
  field(f, "requestId", e.request_id);
  field(f, "status", e.status);
  f.push_back(absl::StrCat(R"("durationNanos":)", e.duration_nanos));
  field(f, "verdict", e.verdict);
  f.push_back(absl::StrCat(R"("firstFailure":)", e.first_failure));
  if (e.deadline_from >= 0) f.push_back(absl::StrCat(R"("deadlineFrom":)", e.deadline_from));
  if (e.unsampled) f.push_back(R"("unsampled":true)");
  f.push_back(absl::StrCat(R"("policies":[)", absl::StrJoin(policies, ","), "]"));
  f.push_back(absl::StrCat(R"("hops":[)", absl::StrJoin(hops, ","), "]"));
  return absl::StrCat("{", absl::StrJoin(f, ","), "}\n");
}

}  // namespace meshlet::controlplane::telemetry

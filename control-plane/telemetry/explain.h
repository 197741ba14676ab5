#pragma once

// Explain: why a request ended as it did, read from the spans of its trace. The sidecars' server
// spans carry their decision records as meshlet.* attributes (docs/tracing.md): the route and the
// policy object it came from (meshlet.policy.route, meshlet.route.rule, meshlet.route.match), the
// cluster and subset, the TrafficPolicy whose timeouts and retries applied (meshlet.policy.traffic,
// meshlet.timeout.*), each attempt (meshlet.attempts, else the client spans of the attempts), the
// authorization decision (meshlet.authz, meshlet.policy.authz) and, on a response the proxy made
// itself, meshlet.response_flags and meshlet.error.reason. Explain() turns them into one hop per
// sidecar span in chain order, marks the hop that failed first, and writes a one-line verdict
// ("504 at reviews.default's outbound sidecar: request timeout 300ms from TrafficPolicy/default/
// reviews (route HTTPRoute/default/reviews-split rule 0) expired after 2 attempts").
//
// What failed first: of the hops whose proxy answered itself, the one whose span ended first (a
// caller's timeout that fired while its upstream still waited is the cause, the upstream's later
// failure a consequence); with none, an error status passed through from an application is
// attributed to the deepest hop that returned it. A timeout that the caller's deadline set
// (meshlet.timeout.origin "caller": the callee's sidecar times out a little before its caller, by
// design) is blamed on the hop above whose own route timeout gave that deadline, and on the policy
// object that set it (meshlet.policy.timeout).
//
// Unsampled requests: a sidecar exports the server span of a request it failed even when the
// request was not sampled (an error span, OTLP flags without the sampled bit), so such a trace
// holds only the hops that failed or passed a proxy's error on (`unsampled`). Their attempts
// export no client spans: a hop whose parent is not in the trace but is one of another hop's
// attempts (the span_id of an entry of its meshlet.attempts) hangs under that hop.
//
// A gateway proxy's hop (service.name "gateway:<name>.<namespace>") is named as its Gateway:
// "gateway default/bookinfo (class meshlet)", with the route that matched and the backend cluster
// like any hop.
//
// A hop's direction is its sidecar's listener's (meshlet.listener.direction); a span without it
// (an older sidecar) is placed by its cluster's name ("inbound|...", "outbound|...") or a
// verified caller (inbound).
//
// The collector serves it as GET /api/v1/traces/{id}/explain (ExplanationJson); meshctl explain
// and the dashboard render that answer. Pure functions; any thread.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

struct ExplainAttempt {
  std::string endpoint;      // IP:PORT
  std::string outcome;       // a status code, reset, connect-failure, timeout, ...
  std::string connect;       // connect-failure: refused, timeout, closed; empty: not said
  int64_t duration_ms = -1;  // -1: not recorded
  std::string next;          // retry(<reason>), no-retry(<why>), done; empty: not recorded
  std::string span_id;       // the attempt's client span id (16 hex); empty: not recorded
};

struct ExplainHop {
  std::string span_id;
  std::string service;
  std::string node;  // meshlet.source.node (verified senders only); may be empty
  // "inbound", "outbound", "gateway" (a gateway proxy's hop), or empty when the span does not tell
  std::string direction;
  // A gateway proxy's hop (its service is "gateway:<name>.<namespace>", xds/protocol.h): the
  // Gateway, "namespace/name", and its class, read from the proxy's verified identity (service
  // account "<name>-<class>"; empty when the span's sender was not verified).
  std::string gateway, gateway_class;
  std::string gateway_listener;  // the Gateway listener that took the request (sectionName)
  std::string operation;         // the span's name
  std::string status;            // http.response.status_code; may be empty (no response)
  int depth = 0;                 // hops above this one in the chain
  int64_t start_unix_nanos = 0;
  int64_t duration_nanos = 0;
  std::string route;         // the sidecar's route name (meshlet.route)
  std::string policy_route;  // "HTTPRoute/ns/name", "GRPCRoute/...", "Service/ns/name"
  std::string route_rule;    // rule index in that object
  std::string route_match;   // match index in that rule
  std::string cluster, subset;
  // How locality-aware balancing picked the last attempt's endpoint (meshlet.upstream.locality):
  // "local", "failover" (nearer endpoints not healthy enough) or "spillover" (the nearest
  // overloaded); empty without it.
  std::string locality;
  std::string policy_traffic;  // "TrafficPolicy/ns/name"
  std::string timeout_request_ms, timeout_per_try_ms;
  std::string timeout_origin;      // "route" (the route's own), "caller" (the caller's deadline)
  std::string policy_timeout;      // who set the route timeout: "HTTPRoute/ns/name", ...
  std::string policy_per_try;      // who set the per-try timeout
  std::string policy_destination;  // NM: who refuses unknown destinations ("MeshConfig/mesh")
  std::string policy_rate_limit;   // RL: the limit's policy object
  // OL: which overload limit shed the request and its setting ("resident memory above
  // --overload-max-rss-mb 512"); empty when the span does not say.
  std::string shed;
  std::string authz;         // allow, deny, none
  std::string policy_authz;  // "AuthorizationPolicy/ns/name"
  std::string peer;          // the caller's SPIFFE id
  std::string upstream;      // the upstream host of the last attempt
  std::string request_id;
  std::string response_flags;  // "UT,URX"
  std::string error_reason;    // set when the proxy made the response itself
  std::vector<ExplainAttempt> attempts;
  int64_t attempts_dropped = 0;  // attempts past the record's cap ("dropped=N"), not in `attempts`
  bool failed_first = false;
  bool sampled = true;  // false: an error span of an unsampled request
  int parent = -1;      // index of the hop above in Explanation::hops; -1: none
};

struct Explanation {
  std::string trace_id;
  std::string request_id;  // the first hop's meshlet.request_id
  std::string status;      // what the first hop answered
  int64_t duration_nanos = 0;
  std::vector<ExplainHop> hops;  // in chain order: depth first, earliest start first
  int first_failure = -1;        // index into hops; -1 when nothing failed
  // The first failure was a timeout the caller's deadline set: index of the hop above whose own
  // route timeout gave that deadline; -1 otherwise (or when that hop's span is not there).
  int deadline_from = -1;
  // The request was not sampled: only hops that failed it (or passed a proxy's error on)
  // exported their spans, so hops in between may be missing.
  bool unsampled = false;
  std::string verdict;
  // Every policy object the hops name ("Kind/ns/name"), sorted, without repeats.
  std::vector<std::string> policies;
};

// FailedPrecondition when no span of the trace comes from a meshlet sidecar (no meshlet.*
// attribute besides the collector's own meshlet.source.* marks); NotFound when `spans` is empty.
absl::StatusOr<Explanation> Explain(const std::string& trace_id,
                                    const std::vector<SpanRecord>& spans);

// {"kind":"TraceExplanation","traceId":...,"requestId":...,"status":...,"verdict":...,
//  "firstFailure":N,"policies":[...],"hops":[{...}]}; empty fields are left out.
std::string ExplanationJson(const Explanation& explanation);

// What makes `source`, the object an outbound listener's refusal of an unknown destination names
// ("MeshConfig/mesh", "Namespace/NAME"), refuse: " (outboundTrafficPolicy REGISTRY_ONLY)" or
// " (label meshlet.io/outbound-traffic-policy: REGISTRY_ONLY)"; for verdicts and meshctl explain.
absl::string_view RegistryOnlyReason(absl::string_view source);

}  // namespace meshlet::controlplane::telemetry

#pragma once

// Span: one recorded operation of one request at this hop — a request span per downstream
// request (the connection manager's stream) and a client span per upstream attempt (the
// router's UpstreamRequest; each retry attempt is its own client span). The request span is
// SERVER, except on an outbound listener when it is the request's only span there (its single
// attempt folded into it, or no attempt): then it is the caller's side of the call to the next
// hop, CLIENT (RequestSpanKind). Only sampled requests get
// a Span: its owner holds it by pointer (SpanPtr), taken from the worker's Tracer pool, filled in
// place as the request runs and encoded by the worker's exporter when it ends, after which the
// tracer reuses it. Unsampled requests carry only a RequestTrace (ids and the decision), which
// costs no allocation.
//
// Attributes are a fixed set of typed fields rather than a map, so recording costs no lookup and
// an unset field (empty, 0 or -1) is simply not exported. Names follow OpenTelemetry's HTTP
// conventions where one exists, meshlet.* otherwise (docs/tracing.md lists them).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "sidecar/tracing/trace_context.h"

namespace meshlet::sidecar::tracing {

enum class SpanKind : uint8_t { kServer, kClient };

// The trace of one downstream request as it runs through this hop.
struct RequestTrace {
  TraceId trace_id;             // invalid: tracing is off for the request
  uint64_t server_span_id = 0;  // this hop's server span
  uint64_t parent_span_id = 0;  // the caller's span; 0: this hop started the trace
  bool sampled = false;
  bool debug = false;           // B3 debug, passed on
  bool trace_id_64bit = false;  // the caller's B3 trace id had 64 bits: B3 goes on with 64
  // B3 forms the caller used, each re-emitted for this hop's span; neither: no B3 sent on.
  bool b3_single = false;
  bool b3_multi = false;
  uint32_t attempts = 0;  // client spans begun (upstream attempts)
  // The request headers may hold a `traceparent` (the caller's, one a route added, or an earlier
  // attempt's): BeginClient replaces it. False when none can be there, and BeginClient appends
  // its own without looking for one; whoever adds headers to the request in between sets it.
  bool traceparent_maybe_present = true;

  bool active() const { return trace_id.valid(); }
};

struct Span {
  TraceId trace_id;
  uint64_t span_id = 0;
  uint64_t parent_span_id = 0;  // 0: root
  // The parent is the caller's span (from its traceparent or B3 headers), not one of this hop's:
  // a server span continuing a caller's trace. Exported in the OTLP flags (OtlpSpanFlags).
  bool parent_remote = false;
  // The W3C `tracestate` this hop passed on with the trace (as sent upstream, after the checks
  // of docs/tracing.md); empty when the caller sent none. OTLP Span.trace_state.
  std::string trace_state;
  SpanKind kind = SpanKind::kServer;
  // empty: "METHOD path" (the request's span) or "METHOD cluster" (an attempt's), at export
  std::string name;
  // Wall-clock time in Unix nanoseconds, as exported (Tracer::WallNanos); end 0: not stamped yet.
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  bool error = false;
  std::string status_message;  // why it failed, when error

  // Attributes.
  std::string method;   // http.request.method
  std::string path;     // url.path (bounded, see kMaxPathBytes)
  int status_code = 0;  // http.response.status_code; 0: no response
  // network.protocol.name / version: static text (http::ProtocolName), nothing to copy.
  absl::string_view protocol;
  // Views, not copies: they point into the connection (the peer's identity) and the route
  // configuration the stream's router holds (route and cluster names), which outlive the span:
  // it is encoded when it ends (Tracer::End), before the stream lets them go. A Span kept longer
  // keeps its own copy of their text (RecordingSpanSink).
  absl::string_view peer_identity;  // meshlet.peer.identity (SPIFFE id of an mTLS client)
  absl::string_view direction;      // meshlet.listener.direction: "inbound", "outbound" (literals)
  absl::string_view route;          // meshlet.route
  absl::string_view cluster;        // meshlet.cluster
  std::string endpoint;             // meshlet.upstream.address (the upstream host, "ip:port")
  // server.address and server.port: the request's authority (`:authority`, else `Host`), its
  // host without brackets and its port (0: none given), as OpenTelemetry's HTTP conventions
  // name the server a request is for, on both sides of a call.
  std::string server_host;
  uint16_t server_port = 0;
  // peer.service (CLIENT spans): the service called, as its callee's sidecar names itself in
  // `service.name` (PeerService); a view of configuration text or the tracer's service name.
  absl::string_view peer_service;
  std::string response_flags;  // meshlet.response_flags ("UF,URX")
  // meshlet.error.reason: why the proxy answered itself (a local reply's message), as the
  // x-meshlet-error field says; a literal or text of the connection, like the views above.
  absl::string_view error_reason;
  // Body bytes as this span's side saw them: a server span receives the request and sends the
  // response; a client span sends the request and receives the response.
  uint64_t bytes_in = 0;           // meshlet.bytes_received
  uint64_t bytes_out = 0;          // meshlet.bytes_sent
  int64_t upstream_ready_us = -1;  // meshlet.upstream.ready_us: pool wait incl. connect + TLS
  // meshlet.upstream.locality: how locality-aware balancing picked the last attempt's endpoint
  // ("local", "failover", "spillover"; a literal); empty without locality-aware balancing.
  absl::string_view upstream_locality;
  // meshlet.retry_attempt: 1 = first try; set on an attempt's span only (IsAttempt).
  uint32_t retry_attempt = 0;
  std::string request_id;  // meshlet.request_id (x-request-id)

  // The decision record (server spans; docs/tracing.md "Decision records"): views of
  // configuration text like `route` above, or literals.
  absl::string_view policy_route;        // meshlet.policy.route
  absl::string_view gateway_listener;    // meshlet.gateway.listener
  int32_t route_rule = -1;               // meshlet.route.rule, with meshlet.route.match; -1: unset
  int32_t route_match = -1;              // meshlet.route.match (-1 with a rule: no match list)
  absl::string_view subset;              // meshlet.subset
  absl::string_view policy_traffic;      // meshlet.policy.traffic
  absl::string_view authz;               // meshlet.authz: "allow", "deny", "none"
  absl::string_view policy_authz;        // meshlet.policy.authz
  int64_t timeout_request_ms = -1;       // meshlet.timeout.request_ms; -1: unset
  int64_t timeout_per_try_ms = -1;       // meshlet.timeout.per_try_ms; -1: unset
  absl::string_view timeout_origin;      // meshlet.timeout.origin: "route", "caller"
  absl::string_view policy_timeout;      // meshlet.policy.timeout
  absl::string_view policy_per_try;      // meshlet.policy.per_try_timeout
  absl::string_view policy_destination;  // meshlet.policy.destination
  absl::string_view policy_rate_limit;   // meshlet.policy.rate_limit
  // Load shedding refused the request: meshlet.shed.reason ("active_requests", "memory"; a
  // literal), meshlet.shed.limit (the setting's value) and meshlet.shed.worker_limit (the
  // worker's share of --overload-max-active-requests); -1: unset.
  absl::string_view shed_reason;
  int64_t shed_limit = -1;
  int64_t shed_worker_limit = -1;
  // The request waited for its host's lookup (ADR 0086): meshlet.discovery (how it ended, a
  // literal) and meshlet.discovery.wait_us; -1: it did not wait.
  absl::string_view discovery;
  int64_t discovery_wait_us = -1;
  std::string attempts;  // meshlet.attempts
  // False: an unsampled request's server span, exported because the proxy failed the request
  // (Tracer::BeginErrorSpan); its OTLP flags say not sampled.
  bool sampled = true;

  static constexpr size_t kMaxPathBytes = 256;
  // Reset() keeps string buffers up to this size: a rare long value is not kept in the pool.
  static constexpr size_t kKeptCapacity = 512;

  // An upstream attempt's span (the router's), rather than the request's.
  bool IsAttempt() const { return retry_attempt != 0; }

  // Back to a new span's state, for reuse, keeping the strings' buffers (see kKeptCapacity).
  void Reset() {
    Clear(name);
    Clear(status_message);
    Clear(method);
    Clear(path);
    Clear(endpoint);
    Clear(server_host);
    server_port = 0;
    peer_service = {};
    Clear(response_flags);
    Clear(request_id);
    Clear(trace_state);
    Clear(attempts);
    upstream_locality = {};
    policy_route = {};
    gateway_listener = {};
    route_rule = -1;
    route_match = -1;
    subset = {};
    policy_traffic = {};
    authz = {};
    policy_authz = {};
    timeout_request_ms = -1;
    timeout_per_try_ms = -1;
    timeout_origin = {};
    policy_timeout = {};
    policy_per_try = {};
    policy_destination = {};
    policy_rate_limit = {};
    shed_reason = {};
    shed_limit = -1;
    shed_worker_limit = -1;
    discovery = {};
    discovery_wait_us = -1;
    sampled = true;
    protocol = {};
    peer_identity = {};
    direction = {};
    route = {};
    cluster = {};
    error_reason = {};
    trace_id = TraceId();
    span_id = 0;
    parent_span_id = 0;
    parent_remote = false;
    kind = SpanKind::kServer;
    start_ns = 0;
    end_ns = 0;
    error = false;
    status_code = 0;
    bytes_in = 0;
    bytes_out = 0;
    upstream_ready_us = -1;
    retry_attempt = 0;
  }

 private:
  static void Clear(std::string& text) {
    if (text.capacity() > kKeptCapacity) {
      std::string().swap(text);
    } else {
      text.clear();
    }
  }
};

using SpanPtr = std::unique_ptr<Span>;

// OTLP Span.flags (opentelemetry-proto trace/v1/trace.proto, SpanFlags): bits 0-7 are the W3C
// trace flags of the span's context, bit 8 says whether the parent is remote is known, bit 9 that
// it is remote.
inline constexpr uint32_t kSpanFlagsSampled = 0x01;  // W3C trace flag "sampled"
inline constexpr uint32_t kSpanFlagsHasIsRemote = 0x100;
inline constexpr uint32_t kSpanFlagsIsRemote = 0x200;
// The flags of an exported span: sampled (W3C flag 01, as every sampled span is and as this
// hop's traceparent says; an error span of an unsampled request has 00), and whether its parent
// is remote, which this hop always knows.
inline uint32_t OtlpSpanFlags(const Span& span) {
  return (span.sampled ? kSpanFlagsSampled : 0) | kSpanFlagsHasIsRemote |
         (span.parent_remote ? kSpanFlagsIsRemote : 0);
}

// Sets a span's string to `value` in the buffer it has (a pooled span's); cheaper
// than std::string::assign's general replace.
inline void SetText(std::string& field, absl::string_view value) {
  field.clear();
  field.append(value.data(), value.size());
}

// Calls `string_attr(key, value)` / `int_attr(key, value)` for every set attribute.
template <typename StringFn, typename IntFn>
void ForEachAttribute(const Span& span, StringFn&& string_attr, IntFn&& int_attr) {
  if (!span.method.empty()) string_attr("http.request.method", span.method);
  if (!span.path.empty()) string_attr("url.path", span.path);
  if (span.status_code != 0) int_attr("http.response.status_code", span.status_code);
  if (!span.protocol.empty()) string_attr("network.protocol.name", span.protocol);
  if (!span.peer_identity.empty()) string_attr("meshlet.peer.identity", span.peer_identity);
  if (!span.direction.empty()) string_attr("meshlet.listener.direction", span.direction);
  if (!span.route.empty()) string_attr("meshlet.route", span.route);
  if (!span.cluster.empty()) string_attr("meshlet.cluster", span.cluster);
  if (!span.server_host.empty()) string_attr("server.address", span.server_host);
  if (span.server_port != 0) int_attr("server.port", span.server_port);
  if (!span.peer_service.empty()) string_attr("peer.service", span.peer_service);
  if (!span.endpoint.empty()) string_attr("meshlet.upstream.address", span.endpoint);
  if (!span.response_flags.empty()) string_attr("meshlet.response_flags", span.response_flags);
  if (!span.error_reason.empty()) string_attr("meshlet.error.reason", span.error_reason);
  if (span.bytes_in != 0) int_attr("meshlet.bytes_received", static_cast<int64_t>(span.bytes_in));
  if (span.bytes_out != 0) int_attr("meshlet.bytes_sent", static_cast<int64_t>(span.bytes_out));
  if (span.upstream_ready_us >= 0) int_attr("meshlet.upstream.ready_us", span.upstream_ready_us);
  if (!span.upstream_locality.empty()) {
    string_attr("meshlet.upstream.locality", span.upstream_locality);
  }
  if (span.retry_attempt != 0) int_attr("meshlet.retry_attempt", span.retry_attempt);
  if (!span.request_id.empty()) string_attr("meshlet.request_id", span.request_id);
  if (!span.policy_route.empty()) string_attr("meshlet.policy.route", span.policy_route);
  if (!span.gateway_listener.empty()) {
    string_attr("meshlet.gateway.listener", span.gateway_listener);
  }
  if (span.route_rule >= 0) {
    int_attr("meshlet.route.rule", static_cast<int64_t>(span.route_rule));
    int_attr("meshlet.route.match", static_cast<int64_t>(span.route_match));
  }
  if (!span.subset.empty()) string_attr("meshlet.subset", span.subset);
  if (!span.policy_traffic.empty()) string_attr("meshlet.policy.traffic", span.policy_traffic);
  if (!span.authz.empty()) string_attr("meshlet.authz", span.authz);
  if (!span.policy_authz.empty()) string_attr("meshlet.policy.authz", span.policy_authz);
  if (span.timeout_request_ms >= 0) {
    int_attr("meshlet.timeout.request_ms", span.timeout_request_ms);
  }
  if (span.timeout_per_try_ms >= 0) {
    int_attr("meshlet.timeout.per_try_ms", span.timeout_per_try_ms);
  }
  if (!span.timeout_origin.empty()) string_attr("meshlet.timeout.origin", span.timeout_origin);
  if (!span.policy_timeout.empty()) string_attr("meshlet.policy.timeout", span.policy_timeout);
  if (!span.policy_per_try.empty()) {
    string_attr("meshlet.policy.per_try_timeout", span.policy_per_try);
  }
  if (!span.policy_destination.empty()) {
    string_attr("meshlet.policy.destination", span.policy_destination);
  }
  if (!span.policy_rate_limit.empty()) {
    string_attr("meshlet.policy.rate_limit", span.policy_rate_limit);
  }
  if (!span.shed_reason.empty()) string_attr("meshlet.shed.reason", span.shed_reason);
  if (span.shed_limit >= 0) int_attr("meshlet.shed.limit", span.shed_limit);
  if (span.shed_worker_limit >= 0) int_attr("meshlet.shed.worker_limit", span.shed_worker_limit);
  if (!span.discovery.empty()) string_attr("meshlet.discovery", span.discovery);
  if (span.discovery_wait_us >= 0) int_attr("meshlet.discovery.wait_us", span.discovery_wait_us);
  if (!span.attempts.empty()) string_attr("meshlet.attempts", span.attempts);
}

}  // namespace meshlet::sidecar::tracing

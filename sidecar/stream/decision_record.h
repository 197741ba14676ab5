#pragma once

// DecisionRecord: why this hop did what it did with one request (docs/tracing.md "Decision
// records") — the policy object, rule and match that made the matched route, the cluster's subset
// and TrafficPolicy, the timeouts, the authorization decision, and each upstream attempt with its
// outcome and why it was or was not retried. The router and the authorization filter fill it as
// the request runs; it is turned into text only when a span is exported (sampled requests) or the
// record goes into the worker's DecisionRing (decision_ring.h: failed and sampled requests).
//
// Cost: fixed-size data inside StreamInfo. Filling it is a few stores per request and per attempt
// and never allocates: strings are views of configuration text (the route table, the cluster's
// and the authorization policies' configuration), which the stream's router and listener keep
// alive until the stream has ended; an attempt's endpoint is copied (a host removed from its
// cluster may go before the request ends). At most kMaxAttempts attempts are kept; more are only
// counted.
//
// Threading: one request, one worker thread.

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/net/address.h"

namespace meshlet::sidecar::stream {

// What came of one upstream attempt (the `outcome=` words of docs/tracing.md).
enum class AttemptOutcome : uint8_t {
  kPending,         // still running
  kResponse,        // response headers arrived: `status`
  kConnectFailure,  // connect-failure
  kRefusedStream,   // refused-stream
  kReset,           // reset: before response headers
  kTimeout,         // timeout: the per-try timeout
  kRouteTimeout,    // route-timeout: the route timeout fired during the attempt
  kOverflow,        // overflow: circuit-breaker limits refused a stream
  kCancelled,       // cancelled: the request ended otherwise
};

// Why a connect-failure attempt got no connection (`connect=`): what meshctl explain's verdict
// names. kOther writes nothing.
enum class ConnectFailure : uint8_t {
  kOther,    // a TLS handshake or another transport error
  kRefused,  // refused: the host answered the connect with RST (nothing listens on the port)
  kTimeout,  // timeout: the cluster's connect_timeout passed
  kClosed,   // closed: the connection closed before carrying the request, or the host went away
};

// What the router did after an attempt (`next=`).
enum class AttemptNext : uint8_t { kPending, kDone, kRetry, kNoRetry };

// Why an attempt was retried: `retry(<reason>)`.
enum class RetryCause : uint8_t {
  kConnectFailure,  // connect-failure
  kRefusedStream,   // refused-stream
  kReset,           // reset
  kTimeout,         // timeout (per-try)
  k5xx,             // 5xx: retry_on 5xx
  kStatus,          // status: a status retriable_status_codes lists (retriable-status-codes)
  kGrpc,            // grpc: a gRPC status retry_on names
  kGatewayError,    // gateway-error: retry_on gateway-error (502, 503, 504)
};

// Why a failed attempt was not retried: `no-retry(<why>)`.
enum class NoRetryCause : uint8_t {
  kNotRetriable,       // not-retriable
  kAttemptsExhausted,  // attempts-exhausted
  kBudget,             // budget
  kBreaker,            // breaker
  kDeadline,           // deadline
  kNonIdempotent,      // non-idempotent
  kBodyTooLarge,       // body-too-large
  kLocalAppRefused,    // local-app-refused
  kResponseStarted,    // response-started
  kCancelled,          // cancelled
};

// An IP endpoint in a few bytes (net::Address holds a whole sockaddr_storage).
struct EndpointBytes {
  uint8_t family;  // 4, 6; else not an IP endpoint
  uint16_t port;
  uint8_t ip[16];

  void Set(const net::Address& address);
  std::string ToString() const;  // "10.0.0.1:80", "[fd00::1]:80", "-"
};

// Left uninitialised until BeginAttempt() writes every field: a request that never goes upstream
// pays nothing for the array.
struct AttemptRecord {
  EndpointBytes endpoint;
  // The attempt's client span id: the parent the upstream was told (its traceparent), sampled or
  // not; 0: none (tracing off, or a CONNECT tunnel). Set by the router after BeginAttempt().
  uint64_t span_id;
  // MonotonicTime's ticks since its epoch: converted only when formatted.
  MonotonicTime::rep start_ticks;
  MonotonicTime::rep end_ticks;  // = start_ticks while pending
  uint16_t status;               // kResponse
  AttemptOutcome outcome;
  AttemptNext next;
  uint8_t cause;                   // RetryCause (kRetry) or NoRetryCause (kNoRetry)
  ConnectFailure connect_failure;  // kConnectFailure
};

// Which overload limit shed the request (`meshlet.shed.reason`; docs/operations.md "Overload").
enum class ShedReason : uint8_t {
  kNone,            // not shed
  kActiveRequests,  // active_requests: its worker had its share of requests in flight
  kMemory,          // memory: resident memory above --overload-max-rss-mb
};

// The authorization decision (`meshlet.authz`).
enum class AuthzResult : uint8_t {
  kUnknown,  // the listener has no authorization: not exported
  kAllow,    // an ALLOW policy matched
  kDeny,     // a DENY policy matched, or ALLOW policies exist and none matched
  kNone,     // policies exist but none decided: allowed
};

struct DecisionRecord {
  static constexpr size_t kMaxAttempts = 8;

  // "HTTPRoute/default/reviews-split"; empty: the route has no source.
  absl::string_view policy_route;
  // A gateway proxy's request: the Gateway listener that took its host; empty: none.
  absl::string_view gateway_listener;
  int32_t route_rule = -1;           // -1: none (a Service's default route)
  int32_t route_match = -1;          // -1: the rule has no matches (exported only with a rule)
  absl::string_view subset;          // "version=v2"; empty: the whole service
  absl::string_view policy_traffic;  // "TrafficPolicy/ns/name"; empty: defaults
  AuthzResult authz = AuthzResult::kUnknown;
  // Load shedding refused the request (OL): which limit, and its setting's value (shed_limit:
  // --overload-max-active-requests, or --overload-max-rss-mb in MiB) and, for active_requests,
  // this worker's share of it (shed_worker_limit). Both numbers are written only with `shed`.
  ShedReason shed = ShedReason::kNone;
  absl::string_view policy_authz;   // "AuthorizationPolicy/ns/name"; empty: none decided
  int64_t timeout_request_ms = -1;  // -1: none
  int64_t timeout_per_try_ms = -1;  // -1: none
  // The policy objects that set the route timeout and the per-try timeout (route::RouteAction's
  // timeout_source, per_try_timeout_source); empty: unknown.
  absl::string_view policy_timeout;
  absl::string_view policy_per_try;
  // The caller's deadline (grpc-timeout, x-meshlet-deadline) was shorter than the route's own
  // timeout and set timeout_request_ms: a timeout here is the caller's.
  bool timeout_from_caller = false;
  // A capture listener refused an unknown destination (NM): the policy object that says so
  // ("MeshConfig/mesh"); empty otherwise.
  absl::string_view policy_destination;
  // A local rate limit refused the request (RL): the policy object the limit came from.
  absl::string_view policy_rate_limit;
  // The request waited for its host to be looked up (ADR 0086; `meshlet.discovery`): how the
  // wait ended ("found", "not_found", "timeout", ...: config::LookupOutcomeName, a literal) and
  // how long it took. Empty: it did not wait.
  absl::string_view discovery;
  uint64_t discovery_wait_us = 0;  // with `discovery` only
  uint64_t shed_limit;             // with `shed` only
  uint64_t shed_worker_limit;      // with `shed` only

  uint32_t attempt_count = 0;  // attempts begun (may exceed kMaxAttempts)
  std::array<AttemptRecord, kMaxAttempts> attempts;

  // A new attempt to `endpoint` begins at `now`. Returns false when it is beyond kMaxAttempts
  // (not kept; the caller counts it).
  bool BeginAttempt(const net::Address& endpoint, MonotonicTime now) {
    const uint32_t index = attempt_count++;
    if (index >= kMaxAttempts) return false;
    AttemptRecord& a = attempts[index];
    a.endpoint.Set(endpoint);
    a.span_id = 0;
    a.start_ticks = now.time_since_epoch().count();
    a.end_ticks = a.start_ticks;
    a.status = 0;
    a.outcome = AttemptOutcome::kPending;
    a.next = AttemptNext::kPending;
    a.cause = 0;
    a.connect_failure = ConnectFailure::kOther;
    return true;
  }
  // The last kept attempt, when it is the current one (null: none, or beyond kMaxAttempts).
  AttemptRecord* current() {
    return attempt_count == 0 || attempt_count > kMaxAttempts ? nullptr
                                                              : &attempts[attempt_count - 1];
  }
  // The current attempt's client span id (AttemptRecord::span_id).
  void SetAttemptSpan(uint64_t span_id) {
    if (AttemptRecord* a = current()) a->span_id = span_id;
  }
  // Ends the current attempt, unless it has ended already.
  void EndAttempt(AttemptOutcome outcome, int status, MonotonicTime now) {
    AttemptRecord* a = current();
    if (a == nullptr || a->outcome != AttemptOutcome::kPending) return;
    a->outcome = outcome;
    a->status = static_cast<uint16_t>(status);
    a->end_ticks = now.time_since_epoch().count();
  }
  // Why the current, still pending, attempt got no connection (before it ends kConnectFailure).
  void SetConnectFailure(ConnectFailure why) {
    AttemptRecord* a = current();
    if (a != nullptr && a->outcome == AttemptOutcome::kPending) a->connect_failure = why;
  }
  // Says what followed the current attempt, unless that is said already.
  void SetNext(AttemptNext next, uint8_t cause = 0) {
    AttemptRecord* a = current();
    if (a == nullptr || a->next != AttemptNext::kPending) return;
    a->next = next;
    a->cause = cause;
  }
  uint32_t kept_attempts() const {
    return attempt_count < kMaxAttempts ? attempt_count : static_cast<uint32_t>(kMaxAttempts);
  }
  uint32_t dropped_attempts() const { return attempt_count - kept_attempts(); }
};

// An attempt's duration in whole milliseconds (0 while pending).
int64_t AttemptDurationMs(const AttemptRecord& attempt);

absl::string_view AttemptOutcomeName(AttemptOutcome outcome);
absl::string_view ConnectFailureName(ConnectFailure why);  // "" for kOther
absl::string_view RetryCauseName(RetryCause cause);
absl::string_view NoRetryCauseName(NoRetryCause cause);
absl::string_view AuthzResultName(AuthzResult result);  // "" for kUnknown
absl::string_view ShedReasonName(ShedReason reason);    // "" for kNone

// Appends `meshlet.attempts` (docs/tracing.md): one entry per kept attempt joined by "; " (with
// its client span id, when it had one), and "dropped=N" after them when attempts were not kept.
// Appends nothing without attempts.
void AppendAttempts(const DecisionRecord& record, std::string* out);

}  // namespace meshlet::sidecar::stream

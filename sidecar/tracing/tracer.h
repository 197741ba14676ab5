#pragma once

// Tracer: one per worker, used by the connection manager (server spans) and the router (client
// spans) on that worker's thread. It makes the sampling decision, keeps the propagation headers
// coherent, and hands finished spans to the worker's span sink (its exporter) without blocking.
//
// Per request (docs/tracing.md):
//   BeginServer  — after the connection manager prepared the request headers: reads the caller's
//                  context (W3C, else B3), decides sampling, drops or shortens an invalid or long
//                  `tracestate`, and starts the server span when sampled (ids, start, request id).
//   BeginClient  — before each upstream attempt (every retry too): a new client span id, written
//                  upstream as `traceparent` (parent = this client span) and, when the caller used
//                  B3, as B3 in the same form; starts the client span when sampled. Returns the
//                  id, sampled or not, which the router keeps in the attempt's decision record.
//   End          — a span is over: stamped (unless its end was stamped already) and handed to
//                  the sink (the exporter encodes it at once), or dropped and counted when the
//                  sink is full; back to the pool either way.
//   Discard      — a span that will not be exported (a single attempt's, folded into its server
//                  span: span_per_attempt() false) goes back to the pool.
//   BeginErrorSpan — a request the proxy failed ended without a recorded server span (it was not
//                  sampled, or it was refused before BeginServer: authorization, a listener rate
//                  limit, shed, an unknown destination): a server span for it after all, so its
//                  decision record reaches the collector (docs/tracing.md "Error spans"). A
//                  sampled request gets an ordinary span; an unsampled one an error span, at most
//                  error_spans_per_second per worker. Only the failure path pays for it.
// An unsampled request costs the header scan (none when the header map's name filter rules out
// every header read from callers, as at an edge), three random numbers (trace id and the client
// span id; the server span id only for B3 callers) and the traceparent header: no Span, no
// allocation beyond the header itself. A sampled one takes its spans from the tracer's pool (one
// per worker, no locks) and allocates nothing once the pool is warm.
//
// Sampling: the force-sample header or a B3 debug flag → sampled; else the caller's decision
// (W3C flags, B3 sampled); else the trace id's low 64 bits against the configured rate.

#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/stats/stats.h"
#include "sidecar/tracing/span.h"
#include "sidecar/tracing/span_sink.h"
#include "sidecar/tracing/trace_context.h"
#include "sidecar/tracing/tracing_config.h"

namespace meshlet::http {
class HeaderMap;
}

namespace meshlet::sidecar::tracing {

// The sampling decision. `rate` in [0, 1]; `random_bits` are uniformly random (the trace id's low
// half), compared with the rate when neither a force nor the caller decided.
bool DecideSampling(const ParentContext& parent, bool forced, double rate, uint64_t random_bits);

// A request's only upstream attempt, described by its server span instead of a span of its own
// (TracingConfig::span_per_attempt false): the server span takes the attempt's span id (the
// parent the upstream saw) and its upstream timing.
void FoldSingleAttempt(Span& server, const Span& attempt);

// The kind of a request's span (not an attempt's, which is CLIENT): CLIENT on an outbound
// listener when none of the request's attempts is exported as a span of its own (one attempt
// folded into it, or none made), so that the call to the next hop is a CLIENT span whose id the
// callee's SERVER span names as its parent, as Envoy marks an egress span; SERVER otherwise (an
// inbound listener, or attempts exported as CLIENT spans under it).
inline SpanKind RequestSpanKind(bool outbound, bool attempts_exported) {
  return outbound && !attempts_exported ? SpanKind::kClient : SpanKind::kServer;
}

// peer.service of a CLIENT span sent through `cluster`: the service of an outbound cluster
// ("outbound|9080|version=v2|reviews.default" → "reviews.default", the callee's service.name);
// `own_service` for an inbound one ("inbound", "inbound|8080": the local application, this
// service); any other name (a static configuration's) as it is. A view of its arguments.
absl::string_view PeerService(absl::string_view cluster, absl::string_view own_service);

// server.address and server.port of `span` from a request's authority ("host", "host:port",
// "[v6]:port"): the host without brackets, the port when it is one (else 0).
void SetServerAuthority(Span& span, absl::string_view authority);

// Counters the workers record into (from the worker's own stats shard).
struct TracerStats {
  Counter spans_started;       // meshlet_tracing_spans_started_total
  Counter spans_sampled;       // meshlet_tracing_spans_sampled_total (at End)
  Counter spans_dropped_full;  // meshlet_tracing_spans_dropped_total{reason="queue_full"}
  Counter error_spans;         // meshlet_tracing_error_spans_total (at BeginErrorSpan)
  // meshlet_tracing_spans_dropped_total{reason="error_rate"}: error spans past
  // error_spans_per_second.
  Counter error_spans_limited;
  static TracerStats Create(StatsShard& shard);
};

class Tracer {
 public:
  // `sink` and `clock` must outlive the tracer; `random` is the worker's.
  Tracer(const TracingConfig& config, std::string service_name, SpanSink& sink, TracerStats stats,
         Random& random, const Clock& clock);

  // Cleared spans kept for reuse at most; more in flight at once are freed when they end.
  static constexpr size_t kMaxPooledSpans = 256;

  // `start`: when the request began (the server span's start); without it, now.
  void BeginServer(http::HeaderMap& headers, RequestTrace& trace, SpanPtr& span,
                   MonotonicTime start);
  void BeginServer(http::HeaderMap& headers, RequestTrace& trace, SpanPtr& span) {
    BeginServer(headers, trace, span, clock_.Now());
  }
  // The client span id (0 when the trace is not active).
  uint64_t BeginClient(http::HeaderMap& headers, RequestTrace& trace, SpanPtr& span);
  // The server span of a request the proxy failed that has none (see above), started at `start`;
  // null when an unsampled request finds the error-span rate spent. `trace` is the request's:
  // when it is not active (refused before BeginServer), the caller's context is read from
  // `headers` (may be null), which are left alone, and `trace` is filled in. The span's id is
  // `single_attempt_span_id`, the client span id of the request's only attempt (the parent its
  // upstream saw; 0: none), when the request made exactly one, as FoldSingleAttempt does for
  // sampled requests (not for B3 callers: theirs is the server span id); its request id comes
  // from `headers`.
  SpanPtr BeginErrorSpan(const http::HeaderMap* headers, RequestTrace& trace, MonotonicTime start,
                         uint64_t single_attempt_span_id);
  void End(SpanPtr& span);
  void Discard(SpanPtr& span);
  bool span_per_attempt() const { return span_per_attempt_; }

  const std::string& service_name() const { return service_name_; }
  // Wall-clock time for span stamps, in Unix nanoseconds: monotonic time `t` from an anchor
  // that is re-read from the wall clock every kWallResync. A span within one anchor's second has
  // its monotonic duration whatever the wall clock does; one that spans a re-read while the clock
  // is stepped back would end before it started, which End() turns into a zero duration. A stamp
  // from a time the caller read anyway costs no clock read and no time conversion.
  int64_t WallNanosAt(MonotonicTime t) {
    if (anchor_wall_ns_ == 0 || t - anchor_monotonic_ >= kWallResync) [[unlikely]]
      Reanchor();
    return anchor_wall_ns_ +
           std::chrono::duration_cast<std::chrono::nanoseconds>(t - anchor_monotonic_).count();
  }
  int64_t WallNanos() { return WallNanosAt(clock_.Now()); }
  static constexpr Duration kWallResync = std::chrono::seconds(1);

 private:
  const double rate_;
  const bool span_per_attempt_;
  const TraceHeaderScan scan_;
  const std::string service_name_;
  // BeginServer for a request with a trace header or a force-sample header: out of line, so the
  // common case (none) stays small.
  [[gnu::noinline]] void BeginServerFromCaller(http::HeaderMap& headers, const TraceHeaders& found,
                                               RequestTrace& trace, SpanPtr& span,
                                               MonotonicTime start);
  // The server span of a sampled request (ids already in `trace`).
  void StartServerSpan(const TraceHeaders& found, const RequestTrace& trace, SpanPtr& span,
                       MonotonicTime start);
  // The B3 header(s) for client span `span_id`, in the forms the caller used (out of line: few
  // callers use B3).
  [[gnu::noinline]] static void SetB3(http::HeaderMap& headers, const RequestTrace& trace,
                                      uint64_t span_id);
  // A cleared span to fill: a pooled one when there is one.
  SpanPtr Acquire();
  // One token of the error-span bucket, when there is one.
  bool TakeErrorSpanToken();
  void Reanchor();
  // The worker's generator is a RealRandom: called directly, its few instructions are inlined
  // instead of a virtual call per id (tests pass a scripted Random).
  uint64_t NextRandom() { return real_random_ != nullptr ? real_random_->Next() : random_.Next(); }
  uint64_t NonZeroRandom() {
    const uint64_t value = NextRandom();
    return value != 0 ? value : 1;
  }

  SpanSink& sink_;
  const TracerStats stats_;
  Random& random_;
  RealRandom* const real_random_;  // random_, when it is one
  const Clock& clock_;
  std::string scratch_;  // tracestate rewrites
  // The error-span bucket: error_spans_per_second tokens a second, as many at most.
  const double error_spans_per_second_;
  double error_span_tokens_;
  std::optional<MonotonicTime> error_span_refill_;  // the last refill; none yet: full
  MonotonicTime anchor_monotonic_{};
  int64_t anchor_wall_ns_ = 0;  // 0: no anchor yet
  std::vector<SpanPtr> pool_;
};

}  // namespace meshlet::sidecar::tracing

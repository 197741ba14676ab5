#include "sidecar/tracing/tracer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/http/header_map.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::tracing {
namespace {

bool IsForced(const std::optional<absl::string_view>& value) {
  return value.has_value() && (*value == "1" || absl::EqualsIgnoreCase(*value, "true"));
}

Counter CounterOrDiscard(StatsShard& shard, absl::string_view name, absl::string_view help,
                         const LabelSet& labels = {}) {
  return OrDiscard(shard.RegisterCounter(name, help, labels), name);
}

}  // namespace

bool DecideSampling(const ParentContext& parent, bool forced, double rate, uint64_t random_bits) {
  if (forced || parent.debug) return true;
  if (parent.sampling == SamplingHint::kSampled) return true;
  if (parent.sampling == SamplingHint::kNotSampled) return false;
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  return Random::ToUnitDouble(random_bits) < rate;
}

TracerStats TracerStats::Create(StatsShard& shard) {
  TracerStats stats;
  stats.spans_started = CounterOrDiscard(
      shard, "meshlet_tracing_spans_started_total",
      "Spans begun (server and client, sampled or not): the requests and attempts traced.");
  stats.spans_sampled = CounterOrDiscard(shard, "meshlet_tracing_spans_sampled_total",
                                         "Spans recorded for export (sampled).");
  stats.spans_dropped_full =
      CounterOrDiscard(shard, "meshlet_tracing_spans_dropped_total",
                       "Recorded spans that were never exported.", {{"reason", "queue_full"}});
  stats.error_spans =
      CounterOrDiscard(shard, "meshlet_tracing_error_spans_total",
                       "Server spans of unsampled requests the proxy failed, recorded for export.");
  stats.error_spans_limited =
      CounterOrDiscard(shard, "meshlet_tracing_spans_dropped_total",
                       "Recorded spans that were never exported.", {{"reason", "error_rate"}});
  return stats;
}

Tracer::Tracer(const TracingConfig& config, std::string service_name, SpanSink& sink,
               TracerStats stats, Random& random, const Clock& clock)
    : rate_(std::clamp(config.sampling_percent / 100.0, 0.0, 1.0)),
      span_per_attempt_(config.span_per_attempt),
      scan_(config.force_sample_header),
      service_name_(std::move(service_name)),
      sink_(sink),
      stats_(stats),
      random_(random),
      real_random_(dynamic_cast<RealRandom*>(&random)),
      clock_(clock),
      error_spans_per_second_(config.error_spans_per_second),
      error_span_tokens_(config.error_spans_per_second) {}

void Tracer::BeginServer(http::HeaderMap& headers, RequestTrace& trace, SpanPtr& span,
                         MonotonicTime start) {
  stats_.spans_started.Inc();
  // The map's name filter tells, without a pass over the headers, that most edge requests carry
  // no trace or force-sample header (x-request-id, which nearly every request has by now, is
  // not asked about: only a recorded span reads it).
  if (headers.MayHaveAny(scan_.caller_name_filter())) {
    // One pass over the headers finds everything.
    const TraceHeaders found = scan_.Scan(headers);
    if (found.any_context() || found.has(TraceHeaders::kForce) ||
        found.has(TraceHeaders::kTracestate)) {
      BeginServerFromCaller(headers, found, trace, span, start);
      return;
    }
  }
  // The caller sent nothing to go on (as at an edge): a new trace, sampled at the rate. The
  // general path would decide the same, at some cost per request.
  trace = RequestTrace();
  trace.traceparent_maybe_present = false;
  trace.trace_id = TraceId{NextRandom(), NonZeroRandom()};
  trace.sampled = DecideSampling(ParentContext(), /*forced=*/false, rate_, trace.trace_id.low);
  if (trace.sampled) {
    trace.server_span_id = NonZeroRandom();
    StartServerSpan(scan_.Scan(headers), trace, span, start);
  }
}

void Tracer::BeginServerFromCaller(http::HeaderMap& headers, const TraceHeaders& found,
                                   RequestTrace& trace, SpanPtr& span, MonotonicTime start) {
  const ParentContext parent = found.any_context() ? ExtractParent(found) : ParentContext();
  const bool forced = IsForced(found.get(TraceHeaders::kForce));
  trace = RequestTrace();
  trace.debug = parent.debug;
  trace.trace_id_64bit = parent.trace_id_64bit;
  trace.traceparent_maybe_present = found.traceparent_count > 0;
  if (parent.b3_present) {
    trace.b3_single = found.has(TraceHeaders::kB3);
    trace.b3_multi = found.any_b3_multi();
  }
  if (parent.trace_id.valid()) {
    trace.trace_id = parent.trace_id;
    trace.parent_span_id = parent.span_id;
  } else {
    trace.trace_id = TraceId{NextRandom(), NonZeroRandom()};
    trace.trace_id_64bit = false;
  }
  // The trace id's random low half decides (as OpenTelemetry's TraceIdRatioBased sampler does):
  // no draw of its own, and every hop that decides at the same rate decides the same.
  trace.sampled = DecideSampling(parent, forced, rate_, trace.trace_id.low);
  // This hop's server span id is needed only by a recorded span and as B3's parent span id.
  if (trace.sampled || parent.b3_present) trace.server_span_id = NonZeroRandom();
  // Before the tracestate work below, which may rewrite the map `found` points into.
  if (trace.sampled) StartServerSpan(found, trace, span, start);
  // tracestate belongs to a valid W3C parent only.
  if (parent.format == Propagation::kW3c) {
    if (const std::optional<absl::string_view> tracestate = found.get(TraceHeaders::kTracestate)) {
      // Several fields are one list (RFC 9110 §5.3).
      std::string joined;
      absl::string_view value = *tracestate;
      if (found.tracestate_count > 1) {
        joined = headers.GetJoined(kTracestateHeader);
        value = joined;
      }
      switch (CheckTracestate(value, &scratch_)) {
        case TracestateVerdict::kKeep:
          if (!joined.empty()) headers.Set(kTracestateHeader, joined);
          // A sampled request's spans say what went on; an unsampled one copies nothing.
          if (span != nullptr) SetText(span->trace_state, value);
          break;
        case TracestateVerdict::kRewrite:
          headers.Set(kTracestateHeader, scratch_);
          if (span != nullptr) SetText(span->trace_state, scratch_);
          break;
        case TracestateVerdict::kDrop:
          headers.Remove(kTracestateHeader);
          break;
      }
    }
  } else if (found.has(TraceHeaders::kTracestate)) {
    headers.Remove(kTracestateHeader);
  }
}

void Tracer::StartServerSpan(const TraceHeaders& found, const RequestTrace& trace, SpanPtr& span,
                             MonotonicTime start) {
  span = Acquire();
  Span& s = *span;
  s.trace_id = trace.trace_id;
  s.span_id = trace.server_span_id;
  s.parent_span_id = trace.parent_span_id;
  s.parent_remote = trace.parent_span_id != 0;  // the caller's span
  s.kind = SpanKind::kServer;
  s.start_ns = WallNanosAt(start);
  if (const std::optional<absl::string_view> id = found.get(TraceHeaders::kRequestId)) {
    SetText(s.request_id, *id);
  }
}

void Tracer::SetB3(http::HeaderMap& headers, const RequestTrace& trace, uint64_t span_id) {
  char trace_hex[32];
  FormatHex64(trace.trace_id.high, trace_hex);
  FormatHex64(trace.trace_id.low, trace_hex + 16);
  const absl::string_view trace_id = trace.trace_id_64bit ? absl::string_view(trace_hex + 16, 16)
                                                          : absl::string_view(trace_hex, 32);
  char span_hex[16];
  FormatHex64(span_id, span_hex);
  char parent_hex[16];
  FormatHex64(trace.server_span_id, parent_hex);
  const absl::string_view sampled = trace.debug ? "d" : (trace.sampled ? "1" : "0");
  if (trace.b3_single) {
    std::string b3;
    b3.reserve(32 + 1 + 16 + 3 + 16);
    b3.append(trace_id.data(), trace_id.size());
    b3.push_back('-');
    b3.append(span_hex, 16);
    b3.push_back('-');
    b3.append(sampled.data(), sampled.size());
    b3.push_back('-');
    b3.append(parent_hex, 16);
    headers.Set(kB3SingleHeader, b3);
  }
  if (trace.b3_multi) {
    headers.Set(kB3TraceIdHeader, trace_id);
    headers.Set(kB3SpanIdHeader, absl::string_view(span_hex, 16));
    headers.Set(kB3ParentSpanIdHeader, absl::string_view(parent_hex, 16));
    if (trace.debug) {
      headers.Set(kB3FlagsHeader, "1");
      headers.Remove(kB3SampledHeader);
    } else {
      headers.Remove(kB3FlagsHeader);
      headers.Set(kB3SampledHeader, trace.sampled ? "1" : "0");
    }
  }
}

uint64_t Tracer::BeginClient(http::HeaderMap& headers, RequestTrace& trace, SpanPtr& span) {
  if (!trace.active()) return 0;
  const uint64_t span_id = NonZeroRandom();
  ++trace.attempts;
  // Hex digits and dashes: trusted, so the codecs write it without checking it again.
  if (trace.traceparent_maybe_present) {
    char value[kTraceparentLength];
    FormatTraceparent(trace.trace_id, span_id, trace.sampled, value);
    headers.SetTrusted(kTraceparentHeader, absl::string_view(value, sizeof(value)));
  } else {
    // No lookup, as there is none to replace; formatted straight into the map.
    FormatTraceparent(trace.trace_id, span_id, trace.sampled,
                      headers.AddTrustedInPlace(kTraceparentHeader, kTraceparentLength));
    trace.traceparent_maybe_present = true;
  }
  // The caller speaks B3: it goes on in the same form(s), describing the same span as
  // traceparent.
  if (trace.b3_single || trace.b3_multi) SetB3(headers, trace, span_id);
  stats_.spans_started.Inc();
  if (!trace.sampled) return span_id;
  span = Acquire();
  Span& s = *span;
  s.trace_id = trace.trace_id;
  s.span_id = span_id;
  s.parent_span_id = trace.server_span_id;
  s.kind = SpanKind::kClient;
  s.retry_attempt = trace.attempts;
  s.start_ns = WallNanos();
  return span_id;
}

SpanPtr Tracer::BeginErrorSpan(const http::HeaderMap* headers, RequestTrace& trace,
                               MonotonicTime start, uint64_t single_attempt_span_id) {
  TraceHeaders found;
  if (headers != nullptr) found = scan_.Scan(*headers);
  if (!trace.active()) {
    // Refused before its trace began: the caller's context, as BeginServer would have read it.
    const ParentContext parent = found.any_context() ? ExtractParent(found) : ParentContext();
    trace = RequestTrace();
    trace.debug = parent.debug;
    if (parent.trace_id.valid()) {
      trace.trace_id = parent.trace_id;
      trace.parent_span_id = parent.span_id;
    } else {
      trace.trace_id = TraceId{NextRandom(), NonZeroRandom()};
    }
    trace.sampled = DecideSampling(parent, IsForced(found.get(TraceHeaders::kForce)), rate_,
                                   trace.trace_id.low);
    stats_.spans_started.Inc();
  }
  if (!trace.sampled) {
    if (!TakeErrorSpanToken()) {
      stats_.error_spans_limited.Inc();
      return nullptr;
    }
    stats_.error_spans.Inc();
  }
  SpanPtr span = Acquire();
  Span& s = *span;
  s.trace_id = trace.trace_id;
  // As a sampled request's single attempt is folded (UpstreamRequest::AttemptMayBeFolded): not
  // for a B3 caller, whose upstream was told the server span's own id as its parent.
  const bool b3 = trace.b3_single || trace.b3_multi;
  if (!span_per_attempt_ && !b3 && trace.attempts == 1 && single_attempt_span_id != 0) {
    s.span_id = single_attempt_span_id;  // the parent its upstream saw
  } else {
    s.span_id = trace.server_span_id != 0 ? trace.server_span_id : NonZeroRandom();
  }
  s.parent_span_id = trace.parent_span_id;
  s.parent_remote = trace.parent_span_id != 0;
  s.kind = SpanKind::kServer;
  s.sampled = trace.sampled;
  s.start_ns = WallNanosAt(start);
  if (const std::optional<absl::string_view> id = found.get(TraceHeaders::kRequestId)) {
    SetText(s.request_id, *id);
  }
  return span;
}

bool Tracer::TakeErrorSpanToken() {
  if (error_spans_per_second_ <= 0) return false;
  const MonotonicTime now = clock_.Now();
  if (error_span_refill_.has_value()) {
    const double elapsed = std::chrono::duration<double>(now - *error_span_refill_).count();
    error_span_tokens_ =
        std::min(error_spans_per_second_, error_span_tokens_ + elapsed * error_spans_per_second_);
  }
  error_span_refill_ = now;
  if (error_span_tokens_ < 1) return false;
  error_span_tokens_ -= 1;
  return true;
}

void Tracer::Reanchor() {
  anchor_monotonic_ = clock_.Now();
  anchor_wall_ns_ = absl::ToUnixNanos(clock_.WallNow());
}

SpanPtr Tracer::Acquire() {
  if (pool_.empty()) return std::make_unique<Span>();
  SpanPtr span = std::move(pool_.back());
  pool_.pop_back();
  return span;
}

void Tracer::End(SpanPtr& span) {
  if (span == nullptr) return;
  if (span->end_ns == 0) span->end_ns = WallNanos();
  // A wall-clock step back between the anchors of its start and end (see WallNanosAt).
  span->end_ns = std::max(span->end_ns, span->start_ns);
  if (span->sampled) stats_.spans_sampled.Inc();
  if (!sink_.Take(*span)) stats_.spans_dropped_full.Inc();
  Discard(span);
}

void Tracer::Discard(SpanPtr& span) {
  if (span == nullptr) return;
  if (pool_.size() < kMaxPooledSpans) {
    span->Reset();
    pool_.push_back(std::move(span));
  }
  span.reset();
}

absl::string_view PeerService(absl::string_view cluster, absl::string_view own_service) {
  if (absl::ConsumePrefix(&cluster, "outbound|")) {
    // PORT|SUBSET|SERVICE: the service follows the last '|'.
    const size_t bar = cluster.rfind('|');
    return bar == absl::string_view::npos ? absl::string_view() : cluster.substr(bar + 1);
  }
  if (cluster == "inbound" || absl::StartsWith(cluster, "inbound|")) return own_service;
  return cluster;
}

void SetServerAuthority(Span& span, absl::string_view authority) {
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    if (close != absl::string_view::npos) {
      if (host.size() > close + 1 && host[close + 1] == ':') port = host.substr(close + 2);
      host = host.substr(1, close - 1);
    }
  } else if (const size_t colon = host.rfind(':');
             colon != absl::string_view::npos && host.find(':') == colon) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  SetText(span.server_host, host);
  uint32_t number = 0;
  span.server_port = absl::SimpleAtoi(port, &number) && number > 0 && number <= 65535
                         ? static_cast<uint16_t>(number)
                         : 0;
}

void FoldSingleAttempt(Span& server, const Span& attempt) {
  server.span_id = attempt.span_id;
  server.upstream_ready_us = attempt.upstream_ready_us;
}

}  // namespace meshlet::sidecar::tracing

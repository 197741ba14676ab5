#include "control-plane/telemetry/collector.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "control-plane/telemetry/explain.h"
#include "control-plane/telemetry/otlp_trace.pb.h"
#include "control-plane/telemetry/receivers.h"

namespace meshlet::controlplane::telemetry {

using http::ServerRequest;
using http::ServerResponse;

namespace {

constexpr size_t kMaxQueryLimit = 1000;
constexpr size_t kMaxRequestIdBytes = 256;

absl::string_view ReceiverName(bool otlp) { return otlp ? "otlp" : "zipkin"; }
constexpr absl::string_view kPeerReceiver = "peer";

std::string Rfc3339Nanos(int64_t unix_nanos) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", absl::FromUnixNanos(unix_nanos),
                          absl::UTCTimeZone());
}

ServerResponse QueryError(int status, absl::string_view reason, absl::string_view message) {
  return ServerResponse::Json(
      status, absl::StrCat(R"({"kind":"Status","apiVersion":"v1","status":"Failure","code":)",
                           status, R"(,"reason":)", JsonQuote(reason), R"(,"message":)",
                           JsonQuote(message), "}\n"));
}

// RFC 3339 ("2026-11-22T08:00:00Z") or integer Unix nanoseconds.
absl::StatusOr<int64_t> ParseTimeParam(absl::string_view name, const std::string& value) {
  int64_t nanos = 0;
  if (absl::SimpleAtoi(value, &nanos) && nanos >= 0) return nanos;
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, value, &t, &error)) return absl::ToUnixNanos(t);
  return absl::InvalidArgumentError(absl::StrCat(
      name, "=\"", value, "\": expected RFC 3339 (2026-01-02T15:04:05Z) or Unix nanoseconds"));
}

std::string SummaryJson(const TraceSummary& s) {
  std::vector<std::string> services;
  for (const std::string& service : s.services) services.push_back(JsonQuote(service));
  return absl::StrCat(
      R"({"traceId":)", JsonQuote(s.trace_id), R"(,"rootService":)", JsonQuote(s.root_service),
      R"(,"rootOperation":)", JsonQuote(s.root_operation), R"(,"start":)",
      JsonQuote(Rfc3339Nanos(s.start_unix_nanos)), R"(,"startTimeUnixNano":")", s.start_unix_nanos,
      R"(","durationNanos":)", s.duration_nanos, R"(,"spanCount":)", s.span_count, R"(,"error":)",
      s.error ? "true" : "false", R"(,"services":[)", absl::StrJoin(services, ","),
      R"(],"unverifiedSpans":)", s.unverified_spans, "}");
}

std::string SpanJson(const SpanRecord& span) {
  std::vector<std::string> attributes;
  for (const auto& [key, value] : span.attributes) {
    attributes.push_back(absl::StrCat(JsonQuote(key), ":", JsonQuote(value)));
  }
  return absl::StrCat(
      R"({"spanId":)", JsonQuote(span.span_id), R"(,"parentSpanId":)",
      JsonQuote(span.parent_span_id), R"(,"name":)", JsonQuote(span.name), R"(,"service":)",
      JsonQuote(span.service), R"(,"kind":)", JsonQuote(SpanKindName(span.kind)), R"(,"start":)",
      JsonQuote(Rfc3339Nanos(span.start_unix_nanos)), R"(,"startTimeUnixNano":")",
      span.start_unix_nanos, R"(","durationNanos":)", span.duration_nanos(),
      R"(,"status":{"code":)", span.error ? R"("ERROR")" : R"("UNSET")", R"(,"message":)",
      JsonQuote(span.status_message), R"(},"traceState":)", JsonQuote(span.trace_state),
      R"(,"flags":)", span.flags, R"(,"attributes":{)", absl::StrJoin(attributes, ","), "}}");
}

// The partial-success text for `rejected` of `count` spans.
std::string PartialMessage(size_t rejected, size_t count, size_t max_spans_per_trace) {
  return absl::StrCat(rejected, " of ", count,
                      " spans refused: duplicate span ids, or a trace over ", max_spans_per_trace,
                      " spans");
}

// Drops the attributes a sender wrote under the collector's own source names.
void DropSourceAttributes(SpanRecord& span) {
  constexpr absl::string_view kSourcePrefix = "meshlet.source.";
  std::erase_if(span.attributes, [&](const auto& attribute) {
    return absl::StartsWith(attribute.first, kSourcePrefix);
  });
}

}  // namespace

void StampVerified(const VerifiedSource& source, SpanRecord& span) {
  DropSourceAttributes(span);
  span.service = source.service;
  span.attributes.emplace_back(kSourceIdentityAttribute, source.identity);
  span.attributes.emplace_back(kSourceNodeAttribute, source.node_id);
}

void StampUnverified(absl::string_view receiver, SpanRecord& span) {
  DropSourceAttributes(span);
  span.attributes.emplace_back(kSourceUnverifiedAttribute, receiver);
}

struct Collector::Stats {
  explicit Stats(StatsRegistry& registry) : registry(registry) {
    for (absl::string_view receiver :
         {ReceiverName(true), ReceiverName(false), kOtlpGrpcReceiver, kPeerReceiver}) {
      const LabelSet labels = {{"receiver", std::string(receiver)}};
      received[receiver] =
          MakeCounter("meshlet_cp_telemetry_spans_received_total",
                      "Spans accepted into the trace store, by receiver (otlp_grpc: exported "
                      "on the discovery port; peer: forwarded by another control-plane replica).",
                      labels);
      rejected[receiver] = MakeCounter(
          "meshlet_cp_telemetry_spans_rejected_total",
          "Spans in well-formed requests the store refused (duplicate span id, trace over the "
          "per-trace limit, larger than the whole store), by receiver.",
          labels);
    }
    evicted_spans = MakeCounter("meshlet_cp_telemetry_spans_evicted_total",
                                "Spans dropped from the trace store to make room (oldest "
                                "traces first).");
    evicted_traces = MakeCounter("meshlet_cp_telemetry_traces_evicted_total",
                                 "Traces dropped from the trace store to make room.");
    auto gauge = [&](absl::string_view name, absl::string_view help) {
      absl::StatusOr<GaugeId> id = registry.RegisterGauge(name, help, {}, GaugeMerge::kGlobal);
      CHECK(id.ok()) << id.status().message();
      return registry.shared_shard().Get(*id);
    };
    store_spans = gauge("meshlet_cp_telemetry_store_spans", "Spans held in the trace store.");
    store_traces = gauge("meshlet_cp_telemetry_store_traces", "Traces held in the trace store.");
    store_bytes = gauge("meshlet_cp_telemetry_store_bytes",
                        "Approximate bytes held in the trace store (its byte limit counts "
                        "these).");
  }
  Counter MakeCounter(absl::string_view name, absl::string_view help, const LabelSet& labels = {}) {
    absl::StatusOr<CounterId> id = registry.RegisterCounter(name, help, labels);
    CHECK(id.ok()) << id.status().message();
    return registry.shared_shard().Get(*id);
  }
  // Registered on first use: the reasons are few but open-ended in the code.
  Counter RequestRejected(bool otlp, absl::string_view reason) {
    const std::string key = absl::StrCat(ReceiverName(otlp), "/", reason);
    auto it = requests_rejected.find(key);
    if (it == requests_rejected.end()) {
      it = requests_rejected
               .emplace(key, MakeCounter("meshlet_cp_telemetry_requests_rejected_total",
                                         "Receiver requests refused whole (nothing stored), by "
                                         "receiver and reason.",
                                         {{"receiver", std::string(ReceiverName(otlp))},
                                          {"reason", std::string(reason)}}))
               .first;
    }
    return it->second;
  }

  StatsRegistry& registry;
  std::map<absl::string_view, Counter> received, rejected;
  std::map<std::string, Counter> requests_rejected;
  Counter evicted_spans, evicted_traces;
  Gauge store_spans, store_traces, store_bytes;
};

Collector::Collector(TraceStoreLimits limits, StatsRegistry* stats, const Clock& clock)
    : clock_(clock),
      store_(limits),
      stats_(stats != nullptr ? std::make_unique<Stats>(*stats) : nullptr) {}

Collector::~Collector() = default;

void Collector::Restore(std::vector<SpanRecord> spans) {
  store_.Add(std::move(spans));
  UpdateStoreGauges();
}

void Collector::AddFromPeer(std::vector<SpanRecord> spans) {
  Store(kPeerReceiver, std::move(spans));
}

AddResult Collector::AddExport(std::vector<OtlpResourceSpans> resources,
                               const std::vector<std::optional<VerifiedSource>>& sources) {
  CHECK(resources.size() == sources.size());
  std::vector<SpanRecord> spans;
  size_t count = 0;
  for (const OtlpResourceSpans& resource : resources) count += resource.spans.size();
  spans.reserve(count);
  for (size_t r = 0; r < resources.size(); ++r) {
    for (SpanRecord& span : resources[r].spans) {
      if (sources[r].has_value()) {
        StampVerified(*sources[r], span);
      } else {
        StampUnverified(kOtlpGrpcReceiver, span);
      }
      spans.push_back(std::move(span));
    }
  }
  if (forward_) forward_(spans);
  return Store(kOtlpGrpcReceiver, std::move(spans));
}

std::string Collector::ExportResponse(const AddResult& result, size_t count) const {
  ::meshlet::telemetry::otlp::ExportTraceServiceResponse reply;
  if (result.rejected > 0) {
    reply.mutable_partial_success()->set_rejected_spans(static_cast<int64_t>(result.rejected));
    reply.mutable_partial_success()->set_error_message(
        PartialMessage(result.rejected, count, store_.limits().max_spans_per_trace));
  }
  return reply.SerializeAsString();
}

AddResult Collector::Store(absl::string_view receiver, std::vector<SpanRecord> spans) {
  if (ring_ != nullptr) {
    if (absl::Status written = ring_->Append(spans); !written.ok()) {
      LOG(WARN) << "trace store ring: " << written.message();
    }
  }
  const AddResult result = store_.Add(std::move(spans));
  if (stats_ != nullptr) {
    stats_->received[receiver].Inc(result.accepted);
    stats_->rejected[receiver].Inc(result.rejected);
    stats_->evicted_spans.Inc(result.evicted_spans);
    stats_->evicted_traces.Inc(result.evicted_traces);
  }
  UpdateStoreGauges();
  return result;
}

void Collector::UpdateStoreGauges() {
  if (stats_ == nullptr) return;
  stats_->store_spans.Set(static_cast<int64_t>(store_.span_count()));
  stats_->store_traces.Set(static_cast<int64_t>(store_.trace_count()));
  stats_->store_bytes.Set(static_cast<int64_t>(store_.byte_count()));
}

ServerResponse Collector::HandleOtlp(const ServerRequest& request) {
  return Ingest(Receiver::kOtlp, request);
}

ServerResponse Collector::HandleZipkin(const ServerRequest& request) {
  return Ingest(Receiver::kZipkin, request);
}

ServerResponse Collector::Reject(Receiver receiver, int status, absl::string_view reason,
                                 absl::string_view message) {
  const bool otlp = receiver == Receiver::kOtlp;
  if (stats_ != nullptr) stats_->RequestRejected(otlp, reason).Inc();
  LOG_EVERY_N_SEC(WARN, 10) << ReceiverName(otlp) << " receiver: refused a request: " << message;
  if (otlp) {
    // google.rpc.Status in its JSON form, as OTLP/HTTP describes for failures: PERMISSION_DENIED
    // for a sender refused, INVALID_ARGUMENT for a request this receiver cannot take.
    return ServerResponse::Json(status, absl::StrCat(R"({"code":)", status == 403 ? 7 : 3,
                                                     R"(,"message":)", JsonQuote(message), "}\n"));
  }
  return ServerResponse::Text(status, absl::StrCat(message, "\n"));
}

ServerResponse Collector::Ingest(Receiver receiver, const ServerRequest& request) {
  const bool otlp = receiver == Receiver::kOtlp;
  const absl::string_view expected_path = otlp ? "/v1/traces" : "/api/v2/spans";
  if (request.path() != expected_path) {
    return Reject(
        receiver, 404, "not_found",
        absl::StrCat("no such path: ", request.path(), "; spans go to POST ", expected_path));
  }
  if (request.method() != "POST") {
    ServerResponse response = Reject(receiver, 405, "method_not_allowed",
                                     absl::StrCat(request.method(), " is not allowed; use POST"));
    response.headers.Add("allow", "POST");
    return response;
  }
  if (refuse_unverified_) {
    // Refused before the body is read: nothing a sender writes here can make it verified.
    return Reject(receiver, 403, "unverified",
                  absl::StrCat("spans from unverified senders are refused here "
                               "(--trace-refuse-unverified): the ",
                               otlp ? "OTLP/HTTP" : "Zipkin",
                               " receiver cannot authenticate its sender; export OTLP/gRPC to the "
                               "discovery port with the workload's certificate instead"));
  }
  std::optional<absl::string_view> encoding = request.headers.Get("content-encoding");
  if (encoding.has_value() && !absl::EqualsIgnoreCase(*encoding, "identity")) {
    return Reject(receiver, 415, "unsupported_encoding",
                  absl::StrCat("content-encoding \"", *encoding,
                               "\" is not supported; send the body uncompressed"));
  }
  const absl::string_view content_type = absl::StripAsciiWhitespace(std::vector<absl::string_view>(
      absl::StrSplit(request.headers.Get("content-type").value_or(""), ';'))[0]);
  const bool json = absl::EqualsIgnoreCase(content_type, "application/json");
  const bool protobuf = otlp && absl::EqualsIgnoreCase(content_type, "application/x-protobuf");
  if (!json && !protobuf) {
    return Reject(receiver, 415, "unsupported_media_type",
                  absl::StrCat("content-type \"", content_type, "\" is not supported; use ",
                               otlp ? "application/x-protobuf or application/json"
                                    : "application/json (Zipkin v2)"));
  }
  absl::StatusOr<std::vector<SpanRecord>> spans = !otlp  ? ParseZipkinJson(request.body)
                                                  : json ? ParseOtlpJson(request.body)
                                                         : ParseOtlpProtobuf(request.body);
  if (!spans.ok()) return Reject(receiver, 400, "invalid", spans.status().message());
  const size_t count = spans->size();
  // Nobody vouches for these senders: the spans say so, whatever service they claim.
  for (SpanRecord& span : *spans) StampUnverified(ReceiverName(otlp), span);
  if (forward_) forward_(*spans);
  const AddResult result = Store(ReceiverName(otlp), *std::move(spans));
  if (!otlp) return ServerResponse::Text(202, "");
  if (json) {
    if (result.rejected == 0) return ServerResponse::Json(200, "{}\n");
    return ServerResponse::Json(
        200,
        absl::StrCat(
            R"({"partialSuccess":{"rejectedSpans":")", result.rejected, R"(","errorMessage":)",
            JsonQuote(PartialMessage(result.rejected, count, store_.limits().max_spans_per_trace)),
            "}}\n"));
  }
  ServerResponse response;
  response.status = 200;
  response.body = ExportResponse(result, count);
  response.headers.Set("content-type", "application/x-protobuf");
  return response;
}

ServerResponse Collector::HandleQuery(const ServerRequest& request) {
  if (request.method() != "GET") {
    ServerResponse r = QueryError(405, "MethodNotAllowed", "only GET is allowed here");
    r.headers.Add("allow", "GET");
    return r;
  }
  const absl::string_view path = request.path();
  if (path == "/api/v1/traces") return ListTraces(request);
  if (path == "/api/v1/dependencies") return ListDependencies(request);
  absl::string_view id = path;
  if (absl::ConsumePrefix(&id, "/api/v1/traces/") && !id.empty()) {
    if (id.find('/') == absl::string_view::npos) return GetTrace(id);
    if (absl::ConsumeSuffix(&id, "/explain") && !id.empty() &&
        id.find('/') == absl::string_view::npos) {
      return ExplainTrace(id);
    }
  }
  return QueryError(404, "NotFound", absl::StrCat("no such path: ", path));
}

ServerResponse Collector::ListTraces(const ServerRequest& request) {
  TraceQuery query;
  for (const auto& [name, value] : request.QueryParams()) {
    auto bad = [&, name = name](absl::string_view why) {
      return QueryError(400, "BadRequest", absl::StrCat(name, ": ", why));
    };
    if (name == "service") {
      query.service = value;
    } else if (name == "operation") {
      query.operation = value;
    } else if (name == "minDuration" || name == "maxDuration") {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d < absl::ZeroDuration()) {
        return bad(absl::StrCat("\"", value, "\" is not a duration such as 50ms or 1.5s"));
      }
      (name == "minDuration" ? query.min_duration_nanos : query.max_duration_nanos) =
          absl::ToInt64Nanoseconds(*d);
    } else if (name == "status") {
      if (value == "error") {
        query.status = TraceQuery::Status::kError;
      } else if (value == "ok") {
        query.status = TraceQuery::Status::kOk;
      } else if (value != "" && value != "any") {
        return bad(absl::StrCat("\"", value, "\" is not one of error, ok, any"));
      }
    } else if (name == "start" || name == "end") {
      absl::StatusOr<int64_t> t = ParseTimeParam(name, value);
      if (!t.ok()) return QueryError(400, "BadRequest", t.status().message());
      (name == "start" ? query.start_unix_nanos : query.end_unix_nanos) = *t;
    } else if (name == "requestId") {
      // An x-request-id as sidecars record it: visible ASCII, bounded.
      if (value.empty() || value.size() > kMaxRequestIdBytes ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
        return bad(absl::StrCat("must be 1 to ", kMaxRequestIdBytes,
                                " visible ASCII characters (an x-request-id)"));
      }
      query.request_id = value;
    } else if (name == "limit") {
      if (!absl::SimpleAtoi(value, &query.limit) || query.limit == 0 ||
          query.limit > kMaxQueryLimit) {
        return bad(absl::StrCat("\"", value, "\" must be a number from 1 to ", kMaxQueryLimit));
      }
    } else {
      return QueryError(400, "BadRequest",
                        absl::StrCat("unknown parameter \"", name,
                                     "\"; known: service, operation, minDuration, maxDuration, "
                                     "status, start, end, requestId, limit"));
    }
  }
  std::vector<std::string> items;
  for (const TraceSummary& summary : store_.Find(query)) items.push_back(SummaryJson(summary));
  return ServerResponse::Json(
      200, absl::StrCat(R"({"kind":"TraceList","items":[)", absl::StrJoin(items, ","), "]}\n"));
}

ServerResponse Collector::GetTrace(absl::string_view id) {
  const std::string normalized = absl::AsciiStrToLower(id);
  std::optional<std::vector<SpanRecord>> spans = store_.Get(normalized);
  if (!spans.has_value()) {
    return QueryError(404, "NotFound",
                      absl::StrCat("trace \"", id, "\" not found (never received, or evicted)"));
  }
  std::vector<std::string> items;
  for (const SpanRecord& span : *spans) items.push_back(SpanJson(span));
  return ServerResponse::Json(
      200, absl::StrCat(R"({"kind":"Trace","traceId":)", JsonQuote(normalized), R"(,"spans":[)",
                        absl::StrJoin(items, ","), "]}\n"));
}

ServerResponse Collector::ExplainTrace(absl::string_view id) {
  const std::string normalized = absl::AsciiStrToLower(id);
  std::optional<std::vector<SpanRecord>> spans = store_.Get(normalized);
  if (!spans.has_value()) {
    return QueryError(404, "NotFound",
                      absl::StrCat("trace \"", id, "\" not found (never received, or evicted)"));
  }
  absl::StatusOr<Explanation> explanation = Explain(normalized, *spans);
  if (!explanation.ok()) {
    return QueryError(422, "NothingToExplain", explanation.status().message());
  }
  return ServerResponse::Json(200, ExplanationJson(*explanation));
}

ServerResponse Collector::ListDependencies(const ServerRequest& request) {
  int64_t start = 0, end = 0;
  bool windowed = false;
  for (const auto& [name, value] : request.QueryParams()) {
    if (name == "window") {
      // Traces that started in the last `window` by this control plane's clock (a dashboard's
      // clock may differ), found through the store's start-time index.
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        return QueryError(
            400, "BadRequest",
            absl::StrCat("window=\"", value, "\": expected a positive duration (5m)"));
      }
      start = std::max<int64_t>(1, absl::ToUnixNanos(clock_.WallNow() - *d));
      windowed = true;
      continue;
    }
    if (name != "start" && name != "end") {
      return QueryError(
          400, "BadRequest",
          absl::StrCat("unknown parameter \"", name, "\"; known: window, start, end"));
    }
    absl::StatusOr<int64_t> t = ParseTimeParam(name, value);
    if (!t.ok()) return QueryError(400, "BadRequest", t.status().message());
    (name == "start" ? start : end) = *t;
  }
  if (windowed && request.QueryParams().size() > 1) {
    return QueryError(400, "BadRequest", "window: not with start or end");
  }
  std::vector<std::string> items;
  for (const DependencyEdge& e : store_.Dependencies(start, end)) {
    items.push_back(absl::StrCat(
        R"({"caller":)", JsonQuote(e.caller), R"(,"callee":)", JsonQuote(e.callee), R"(,"calls":)",
        e.calls, R"(,"errors":)", e.errors, R"(,"unverifiedCalls":)", e.unverified,
        R"(,"p50Nanos":)", e.p50_nanos, R"(,"p99Nanos":)", e.p99_nanos, "}"));
  }
  return ServerResponse::Json(200, absl::StrCat(R"({"kind":"DependencyList","items":[)",
                                                absl::StrJoin(items, ","), "]}\n"));
}

}  // namespace meshlet::controlplane::telemetry

#include "control-plane/telemetry/collector.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "control-plane/telemetry/otlp_trace.pb.h"
#include "control-plane/telemetry/receivers.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

namespace otlp = ::meshlet::telemetry::otlp;

constexpr char kTraceHex[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kOtlpJson[] = R"({"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"frontend"}}]},
  "scopeSpans":[{"scope":{"name":"meshlet"},"spans":[
    {"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","name":"GET /a",
     "kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000050000000",
     "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},
                   {"key":"meshlet.response_flags","value":{"stringValue":"UF"}}],
     "status":{"code":2,"message":"upstream failed"}},
    {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b8",
     "traceState":"congo=t61rcWkgMzE","flags":257,
     "parentSpanId":"00f067aa0ba902b7","name":"GET /a","kind":3,
     "startTimeUnixNano":1700000000001000000,"endTimeUnixNano":"1700000000049000000",
     "attributes":[{"key":"meshlet.retry_attempt","value":{"intValue":"1"}}]}
  ]}]}]})";

http::ServerRequest Request(absl::string_view method, absl::string_view path,
                            absl::string_view content_type, std::string body) {
  http::ServerRequest request;
  request.headers.Add(":method", method);
  request.headers.Add(":path", path);
  if (!content_type.empty()) request.headers.Add("content-type", content_type);
  request.body = std::move(body);
  return request;
}

uint64_t CounterValue(const StatsRegistry& stats, absl::string_view name, const LabelSet& labels) {
  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(name, labels);
  return series == nullptr ? 0 : series->counter;
}

TEST(ReceiversTest, ParsesOtlpJson) {
  absl::StatusOr<std::vector<SpanRecord>> spans = ParseOtlpJson(kOtlpJson);
  ASSERT_TRUE(spans.ok()) << spans.status();
  ASSERT_EQ(spans->size(), 2u);
  const SpanRecord& server = (*spans)[0];
  EXPECT_EQ(server.trace_id, kTraceHex);  // normalized to lowercase
  EXPECT_EQ(server.span_id, "00f067aa0ba902b7");
  EXPECT_TRUE(server.parent_span_id.empty());
  EXPECT_EQ(server.service, "frontend");
  EXPECT_EQ(server.kind, SpanKind::kServer);
  EXPECT_EQ(server.duration_nanos(), 50000000);
  EXPECT_TRUE(server.error);
  EXPECT_EQ(server.status_message, "upstream failed");
  ASSERT_EQ(server.attributes.size(), 2u);
  EXPECT_EQ(server.attributes[0],
            std::make_pair(std::string("http.response.status_code"), std::string("503")));
  const SpanRecord& client = (*spans)[1];
  EXPECT_EQ(client.parent_span_id, "00f067aa0ba902b7");
  EXPECT_EQ(client.kind, SpanKind::kClient);
  EXPECT_FALSE(client.error);
  EXPECT_EQ(client.start_unix_nanos, 1700000000001000000);
  // The span context's tracestate and flags (sampled, parent known to be local).
  EXPECT_EQ(client.trace_state, "congo=t61rcWkgMzE");
  EXPECT_EQ(client.flags, 0x101u);
  EXPECT_EQ(server.trace_state, "");
  EXPECT_EQ(server.flags, 0u);  // not sent
}

TEST(ReceiversTest, RejectsBadOtlpJsonNamingTheField) {
  EXPECT_TRUE(absl::StrContains(ParseOtlpJson("{not json").status().message(), "invalid JSON"));
  std::string bad_id = kOtlpJson;
  bad_id.replace(bad_id.find("00f067aa0ba902b8"), 16, "00f067aa0ba902zz");
  absl::Status status = ParseOtlpJson(bad_id).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "resourceSpans[0].scopeSpans[0].spans[1].spanId: must be 16"))
      << status;
  std::string zero_trace = kOtlpJson;
  zero_trace.replace(zero_trace.find("4BF92F"), 32, std::string(32, '0'));
  EXPECT_TRUE(absl::StrContains(ParseOtlpJson(zero_trace).status().message(),
                                "spans[0].traceId: must be 32 hex digits, not all zero"));
  std::string backwards = kOtlpJson;
  backwards.replace(backwards.find("1700000000050000000"), 19, "1600000000000000000");
  EXPECT_TRUE(absl::StrContains(ParseOtlpJson(backwards).status().message(),
                                "spans[0].endTimeUnixNano: 1600000000000000000 is before"));
}

otlp::ExportTraceServiceRequest ProtoRequest() {
  otlp::ExportTraceServiceRequest request;
  otlp::ResourceSpans* rs = request.add_resource_spans();
  otlp::KeyValue* kv = rs->mutable_resource()->add_attributes();
  kv->set_key("service.name");
  kv->mutable_value()->set_string_value("backend");
  otlp::Span* span = rs->add_scope_spans()->add_spans();
  span->set_trace_id(
      std::string("\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36", 16));
  span->set_span_id(std::string("\x00\x00\x00\x00\x00\x00\x00\x09", 8));
  span->set_parent_span_id(std::string("\x00\xf0\x67\xaa\x0b\xa9\x02\xb8", 8));
  span->set_name("GET /a");
  span->set_kind(2);
  span->set_trace_state("rojo=00f067aa0ba902b7");
  span->set_flags(0x301);
  span->set_start_time_unix_nano(1700000000002000000);
  span->set_end_time_unix_nano(1700000000040000000);
  otlp::KeyValue* attr = span->add_attributes();
  attr->set_key("meshlet.retry_attempt");
  attr->mutable_value()->set_int_value(2);
  return request;
}

TEST(ReceiversTest, ParsesOtlpProtobuf) {
  absl::StatusOr<std::vector<SpanRecord>> spans =
      ParseOtlpProtobuf(ProtoRequest().SerializeAsString());
  ASSERT_TRUE(spans.ok()) << spans.status();
  ASSERT_EQ(spans->size(), 1u);
  EXPECT_EQ((*spans)[0].trace_id, kTraceHex);
  EXPECT_EQ((*spans)[0].span_id, "0000000000000009");
  EXPECT_EQ((*spans)[0].parent_span_id, "00f067aa0ba902b8");
  EXPECT_EQ((*spans)[0].service, "backend");
  EXPECT_EQ((*spans)[0].attributes[0].second, "2");
  EXPECT_EQ((*spans)[0].trace_state, "rojo=00f067aa0ba902b7");
  EXPECT_EQ((*spans)[0].flags, 0x301u);  // sampled, parent remote
}

// A resource attribute of `request`'s first resource.
void AddResourceAttribute(otlp::ExportTraceServiceRequest& request, const std::string& key,
                          const std::string& value) {
  otlp::KeyValue* kv = request.mutable_resource_spans(0)->mutable_resource()->add_attributes();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

// A span attribute the sender wrote on `request`'s first span.
void AddSpanAttribute(otlp::ExportTraceServiceRequest& request, const std::string& key,
                      const std::string& value) {
  otlp::KeyValue* kv =
      request.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->add_attributes();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

TEST(ReceiversTest, ParsesOtlpProtobufByResource) {
  otlp::ExportTraceServiceRequest request = ProtoRequest();
  AddResourceAttribute(request, "service.instance.id", "backend-0.shop");
  otlp::ResourceSpans* second = request.add_resource_spans();
  *second = request.resource_spans(0);
  second->mutable_resource()->mutable_attributes()->RemoveLast();
  second->mutable_scope_spans(0)->mutable_spans(0)->set_span_id(
      std::string("\x00\x00\x00\x00\x00\x00\x00\x0a", 8));
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources =
      ParseOtlpProtobufResources(request.SerializeAsString());
  ASSERT_TRUE(resources.ok()) << resources.status();
  ASSERT_EQ(resources->size(), 2u);
  EXPECT_EQ((*resources)[0].service_instance_id, "backend-0.shop");
  EXPECT_EQ((*resources)[1].service_instance_id, "");
  ASSERT_EQ((*resources)[1].spans.size(), 1u);
  EXPECT_EQ((*resources)[1].spans[0].span_id, "000000000000000a");
  // The flat form has both resources' spans.
  absl::StatusOr<std::vector<SpanRecord>> flat = ParseOtlpProtobuf(request.SerializeAsString());
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(flat->size(), 2u);
}

TEST(ReceiversTest, RejectsBadOtlpProtobuf) {
  EXPECT_TRUE(
      absl::StrContains(ParseOtlpProtobuf("\xff\xff\xff").status().message(), "invalid protobuf"));
  otlp::ExportTraceServiceRequest short_id = ProtoRequest();
  short_id.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_trace_id("abc");
  EXPECT_TRUE(absl::StrContains(ParseOtlpProtobuf(short_id.SerializeAsString()).status().message(),
                                "spans[0].traceId: must be 16 bytes, not all zero (got 3 bytes)"));
}

constexpr char kZipkin[] = R"([
  {"traceId":"a3ce929d0e0e4736","id":"00f067aa0ba902b7","name":"get /z","kind":"SERVER",
   "timestamp":1700000000000000,"duration":2500,"localEndpoint":{"serviceName":"zsvc"},
   "tags":{"http.status_code":"500","error":"boom"}},
  {"traceId":"a3ce929d0e0e4736","id":"00f067aa0ba902b8","parentId":"00f067aa0ba902b7",
   "name":"get /db","kind":"CLIENT","timestamp":1700000000000100,"duration":1000,
   "localEndpoint":{"serviceName":"zsvc"},"remoteEndpoint":{"serviceName":"db"},"debug":true}
])";

TEST(ReceiversTest, ParsesZipkinV2) {
  absl::StatusOr<std::vector<SpanRecord>> spans = ParseZipkinJson(kZipkin);
  ASSERT_TRUE(spans.ok()) << spans.status();
  ASSERT_EQ(spans->size(), 2u);
  EXPECT_EQ((*spans)[0].trace_id, "0000000000000000a3ce929d0e0e4736");  // 64-bit id padded
  EXPECT_EQ((*spans)[0].service, "zsvc");
  EXPECT_EQ((*spans)[0].kind, SpanKind::kServer);
  EXPECT_EQ((*spans)[0].start_unix_nanos, 1700000000000000000);
  EXPECT_EQ((*spans)[0].duration_nanos(), 2500000);
  EXPECT_TRUE((*spans)[0].error);
  EXPECT_EQ((*spans)[0].status_message, "boom");
  ASSERT_EQ((*spans)[0].attributes.size(), 1u);
  EXPECT_EQ((*spans)[1].parent_span_id, "00f067aa0ba902b7");
  EXPECT_FALSE((*spans)[1].error);
}

TEST(ReceiversTest, RejectsBadZipkin) {
  EXPECT_TRUE(
      absl::StrContains(ParseZipkinJson(R"({"traceId":"1"})").status().message(), "JSON array"));
  EXPECT_TRUE(absl::StrContains(ParseZipkinJson("[{").status().message(), "invalid JSON"));
  EXPECT_TRUE(absl::StrContains(
      ParseZipkinJson(R"([{"traceId":"a3ce929d0e0e4736","id":"1","timestamp":1}])")
          .status()
          .message(),
      "[0].id: must be 16 hex digits"));
  EXPECT_TRUE(absl::StrContains(
      ParseZipkinJson(R"([{"traceId":"a3ce929d0e0e4736","id":"00f067aa0ba902b7"}])")
          .status()
          .message(),
      "[0].timestamp: missing"));
}

TEST(CollectorTest, OtlpEndpointStoresAndCounts) {
  StatsRegistry stats;
  Collector collector({}, &stats);
  http::ServerResponse r =
      collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kOtlpJson));
  EXPECT_EQ(r.status, 200) << r.body;
  r = collector.HandleOtlp(
      Request("POST", "/v1/traces", "application/x-protobuf", ProtoRequest().SerializeAsString()));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.Get("content-type").value_or(""), "application/x-protobuf");
  EXPECT_EQ(collector.store().span_count(), 3u);
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_telemetry_spans_received_total", {{"receiver", "otlp"}}), 3u);

  // The same spans again: well-formed, but duplicates, so a partial success.
  r = collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kOtlpJson));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(absl::StrContains(r.body, R"("rejectedSpans":"2")")) << r.body;
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_telemetry_spans_rejected_total", {{"receiver", "otlp"}}), 2u);

  r = collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", "[1,2"));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "invalid JSON")) << r.body;
  r = collector.HandleOtlp(Request("POST", "/v1/traces", "text/plain", kOtlpJson));
  EXPECT_EQ(r.status, 415);
  EXPECT_TRUE(absl::StrContains(r.body, "application/x-protobuf or application/json")) << r.body;
  r = collector.HandleOtlp(Request("GET", "/v1/traces", "", ""));
  EXPECT_EQ(r.status, 405);
  http::ServerRequest gzip = Request("POST", "/v1/traces", "application/json", kOtlpJson);
  gzip.headers.Add("content-encoding", "gzip");
  EXPECT_EQ(collector.HandleOtlp(gzip).status, 415);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_requests_rejected_total",
                         {{"receiver", "otlp"}, {"reason", "invalid"}}),
            1u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_requests_rejected_total",
                         {{"receiver", "otlp"}, {"reason", "unsupported_media_type"}}),
            1u);
  EXPECT_EQ(collector.store().span_count(), 3u);
}

TEST(CollectorTest, ZipkinEndpoint) {
  StatsRegistry stats;
  Collector collector({}, &stats);
  EXPECT_EQ(
      collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin)).status,
      202);
  EXPECT_EQ(collector.store().span_count(), 2u);
  http::ServerResponse r =
      collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", "{}"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_telemetry_spans_received_total", {{"receiver", "zipkin"}}),
      2u);
}

TEST(CollectorTest, EvictionIsCounted) {
  StatsRegistry stats;
  TraceStoreLimits limits;
  limits.max_spans = 2;
  Collector collector(limits, &stats);
  collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin));
  collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kOtlpJson));
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_spans_evicted_total", {}), 2u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_traces_evicted_total", {}), 1u);
}

TEST(CollectorTest, QueryApi) {
  Collector collector({}, nullptr);
  collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kOtlpJson));
  collector.HandleOtlp(
      Request("POST", "/v1/traces", "application/x-protobuf", ProtoRequest().SerializeAsString()));
  collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin));

  http::ServerResponse r =
      collector.HandleQuery(Request("GET", "/api/v1/traces?service=backend", "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, absl::StrCat(R"("traceId":")", kTraceHex))) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("rootService":"frontend")")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("spanCount":3)")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("durationNanos":50000000)")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "0000000000000000a3ce929d0e0e4736")) << r.body;

  r = collector.HandleQuery(Request("GET", "/api/v1/traces?minDuration=10ms&status=error", "", ""));
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(absl::StrContains(r.body, kTraceHex));
  EXPECT_FALSE(absl::StrContains(r.body, "0000000000000000a3ce929d0e0e4736")) << r.body;  // 2.5 ms
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?minDuration=soon", "", ""));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "minDuration")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?limit=0", "", ""));
  EXPECT_EQ(r.status, 400);
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?colour=red", "", ""));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "unknown parameter")) << r.body;
  r = collector.HandleQuery(
      Request("GET", "/api/v1/traces?start=2023-11-14T22:13:20Z&end=yesterday", "", ""));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "end=")) << r.body;

  r = collector.HandleQuery(Request("GET", absl::StrCat("/api/v1/traces/", kTraceHex), "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("parentSpanId":"00f067aa0ba902b8")")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("meshlet.retry_attempt":"2")")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("status":{"code":"ERROR","message":"upstream failed"})"))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("traceState":"rojo=00f067aa0ba902b7","flags":769)"))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("traceState":"congo=t61rcWkgMzE","flags":257)"))
      << r.body;
  EXPECT_EQ(collector.HandleQuery(Request("GET", "/api/v1/traces/ffff", "", "")).status, 404);

  r = collector.HandleQuery(Request("GET", "/api/v1/dependencies", "", ""));
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(
      absl::StrContains(r.body, R"({"caller":"frontend","callee":"backend","calls":1,"errors":0)"))
      << r.body;
  EXPECT_EQ(collector.HandleQuery(Request("POST", "/api/v1/dependencies", "", "")).status, 405);
}

// An export whose sender the discovery port authenticated: its spans are stored under the
// registration's service with the sender's identity and node, whatever the sender wrote.
// A sidecar's decision records posted over OTLP/HTTP: the trace is found by its request id and
// explained; an id no trace carries finds nothing, a malformed one is refused.
TEST(CollectorTest, FindsATraceByRequestIdAndExplainsIt) {
  Collector collector({}, nullptr);
  constexpr char kDecision[] = R"({"resourceSpans":[{
    "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"reviews.default"}}]},
    "scopeSpans":[{"spans":[
      {"traceId":"5bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902c1","name":"GET /",
       "kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000300000000",
       "attributes":[
         {"key":"http.response.status_code","value":{"intValue":"504"}},
         {"key":"meshlet.request_id","value":{"stringValue":"5e1c-77"}},
         {"key":"meshlet.cluster","value":{"stringValue":"outbound|9080||ratings.default"}},
         {"key":"meshlet.policy.route","value":{"stringValue":"HTTPRoute/default/ratings"}},
         {"key":"meshlet.route.rule","value":{"intValue":"1"}},
         {"key":"meshlet.policy.traffic","value":{"stringValue":"TrafficPolicy/default/ratings"}},
         {"key":"meshlet.timeout.request_ms","value":{"intValue":"300"}},
         {"key":"meshlet.response_flags","value":{"stringValue":"UT"}},
         {"key":"meshlet.error.reason","value":{"stringValue":"upstream request timeout"}},
         {"key":"meshlet.attempts","value":{"stringValue":
           "endpoint=10.0.0.9:15006 outcome=timeout duration_ms=300 next=done"}}],
       "status":{"code":2,"message":"UT"}}]}]}]})";
  ASSERT_EQ(
      collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kDecision)).status,
      200);
  collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", kOtlpJson));

  http::ServerResponse r =
      collector.HandleQuery(Request("GET", "/api/v1/traces?requestId=5e1c-77", "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("traceId":"5bf92f3577b34da6a3ce929d0e0e4736")"))
      << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, kTraceHex)) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?requestId=other", "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("items":[])")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?requestId=", "", ""));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "requestId: must be 1 to 256 visible ASCII")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?requestId=a%20b", "", ""));
  EXPECT_EQ(r.status, 400) << r.body;
  r = collector.HandleQuery(
      Request("GET", absl::StrCat("/api/v1/traces?requestId=", std::string(257, 'x')), "", ""));
  EXPECT_EQ(r.status, 400) << r.body;

  r = collector.HandleQuery(
      Request("GET", "/api/v1/traces/5BF92F3577B34DA6A3CE929D0E0E4736/explain", "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(
      r.body,
      R"("verdict":"504 at reviews.default's outbound sidecar: request timeout 300ms from )"
      R"(TrafficPolicy/default/ratings (route HTTPRoute/default/ratings rule 1) expired after 1 )"
      R"(attempt")"))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("requestId":"5e1c-77")")) << r.body;
  // The other trace has meshlet attributes too (response flags): explained, nothing proxy-made.
  r = collector.HandleQuery(
      Request("GET", absl::StrCat("/api/v1/traces/", kTraceHex, "/explain"), "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces/ffff/explain", "", ""));
  EXPECT_EQ(r.status, 404) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces/ffff/explain/x", "", ""));
  EXPECT_EQ(r.status, 404) << r.body;
  // A trace of spans no sidecar sent.
  ASSERT_EQ(collector
                .HandleZipkin(Request("POST", "/api/v2/spans", "application/json",
                                      R"([{"traceId":"00000000000000000000000000000abc",)"
                                      R"("id":"0000000000000001","name":"get","timestamp":1,)"
                                      R"("duration":5,"localEndpoint":{"serviceName":"app"}}])"))
                .status,
            202);
  r = collector.HandleQuery(
      Request("GET", "/api/v1/traces/00000000000000000000000000000abc/explain", "", ""));
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "no span from a meshlet sidecar")) << r.body;
}

TEST(CollectorTest, AnExportIsStoredUnderItsAuthenticatedSource) {
  StatsRegistry stats;
  Collector collector({}, &stats);
  otlp::ExportTraceServiceRequest request = ProtoRequest();  // service.name "backend"
  AddResourceAttribute(request, "service.instance.id", "cart-0.shop");
  AddSpanAttribute(request, "meshlet.source.identity", "spiffe://cluster.local/ns/shop/sa/admin");
  AddSpanAttribute(request, "meshlet.source.unverified", "no");
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources =
      ParseOtlpProtobufResources(request.SerializeAsString());
  ASSERT_TRUE(resources.ok()) << resources.status();
  const AddResult result =
      collector.AddExport(*std::move(resources),
                          {VerifiedSource{.service = "cart.shop",
                                          .node_id = "cart-0.shop",
                                          .identity = "spiffe://cluster.local/ns/shop/sa/cart"}});
  EXPECT_EQ(result.accepted, 1u);
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_telemetry_spans_received_total", {{"receiver", "otlp_grpc"}}),
      1u);

  http::ServerResponse r =
      collector.HandleQuery(Request("GET", absl::StrCat("/api/v1/traces/", kTraceHex), "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("service":"cart.shop")")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, R"("service":"backend")")) << r.body;
  EXPECT_TRUE(absl::StrContains(
      r.body, R"("meshlet.source.identity":"spiffe://cluster.local/ns/shop/sa/cart")"))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("meshlet.source.node":"cart-0.shop")")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "sa/admin")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "meshlet.source.unverified")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("meshlet.retry_attempt":"2")")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?service=cart", "", ""));
  EXPECT_TRUE(absl::StrContains(r.body, R"("unverifiedSpans":0)")) << r.body;
  EXPECT_EQ(collector.ExportResponse(result, 1), "");  // nothing rejected: an empty message

  // The same span again: the store refuses it as a duplicate, and the answer says so.
  resources = ParseOtlpProtobufResources(ProtoRequest().SerializeAsString());
  const AddResult again = collector.AddExport(*std::move(resources), {std::nullopt});
  EXPECT_EQ(again.rejected, 1u);
  otlp::ExportTraceServiceResponse reply;
  ASSERT_TRUE(reply.ParseFromString(collector.ExportResponse(again, 1)));
  EXPECT_EQ(reply.partial_success().rejected_spans(), 1);
}

// A plaintext discovery port authenticates nobody: the spans keep the service their sender named
// and are marked unverified.
TEST(CollectorTest, AnUnauthenticatedExportIsMarkedUnverified) {
  Collector collector({}, nullptr);
  otlp::ExportTraceServiceRequest request = ProtoRequest();
  AddResourceAttribute(request, "service.instance.id", "cart-0.shop");
  AddSpanAttribute(request, "meshlet.source.identity", "spiffe://cluster.local/ns/shop/sa/admin");
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources =
      ParseOtlpProtobufResources(request.SerializeAsString());
  ASSERT_TRUE(resources.ok());
  EXPECT_EQ(collector.AddExport(*std::move(resources), {std::nullopt}).accepted, 1u);
  http::ServerResponse r =
      collector.HandleQuery(Request("GET", absl::StrCat("/api/v1/traces/", kTraceHex), "", ""));
  EXPECT_TRUE(absl::StrContains(r.body, R"("service":"backend")")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("meshlet.source.unverified":"otlp_grpc")")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "meshlet.source.identity")) << r.body;
}

// Spans on the OTLP/HTTP and Zipkin receivers come from senders nobody authenticated: whatever
// service and identity they claim, they are marked unverified, and so are their traces and the
// dependency edges they make.
TEST(CollectorTest, ReceiverSpansAreMarkedUnverified) {
  Collector collector({}, nullptr);
  std::string forged = kOtlpJson;
  const std::string attribute = R"({"key":"meshlet.retry_attempt")";
  forged.replace(
      forged.find(attribute), 0,
      R"({"key":"meshlet.source.identity","value":{"stringValue":"spiffe://cluster.local/ns/default/sa/frontend"}},)");
  ASSERT_EQ(collector.HandleOtlp(Request("POST", "/v1/traces", "application/json", forged)).status,
            200);
  // backend's span, a child of frontend's client span.
  ASSERT_EQ(collector
                .HandleOtlp(Request("POST", "/v1/traces", "application/x-protobuf",
                                    ProtoRequest().SerializeAsString()))
                .status,
            200);
  ASSERT_EQ(
      collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin)).status,
      202);
  http::ServerResponse r =
      collector.HandleQuery(Request("GET", absl::StrCat("/api/v1/traces/", kTraceHex), "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "meshlet.source.identity")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("meshlet.source.unverified":"otlp")")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/traces?service=frontend", "", ""));
  EXPECT_TRUE(absl::StrContains(r.body, R"("unverifiedSpans":3)")) << r.body;
  std::optional<std::vector<SpanRecord>> zipkin =
      collector.store().Get("0000000000000000a3ce929d0e0e4736");
  ASSERT_TRUE(zipkin.has_value());
  for (const SpanRecord& span : *zipkin) {
    EXPECT_FALSE(SourceVerified(span));
    EXPECT_EQ(span.attributes.back(),
              std::make_pair(std::string("meshlet.source.unverified"), std::string("zipkin")));
  }
  r = collector.HandleQuery(Request("GET", "/api/v1/dependencies", "", ""));
  EXPECT_TRUE(absl::StrContains(r.body, R"("errors":0,"unverifiedCalls":1)")) << r.body;
}

// With SetRefuseUnverified the OTLP/HTTP and Zipkin receivers take nothing: 403 with the reason,
// counted per receiver under "unverified", nothing stored or forwarded to other replicas. Without
// it, the same requests are stored marked unverified.
TEST(CollectorTest, RefusingUnverifiedSendersStoresNothingFromTheReceivers) {
  StatsRegistry stats;
  Collector collector({}, &stats);
  EXPECT_FALSE(collector.refuses_unverified());
  collector.SetRefuseUnverified(true);
  size_t forwarded = 0;
  collector.SetForward(
      [&forwarded](const std::vector<SpanRecord>& spans) { forwarded += spans.size(); });
  const std::vector<http::ServerRequest> otlp_requests = {
      Request("POST", "/v1/traces", "application/json", kOtlpJson),
      Request("POST", "/v1/traces", "application/x-protobuf", ProtoRequest().SerializeAsString()),
  };
  for (const http::ServerRequest& request : otlp_requests) {
    http::ServerResponse r = collector.HandleOtlp(request);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_TRUE(absl::StartsWith(r.body, R"({"code":7,"message":)"))
        << r.body;  // PERMISSION_DENIED
    EXPECT_TRUE(absl::StrContains(r.body, "unverified senders are refused")) << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "--trace-refuse-unverified")) << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "OTLP/HTTP receiver cannot authenticate")) << r.body;
  }
  http::ServerResponse r =
      collector.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "Zipkin receiver cannot authenticate")) << r.body;
  // What is not a span export at all keeps its own answer.
  EXPECT_EQ(collector.HandleZipkin(Request("GET", "/api/v2/spans", "", "")).status, 405);

  EXPECT_EQ(collector.store().span_count(), 0u);
  EXPECT_EQ(forwarded, 0u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_requests_rejected_total",
                         {{"receiver", "otlp"}, {"reason", "unverified"}}),
            2u);
  EXPECT_EQ(CounterValue(stats, "meshlet_cp_telemetry_requests_rejected_total",
                         {{"receiver", "zipkin"}, {"reason", "unverified"}}),
            1u);
  EXPECT_EQ(
      CounterValue(stats, "meshlet_cp_telemetry_spans_received_total", {{"receiver", "otlp"}}), 0u);

  // Today's default: the same requests are taken and their spans marked.
  StatsRegistry default_stats;
  Collector marking({}, &default_stats);
  for (const http::ServerRequest& request : otlp_requests) {
    EXPECT_EQ(marking.HandleOtlp(request).status, 200);
  }
  EXPECT_EQ(
      marking.HandleZipkin(Request("POST", "/api/v2/spans", "application/json", kZipkin)).status,
      202);
  EXPECT_GT(marking.store().span_count(), 0u);
  std::optional<std::vector<SpanRecord>> trace = marking.store().Get(kTraceHex);
  ASSERT_TRUE(trace.has_value());
  for (const SpanRecord& span : *trace) EXPECT_FALSE(SourceVerified(span));
  EXPECT_EQ(CounterValue(default_stats, "meshlet_cp_telemetry_requests_rejected_total",
                         {{"receiver", "otlp"}, {"reason", "unverified"}}),
            0u);
}

// A caller's client span and the callee's server span under it, `ago` before the clock's now.
std::string ZipkinCall(const FakeClock& clock, absl::Duration ago, absl::string_view trace,
                       absl::string_view caller, absl::string_view callee) {
  const int64_t micros = absl::ToUnixMicros(clock.WallNow() - ago);
  return absl::StrCat(
      R"([{"traceId":")", trace, R"(","id":"0000000000000001","name":"call","kind":"CLIENT",)",
      R"("timestamp":)", micros, R"(,"duration":900,"localEndpoint":{"serviceName":")", caller,
      R"("}},{"traceId":")", trace,
      R"(","id":"0000000000000002","parentId":"0000000000000001","name":"serve",)",
      R"("kind":"SERVER","timestamp":)", micros + 100,
      R"(,"duration":500,"localEndpoint":{"serviceName":")", callee, R"("}}])");
}

TEST(CollectorTest, DependenciesOverARecentWindow) {
  FakeClock clock;
  Collector collector({}, nullptr, clock);
  ASSERT_EQ(collector
                .HandleZipkin(Request("POST", "/api/v2/spans", "application/json",
                                      ZipkinCall(clock, absl::Seconds(30), "00000000000000aa",
                                                 "frontend", "backend")))
                .status,
            202);
  ASSERT_EQ(collector
                .HandleZipkin(Request(
                    "POST", "/api/v2/spans", "application/json",
                    ZipkinCall(clock, absl::Minutes(10), "00000000000000bb", "backend", "db")))
                .status,
            202);
  http::ServerResponse r =
      collector.HandleQuery(Request("GET", "/api/v1/dependencies?window=1m", "", ""));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("caller":"frontend","callee":"backend")")) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, R"("callee":"db")")) << r.body;
  r = collector.HandleQuery(Request("GET", "/api/v1/dependencies?window=15m", "", ""));
  EXPECT_TRUE(absl::StrContains(r.body, R"("callee":"db")")) << r.body;
  // The window moves with the clock.
  clock.Advance(std::chrono::minutes(2));
  r = collector.HandleQuery(Request("GET", "/api/v1/dependencies?window=1m", "", ""));
  EXPECT_FALSE(absl::StrContains(r.body, R"("caller")")) << r.body;

  for (const char* bad : {"window=soon", "window=0s", "window=1m&start=0"}) {
    r = collector.HandleQuery(Request("GET", absl::StrCat("/api/v1/dependencies?", bad), "", ""));
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "window")) << r.body;
  }
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

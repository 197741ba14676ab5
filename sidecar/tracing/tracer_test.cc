#include "sidecar/tracing/tracer.h"

#include <string>

#include "common/base/allocation_counter.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/http/header_map.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/tracing/span_encoding.h"

namespace meshlet::sidecar::tracing {
namespace {

constexpr absl::string_view kParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr absl::string_view kUnsampledParent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

TEST(SamplingTest, ParentDecides) {
  FakeRandom random;
  random.PushDouble(0.0);  // would be sampled by any rate
  ParentContext parent;
  parent.sampling = SamplingHint::kNotSampled;
  EXPECT_FALSE(DecideSampling(parent, false, 0.5, random));
  parent.sampling = SamplingHint::kSampled;
  EXPECT_TRUE(DecideSampling(parent, false, 0.0, random));
}

TEST(SamplingTest, ForceAndDebugOverrideTheParent) {
  FakeRandom random;
  ParentContext parent;
  parent.sampling = SamplingHint::kNotSampled;
  EXPECT_TRUE(DecideSampling(parent, /*forced=*/true, 0.0, random));
  parent.debug = true;
  EXPECT_TRUE(DecideSampling(parent, false, 0.0, random));
}

TEST(SamplingTest, ProbabilisticWithoutAParentDecision) {
  FakeRandom random;
  ParentContext parent;
  random.PushDouble(0.009);
  EXPECT_TRUE(DecideSampling(parent, false, 0.01, random));
  random.PushDouble(0.011);
  EXPECT_FALSE(DecideSampling(parent, false, 0.01, random));
  EXPECT_FALSE(DecideSampling(parent, false, 0.0, random));
  EXPECT_TRUE(DecideSampling(parent, false, 1.0, random));
}

class TracerTest : public ::testing::Test {
 protected:
  TracerTest() : shard_(registry_.CreateShard()) {}

  Tracer MakeTracer(double percent) {
    TracingConfig config;
    config.enabled = true;
    config.sampling_percent = percent;
    return Tracer(config, "svc", queue_, TracerStats::Create(*shard_), random_, clock_);
  }
  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  SpanQueue queue_{4};
  FakeRandom random_;
  FakeClock clock_;
};

TEST_F(TracerTest, ContinuesTheCallersTraceWithAChildSpan) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kParent}, {"tracestate", "congo=t61rcWkgMzE"}};
  RequestTrace trace;
  std::optional<Span> server;
  random_.Push(0x1111);  // server span id
  tracer.BeginServer(headers, trace, server);
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(server->parent_span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(server->span_id, 0x1111u);

  std::optional<Span> client;
  random_.Push(0x2222);  // client span id
  tracer.BeginClient(headers, trace, client);
  ASSERT_TRUE(client.has_value());
  EXPECT_EQ(client->parent_span_id, 0x1111u);
  EXPECT_EQ(client->retry_attempt, 1u);
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000002222-01");
  EXPECT_EQ(headers.Get("tracestate"), "congo=t61rcWkgMzE");

  // A retry: a new client span, attempt 2, and the header follows it.
  std::optional<Span> retry;
  random_.Push(0x3333);
  tracer.BeginClient(headers, trace, retry);
  EXPECT_EQ(retry->retry_attempt, 2u);
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000003333-01");

  tracer.End(client);
  tracer.End(retry);
  tracer.End(server);
  EXPECT_FALSE(server.has_value());
  Span out;
  ASSERT_TRUE(queue_.TryPop(&out));
  EXPECT_EQ(out.span_id, 0x2222u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_started_total"), 3u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 3u);
}

TEST_F(TracerTest, UnsampledCallerGetsNoSpanButPropagates) {
  Tracer tracer = MakeTracer(100);
  http::HeaderMap headers{{"traceparent", kUnsampledParent}};
  RequestTrace trace;
  std::optional<Span> server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_FALSE(server.has_value());
  EXPECT_FALSE(trace.sampled);
  std::optional<Span> client;
  random_.Push(0xabc);
  tracer.BeginClient(headers, trace, client);
  EXPECT_FALSE(client.has_value());
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-00");
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 0u);
}

TEST_F(TracerTest, UnsampledRequestAllocatesNothing) {
  Tracer tracer = MakeTracer(0);
  for (bool with_parent : {false, true}) {
    http::HeaderMap headers{{":method", "GET"}, {":path", "/a"}, {"x-request-id", "abc"}};
    if (with_parent) headers.Add("traceparent", kUnsampledParent);
    headers.ReserveBytes(1024);  // the header map's own growth is not tracing's cost
    RequestTrace trace;
    std::optional<Span> server, client;
    AllocationScope allocations;
    tracer.BeginServer(headers, trace, server);
    tracer.BeginClient(headers, trace, client);
    tracer.End(client);
    tracer.End(server);
    EXPECT_EQ(allocations.count(), 0u) << "with_parent=" << with_parent;
    EXPECT_TRUE(headers.Has("traceparent"));
  }
}

TEST_F(TracerTest, ForceHeaderSamples) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kUnsampledParent}, {"x-meshlet-force-trace", "1"}};
  RequestTrace trace;
  std::optional<Span> server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_TRUE(server.has_value());
}

TEST_F(TracerTest, NewTraceWhenTheParentIsInvalidAndItsTracestateGoes) {
  Tracer tracer = MakeTracer(100);
  http::HeaderMap headers{
      {"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
      {"tracestate", "a=1"}};
  RequestTrace trace;
  std::optional<Span> server;
  random_.Push(7);
  random_.Push(8);
  random_.Push(9);
  tracer.BeginServer(headers, trace, server);
  EXPECT_EQ(trace.trace_id, (TraceId{7, 8}));
  EXPECT_EQ(trace.parent_span_id, 0u);
  EXPECT_EQ(trace.server_span_id, 9u);
  EXPECT_FALSE(headers.Has("tracestate"));
}

TEST_F(TracerTest, InvalidTracestateIsDropped) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kParent}, {"tracestate", "a=1,a=2"}};
  RequestTrace trace;
  std::optional<Span> server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_FALSE(headers.Has("tracestate"));
}

TEST_F(TracerTest, B3CallerGetsB3InTheSameForm) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap multi{{"x-b3-traceid", "48485a3953bb6124"},
                        {"x-b3-spanid", "a2fb4a1d1a96d312"},
                        {"x-b3-sampled", "1"}};
  RequestTrace trace;
  std::optional<Span> server;
  random_.Push(0x10);
  tracer.BeginServer(multi, trace, server);
  std::optional<Span> client;
  random_.Push(0x20);
  tracer.BeginClient(multi, trace, client);
  EXPECT_EQ(multi.Get("x-b3-traceid"), "48485a3953bb6124");  // 64 bits stay 64 bits
  EXPECT_EQ(multi.Get("x-b3-spanid"), "0000000000000020");
  EXPECT_EQ(multi.Get("x-b3-parentspanid"), "0000000000000010");
  EXPECT_EQ(multi.Get("x-b3-sampled"), "1");
  EXPECT_EQ(multi.Get("traceparent"), "00-000000000000000048485a3953bb6124-0000000000000020-01");
  EXPECT_FALSE(multi.Has("b3"));

  http::HeaderMap single{{"b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-0"}};
  random_.Push(0x10);
  tracer.BeginServer(single, trace, server);
  random_.Push(0x30);
  tracer.BeginClient(single, trace, client);
  EXPECT_EQ(single.Get("b3"),
            "463ac35c9f6413ad48485a3953bb6124-0000000000000030-0-0000000000000010");
  EXPECT_FALSE(single.Has("x-b3-traceid"));
}

TEST_F(TracerTest, BothB3FormsAreRewrittenWhenBothCame) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"},
                          {"x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"},
                          {"x-b3-spanid", "a2fb4a1d1a96d312"}};
  RequestTrace trace;
  std::optional<Span> server, client;
  random_.Push(0x10);
  tracer.BeginServer(headers, trace, server);
  random_.Push(0x40);
  tracer.BeginClient(headers, trace, client);
  EXPECT_EQ(headers.Get("b3"),
            "463ac35c9f6413ad48485a3953bb6124-0000000000000040-1-0000000000000010");
  EXPECT_EQ(headers.Get("x-b3-spanid"), "0000000000000040");
  EXPECT_EQ(headers.Get("x-b3-sampled"), "1");
}

TEST_F(TracerTest, NoB3SentWhenTheCallerUsedNone) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kParent}};
  RequestTrace trace;
  std::optional<Span> server, client;
  tracer.BeginServer(headers, trace, server);
  tracer.BeginClient(headers, trace, client);
  EXPECT_FALSE(headers.Has("b3"));
  EXPECT_FALSE(headers.Has("x-b3-traceid"));
}

TEST_F(TracerTest, FullQueueDropsAndCounts) {
  Tracer tracer = MakeTracer(100);
  for (int i = 0; i < 6; ++i) {
    http::HeaderMap headers;
    RequestTrace trace;
    std::optional<Span> server;
    tracer.BeginServer(headers, trace, server);
    ASSERT_TRUE(server.has_value());
    tracer.End(server);
  }
  EXPECT_EQ(Counter("meshlet_tracing_spans_dropped_total", {{"reason", "queue_full"}}), 2u);
  int popped = 0;
  Span span;
  while (queue_.TryPop(&span)) ++popped;
  EXPECT_EQ(popped, 4);
}

TEST(SpanEncodingTest, OtlpJsonHasIdsLinksAndAttributes) {
  Span span;
  span.trace_id = TraceId{1, 2};
  span.span_id = 3;
  span.parent_span_id = 4;
  span.kind = SpanKind::kClient;
  span.name = "GET \"x\"";
  span.start = absl::FromUnixNanos(1000);
  span.end = absl::FromUnixNanos(5000);
  span.status_code = 503;
  span.retry_attempt = 2;
  span.cluster = "backend";
  span.error = true;
  std::string out;
  EncodeOtlpJson({span}, "svc", &out);
  EXPECT_NE(out.find(R"("traceId":"00000000000000010000000000000002")"), std::string::npos);
  EXPECT_NE(out.find(R"("spanId":"0000000000000003")"), std::string::npos);
  EXPECT_NE(out.find(R"("parentSpanId":"0000000000000004")"), std::string::npos);
  EXPECT_NE(out.find(R"("kind":3)"), std::string::npos);
  EXPECT_NE(out.find(R"("name":"GET \"x\"")"), std::string::npos);
  EXPECT_NE(out.find(R"("startTimeUnixNano":"1000","endTimeUnixNano":"5000")"), std::string::npos);
  EXPECT_NE(out.find(R"({"key":"meshlet.retry_attempt","value":{"intValue":"2"}})"),
            std::string::npos);
  EXPECT_NE(out.find(R"({"key":"meshlet.cluster","value":{"stringValue":"backend"}})"),
            std::string::npos);
  EXPECT_NE(out.find(R"("status":{"code":2)"), std::string::npos);
  EXPECT_NE(out.find(R"("stringValue":"svc")"), std::string::npos);

  out.clear();
  EncodeZipkinJson({span}, "svc", &out);
  EXPECT_NE(out.find(R"("id":"0000000000000003","parentId":"0000000000000004")"),
            std::string::npos);
  EXPECT_NE(out.find(R"("kind":"CLIENT","timestamp":1,"duration":4)"), std::string::npos);
  EXPECT_NE(out.find(R"("meshlet.retry_attempt":"2")"), std::string::npos);

  out.clear();
  EncodeOtlpProto({span}, "svc", &out);
  // ExportTraceServiceRequest.resource_spans (field 1, length-delimited) first.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], '\x0a');
  EXPECT_NE(out.find("meshlet.retry_attempt"), std::string::npos);
  // The trace id as 16 big-endian bytes.
  EXPECT_NE(out.find(std::string("\x0a\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02", 18)),
            std::string::npos);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

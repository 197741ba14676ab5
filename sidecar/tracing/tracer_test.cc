#include "sidecar/tracing/tracer.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/http/header_map.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/tracing/recording_span_sink.h"
#include "sidecar/tracing/span_encoding.h"

namespace meshlet::sidecar::tracing {
namespace {

constexpr absl::string_view kParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr absl::string_view kUnsampledParent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

// Random bits that read as `fraction` of the range.
uint64_t BitsAt(double fraction) { return static_cast<uint64_t>(fraction * 0x1.0p53) << 11; }

TEST(SamplingTest, ParentDecides) {
  ParentContext parent;
  parent.sampling = SamplingHint::kNotSampled;
  EXPECT_FALSE(DecideSampling(parent, false, 0.5, BitsAt(0.0)));  // bits any rate would sample
  parent.sampling = SamplingHint::kSampled;
  EXPECT_TRUE(DecideSampling(parent, false, 0.0, BitsAt(0.0)));
}

TEST(SamplingTest, ForceAndDebugOverrideTheParent) {
  ParentContext parent;
  parent.sampling = SamplingHint::kNotSampled;
  EXPECT_TRUE(DecideSampling(parent, /*forced=*/true, 0.0, BitsAt(0.5)));
  parent.debug = true;
  EXPECT_TRUE(DecideSampling(parent, false, 0.0, BitsAt(0.5)));
}

TEST(SamplingTest, ProbabilisticWithoutAParentDecision) {
  ParentContext parent;
  EXPECT_TRUE(DecideSampling(parent, false, 0.01, BitsAt(0.009)));
  EXPECT_FALSE(DecideSampling(parent, false, 0.01, BitsAt(0.011)));
  EXPECT_FALSE(DecideSampling(parent, false, 0.0, BitsAt(0.0)));
  EXPECT_TRUE(DecideSampling(parent, false, 1.0, ~uint64_t{0}));
}

class TracerTest : public ::testing::Test {
 protected:
  TracerTest() : shard_(registry_.CreateShard()) {}

  Tracer MakeTracer(double percent) {
    TracingConfig config;
    config.enabled = true;
    config.sampling_percent = percent;
    return Tracer(config, "svc", sink_, TracerStats::Create(*shard_), random_, clock_);
  }
  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_;
  RecordingSpanSink sink_{4};
  FakeRandom random_;
  FakeClock clock_;
};

TEST_F(TracerTest, TheNewTraceIdDecidesAndUnsampledRequestsDrawNoServerSpanId) {
  Tracer tracer = MakeTracer(1);
  for (const double fraction : {0.005, 0.5}) {
    http::HeaderMap headers;
    RequestTrace trace;
    SpanPtr server;
    random_.Push(0x77);              // trace id, high half
    random_.Push(BitsAt(fraction));  // low half: below 1 % is sampled
    random_.Push(0x99);              // the server span id, drawn only when sampled
    random_.Push(0x55);              // the next draw
    tracer.BeginServer(headers, trace, server);
    EXPECT_EQ(trace.trace_id, (TraceId{0x77, BitsAt(fraction)}));
    EXPECT_EQ(trace.sampled, fraction < 0.01) << fraction;
    SpanPtr client;
    tracer.BeginClient(headers, trace, client);
    if (trace.sampled) {
      EXPECT_EQ(trace.server_span_id, 0x99u);
      EXPECT_EQ(client->span_id, 0x55u);
      tracer.End(client);
      tracer.End(server);
    } else {
      EXPECT_EQ(trace.server_span_id, 0u);
      EXPECT_EQ(headers.Get("traceparent"),
                "00-0000000000000077" +
                    absl::StrCat(absl::Hex(BitsAt(fraction), absl::kZeroPad16)) +
                    "-0000000000000099-00");
      random_.Next();  // the unused 0x55
    }
  }
}

TEST_F(TracerTest, ContinuesTheCallersTraceWithAChildSpan) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kParent}, {"tracestate", "congo=t61rcWkgMzE"}};
  RequestTrace trace;
  SpanPtr server;
  random_.Push(0x1111);  // server span id
  tracer.BeginServer(headers, trace, server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(server->parent_span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_TRUE(server->parent_remote);
  EXPECT_EQ(OtlpSpanFlags(*server), 0x301u);  // sampled, parent remote
  EXPECT_EQ(server->trace_state, "congo=t61rcWkgMzE");
  EXPECT_EQ(server->span_id, 0x1111u);

  SpanPtr client;
  random_.Push(0x2222);  // client span id
  tracer.BeginClient(headers, trace, client);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->parent_span_id, 0x1111u);
  EXPECT_FALSE(client->parent_remote);
  EXPECT_EQ(OtlpSpanFlags(*client), 0x101u);  // sampled, parent local (the server span)
  EXPECT_EQ(client->retry_attempt, 1u);
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000002222-01");
  EXPECT_EQ(headers.Get("tracestate"), "congo=t61rcWkgMzE");

  // A retry: a new client span, attempt 2, and the header follows it.
  SpanPtr retry;
  random_.Push(0x3333);
  tracer.BeginClient(headers, trace, retry);
  EXPECT_EQ(retry->retry_attempt, 2u);
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000003333-01");

  tracer.End(client);
  tracer.End(retry);
  tracer.End(server);
  EXPECT_EQ(server, nullptr);
  ASSERT_EQ(sink_.spans.size(), 3u);
  EXPECT_EQ(sink_.spans[0].span_id, 0x2222u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_started_total"), 3u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 3u);
}

// The server span takes the request id from the scan, before a tracestate rewrite (here: one
// too long, shortened) moves the header map's storage.
TEST_F(TracerTest, ServerSpanCarriesTheRequestId) {
  Tracer tracer = MakeTracer(100);
  const std::string value(200, 'v');
  const std::string tracestate = absl::StrCat("a=", value, ",b=", value, ",c=", value, ",d=1");
  http::HeaderMap headers{{"x-request-id", "0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11"},
                          {"traceparent", kParent},
                          {"tracestate", tracestate}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->request_id, "0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11");
  EXPECT_EQ(headers.Get("tracestate"), absl::StrCat("a=", value, ",b=", value, ",d=1"));
  EXPECT_EQ(server->trace_state, headers.Get("tracestate"));  // what went on, not what came
  http::HeaderMap without{{"traceparent", kParent}};
  SpanPtr other;
  tracer.BeginServer(without, trace, other);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->request_id, "");
}

// An edge request (no trace header) skips the scan by the header map's name filter; a sampled
// one still records its request id.
TEST_F(TracerTest, EdgeServerSpanCarriesTheRequestId) {
  Tracer tracer = MakeTracer(100);
  http::HeaderMap headers{{":path", "/"}, {"host", "a"}, {"x-request-id", "edge-id"}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->request_id, "edge-id");
  EXPECT_EQ(server->parent_span_id, 0u);
  EXPECT_FALSE(server->parent_remote);
  EXPECT_EQ(OtlpSpanFlags(*server), 0x101u);  // a root: no remote parent
  EXPECT_EQ(server->trace_state, "");
  tracer.End(server);
}

// Each header the tracer reads from a caller is seen when it comes alone among ordinary ones, in
// any case: the name filter that lets edge requests skip the scan must never hide one.
TEST_F(TracerTest, EveryCallerHeaderIsSeenAlone) {
  // BeginServer on a fresh tracer at rate 0; `server` is ended here.
  auto begin = [&](http::HeaderMap& headers,
                   absl::string_view force_header = "x-meshlet-force-trace") {
    TracingConfig config;
    config.enabled = true;
    config.sampling_percent = 0;
    config.force_sample_header = std::string(force_header);
    Tracer tracer(config, "svc", sink_, TracerStats::Create(*shard_), random_, clock_);
    RequestTrace trace;
    SpanPtr server;
    tracer.BeginServer(headers, trace, server);
    EXPECT_EQ(server != nullptr, trace.sampled);
    tracer.End(server);
    return trace;
  };
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"TraceParent", std::string(kParent)},
           {"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
           {"X-B3-Flags", "1"},
           {"x-meshlet-force-trace", "1"},
           {"x-b3-sampled", "1"}}) {
    SCOPED_TRACE(name);
    http::HeaderMap headers{{":path", "/"}, {"host", "a"}, {"user-agent", "u"}, {name, value}};
    EXPECT_TRUE(begin(headers).sampled);
  }
  // The B3 multi-header ids continue the caller's trace.
  http::HeaderMap b3{{"host", "a"},
                     {"X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"},
                     {"x-b3-spanid", "a2fb4a1d1a96d312"}};
  const RequestTrace continued = begin(b3);
  EXPECT_EQ(continued.trace_id, (TraceId{0x463ac35c9f6413adULL, 0x48485a3953bb6124ULL}));
  EXPECT_EQ(continued.parent_span_id, 0xa2fb4a1d1a96d312ULL);
  // A tracestate without a traceparent has no parent to belong to: it goes.
  http::HeaderMap tracestate{{"host", "a"}, {"TraceState", "a=1"}};
  begin(tracestate);
  EXPECT_FALSE(tracestate.Has("tracestate"));
  // The force-sample header may be x-request-id itself (every request is then recorded).
  http::HeaderMap request_id{{"host", "a"}, {"x-request-id", "1"}};
  EXPECT_TRUE(begin(request_id, "x-request-id").sampled);
}

// Span stamps are the wall clock at an anchor plus the monotonic time since: durations are
// monotonic ones, and a step of the wall clock shows once the anchor is re-read (kWallResync).
TEST_F(TracerTest, SpanTimesAreMonotonicFromAWallClockAnchor) {
  class SteppingClock final : public Clock {
   public:
    MonotonicTime Now() const override { return monotonic.Now(); }
    absl::Time WallNow() const override { return monotonic.WallNow() + step; }
    FakeClock monotonic;
    absl::Duration step;
  } clock;
  TracingConfig config;
  config.enabled = true;
  config.sampling_percent = 100;
  Tracer tracer(config, "svc", sink_, TracerStats::Create(*shard_), random_, clock);
  const int64_t wall_start = absl::ToUnixNanos(clock.WallNow());

  http::HeaderMap headers;
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->start_ns, wall_start);
  clock.monotonic.Advance(std::chrono::milliseconds(5));
  clock.step = -absl::Hours(1);  // the wall clock is set back: the span does not notice
  tracer.End(server);
  ASSERT_EQ(sink_.spans.size(), 1u);
  EXPECT_EQ(sink_.spans[0].end_ns - sink_.spans[0].start_ns, 5'000'000);

  clock.monotonic.Advance(Tracer::kWallResync);  // the anchor is re-read: the step shows
  EXPECT_EQ(tracer.WallNanos(), absl::ToUnixNanos(clock.WallNow()));
  EXPECT_EQ(tracer.WallNanos(), wall_start + 5'000'000 + 1'000'000'000 - 3'600'000'000'000);

  // A span that starts on one anchor and ends on the next, the clock set back in between: it
  // would end before it started; it ends when it started instead.
  SpanPtr long_span;
  tracer.BeginServer(headers, trace, long_span);
  ASSERT_NE(long_span, nullptr);
  clock.monotonic.Advance(Tracer::kWallResync);
  clock.step = -absl::Hours(2);
  tracer.End(long_span);
  ASSERT_EQ(sink_.spans.size(), 2u);
  EXPECT_EQ(sink_.spans[1].end_ns, sink_.spans[1].start_ns);
}

TEST_F(TracerTest, UnsampledCallerGetsNoSpanButPropagates) {
  Tracer tracer = MakeTracer(100);
  http::HeaderMap headers{{"traceparent", kUnsampledParent}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_EQ(server, nullptr);
  EXPECT_FALSE(trace.sampled);
  SpanPtr client;
  random_.Push(0xabc);
  tracer.BeginClient(headers, trace, client);
  EXPECT_EQ(client, nullptr);
  EXPECT_EQ(headers.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-00");
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 0u);
}

TEST_F(TracerTest, UnsampledRequestAllocatesNothing) {
  Tracer tracer = MakeTracer(0);
  for (bool with_parent : {false, true}) {
    http::HeaderMap headers{{":method", "GET"}, {":path", "/a"}, {"x-request-id", "abc"}};
    if (with_parent) {
      headers.Add("traceparent", kUnsampledParent);
      // Passed on as it is; only a sampled request's span would copy it.
      headers.Add("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    }
    headers.ReserveBytes(1024);  // the header map's own growth is not tracing's cost
    RequestTrace trace;
    SpanPtr server, client;
    AllocationScope allocations;
    tracer.BeginServer(headers, trace, server);
    tracer.BeginClient(headers, trace, client);
    tracer.End(client);
    tracer.End(server);
    EXPECT_EQ(allocations.count(), 0u) << "with_parent=" << with_parent;
    EXPECT_TRUE(headers.Has("traceparent"));
  }
}

// Spans come from the tracer's pool and go back to it once encoded: once the pool and the
// encoder's buffers are warm (each span has held a server's and a client's strings: they change
// roles), a sampled request allocates nothing, long strings (x-request-id) included.
TEST_F(TracerTest, SampledRequestAllocatesNothingOnceThePoolIsWarm) {
  TracingConfig config;
  config.enabled = true;
  config.sampling_percent = 100;
  EncodingSpanSink sink;
  Tracer tracer(config, "svc", sink, TracerStats::Create(*shard_), random_, clock_);
  for (int round = 0; round < 3; ++round) {
    http::HeaderMap headers{{":method", "GET"}, {":path", "/a"}};
    headers.ReserveBytes(1024);  // the header map's own growth is not tracing's cost
    RequestTrace trace;
    SpanPtr server, client;
    AllocationScope allocations;
    tracer.BeginServer(headers, trace, server);
    ASSERT_NE(server, nullptr);
    server->request_id.assign("0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11");
    server->path.assign("/a/path/longer/than/a/small/string");
    tracer.BeginClient(headers, trace, client);
    ASSERT_NE(client, nullptr);
    client->endpoint.assign("10.0.0.7:8080");
    client->method.assign("GET");
    client->cluster = "a-cluster-name-past-sso";
    tracer.End(client);
    tracer.End(server);
    if (round == 2) {
      EXPECT_EQ(allocations.count(), 0u);
    }
    EXPECT_EQ(sink.encoder.size(), 2u);
    // As the exporter does with what it sent.
    sink.Detach();
  }
}

// The worker's generator is a RealRandom, which the tracer calls directly: its ids are that
// generator's numbers, in order.
TEST_F(TracerTest, IdsComeFromTheWorkersRealRandom) {
  RealRandom generator(1234), expected(1234);
  TracingConfig config;
  config.enabled = true;
  config.sampling_percent = 0;
  Tracer tracer(config, "svc", sink_, TracerStats::Create(*shard_), generator, clock_);
  for (int i = 0; i < 3; ++i) {
    http::HeaderMap headers;
    RequestTrace trace;
    SpanPtr server, client;
    tracer.BeginServer(headers, trace, server);
    const uint64_t high = expected.Next(), low = expected.Next(), span = expected.Next();
    EXPECT_EQ(trace.trace_id, (TraceId{high, low}));
    tracer.BeginClient(headers, trace, client);
    EXPECT_EQ(headers.Get("traceparent"), absl::StrCat("00-", absl::Hex(high, absl::kZeroPad16),
                                                       absl::Hex(low, absl::kZeroPad16), "-",
                                                       absl::Hex(span, absl::kZeroPad16), "-00"));
  }
}

TEST_F(TracerTest, ForceHeaderSamples) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{{"traceparent", kUnsampledParent}, {"x-meshlet-force-trace", "1"}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_NE(server, nullptr);

  // The configured name is matched whatever its case.
  TracingConfig config;
  config.enabled = true;
  config.sampling_percent = 0;
  config.force_sample_header = "X-Debug-Trace";
  Tracer mixed_case(config, "svc", sink_, TracerStats::Create(*shard_), random_, clock_);
  http::HeaderMap forced{{"x-debug-trace", "true"}};
  SpanPtr forced_server;
  mixed_case.BeginServer(forced, trace, forced_server);
  EXPECT_NE(forced_server, nullptr);
  tracer.End(server);
  mixed_case.End(forced_server);
}

TEST_F(TracerTest, NewTraceWhenTheParentIsInvalidAndItsTracestateGoes) {
  Tracer tracer = MakeTracer(100);
  http::HeaderMap headers{
      {"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
      {"tracestate", "a=1"}};
  RequestTrace trace;
  SpanPtr server;
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
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  EXPECT_FALSE(headers.Has("tracestate"));
  ASSERT_NE(server, nullptr);  // the caller sampled
  EXPECT_EQ(server->trace_state, "");
}

// Several tracestate fields are one list: the span has it joined, as it went upstream.
TEST_F(TracerTest, ServerSpanHasTheJoinedTracestate) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap headers{
      {"traceparent", kParent}, {"tracestate", "congo=t61rcWkgMzE"}, {"tracestate", "rojo=1"}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(headers.Get("tracestate"), "congo=t61rcWkgMzE,rojo=1");
  EXPECT_EQ(server->trace_state, "congo=t61rcWkgMzE,rojo=1");
  tracer.End(server);
  ASSERT_EQ(sink_.spans.size(), 1u);
  EXPECT_EQ(sink_.spans[0].trace_state, "congo=t61rcWkgMzE,rojo=1");
}

TEST_F(TracerTest, B3CallerGetsB3InTheSameForm) {
  Tracer tracer = MakeTracer(0);
  http::HeaderMap multi{{"x-b3-traceid", "48485a3953bb6124"},
                        {"x-b3-spanid", "a2fb4a1d1a96d312"},
                        {"x-b3-sampled", "1"}};
  RequestTrace trace;
  SpanPtr server;
  random_.Push(0x10);
  tracer.BeginServer(multi, trace, server);
  SpanPtr client;
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
  SpanPtr server, client;
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
  SpanPtr server, client;
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
    SpanPtr server;
    tracer.BeginServer(headers, trace, server);
    ASSERT_NE(server, nullptr);
    tracer.End(server);
  }
  EXPECT_EQ(Counter("meshlet_tracing_spans_dropped_total", {{"reason", "queue_full"}}), 2u);
  EXPECT_EQ(sink_.spans.size(), 4u);
}

TEST(SpanEncodingTest, OtlpJsonHasIdsLinksAndAttributes) {
  Span span;
  span.trace_id = TraceId{1, 2};
  span.span_id = 3;
  span.parent_span_id = 4;
  span.kind = SpanKind::kClient;
  span.name = "GET \"x\"";
  span.start_ns = 1000;
  span.end_ns = 5000;
  span.status_code = 503;
  span.retry_attempt = 2;
  span.cluster = "backend";
  span.error = true;
  span.trace_state = "congo=\"t61\"";
  span.parent_remote = true;
  std::string out;
  EncodeOtlpJson({&span}, "svc", &out);
  EXPECT_NE(out.find(R"("traceState":"congo=\"t61\"","flags":769,"kind":3)"), std::string::npos)
      << out;
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
  EncodeZipkinJson({&span}, "svc", &out);
  EXPECT_NE(out.find(R"("id":"0000000000000003","parentId":"0000000000000004")"),
            std::string::npos);
  EXPECT_NE(out.find(R"("kind":"CLIENT","timestamp":1,"duration":4)"), std::string::npos);
  EXPECT_NE(out.find(R"("meshlet.retry_attempt":"2")"), std::string::npos);
  // Zipkin v2 has neither a tracestate nor trace flags.
  EXPECT_EQ(out.find("congo"), std::string::npos);

  out.clear();
  EncodeOtlpProto({&span}, "svc", &out);
  // ExportTraceServiceRequest.resource_spans (field 1, length-delimited) first.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], '\x0a');
  EXPECT_NE(out.find("meshlet.retry_attempt"), std::string::npos);
  // The trace id as 16 big-endian bytes.
  EXPECT_NE(out.find(std::string("\x0a\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02", 18)),
            std::string::npos);
}

// A protobuf wire-format reader, enough to take an OTLP export apart again.
struct ProtoField {
  uint32_t number = 0;
  uint64_t varint = 0;      // varint, fixed64 and fixed32 fields
  absl::string_view bytes;  // length-delimited fields
};
// Every field of `message`; fails the test (and returns what it read) on malformed input.
std::vector<ProtoField> ReadFields(absl::string_view message) {
  std::vector<ProtoField> fields;
  auto varint = [&](uint64_t* out) {
    *out = 0;
    for (int shift = 0; shift < 64 && !message.empty(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(message[0]);
      message.remove_prefix(1);
      *out |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  };
  while (!message.empty()) {
    uint64_t tag = 0;
    ProtoField field;
    if (!varint(&tag)) break;
    field.number = static_cast<uint32_t>(tag >> 3);
    switch (tag & 7) {
      case 0:
        EXPECT_TRUE(varint(&field.varint));
        break;
      case 1:
        if (message.size() < 8) {
          ADD_FAILURE() << "short fixed64";
          return fields;
        }
        std::memcpy(&field.varint, message.data(), 8);
        message.remove_prefix(8);
        break;
      case 5:
        if (message.size() < 4) {
          ADD_FAILURE() << "short fixed32";
          return fields;
        }
        std::memcpy(&field.varint, message.data(), 4);  // little-endian, as the test host
        message.remove_prefix(4);
        break;
      case 2: {
        uint64_t length = 0;
        if (!varint(&length) || length > message.size()) {
          ADD_FAILURE() << "bad length " << length;
          return fields;
        }
        field.bytes = message.substr(0, length);
        message.remove_prefix(length);
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (tag & 7);
        return fields;
    }
    fields.push_back(field);
  }
  return fields;
}
std::vector<ProtoField> FieldsNumbered(absl::string_view message, uint32_t number) {
  std::vector<ProtoField> out;
  for (const ProtoField& f : ReadFields(message)) {
    if (f.number == number) out.push_back(f);
  }
  return out;
}

// The protobuf body is sized exactly and decodes to what went in: several spans, long values
// (lengths of two and three varint bytes), a batch past 16 KiB, an error status, a set name.
TEST(SpanEncodingTest, OtlpProtoDecodesBackToTheSpans) {
  std::vector<Span> spans(60);
  for (size_t i = 0; i < spans.size(); ++i) {
    Span& span = spans[i];
    span.trace_id = TraceId{0x0102030405060708ULL, 0x1112131415161718ULL + i};
    span.span_id = 0xa1a2a3a4a5a6a7a8ULL + i;
    span.parent_span_id = i % 2 == 0 ? 0 : 0x55;
    span.kind = i % 2 == 0 ? SpanKind::kServer : SpanKind::kClient;
    span.start_ns = 1'700'000'000'000'000'000 + i;
    span.end_ns = span.start_ns + 1234;
    span.method = "GET";
    span.path = std::string(i * 5, 'p');  // up to 295 bytes
    span.cluster = "backend";
    span.status_code = 200 + static_cast<int>(i);
    span.bytes_out = uint64_t{1} << (i % 40);
    if (i == 7) {
      span.error = true;
      span.status_message = "upstream reset";
    }
    if (i == 9) span.name = "custom name";
    span.parent_remote = i % 4 == 1;
    if (i % 3 == 0) span.trace_state = absl::StrCat("congo=", std::string(i * 3, 't'));
  }
  // Spans whose length takes one byte and three (the encoder leaves room for two).
  Span bare;
  bare.trace_id = TraceId{1, 2};
  bare.span_id = 3;
  spans.push_back(bare);
  Span huge = spans[7];
  huge.status_message = std::string(20000, 'e');
  spans.push_back(huge);
  std::vector<const Span*> batch;
  for (const Span& span : spans) batch.push_back(&span);
  std::string out = "prefix";  // appended to what is there
  EncodeOtlpProto(batch, "svc", &out);
  ASSERT_EQ(out.substr(0, 6), "prefix");
  const absl::string_view body = absl::string_view(out).substr(6);
  ASSERT_GT(body.size(), 16384u);

  // Built span by span and framed in parts, as the exporter sends it: the same bytes; and a
  // frame of the first spans only is a valid message of those.
  // Built span by span and handed over in parts, as the exporter sends it: the same bytes; and
  // a batch of the first spans only is a valid message of those.
  SpanBatchEncoder encoder(ExportProtocol::kOtlpProto, "svc");
  for (const Span* span : batch) encoder.Add(*span);
  auto detach = [&](size_t count) {
    SpanBatchEncoder::Batch detached;
    encoder.Detach(count, &detached);
    EXPECT_EQ(detached.spans, count);
    const SpanBatchEncoder::Body framed = encoder.Frame(detached);
    return absl::StrCat(framed.prefix, framed.spans, framed.suffix);
  };
  std::string first_two, next_fifty_six, last_two;  // the last ones: 58, 59, bare, huge
  EncodeOtlpProto({batch[0], batch[1]}, "svc", &first_two);
  EncodeOtlpProto(absl::MakeConstSpan(batch).subspan(2, 56), "svc", &next_fifty_six);
  EncodeOtlpProto(absl::MakeConstSpan(batch).subspan(58), "svc", &last_two);
  EXPECT_EQ(detach(2), first_two);
  EXPECT_EQ(detach(56), next_fifty_six);
  EXPECT_EQ(encoder.size(), 4u);
  EXPECT_EQ(detach(4), last_two);  // all that is left: the buffers are swapped, not copied
  EXPECT_EQ(encoder.size(), 0u);
  SpanBatchEncoder whole(ExportProtocol::kOtlpProto, "svc");
  for (const Span* span : batch) whole.Add(*span);
  SpanBatchEncoder::Batch all;
  whole.Detach(whole.size(), &all);
  const SpanBatchEncoder::Body framed = whole.Frame(all);
  EXPECT_EQ(absl::StrCat(framed.prefix, framed.spans, framed.suffix), body);

  const std::vector<ProtoField> resource_spans = FieldsNumbered(body, 1);
  ASSERT_EQ(resource_spans.size(), 1u);
  EXPECT_EQ(ReadFields(body).size(), 1u);
  const std::vector<ProtoField> resource = FieldsNumbered(resource_spans[0].bytes, 1);
  ASSERT_EQ(resource.size(), 1u);
  const ProtoField service = FieldsNumbered(resource[0].bytes, 1).at(0);
  EXPECT_EQ(FieldsNumbered(service.bytes, 1).at(0).bytes, "service.name");
  EXPECT_EQ(FieldsNumbered(FieldsNumbered(service.bytes, 2).at(0).bytes, 1).at(0).bytes, "svc");
  const std::vector<ProtoField> scope_spans = FieldsNumbered(resource_spans[0].bytes, 2);
  ASSERT_EQ(scope_spans.size(), 1u);
  const ProtoField scope = FieldsNumbered(scope_spans[0].bytes, 1).at(0);
  EXPECT_EQ(FieldsNumbered(scope.bytes, 1).at(0).bytes, "meshlet");
  const std::vector<ProtoField> encoded = FieldsNumbered(scope_spans[0].bytes, 2);
  ASSERT_EQ(encoded.size(), spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    SCOPED_TRACE(i);
    const Span& span = spans[i];
    const absl::string_view message = encoded[i].bytes;
    std::string trace_id(16, '\0'), span_id(8, '\0');
    for (int b = 0; b < 8; ++b) {
      trace_id[b] = static_cast<char>(span.trace_id.high >> (56 - 8 * b));
      trace_id[8 + b] = static_cast<char>(span.trace_id.low >> (56 - 8 * b));
      span_id[b] = static_cast<char>(span.span_id >> (56 - 8 * b));
    }
    EXPECT_EQ(FieldsNumbered(message, 1).at(0).bytes, trace_id);
    EXPECT_EQ(FieldsNumbered(message, 2).at(0).bytes, span_id);
    EXPECT_EQ(FieldsNumbered(message, 4).size(), span.parent_span_id != 0 ? 1u : 0u);
    const std::vector<ProtoField> trace_state = FieldsNumbered(message, 3);
    ASSERT_EQ(trace_state.size(), span.trace_state.empty() ? 0u : 1u);
    if (!span.trace_state.empty()) {
      EXPECT_EQ(trace_state[0].bytes, span.trace_state);
    }
    EXPECT_EQ(FieldsNumbered(message, 16).at(0).varint, span.parent_remote ? 0x301u : 0x101u);
    const std::string name =
        !span.name.empty()
            ? span.name
            : absl::StrCat(span.method, " ",
                           span.kind == SpanKind::kServer ? span.path : span.cluster);
    EXPECT_EQ(FieldsNumbered(message, 5).at(0).bytes, name);
    EXPECT_EQ(FieldsNumbered(message, 6).at(0).varint, span.kind == SpanKind::kServer ? 2u : 3u);
    EXPECT_EQ(FieldsNumbered(message, 7).at(0).varint, static_cast<uint64_t>(span.start_ns));
    EXPECT_EQ(FieldsNumbered(message, 8).at(0).varint, static_cast<uint64_t>(span.end_ns));
    std::vector<std::pair<std::string, std::string>> expected, decoded;
    ForEachAttribute(
        span,
        [&](absl::string_view key, absl::string_view value) {
          expected.emplace_back(key, absl::StrCat("s:", value));
        },
        [&](absl::string_view key, int64_t value) {
          expected.emplace_back(key, absl::StrCat("i:", value));
        });
    for (const ProtoField& attribute : FieldsNumbered(message, 9)) {
      const absl::string_view any = FieldsNumbered(attribute.bytes, 2).at(0).bytes;
      const std::vector<ProtoField> value = ReadFields(any);
      ASSERT_EQ(value.size(), 1u);
      decoded.emplace_back(FieldsNumbered(attribute.bytes, 1).at(0).bytes,
                           value[0].number == 1 ? absl::StrCat("s:", value[0].bytes)
                                                : absl::StrCat("i:", value[0].varint));
    }
    EXPECT_EQ(decoded, expected);
    const std::vector<ProtoField> status = FieldsNumbered(message, 15);
    ASSERT_EQ(status.size(), span.error ? 1u : 0u);
    if (span.error) {
      EXPECT_EQ(FieldsNumbered(status[0].bytes, 2).at(0).bytes, span.status_message);
      EXPECT_EQ(FieldsNumbered(status[0].bytes, 3).at(0).varint, 2u);
    }
  }
}

// The JSON forms framed from part of the batch: the list's commas stay right.
TEST(SpanEncodingTest, JsonFramesOfPartOfTheBatchAreWholeDocuments) {
  for (ExportProtocol protocol : {ExportProtocol::kOtlpJson, ExportProtocol::kZipkin}) {
    SpanBatchEncoder encoder(protocol, "svc");
    std::vector<Span> spans(3);
    for (size_t i = 0; i < spans.size(); ++i) {
      spans[i].span_id = i + 1;
      spans[i].method = "GET";
      spans[i].path = "/a";
      encoder.Add(spans[i]);
    }
    auto detach = [&](size_t count) {
      SpanBatchEncoder::Batch batch;
      encoder.Detach(count, &batch);
      const SpanBatchEncoder::Body body = encoder.Frame(batch);
      return absl::StrCat(body.prefix, body.spans, body.suffix);
    };
    std::string expected;
    EncodeSpans(protocol, {&spans[0], &spans[1]}, "svc", &expected);
    EXPECT_EQ(detach(2), expected);
    expected.clear();
    EncodeSpans(protocol, {}, "svc", &expected);
    EXPECT_EQ(detach(0), expected);
    expected.clear();
    EncodeSpans(protocol, {&spans[2]}, "svc", &expected);
    EXPECT_EQ(detach(1), expected);
    EXPECT_EQ(expected.back(), protocol == ExportProtocol::kZipkin ? ']' : '}');
    EXPECT_EQ(expected.find(",]"), std::string::npos);
  }
}

// A span reset for reuse encodes exactly as a new one: nothing of its last request leaks.
TEST(SpanTest, ResetSpanIsANewSpan) {
  Span used;
  used.trace_id = TraceId{1, 2};
  used.span_id = 3;
  used.parent_span_id = 4;
  used.kind = SpanKind::kClient;
  used.name = "n";
  used.start_ns = 1'000'000'000;
  used.end_ns = 2'000'000'000;
  used.error = true;
  used.status_message = "m";
  used.method = "GET";
  used.path = "/p";
  used.status_code = 503;
  used.protocol = "HTTP/1.1";
  used.peer_identity = "spiffe://td/ns/a/sa/b";
  used.route = "r";
  used.cluster = "c";
  used.endpoint = "10.0.0.1:80";
  used.response_flags = "UF";
  used.bytes_in = 5;
  used.bytes_out = 6;
  used.upstream_ready_us = 7;
  used.retry_attempt = 2;
  used.request_id = "id";
  used.Reset();
  const Span fresh;
  std::string reset_body, fresh_body;
  EncodeOtlpJson({&used}, "svc", &reset_body);
  EncodeOtlpJson({&fresh}, "svc", &fresh_body);
  EXPECT_EQ(reset_body, fresh_body);
  EXPECT_EQ(used.kind, fresh.kind);
  EXPECT_EQ(used.upstream_ready_us, fresh.upstream_ready_us);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

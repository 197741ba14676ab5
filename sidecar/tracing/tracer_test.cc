#include "sidecar/tracing/tracer.h"

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

  Tracer MakeTracer(double percent, uint32_t error_spans_per_second = 10) {
    TracingConfig config;
    config.enabled = true;
    config.sampling_percent = percent;
    config.error_spans_per_second = error_spans_per_second;
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

// A request the proxy failed that was not sampled still exports its server span (an error span,
// not sampled in its OTLP flags), so it can be explained; with one attempt the span takes that
// attempt's client span id, the parent its upstream saw. At most error_spans_per_second a second.
TEST_F(TracerTest, UnsampledFailuresGetErrorSpansWithinTheirRate) {
  Tracer tracer = MakeTracer(100, /*error_spans_per_second=*/2);
  http::HeaderMap headers{{"traceparent", kUnsampledParent}, {"x-request-id", "req-9"}};
  RequestTrace trace;
  SpanPtr server;
  tracer.BeginServer(headers, trace, server);
  ASSERT_EQ(server, nullptr);
  SpanPtr client;
  random_.Push(0xabc);  // the attempt's client span id
  const uint64_t attempt = tracer.BeginClient(headers, trace, client);
  EXPECT_EQ(attempt, 0xabcu);  // returned unsampled too: the decision record keeps it

  SpanPtr error = tracer.BeginErrorSpan(&headers, trace, clock_.Now(), attempt);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(error->span_id, 0xabcu);  // folded: the parent the upstream saw
  EXPECT_EQ(error->parent_span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(error->kind, SpanKind::kServer);
  EXPECT_EQ(error->request_id, "req-9");
  EXPECT_FALSE(error->sampled);
  EXPECT_EQ(OtlpSpanFlags(*error), 0x300u);  // not sampled, parent remote
  tracer.End(error);
  ASSERT_EQ(sink_.spans.size(), 1u);

  // Two attempts: the span has an id of its own.
  random_.Push(0xdef);
  tracer.BeginClient(headers, trace, client);
  random_.Push(0x5555);
  error = tracer.BeginErrorSpan(&headers, trace, clock_.Now(), /*single_attempt_span_id=*/0xdef);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->span_id, 0x5555u);
  tracer.End(error);
  // The bucket (2 a second) is empty now: the third is dropped and counted, until it refills.
  EXPECT_EQ(tracer.BeginErrorSpan(&headers, trace, clock_.Now(), 0), nullptr);
  EXPECT_EQ(Counter("meshlet_tracing_error_spans_total"), 2u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_dropped_total", {{"reason", "error_rate"}}), 1u);
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 0u);
  clock_.Advance(std::chrono::milliseconds(500));
  error = tracer.BeginErrorSpan(&headers, trace, clock_.Now(), 0);
  EXPECT_NE(error, nullptr);
  tracer.End(error);
  EXPECT_EQ(tracer.BeginErrorSpan(&headers, trace, clock_.Now(), 0), nullptr);

  // A B3 caller's upstream was told this hop's server span id as its parent: the span keeps it.
  clock_.Advance(std::chrono::seconds(1));
  http::HeaderMap b3{{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"}};
  RequestTrace b3_trace;
  random_.Push(0x6666);  // the server span id (B3's parent id)
  tracer.BeginServer(b3, b3_trace, server);
  random_.Push(0x7777);  // the client span id
  const uint64_t b3_attempt = tracer.BeginClient(b3, b3_trace, client);
  error = tracer.BeginErrorSpan(&b3, b3_trace, clock_.Now(), b3_attempt);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->span_id, 0x6666u);
  tracer.End(error);

  // 0: none at all.
  Tracer off = MakeTracer(100, /*error_spans_per_second=*/0);
  EXPECT_EQ(off.BeginErrorSpan(&headers, trace, clock_.Now(), 0), nullptr);
}

// A request refused before its trace began (authorization, a listener rate limit, shed, an
// unknown destination) has no trace yet: the caller's context is read then, without touching the
// headers. A sampled caller's request gets an ordinary span, whatever the error-span rate.
TEST_F(TracerTest, ARequestRefusedBeforeItsTraceBeganContinuesTheCallersTrace) {
  Tracer tracer = MakeTracer(0, /*error_spans_per_second=*/0);
  http::HeaderMap headers{{"traceparent", kParent}};
  RequestTrace trace;
  random_.Push(0x4444);  // the span's id
  SpanPtr span = tracer.BeginErrorSpan(&headers, trace, clock_.Now(), 0);
  ASSERT_NE(span, nullptr);
  EXPECT_TRUE(trace.active());
  EXPECT_TRUE(trace.sampled);
  EXPECT_TRUE(span->sampled);
  EXPECT_EQ(span->trace_id.low, 0xa3ce929d0e0e4736ULL);
  EXPECT_EQ(span->parent_span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(span->span_id, 0x4444u);
  EXPECT_EQ(headers.Get("traceparent"), kParent);  // left alone
  tracer.End(span);
  EXPECT_EQ(Counter("meshlet_tracing_spans_sampled_total"), 1u);

  // No caller context and nothing sampled at 0 %: a new trace, and no error span at rate 0.
  http::HeaderMap none;
  RequestTrace fresh;
  EXPECT_EQ(tracer.BeginErrorSpan(&none, fresh, clock_.Now(), 0), nullptr);
  EXPECT_TRUE(fresh.active());
  EXPECT_FALSE(fresh.sampled);
  // Without headers at all (a request refused before they were kept).
  RequestTrace bare;
  EXPECT_EQ(tracer.BeginErrorSpan(nullptr, bare, clock_.Now(), 0), nullptr);
  EXPECT_TRUE(bare.active());
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

// The peer attributes of a CLIENT span: the service an outbound cluster names (as its sidecar
// names itself), this service for the local application, a static cluster's own name.
TEST(SpanPeerTest, PeerServiceFromTheCluster) {
  EXPECT_EQ(PeerService("outbound|9080||reviews.default", "me.default"), "reviews.default");
  EXPECT_EQ(PeerService("outbound|9080|version=v2|reviews.default", "me.default"),
            "reviews.default");
  EXPECT_EQ(PeerService("outbound|9080||", "me.default"), "");
  EXPECT_EQ(PeerService("inbound|8080", "me.default"), "me.default");
  EXPECT_EQ(PeerService("inbound", "me.default"), "me.default");
  EXPECT_EQ(PeerService("backend", "me.default"), "backend");
  EXPECT_EQ(PeerService("", "me.default"), "");
}

TEST(SpanPeerTest, ServerAddressAndPortFromTheAuthority) {
  struct Case {
    const char* authority;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : std::vector<Case>{{"products", "products", 0},
                                         {"products.default:8080", "products.default", 8080},
                                         {"10.0.0.7:80", "10.0.0.7", 80},
                                         {"[fd00::5]:9080", "fd00::5", 9080},
                                         {"[fd00::5]", "fd00::5", 0},
                                         {"fd00::5", "fd00::5", 0},
                                         {"a:99999", "a", 0},
                                         {"a:x", "a", 0},
                                         {"", "", 0}}) {
    SCOPED_TRACE(c.authority);
    Span span;
    span.server_port = 1;
    SetServerAuthority(span, c.authority);
    EXPECT_EQ(span.server_host, c.host);
    EXPECT_EQ(span.server_port, c.port);
  }
}

// Outbound, the request's span is the call to the next hop (CLIENT) unless its attempts have
// CLIENT spans of their own under it; inbound it is always SERVER.
TEST(SpanPeerTest, RequestSpanKindByDirection) {
  EXPECT_EQ(RequestSpanKind(/*outbound=*/true, /*attempts_exported=*/false), SpanKind::kClient);
  EXPECT_EQ(RequestSpanKind(true, true), SpanKind::kServer);
  EXPECT_EQ(RequestSpanKind(false, false), SpanKind::kServer);
  EXPECT_EQ(RequestSpanKind(false, true), SpanKind::kServer);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

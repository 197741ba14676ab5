// Per-request cost of tracing on a worker: the server span decision at the connection manager,
// one client span (traceparent written) at the router, and the ends, for an unsampled request
// (the 99 % case at the default rate), a sampled one (spans filled and encoded into the batch, as
// the worker's exporter does), and a request
// from a caller that sent a sampled traceparent and tracestate.
// bazel run -c opt //sidecar/tracing:tracer_benchmark

#include <vector>

#include "benchmark/benchmark.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/http/header_map.h"
#include "common/stats/stats.h"
#include "sidecar/tracing/recording_span_sink.h"
#include "sidecar/tracing/span_encoding.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::tracing {
namespace {

void RunRequests(benchmark::State& state, double percent, bool with_parent) {
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  EncodingSpanSink sink;
  RealRandom random;
  TracingConfig config;
  config.sampling_percent = percent;
  Tracer tracer(config, "svc", sink, TracerStats::Create(*shard), random, RealClock::Get());
  http::HeaderMap base{{":method", "GET"},
                       {":path", "/api/items?page=2"},
                       {":authority", "backend"},
                       {"user-agent", "bench"},
                       {"x-request-id", "0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11"}};
  if (with_parent) {
    base.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    base.Add("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  }
  for (auto _ : state) {
    http::HeaderMap headers = base;
    RequestTrace trace;
    SpanPtr server;
    tracer.BeginServer(headers, trace, server);
    SpanPtr client;
    tracer.BeginClient(headers, trace, client);
    if (client != nullptr) {
      client->cluster = "backend";
      client->endpoint = "10.0.0.7:8080";
      client->status_code = 200;
    }
    tracer.End(client);
    if (server != nullptr) {
      server->route = "items";
      server->status_code = 200;
    }
    tracer.End(server);
    // As the exporter does once it sent them.
    if (sink.encoder.size() >= 512) sink.Detach();
    benchmark::DoNotOptimize(headers);
  }
}

// The header map copy alone, to subtract.
void BM_HeaderCopyOnly(benchmark::State& state) {
  http::HeaderMap base{{":method", "GET"},
                       {":path", "/api/items?page=2"},
                       {":authority", "backend"},
                       {"user-agent", "bench"},
                       {"x-request-id", "0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11"}};
  for (auto _ : state) {
    http::HeaderMap headers = base;
    benchmark::DoNotOptimize(headers);
  }
}
BENCHMARK(BM_HeaderCopyOnly);

void BM_Unsampled(benchmark::State& state) { RunRequests(state, 0, false); }
BENCHMARK(BM_Unsampled);
void BM_Sampled(benchmark::State& state) { RunRequests(state, 100, false); }
BENCHMARK(BM_Sampled);
void BM_SampledParentWithTracestate(benchmark::State& state) { RunRequests(state, 0, true); }
BENCHMARK(BM_SampledParentWithTracestate);

// A worker's encoding work, per span of a 512-span batch.
void BM_EncodeBatch(benchmark::State& state) {
  std::vector<Span> spans(512);
  std::vector<const Span*> batch;
  for (Span& span : spans) {
    batch.push_back(&span);
    span.trace_id = TraceId{0x4bf92f3577b34da6ULL, 0xa3ce929d0e0e4736ULL};
    span.span_id = 0x00f067aa0ba902b7ULL;
    span.parent_span_id = 0x1234;
    span.name = "GET /api/items";
    span.start_ns = absl::ToUnixNanos(absl::Now());
    span.end_ns = span.start_ns + 3'000'000;
    span.method = "GET";
    span.path = "/api/items";
    span.status_code = 200;
    span.route = "items";
    span.cluster = "backend";
    span.endpoint = "10.0.0.7:8080";
    span.bytes_out = 512;
    span.request_id = "0f8e6f3e-2c1a-4d4b-9a55-1c6f0e7d2b11";
  }
  std::string body;
  for (auto _ : state) {
    body.clear();
    switch (state.range(0)) {
      case 0:
        EncodeOtlpJson(batch, "svc", &body);
        break;
      case 1:
        EncodeOtlpProto(batch, "svc", &body);
        break;
      default:
        EncodeZipkinJson(batch, "svc", &body);
    }
    benchmark::DoNotOptimize(body);
  }
  state.SetItemsProcessed(state.iterations() * batch.size());
}
BENCHMARK(BM_EncodeBatch)->Arg(0)->Arg(1)->Arg(2);

}  // namespace
}  // namespace meshlet::sidecar::tracing

// The cost of one span export as the collector handles it: an OTLP protobuf body of `range(0)`
// spans of one trace (a long request's spans, or a sidecar's batch of them) parsed, stamped and
// added to the trace store. Each iteration starts from an empty store (its set-up not timed), so
// every span is accepted.

#include <benchmark/benchmark.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "control-plane/telemetry/collector.h"
#include "control-plane/telemetry/otlp_trace.pb.h"
#include "control-plane/telemetry/receivers.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {
namespace {

namespace otlp = ::meshlet::telemetry::otlp;

std::string Bytes(uint64_t value, size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size && i < 8; ++i)
    out[size - 1 - i] = static_cast<char>(value >> (8 * i));
  return out;
}

// One resource ("frontend.default") with `spans` spans of one trace, each the child of the one
// before, with the attributes a sidecar's server span carries.
std::string ExportBody(int spans) {
  otlp::ExportTraceServiceRequest request;
  otlp::ResourceSpans* resource = request.add_resource_spans();
  otlp::KeyValue* service = resource->mutable_resource()->add_attributes();
  service->set_key("service.name");
  service->mutable_value()->set_string_value("frontend.default");
  otlp::ScopeSpans* scope = resource->add_scope_spans();
  for (int i = 0; i < spans; ++i) {
    otlp::Span* span = scope->add_spans();
    span->set_trace_id(Bytes(0x1234, 16));
    span->set_span_id(Bytes(1000 + i, 8));
    if (i > 0) span->set_parent_span_id(Bytes(1000 + i - 1, 8));
    span->set_name(absl::StrCat("GET /items/", i % 10));
    span->set_kind(2);
    span->set_start_time_unix_nano(1700000000000000000ull + i * 1000ull);
    span->set_end_time_unix_nano(1700000000000000000ull + i * 1000ull + 500000ull);
    for (const auto& [key, value] :
         {std::pair<const char*, std::string>{"http.method", "GET"},
          {"http.status_code", "200"},
          {"upstream_cluster", "outbound|8080||backend.default.svc.cluster.local"},
          {"meshlet.request_id", absl::StrCat("req-", i)}}) {
      otlp::KeyValue* attribute = span->add_attributes();
      attribute->set_key(key);
      attribute->mutable_value()->set_string_value(value);
    }
  }
  return request.SerializeAsString();
}

void BM_TraceStoreAdd(benchmark::State& state) {
  absl::StatusOr<std::vector<OtlpResourceSpans>> parsed =
      ParseOtlpProtobufResources(ExportBody(static_cast<int>(state.range(0))));
  CHECK(parsed.ok()) << parsed.status().message();
  for (auto _ : state) {
    state.PauseTiming();
    TraceStore store;
    std::vector<SpanRecord> spans = (*parsed)[0].spans;
    state.ResumeTiming();
    AddResult result = store.Add(std::move(spans));
    if (result.accepted != static_cast<size_t>(state.range(0))) state.SkipWithError("rejected");
    state.PauseTiming();
    {
      TraceStore gone = std::move(store);  // destroyed untimed
    }
    state.ResumeTiming();
  }
}
BENCHMARK(BM_TraceStoreAdd)->Arg(10)->Arg(100)->Arg(900)->Unit(benchmark::kMicrosecond);

void BM_SpanExport(benchmark::State& state) {
  const std::string body = ExportBody(static_cast<int>(state.range(0)));
  const VerifiedSource source{.service = "frontend.default",
                              .node_id = "frontend-0.default",
                              .identity = "spiffe://cluster.local/ns/default/sa/frontend"};
  for (auto _ : state) {
    state.PauseTiming();
    auto collector = std::make_unique<Collector>(TraceStoreLimits{}, nullptr);
    state.ResumeTiming();
    absl::StatusOr<std::vector<OtlpResourceSpans>> parsed = ParseOtlpProtobufResources(body);
    if (!parsed.ok()) state.SkipWithError(std::string(parsed.status().message()).c_str());
    const std::vector<std::optional<VerifiedSource>> sources(parsed->size(), source);
    AddResult result = collector->AddExport(*std::move(parsed), sources);
    if (result.accepted != static_cast<size_t>(state.range(0))) state.SkipWithError("rejected");
    state.PauseTiming();
    collector.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_SpanExport)->Arg(10)->Arg(100)->Arg(900)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet::controlplane::telemetry

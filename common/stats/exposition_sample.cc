// Prints a representative Prometheus exposition to stdout for promtool_test: every metric type,
// labelled and unlabelled series, label values that need escaping, multi-line help, a histogram
// recorded in microseconds and exposed in seconds, an empty histogram, and values merged from
// several shards (one of them already destroyed); then the process metrics (process_metrics.h).

#include <cstdio>
#include <memory>

#include "common/base/logging.h"
#include "common/stats/exposition.h"
#include "common/stats/process_metrics.h"
#include "common/stats/stats.h"

namespace meshlet {
namespace {

int Main() {
  StatsRegistry registry;
  auto worker_a = registry.CreateShard();
  auto worker_b = registry.CreateShard();

  for (StatsShard* shard : {worker_a.get(), worker_b.get()}) {
    for (const char* cluster : {"backend", "weird \"quoted\" \\ name\nline"}) {
      for (const char* code_class : {"2xx", "5xx"}) {
        auto rq = shard->RegisterCounter("meshlet_upstream_rq_total",
                                         "Upstream requests by cluster and response class.",
                                         {{"cluster", cluster}, {"code_class", code_class}});
        CHECK_OK(rq.status());
        rq->Inc(code_class[0] == '2' ? 100 : 3);
      }
      auto latency = shard->RegisterHistogram(
          "meshlet_upstream_rq_duration_seconds",
          "Upstream request latency, from first byte sent to last byte received.",
          {{"cluster", cluster}}, {.bounds = DefaultHistogramBounds(), .exposition_divisor = 1e6});
      CHECK_OK(latency.status());
      for (uint64_t us = 7; us < 2000000; us = us * 3 / 2 + 1) latency->Record(us);
    }
    auto active = shard->RegisterGauge("meshlet_downstream_cx_active",
                                       "Open downstream connections.\nSummed over workers.");
    CHECK_OK(active.status());
    active->Add(5);
  }
  auto sizes =
      worker_a->RegisterHistogram("meshlet_downstream_rq_body_bytes", "Request body sizes.", {},
                                  {.bounds = {0, 1024, 65536, 1048576}});
  CHECK_OK(sizes.status());
  for (uint64_t bytes : {0, 10, 1024, 1025, 70000, 5000000}) sizes->Record(bytes);
  auto empty = registry.RegisterHistogram("meshlet_upstream_rq_retry_backoff_seconds",
                                          "Retry backoff.", {}, {.exposition_divisor = 1e6});
  CHECK_OK(empty.status());
  auto version = registry.shared_shard().RegisterGauge(
      "meshlet_config_applied_version", "Version of the applied config.", {}, GaugeMerge::kGlobal);
  CHECK_OK(version.status());
  version->Set(17);
  worker_b.reset();  // its contribution stays

  ProcessMetrics process(registry);
  std::string text = FormatPrometheus(registry.Snapshot());
  process.AppendPrometheus(text);
  std::fwrite(text.data(), 1, text.size(), stdout);
  worker_a.reset();
  return 0;
}

}  // namespace
}  // namespace meshlet

int main() { return meshlet::Main(); }

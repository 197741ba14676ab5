// The cost of recording one golden-metrics report as the control plane does for every report a
// sidecar sends or another replica forwards: 1 000 sidecars of 1 000 services, each reporting
// three busy clusters (~10 latency buckets each) every 10 s of fake time. range(0) is the
// history's edge limit: 0 keeps no history (every delta dropped at the limit), so the pair shows
// what the history adds to Record.
//
//   bazel run --config=opt //control-plane/telemetry:golden_metrics_benchmark

#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/stats/histogram_buckets.h"
#include "control-plane/telemetry/golden_metrics.h"

namespace meshlet::controlplane::telemetry {
namespace {

void BM_RecordReport(benchmark::State& state) {
  constexpr int kSidecars = 1000, kClusters = 3;
  FakeClock clock;
  GoldenMetricsLimits limits;
  limits.history.max_series = static_cast<size_t>(state.range(0));
  GoldenMetrics golden(clock, limits, nullptr);
  std::vector<metrics::v1::MetricsReport> reports(kSidecars);
  for (int s = 0; s < kSidecars; ++s) {
    metrics::v1::MetricsReport& r = reports[s];
    r.set_node_id(absl::StrCat("sidecar-", s));
    r.set_service(absl::StrCat("service-", s));
    r.set_namespace_("default");
    r.set_instance(1);
    for (int c = 1; c <= kClusters; ++c) {
      metrics::v1::ClusterStats* cluster = r.add_clusters();
      cluster->set_cluster(absl::StrCat("outbound|80||service-", (s + c) % kSidecars, ".default"));
      for (int k = 0; k < 10; ++k) {
        cluster->mutable_success()->add_bucket(static_cast<uint32_t>(
            HistogramBuckets::Index(static_cast<uint64_t>(2000 * std::pow(1.29, k)))));
        cluster->mutable_success()->add_count(0);
      }
    }
  }
  int64_t round = 0;
  size_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();
    if (next == reports.size()) {
      next = 0;
      ++round;
      clock.Advance(std::chrono::seconds(10));
    }
    metrics::v1::MetricsReport& r = reports[next];
    r.set_time_unix_nano(absl::ToUnixNanos(clock.WallNow()) + static_cast<int64_t>(next));
    for (metrics::v1::ClusterStats& c : *r.mutable_clusters()) {
      for (int k = 0; k < c.success().count_size(); ++k) {
        c.mutable_success()->set_count(k, c.success().count(k) + 5 + (k + round) % 7);
      }
    }
    state.ResumeTiming();
    benchmark::DoNotOptimize(golden.Record(r));
    ++next;
  }
  state.counters["history_edges"] = static_cast<double>(golden.history().series_count());
}
BENCHMARK(BM_RecordReport)->Arg(0)->Arg(10000);

}  // namespace
}  // namespace meshlet::controlplane::telemetry

// Cost of recording on the hot path and of exposition at admin scale.
//   bazel run -c opt //common/stats:stats_benchmark

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/base/logging.h"
#include "common/stats/exposition.h"
#include "common/stats/process_metrics.h"
#include "common/stats/stats.h"

namespace meshlet {
namespace {

void BM_CounterInc(benchmark::State& state) {
  StatsRegistry registry;
  auto shard = registry.CreateShard();
  Counter counter = *shard->RegisterCounter("meshlet_rq_total", "h");
  for (auto _ : state) {
    counter.Inc();
    benchmark::ClobberMemory();
  }
  shard.reset();
}
BENCHMARK(BM_CounterInc);

// The same counter through the multi-writer shard (locked add), for comparison.
void BM_SharedCounterInc(benchmark::State& state) {
  StatsRegistry registry;
  Counter counter = *registry.shared_shard().RegisterCounter("meshlet_rq_total", "h");
  for (auto _ : state) {
    counter.Inc();
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_SharedCounterInc);

void BM_GaugeIncDec(benchmark::State& state) {
  StatsRegistry registry;
  auto shard = registry.CreateShard();
  Gauge gauge = *shard->RegisterGauge("meshlet_rq_active", "h");
  for (auto _ : state) {
    gauge.Inc();
    benchmark::ClobberMemory();
    gauge.Dec();
    benchmark::ClobberMemory();
  }
  shard.reset();
}
BENCHMARK(BM_GaugeIncDec);

void BM_HistogramRecord(benchmark::State& state) {
  StatsRegistry registry;
  auto shard = registry.CreateShard();
  Histogram histogram = *shard->RegisterHistogram("meshlet_rq_duration_seconds", "h", {},
                                                  {.exposition_divisor = 1e6});
  uint64_t value = 1;
  for (auto _ : state) {
    histogram.Record(value);
    // Spread over ~1 µs .. 1 s so that bucket choice and split checks vary like real latency.
    value = value * 2862933555777941757ULL + 3037000493ULL;
    value = (value >> 44) + 1;
    benchmark::ClobberMemory();
  }
  shard.reset();
}
BENCHMARK(BM_HistogramRecord);

// Counters incremented by several threads at once, each on its own shard: should scale flat.
void BM_CounterIncThreads(benchmark::State& state) {
  static StatsRegistry* registry = new StatsRegistry();
  static CounterId id = *registry->RegisterCounter("meshlet_rq_total", "h");
  auto shard = registry->CreateShard();
  Counter counter = shard->Get(id);
  for (auto _ : state) {
    counter.Inc();
    benchmark::ClobberMemory();
  }
  shard.reset();
}
BENCHMARK(BM_CounterIncThreads)->Threads(1)->Threads(4);

// 10 000 series (9 000 counters, 1 000 histograms) over 4 shards: snapshot, then render.
class ExpositionFixture {
 public:
  ExpositionFixture() {
    for (int s = 0; s < 4; ++s) shards_.push_back(registry_.CreateShard());
    for (int i = 0; i < 10000; ++i) {
      const std::string cluster = absl::StrCat("cluster_", i / 10);
      for (auto& shard : shards_) {
        if (i % 10 == 0) {
          Histogram h =
              *shard->RegisterHistogram("meshlet_upstream_rq_duration_seconds", "h",
                                        {{"cluster", cluster}}, {.exposition_divisor = 1e6});
          for (uint64_t v = 50; v < 2000000; v = v * 5 / 4) h.Record(v);
        } else {
          Counter c = *shard->RegisterCounter(absl::StrCat("meshlet_upstream_rq", i % 10, "_total"),
                                              "h", {{"cluster", cluster}});
          c.Inc(static_cast<uint64_t>(i));
        }
      }
    }
  }
  ~ExpositionFixture() { shards_.clear(); }
  StatsRegistry& registry() { return registry_; }

 private:
  StatsRegistry registry_;
  std::vector<std::unique_ptr<StatsShard>> shards_;
};

void BM_Snapshot10k(benchmark::State& state) {
  ExpositionFixture fixture;
  for (auto _ : state) benchmark::DoNotOptimize(fixture.registry().Snapshot());
}
BENCHMARK(BM_Snapshot10k)->Unit(benchmark::kMillisecond);

void BM_Prometheus10k(benchmark::State& state) {
  ExpositionFixture fixture;
  const StatsSnapshot snapshot = fixture.registry().Snapshot();
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = FormatPrometheus(snapshot);
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Prometheus10k)->Unit(benchmark::kMillisecond);

void BM_Text10k(benchmark::State& state) {
  ExpositionFixture fixture;
  const StatsSnapshot snapshot = fixture.registry().Snapshot();
  for (auto _ : state) benchmark::DoNotOptimize(FormatText(snapshot));
}
BENCHMARK(BM_Text10k)->Unit(benchmark::kMillisecond);

// What the process metrics add to one scrape: /proc/self/stat read and parsed, /proc/self/fd
// listed (`fds` extra descriptors open), six families formatted.
void BM_ProcessMetrics(benchmark::State& state) {
  StatsRegistry registry;
  ProcessMetrics process(registry);
  std::vector<int> fds;
  for (int64_t i = 0; i < state.range(0); ++i) fds.push_back(::dup(2));
  std::string text;
  for (auto _ : state) {
    text.clear();
    process.AppendPrometheus(text);
    benchmark::DoNotOptimize(text);
  }
  for (int fd : fds) ::close(fd);
  state.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_ProcessMetrics)->Arg(0)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet

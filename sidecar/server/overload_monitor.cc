#include "sidecar/server/overload_monitor.h"

#include <unistd.h>

#include <cstdio>
#include <utility>

#include "common/base/logging.h"
#include "common/base/malloc_tuning.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::server {

OverloadMonitor::OverloadMonitor(event::Loop& loop, StatsShard& shared_stats,
                                 uint64_t max_rss_bytes, Duration interval, MemoryProbe probe)
    : loop_(loop), max_rss_bytes_(max_rss_bytes), interval_(interval), probe_(std::move(probe)) {
  if (max_rss_bytes_ == 0) return;
  if (!probe_.read_rss) probe_.read_rss = &OverloadMonitor::ReadRss;
  if (!probe_.release_free_memory) probe_.release_free_memory = &ReleaseFreeMemory;
  pressure_gauge_ = OrDiscard(
      shared_stats.RegisterGauge(
          "meshlet_overload_memory_pressure",
          "1 while resident memory is above --overload-max-rss-mb and new requests are shed.", {},
          GaugeMerge::kGlobal),
      "meshlet_overload_memory_pressure");
  rss_gauge_ = OrDiscard(shared_stats.RegisterGauge("meshlet_overload_rss_bytes",
                                                    "Resident memory at the last overload check.",
                                                    {}, GaugeMerge::kGlobal),
                         "meshlet_overload_rss_bytes");
  trims_ = OrDiscard(shared_stats.RegisterCounter("meshlet_overload_malloc_trims_total",
                                                  "Times free malloc memory was given back because "
                                                  "RSS was above --overload-max-rss-mb (or, "
                                                  "while shedding, above 90% of it)."),
                     "meshlet_overload_malloc_trims_total");
}

uint64_t OverloadMonitor::ReadRss() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

void OverloadMonitor::Start() {
  if (max_rss_bytes_ == 0 || timer_ != nullptr) return;
  timer_ = std::make_unique<event::Timer>(loop_, [this] { Check(); });
  timer_->EnableRepeating(interval_);
  Check();
}

void OverloadMonitor::Check() {
  if (max_rss_bytes_ == 0) return;
  const bool was = pressure_.load(std::memory_order_relaxed);
  // The level RSS must stay above to shed: the limit to start, 90% of it to go on.
  const uint64_t level = was ? max_rss_bytes_ / 10 * 9 : max_rss_bytes_;
  uint64_t rss = probe_.read_rss();
  if (rss > level) {
    // Free memory malloc keeps counts in RSS but is no load: give it back before deciding. While
    // shedding too, or memory malloc merely keeps would hold shedding on after the load is gone.
    probe_.release_free_memory();
    trims_.Inc();
    rss = probe_.read_rss();
  }
  rss_gauge_.Set(static_cast<int64_t>(rss));
  const bool now = rss > level;
  if (now == was) return;
  pressure_.store(now, std::memory_order_relaxed);
  pressure_gauge_.Set(now ? 1 : 0);
  LOG(WARN) << (now ? "overload: resident memory " : "overload over: resident memory ")
            << (rss >> 20) << " MiB, limit " << (max_rss_bytes_ >> 20) << " MiB"
            << (now ? "; shedding new requests" : "");
}

}  // namespace meshlet::sidecar::server

#include "sidecar/listener/capture_stats.h"

#include <atomic>

#include "common/base/logging.h"

namespace meshlet::sidecar::listener {
namespace {

std::atomic<bool> capture_seen{false};

}  // namespace

void CaptureStats::NoteRedirected() {
  if (!capture_seen.load(std::memory_order_relaxed)) {
    capture_seen.store(true, std::memory_order_relaxed);
  }
}

bool CaptureSeen() { return capture_seen.load(std::memory_order_relaxed); }

CaptureStats CaptureStats::Create(StatsShard& shard, const std::string& listener_name) {
  using Action = CaptureDecision::Action;
  CaptureStats s;
  for (Action action :
       {Action::kListener, Action::kDestination, Action::kPassthrough, Action::kRefuse}) {
    absl::StatusOr<Counter> counter = shard.RegisterCounter(
        "meshlet_downstream_cx_original_destination_total",
        "Connections of capture listeners, by what their original destination decided.",
        {{"listener", listener_name}, {"result", CaptureActionName(action)}});
    if (!counter.ok()) {
      LOG_EVERY_N_SEC(ERROR, 1) << "stat meshlet_downstream_cx_original_destination_total: "
                                << counter.status();
      continue;
    }
    s.connections[static_cast<size_t>(action)] = *counter;
  }
  return s;
}

}  // namespace meshlet::sidecar::listener

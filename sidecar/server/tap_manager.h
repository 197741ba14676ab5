#pragma once

// TapManager: the live taps a control plane runs on this sidecar (docs/xds.md "Live tap"). It
// takes the tap commands the xDS client receives, bounds each tap by the sidecar's own limits
// (how many at once, rate, duration, batch bytes: --tap-*), hands the running taps to every
// worker (stream::WorkerTap, through a task posted to the worker's thread), gathers the workers'
// batches every flush interval and sends them on the discovery stream, and ends a tap at its
// duration, at a stop, or when the stream ends: the workers give their last batches, then the
// control plane gets a last message with `ended`; nothing of that tap is sent after it.
//
// Stats: meshlet_tap_active (gauge), meshlet_tap_started_total, meshlet_tap_refused_total,
// meshlet_tap_events_total, meshlet_tap_events_dropped_total{reason="rate"|"batch_bytes"}.
//
// Threading: the main loop's thread (the xDS client's). Workers run the posted tasks on their own
// threads; their answers come back through the main loop.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/stream/tap.h"

namespace meshlet::sidecar::server {

struct TapManagerOptions {
  size_t max_active = 4;
  uint32_t max_rate = 100;
  Duration max_duration = std::chrono::minutes(10);
  size_t max_batch_bytes = 256 * 1024;  // per worker, between two flushes
  Duration flush_interval = std::chrono::milliseconds(250);
  std::string own_identity;  // the caller of outbound events; empty: unknown
};

class TapManager {
 public:
  // Runs a task on worker `index`'s thread with its taps (Worker::WithTaps).
  using WithTaps = std::function<void(size_t index, std::function<void(stream::WorkerTap&)> task)>;
  using Send = std::function<void(const config::TapEvents& events)>;

  TapManager(event::Loop& loop, const Clock& clock, TapManagerOptions options, size_t workers,
             WithTaps with_taps, Send send, StatsShard& stats);
  ~TapManager();
  TapManager(const TapManager&) = delete;
  TapManager& operator=(const TapManager&) = delete;

  // A command of the control plane (XdsClientOptions::on_tap).
  void OnCommand(const config::TapCommand& command);
  size_t active() const { return sessions_.size(); }

 private:
  void Start(const config::TapCommand& command);
  // Ends tap `id`: the workers give their last batches, then `ended` is sent.
  void End(const std::string& id);
  void Flush();
  void SendBatch(stream::TapBatch batch);

  event::Loop& loop_;
  const Clock& clock_;
  const TapManagerOptions options_;
  const size_t workers_;
  const WithTaps with_taps_;
  const Send send_;
  std::map<std::string, std::shared_ptr<stream::TapSession>> sessions_;
  event::Timer flush_timer_;
  // Checked by the workers' answers, on the main thread: gone once this is destroyed.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Gauge active_gauge_;
  Counter started_;
  Counter refused_;
  Counter events_;
  Counter dropped_rate_;
  Counter dropped_cap_;
};

}  // namespace meshlet::sidecar::server

#include "sidecar/server/tap_manager.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::server {

TapManager::TapManager(event::Loop& loop, const Clock& clock, TapManagerOptions options,
                       size_t workers, WithTaps with_taps, Send send, StatsShard& stats)
    : loop_(loop),
      clock_(clock),
      options_(std::move(options)),
      workers_(workers),
      with_taps_(std::move(with_taps)),
      send_(std::move(send)),
      flush_timer_(loop, [this] { Flush(); }) {
  constexpr char kDropped[] = "meshlet_tap_events_dropped_total";
  constexpr char kDroppedHelp[] =
      "Requests a live tap matched but did not send: over its rate (rate) or over a worker's "
      "batch bytes between two flushes (batch_bytes).";
  active_gauge_ =
      OrDiscard(stats.RegisterGauge("meshlet_tap_active", "Live taps running on this sidecar."),
                "meshlet_tap_active");
  started_ = OrDiscard(
      stats.RegisterCounter("meshlet_tap_started_total", "Live taps started on this sidecar."),
      "meshlet_tap_started_total");
  refused_ = OrDiscard(stats.RegisterCounter("meshlet_tap_refused_total",
                                             "Live taps refused: --tap-max-active were running."),
                       "meshlet_tap_refused_total");
  events_ = OrDiscard(stats.RegisterCounter("meshlet_tap_events_total",
                                            "Requests live taps sent to the control plane."),
                      "meshlet_tap_events_total");
  dropped_rate_ =
      OrDiscard(stats.RegisterCounter(kDropped, kDroppedHelp, {{"reason", "rate"}}), kDropped);
  dropped_cap_ = OrDiscard(
      stats.RegisterCounter(kDropped, kDroppedHelp, {{"reason", "batch_bytes"}}), kDropped);
}

TapManager::~TapManager() { *alive_ = false; }

void TapManager::OnCommand(const config::TapCommand& command) {
  if (command.stop_all) {
    std::vector<std::string> ids;
    for (const auto& [id, session] : sessions_) ids.push_back(id);
    for (const std::string& id : ids) End(id);
    return;
  }
  if (command.stop) {
    End(command.id);
    return;
  }
  Start(command);
}

void TapManager::Start(const config::TapCommand& command) {
  if (command.id.empty() || sessions_.count(command.id) > 0) return;
  if (sessions_.size() >= options_.max_active) {
    refused_.Inc();
    send_(config::TapEvents{.id = command.id,
                            .ended = true,
                            .error = absl::StrCat("this sidecar runs ", sessions_.size(),
                                                  " live taps already, its most (--tap-max-active ",
                                                  options_.max_active, ")")});
    return;
  }
  stream::TapSpec spec;
  spec.id = command.id;
  spec.direction = command.direction == "inbound"    ? stream::TapDirection::kInbound
                   : command.direction == "outbound" ? stream::TapDirection::kOutbound
                                                     : stream::TapDirection::kAny;
  spec.method = command.method;
  spec.authority = command.authority;
  spec.path_prefix = command.path_prefix;
  spec.rate = std::clamp<uint32_t>(command.rate, 1, options_.max_rate);
  Duration duration = command.duration <= Duration::zero()
                          ? options_.max_duration
                          : std::min(command.duration, options_.max_duration);
  spec.end = clock_.Now() + duration;
  spec.headers = command.headers;
  spec.max_batch_bytes = command.max_batch_bytes == 0
                             ? options_.max_batch_bytes
                             : std::min(command.max_batch_bytes, options_.max_batch_bytes);
  spec.own_identity = options_.own_identity;
  auto session = std::make_shared<stream::TapSession>(std::move(spec));
  sessions_.emplace(command.id, session);
  active_gauge_.Set(static_cast<int64_t>(sessions_.size()));
  started_.Inc();
  for (size_t i = 0; i < workers_; ++i) {
    with_taps_(i, [session](stream::WorkerTap& taps) { taps.Add(session); });
  }
  LOG(INFO) << "tap " << command.id << " started: rate " << session->spec().rate << "/s for "
            << absl::FormatDuration(absl::FromChrono(duration))
            << (command.headers ? ", with headers" : "");
  send_(config::TapEvents{.id = command.id, .started = true});
  if (sessions_.size() == 1) flush_timer_.EnableRepeating(options_.flush_interval);
}

void TapManager::End(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  std::shared_ptr<stream::TapSession> session = std::move(it->second);
  sessions_.erase(it);
  active_gauge_.Set(static_cast<int64_t>(sessions_.size()));
  if (sessions_.empty()) flush_timer_.Disable();
  // Each worker's last batch comes back after its earlier ones (its loop and ours run tasks in
  // the order posted); the last to come sends `ended`.
  auto pending = std::make_shared<size_t>(workers_);
  auto finish = [this, session, pending] {
    if (--*pending > 0) return;
    const uint64_t dropped_rate = session->TakeRateDrops();
    dropped_rate_.Inc(dropped_rate);
    send_(config::TapEvents{.id = session->spec().id, .dropped_rate = dropped_rate, .ended = true});
    LOG(INFO) << "tap " << session->spec().id << " ended";
  };
  if (workers_ == 0) {
    *pending = 1;
    finish();
    return;
  }
  for (size_t i = 0; i < workers_; ++i) {
    with_taps_(i, [this, alive = alive_, id, finish](stream::WorkerTap& taps) {
      stream::TapBatch last = taps.Remove(id);
      loop_.Post([this, alive, finish, last = std::move(last)]() mutable {
        if (!*alive) return;
        if (last.session != nullptr) SendBatch(std::move(last));
        finish();
      });
    });
  }
}

void TapManager::Flush() {
  const MonotonicTime now = clock_.Now();
  std::vector<std::string> ended;
  for (const auto& [id, session] : sessions_) {
    if (now >= session->spec().end) ended.push_back(id);
  }
  for (const std::string& id : ended) End(id);
  if (sessions_.empty()) return;
  for (size_t i = 0; i < workers_; ++i) {
    with_taps_(i, [this, alive = alive_](stream::WorkerTap& taps) {
      std::vector<stream::TapBatch> batches = taps.TakeBatches();
      if (batches.empty()) return;
      loop_.Post([this, alive, batches = std::move(batches)]() mutable {
        if (!*alive) return;
        for (stream::TapBatch& batch : batches) SendBatch(std::move(batch));
      });
    });
  }
}

void TapManager::SendBatch(stream::TapBatch batch) {
  if (batch.events == 0 && batch.dropped_cap == 0) return;
  const uint64_t dropped_rate = batch.session->TakeRateDrops();
  events_.Inc(batch.events);
  dropped_rate_.Inc(dropped_rate);
  dropped_cap_.Inc(batch.dropped_cap);
  send_(config::TapEvents{.id = batch.session->spec().id,
                          .events_json = std::move(batch.events_json),
                          .events = batch.events,
                          .dropped_rate = dropped_rate,
                          .dropped_cap = batch.dropped_cap});
}

}  // namespace meshlet::sidecar::server

#include "sidecar/resilience/outlier_detector.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/base/logging.h"

namespace meshlet::sidecar::resilience {

absl::Status ValidateOutlierDetectionConfig(const OutlierDetectionConfig& config) {
  if (config.interval <= Duration::zero()) {
    return absl::InvalidArgumentError("interval: must be positive");
  }
  if (config.base_ejection_time <= Duration::zero()) {
    return absl::InvalidArgumentError("base_ejection_time: must be positive");
  }
  if (config.max_ejection_time < Duration::zero()) {
    return absl::InvalidArgumentError("max_ejection_time: must not be negative");
  }
  if (config.max_ejection_percent > 100) {
    return absl::InvalidArgumentError("max_ejection_percent: must be in [0, 100]");
  }
  if (config.panic_threshold_percent > 100) {
    return absl::InvalidArgumentError("panic_threshold_percent: must be in [0, 100]");
  }
  if (!(config.success_rate_stdev_factor >= 0.0)) {
    return absl::InvalidArgumentError("success_rate_stdev_factor: must not be negative");
  }
  return absl::OkStatus();
}

HostResult ClassifyHttpStatus(uint32_t status) {
  if (status >= 502 && status <= 504) return HostResult::kGatewayError;
  if (status >= 500 && status <= 599) return HostResult::kServerError;
  return HostResult::kSuccess;
}

OutlierDetector::OutlierDetector(const OutlierDetectionConfig* config, const Clock& clock)
    : config_(config), clock_(clock), last_interval_(clock.Now()) {
  CHECK(config_ != nullptr);
  CHECK_OK(ValidateOutlierDetectionConfig(*config_));
}

void OutlierDetector::UseConfig(const OutlierDetectionConfig* config) {
  CHECK(config != nullptr);
  config_ = config;
}

void OutlierDetector::SetHosts(absl::Span<const uint64_t> host_ids) {
  // Sized exactly: every detector keeps its members for as long as it lives.
  std::vector<uint64_t> ids(host_ids.begin(), host_ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.shrink_to_fit();
  ids_ = std::move(ids);
  // Hosts that left lose their state; the others keep theirs.
  tracked_.erase(std::remove_if(tracked_.begin(), tracked_.end(),
                                [this](const Host& h) { return !IsMember(h.id); }),
                 tracked_.end());
  ejected_count_ =
      static_cast<size_t>(std::count_if(tracked_.begin(), tracked_.end(), [](const Host& h) {
        return h.state != HostState::kHealthy;
      }));
  ++version_;
}

bool OutlierDetector::IsMember(uint64_t host_id) const {
  return std::binary_search(ids_.begin(), ids_.end(), host_id);
}

OutlierDetector::Host* OutlierDetector::Find(uint64_t host_id) {
  return const_cast<Host*>(std::as_const(*this).Find(host_id));
}

const OutlierDetector::Host* OutlierDetector::Find(uint64_t host_id) const {
  auto it = std::lower_bound(tracked_.begin(), tracked_.end(), host_id,
                             [](const Host& h, uint64_t id) { return h.id < id; });
  if (it == tracked_.end() || it->id != host_id) return nullptr;
  return &*it;
}

OutlierDetector::Host* OutlierDetector::Track(uint64_t host_id, MonotonicTime now) {
  auto it = std::lower_bound(tracked_.begin(), tracked_.end(), host_id,
                             [](const Host& h, uint64_t id) { return h.id < id; });
  if (it != tracked_.end() && it->id == host_id) return &*it;
  if (!IsMember(host_id)) return nullptr;
  if (tracked_.size() == tracked_.capacity()) {
    // Grow by a quarter (at least one record), never past the members: most detectors track a
    // few hosts of many, and doubling would leave up to half of their records unused.
    const size_t index = static_cast<size_t>(it - tracked_.begin());
    const size_t size = tracked_.size();
    tracked_.reserve(std::min(ids_.size(), size + std::max<size_t>(1, size / 4)));
    it = tracked_.begin() + static_cast<std::ptrdiff_t>(index);
  }
  Host fresh;
  fresh.id = host_id;
  fresh.last_decay = now;
  return &*tracked_.insert(it, fresh);
}

void OutlierDetector::Untrack() {
  tracked_.erase(std::remove_if(tracked_.begin(), tracked_.end(),
                                [](const Host& h) {
                                  return h.state == HostState::kHealthy && h.times_ejected == 0 &&
                                         h.consecutive_5xx == 0 && h.consecutive_gateway == 0 &&
                                         h.interval_total == 0;
                                }),
                 tracked_.end());
  if (tracked_.empty()) tracked_.shrink_to_fit();
}

size_t OutlierDetector::MaxEjected() const {
  const size_t n = ids_.size();
  size_t limit = n * config_->max_ejection_percent / 100;
  if (limit == 0 && config_->max_ejection_percent > 0 && n >= 2) limit = 1;
  return limit;
}

bool OutlierDetector::IsPanic() const {
  const size_t n = ids_.size();
  if (n == 0 || config_->panic_threshold_percent == 0) return false;
  return healthy_count() * 100 < static_cast<size_t>(config_->panic_threshold_percent) * n;
}

Duration OutlierDetector::EjectionDuration(uint32_t times_ejected) const {
  const Duration cap = std::max(config_->max_ejection_time, config_->base_ejection_time);
  // base * times > cap, decided without forming a product that could overflow.
  if (times_ejected > cap.count() / config_->base_ejection_time.count()) return cap;
  return std::min(cap, config_->base_ejection_time * times_ejected);
}

bool OutlierDetector::Eject(Host& host, MonotonicTime now) {
  const bool already_counted = host.state == HostState::kHalfOpen;
  if (!already_counted && ejected_count_ >= MaxEjected()) return false;
  ++host.times_ejected;
  host.state = HostState::kEjected;
  host.until_or_probe = now + EjectionDuration(host.times_ejected);
  host.consecutive_5xx = host.consecutive_gateway = 0;
  host.probe_in_flight = false;
  if (!already_counted) ++ejected_count_;
  ++version_;
  return true;
}

void OutlierDetector::ExpireIfDue(Host& host, MonotonicTime now) {
  if (host.state == HostState::kEjected && now >= host.until_or_probe) {
    host.state = HostState::kHalfOpen;
    host.probe_in_flight = false;
    ++version_;
  }
  if (host.state == HostState::kHalfOpen && host.probe_in_flight &&
      now - host.until_or_probe >= config_->base_ejection_time) {
    host.probe_in_flight = false;  // the probe's result never came
    ++version_;
  }
}

OutlierDetector::Admission OutlierDetector::TryAdmit(uint64_t host_id) {
  Host* host = Find(host_id);
  if (host == nullptr) return Admission::kAdmit;
  const MonotonicTime now = clock_.Now();
  ExpireIfDue(*host, now);
  switch (host->state) {
    case HostState::kHealthy:
      return Admission::kAdmit;
    case HostState::kEjected:
      return IsPanic() ? Admission::kAdmit : Admission::kReject;
    case HostState::kHalfOpen:
      if (!host->probe_in_flight) {
        host->probe_in_flight = true;
        host->until_or_probe = now;
        ++version_;
        return Admission::kAdmitProbe;
      }
      return IsPanic() ? Admission::kAdmit : Admission::kReject;
  }
  return Admission::kReject;
}

void OutlierDetector::CancelProbe(uint64_t host_id) {
  Host* host = Find(host_id);
  if (host == nullptr || host->state != HostState::kHalfOpen || !host->probe_in_flight) return;
  host->probe_in_flight = false;
  ++version_;
}

OutlierDetector::Event OutlierDetector::RecordResult(uint64_t host_id, HostResult result,
                                                     bool probe) {
  Host* host = Find(host_id);
  if (host == nullptr) {
    if (!IsMember(host_id)) return Event::kIgnored;
    // A success leaves a fresh host as it is, unless success-rate detection counts it.
    if (result == HostResult::kSuccess && config_->success_rate_minimum_hosts == 0) {
      return Event::kNone;
    }
    host = Track(host_id, clock_.Now());
  }
  const MonotonicTime now = clock_.Now();
  ExpireIfDue(*host, now);

  if (host->state == HostState::kHalfOpen) {
    // Only the probe decides; other results are from requests sent before the ejection.
    if (!probe || !host->probe_in_flight) return Event::kIgnored;
    if (result == HostResult::kSuccess) {
      host->state = HostState::kHealthy;
      host->probe_in_flight = false;
      host->consecutive_5xx = host->consecutive_gateway = 0;
      host->interval_successes = host->interval_total = 0;
      host->last_decay = now;
      --ejected_count_;
      ++version_;
      return Event::kProbeSucceeded;
    }
    Eject(*host, now);  // already counted as ejected: cannot be refused
    return Event::kProbeFailed;
  }
  if (host->state == HostState::kEjected) return Event::kIgnored;

  if (host->interval_total != UINT32_MAX) ++host->interval_total;
  switch (result) {
    case HostResult::kSuccess:
      if (host->interval_successes != UINT32_MAX) ++host->interval_successes;
      host->consecutive_5xx = host->consecutive_gateway = 0;
      return Event::kNone;
    case HostResult::kServerError:
      ++host->consecutive_5xx;
      host->consecutive_gateway = 0;
      break;
    case HostResult::kGatewayError:
      ++host->consecutive_5xx;
      ++host->consecutive_gateway;
      break;
  }
  Event reason = Event::kNone;
  if (config_->consecutive_gateway_failure != 0 &&
      host->consecutive_gateway >= config_->consecutive_gateway_failure) {
    reason = Event::kEjectedConsecutiveGatewayFailure;
  } else if (config_->consecutive_5xx != 0 && host->consecutive_5xx >= config_->consecutive_5xx) {
    reason = Event::kEjectedConsecutive5xx;
  }
  if (reason == Event::kNone) return Event::kNone;
  return Eject(*host, now) ? reason : Event::kEjectionSkippedMaxPercent;
}

void OutlierDetector::EvaluateSuccessRate(MonotonicTime now, TickSummary& summary) {
  if (config_->success_rate_minimum_hosts == 0) return;
  size_t candidates = 0;
  double sum = 0, sum_sq = 0;
  auto eligible = [this](const Host& h) {
    return h.state == HostState::kHealthy && h.interval_total > 0 &&
           h.interval_total >= config_->success_rate_request_volume;
  };
  for (const Host& h : tracked_) {
    if (!eligible(h)) continue;
    const double rate = static_cast<double>(h.interval_successes) / h.interval_total;
    sum += rate;
    sum_sq += rate * rate;
    ++candidates;
  }
  if (candidates == 0 || candidates < config_->success_rate_minimum_hosts) return;
  const double mean = sum / candidates;
  const double variance = std::max(0.0, sum_sq / candidates - mean * mean);
  const double threshold = mean - config_->success_rate_stdev_factor * std::sqrt(variance);
  for (Host& h : tracked_) {
    if (!eligible(h)) continue;
    const double rate = static_cast<double>(h.interval_successes) / h.interval_total;
    if (rate >= threshold) continue;
    if (Eject(h, now)) {
      ++summary.ejected_success_rate;
    } else {
      ++summary.skipped_max_percent;
    }
  }
}

OutlierDetector::TickSummary OutlierDetector::Tick() {
  TickSummary summary;
  const MonotonicTime now = clock_.Now();
  for (Host& h : tracked_) {
    const bool was_ejected = h.state == HostState::kEjected;
    ExpireIfDue(h, now);
    if (was_ejected && h.state == HostState::kHalfOpen) ++summary.half_opened;
  }
  if (now - last_interval_ < config_->interval) return summary;
  last_interval_ = now;
  summary.evaluated_interval = true;
  EvaluateSuccessRate(now, summary);
  for (Host& h : tracked_) {
    if (h.state == HostState::kHealthy && h.times_ejected > 0 &&
        now - h.last_decay >= config_->interval) {
      --h.times_ejected;
      h.last_decay = now;
    }
    h.interval_successes = h.interval_total = 0;
  }
  // With success-rate detection every host is counted again from its next result anyway.
  if (config_->success_rate_minimum_hosts == 0) Untrack();
  return summary;
}

std::optional<MonotonicTime> OutlierDetector::NextExpiry() const {
  std::optional<MonotonicTime> next;
  for (const Host& h : tracked_) {
    if (h.state == HostState::kEjected && (!next.has_value() || h.until_or_probe < *next)) {
      next = h.until_or_probe;
    }
  }
  return next;
}

bool OutlierDetector::NeedsTick() const {
  if (config_->success_rate_minimum_hosts > 0) return true;
  return std::any_of(tracked_.begin(), tracked_.end(), [](const Host& h) {
    return h.state != HostState::kHealthy || h.times_ejected > 0 ||
           (h.consecutive_5xx == 0 && h.consecutive_gateway == 0);
  });
}

void OutlierDetector::RoutableHosts(std::vector<uint64_t>* out) const {
  out->clear();
  const bool panic = IsPanic();
  for (uint64_t id : ids_) {
    const Host* h = panic ? nullptr : Find(id);
    if (h == nullptr || h->state == HostState::kHealthy ||
        (h->state == HostState::kHalfOpen && !h->probe_in_flight)) {
      out->push_back(id);
    }
  }
}

std::optional<OutlierDetector::HostState> OutlierDetector::state(uint64_t host_id) const {
  const Host* h = Find(host_id);
  if (h == nullptr) {
    if (!IsMember(host_id)) return std::nullopt;
    return HostState::kHealthy;
  }
  return h->state;
}

uint32_t OutlierDetector::times_ejected(uint64_t host_id) const {
  const Host* h = Find(host_id);
  return h == nullptr ? 0 : h->times_ejected;
}

std::optional<MonotonicTime> OutlierDetector::ejected_until(uint64_t host_id) const {
  const Host* h = Find(host_id);
  if (h == nullptr || h->state != HostState::kEjected) return std::nullopt;
  return h->until_or_probe;
}

absl::string_view OutlierEventName(OutlierDetector::Event event) {
  switch (event) {
    case OutlierDetector::Event::kNone:
      return "none";
    case OutlierDetector::Event::kEjectedConsecutive5xx:
      return "ejections_consecutive_5xx";
    case OutlierDetector::Event::kEjectedConsecutiveGatewayFailure:
      return "ejections_consecutive_gateway_failure";
    case OutlierDetector::Event::kEjectionSkippedMaxPercent:
      return "ejections_overflow";
    case OutlierDetector::Event::kProbeSucceeded:
      return "probe_success";
    case OutlierDetector::Event::kProbeFailed:
      return "probe_failure";
    case OutlierDetector::Event::kIgnored:
      return "ignored";
  }
  return "unknown";
}

}  // namespace meshlet::sidecar::resilience

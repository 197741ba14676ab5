#include "sidecar/cluster/cluster.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/numbers.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::cluster {
namespace {

bool SamePoolSettings(const ClusterConfig& a, const ClusterConfig& b) {
  return a.protocol == b.protocol && a.connect_timeout == b.connect_timeout &&
         a.pool.idle_timeout == b.pool.idle_timeout &&
         a.pool.max_requests_per_connection == b.pool.max_requests_per_connection &&
         a.pool.max_concurrent_streams == b.pool.max_concurrent_streams &&
         a.pool.max_connection_duration == b.pool.max_connection_duration &&
         a.pool.pending_timeout == b.pool.pending_timeout;
}

bool SameOutlierConfig(const std::optional<resilience::OutlierDetectionConfig>& a,
                       const std::optional<resilience::OutlierDetectionConfig>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->consecutive_5xx == b->consecutive_5xx &&
         a->consecutive_gateway_failure == b->consecutive_gateway_failure &&
         a->interval == b->interval && a->base_ejection_time == b->base_ejection_time &&
         a->max_ejection_time == b->max_ejection_time &&
         a->max_ejection_percent == b->max_ejection_percent &&
         a->success_rate_minimum_hosts == b->success_rate_minimum_hosts &&
         a->success_rate_request_volume == b->success_rate_request_volume &&
         a->success_rate_stdev_factor == b->success_rate_stdev_factor &&
         a->panic_threshold_percent == b->panic_threshold_percent;
}

// Success-rate detection compares the hosts' success rates, so its detector counts every result
// from the start; consecutive-failure detection has nothing to count before the first failure.
bool OutlierCountsSuccesses(const ClusterConfig& config) {
  return config.outlier_detection.has_value() &&
         config.outlier_detection->success_rate_minimum_hosts > 0;
}

bool SameBreakerConfig(const std::optional<resilience::ConsecutiveFailureBreakerConfig>& a,
                       const std::optional<resilience::ConsecutiveFailureBreakerConfig>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a.has_value() ||
         (a->failure_threshold == b->failure_threshold && a->open_duration == b->open_duration);
}

}  // namespace

std::optional<Duration> ParseRetryAfter(absl::string_view value) {
  uint32_t seconds = 0;
  if (!absl::SimpleAtoi(value, &seconds)) return std::nullopt;
  return std::chrono::seconds(seconds);
}

Cluster::Cluster(event::Loop& loop, const ClusterConfig& config,
                 std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds, Random& random,
                 const Clock& clock, CodecFactories codecs,
                 EndpointTransportFactory transport_factory)
    : Cluster(loop, std::make_shared<const ClusterConfig>(config), std::move(thresholds), random,
              clock, std::move(codecs), std::move(transport_factory)) {}

Cluster::Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config,
                 std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds, Random& random,
                 const Clock& clock, CodecFactories codecs,
                 EndpointTransportFactory transport_factory)
    : loop_(loop),
      config_(std::move(config)),
      thresholds_(std::move(thresholds)),
      random_(random),
      clock_(clock),
      codecs_(std::move(codecs)),
      transport_factory_(
          transport_factory == nullptr
              ? nullptr
              : std::make_unique<const EndpointTransportFactory>(std::move(transport_factory))),
      retry_budget_(config_->retry_budget, clock_) {
  CHECK(thresholds_ != nullptr);
  if (OutlierCountsSuccesses(*config_)) StartOutlierDetection();
  ApplyEndpoints();
  RebuildLoadBalancer();
  ResetBreaker();
}

Cluster::~Cluster() {
  // Pools before the hosts they point at; no callbacks run.
  if (rare_ != nullptr) rare_->draining_pools.clear();
  pools_.clear();
}

const ClusterStats& Cluster::stats() const {
  static const ClusterStats kNone;
  return stats_ != nullptr ? *stats_ : kNone;
}

ClusterStats& Cluster::mutable_stats() {
  if (stats_ == nullptr) stats_ = std::make_unique<ClusterStats>();
  return *stats_;
}

Cluster::Rare& Cluster::rare() {
  if (rare_ == nullptr) rare_ = std::make_unique<Rare>();
  return *rare_;
}

void Cluster::Update(const ClusterConfig& config) {
  Update(std::make_shared<const ClusterConfig>(config));
}

void Cluster::Update(std::shared_ptr<const ClusterConfig> config) {
  CHECK(config != nullptr);
  const std::shared_ptr<const ClusterConfig> old_config = std::move(config_);
  const ClusterConfig& old = *old_config;
  config_ = std::move(config);
  retry_budget_.Reconfigure(config_->retry_budget);
  if (!SamePoolSettings(old, *config_)) DrainAllPools();
  if (!SameOutlierConfig(old.outlier_detection, config_->outlier_detection)) {
    // New thresholds mean a new detector: ejection history under the old rules does not carry.
    for (const HostSharedPtr& host : hosts_.hosts()) {
      hosts_.SetHealthFlag(*host, Host::kOutlierEjected, false);
    }
    outlier_.reset();
    outlier_version_seen_ = 0;
    ejections_active_published_ = 0;
    stat_handles_.ejections_active.Set(0);
    outlier_timer_.reset();
    if (OutlierCountsSuccesses(*config_)) StartOutlierDetection();
  } else if (outlier_ != nullptr) {
    // Equal settings in the new config object: the old one goes when this returns.
    outlier_->UseConfig(&*config_->outlier_detection);
  }
  if (!SameBreakerConfig(old.consecutive_failure_breaker, config_->consecutive_failure_breaker)) {
    ResetBreaker();
  }
  if (!config_->overload.enabled) ClearOverload();
  ApplyEndpoints();
  if (old.lb_policy != config_->lb_policy ||
      old.lb->panic_threshold_percent != config_->lb->panic_threshold_percent || lb_ == nullptr) {
    RebuildLoadBalancer();
  } else if (old.lb->locality != config_->lb->locality || config_->lb->locality.enabled) {
    // The levels come from the endpoints' locality_level, which an update may change without
    // changing membership or health: the balancer rebuilds its levels on its next pick.
    lb_->EnableLocality(config_->lb->locality, config_->lb->ewma_decay);
  }
}

void Cluster::ApplyEndpoints() {
  const ClusterConfig& config = *config_;
  // The endpoints the pools' transports were made for: their hosts' before the update.
  // (Entries of the configuration before the update, which the caller still holds.)
  absl::flat_hash_map<uint64_t, const EndpointConfig*> made_for;
  if (!pools_.empty()) {
    made_for.reserve(pools_.size());
    for (const HostSharedPtr& host : hosts_.hosts()) {
      if (pools_.contains(host->id())) made_for.emplace(host->id(), &host->endpoint());
    }
  }
  // Hosts refer to the shared configuration's endpoints.
  std::vector<HostSharedPtr> removed = hosts_.Update(config.endpoints, config_);
  auto drain_host = [this](absl::flat_hash_map<uint64_t, HostPools>::iterator it) {
    HostPools pools = std::move(it->second);
    pools_.erase(it);
    DrainPool(std::move(pools.http1));
    DrainPool(std::move(pools.http2));
  };
  for (const HostSharedPtr& host : removed) {
    auto it = pools_.find(host->id());
    if (it != pools_.end()) drain_host(it);
  }
  if (overload_ejected() > 0) {
    rare_->overload_ejected = static_cast<size_t>(std::count_if(
        hosts_.hosts().begin(), hosts_.hosts().end(),
        [](const HostSharedPtr& h) { return h->has_health_flag(Host::kOverloadEjected); }));
    PublishOverloadEjected();
  }
  // A host that stays but now wants another transport (it got a sidecar, or another identity):
  // its connections were made for the old settings, so new requests get new pools.
  for (const HostSharedPtr& host : hosts_.hosts()) {
    auto it = pools_.find(host->id());
    if (it == pools_.end()) continue;
    auto before = made_for.find(host->id());
    if (before != made_for.end() && before->second->tls != host->tls()) drain_host(it);
  }
  if (outlier_ != nullptr) SetOutlierHosts();
}

void Cluster::StartOutlierDetection() {
  // The detector reads config_'s outlier settings in place (Update hands it every new config).
  outlier_ = std::make_unique<resilience::OutlierDetector>(&*config_->outlier_detection, clock_);
  outlier_version_seen_ = 0;
}

void Cluster::SetOutlierHosts() {
  std::vector<uint64_t> ids;
  ids.reserve(hosts_.size());
  for (const HostSharedPtr& host : hosts_.hosts()) ids.push_back(host->id());
  outlier_->SetHosts(ids);
  SyncOutlierFlags();
  ArmOutlierTimer();
}

void Cluster::EnableTimer(std::optional<event::Timer>& timer, void (Cluster::*on_fire)(),
                          Duration timeout) {
  if (!timer.has_value()) timer.emplace(loop_, [this, on_fire] { (this->*on_fire)(); });
  timer->Enable(timeout);
}

void Cluster::DisableTimer(std::optional<event::Timer>& timer) {
  if (timer.has_value()) timer->Disable();
}

void Cluster::RebuildLoadBalancer() {
  lb_ = CreateLoadBalancer(config_->lb_policy, hosts_, random_,
                           config_->lb->panic_threshold_percent, &clock_);
  if (config_->lb->locality.enabled) {
    lb_->EnableLocality(config_->lb->locality, config_->lb->ewma_decay);
  }
}

Cluster::HostSelection Cluster::ChooseHost(const LbContext& context) {
  absl::InlinedVector<const Host*, 8> avoid(context.hosts_to_avoid.begin(),
                                            context.hosts_to_avoid.end());
  Host* preferred = context.preferred_host;
  if (preferred != nullptr && (!preferred->in_set() || !preferred->healthy() ||
                               std::find(avoid.begin(), avoid.end(), preferred) != avoid.end())) {
    preferred = nullptr;
  }
  for (int attempt = 0; attempt < kMaxAdmitAttempts; ++attempt) {
    // A sticky session's host, while healthy, replaces the first pick; refused by the outlier
    // detector, it joins the hosts to avoid like any refused pick.
    const bool balanced = attempt != 0 || preferred == nullptr;
    Host* host = balanced ? lb_->Choose(LbContext{.hosts_to_avoid = avoid}) : preferred;
    if (host == nullptr) break;
    std::optional<LocalityDecision> locality;
    if (balanced && lb_->locality_enabled()) {
      if (const std::optional<LocalityPick> pick = lb_->last_locality(); pick.has_value()) {
        locality = pick->decision;
      }
    }
    bool outlier_probe = false;
    if (outlier_ != nullptr) {
      const resilience::OutlierDetector::Admission admission = outlier_->TryAdmit(host->id());
      // TryAdmit expires a due ejection lazily; keep the flags in step.
      SyncOutlierFlags();
      if (admission == resilience::OutlierDetector::Admission::kReject) {
        ++mutable_stats().outlier_probe_rejected;
        avoid.push_back(host);
        continue;
      }
      outlier_probe = admission == resilience::OutlierDetector::Admission::kAdmitProbe;
    }
    resilience::ConsecutiveFailureBreaker* breaker = this->breaker();
    if (breaker == nullptr) return {host, outlier_probe, false, locality};
    const resilience::ConsecutiveFailureBreaker::Ticket ticket = breaker->TryAdmit();
    PublishBreakerState();
    if (!ticket.admitted()) {
      ++mutable_stats().breaker_rejected;
      if (outlier_probe) outlier_->CancelProbe(host->id());
      return {.host = nullptr, .probe = false, .breaker_open = true};
    }
    if (ticket.verdict == resilience::ConsecutiveFailureBreaker::Verdict::kAdmittedProbe) {
      rare_->breaker_probe = ticket;
      rare_->breaker_probe_host = host->id();
      return {host, true, false, locality};
    }
    return {host, outlier_probe, false, locality};
  }
  ++mutable_stats().no_healthy_host;
  return {};
}

http::Protocol Cluster::UpstreamProtocol(http::Protocol downstream, const Host* host,
                                         bool upgrade) const {
  switch (config_->protocol) {
    case cluster::UpstreamProtocol::kHttp1:
      return http::Protocol::kHttp11;
    case cluster::UpstreamProtocol::kHttp2:
      return http::Protocol::kHttp2;
    case cluster::UpstreamProtocol::kMeshHttp2: {
      // Peer sidecars are the endpoints reached over TLS; anything in plaintext may be a plain
      // HTTP/1.1 server.
      const bool to_peer_sidecar =
          transport_factory_ != nullptr && (host == nullptr || !host->tls().plaintext);
      return to_peer_sidecar && !upgrade ? http::Protocol::kHttp2 : http::Protocol::kHttp11;
    }
    case cluster::UpstreamProtocol::kSameAsDownstream:
      break;
  }
  return downstream == http::Protocol::kHttp2 ? http::Protocol::kHttp2 : http::Protocol::kHttp11;
}

ConnPool& Cluster::PoolFor(Host& host, http::Protocol downstream, bool upgrade) {
  const http::Protocol protocol = UpstreamProtocol(downstream, &host, upgrade);
  HostPools& pools = EntryFor(host);
  std::unique_ptr<ConnPool>& slot = protocol == http::Protocol::kHttp2 ? pools.http2 : pools.http1;
  if (slot == nullptr) {
    HostSharedPtr shared;
    for (const HostSharedPtr& h : hosts_.hosts()) {
      if (h.get() == &host) shared = h;
    }
    CHECK(shared != nullptr) << "PoolFor a host that is not in cluster " << config_->name;
    ConnPoolOptions options;
    options.protocol = protocol;
    options.config = config_->pool;
    options.connect_timeout = config_->connect_timeout;
    options.transport_factory = pools.transport;
    if (config_->protocol == cluster::UpstreamProtocol::kMeshHttp2 &&
        protocol == http::Protocol::kHttp11 && pools.transport != nullptr) {
      // The cluster's TLS offers "h2"; these connections must agree on HTTP/1.1.
      if (pools.http1_transport == nullptr) {
        pools.http1_transport =
            std::make_unique<net::TransportFactory>((*transport_factory_)(ForHttp1(host.tls())));
      }
      options.transport_factory = *pools.http1_transport;
    }
    options.tls_handshake_failures = stat_handles_.tls_handshake_failures;
    const CodecFactory& factory =
        protocol == http::Protocol::kHttp2 ? codecs_.http2 : codecs_.http1;
    CHECK(factory != nullptr) << "no codec for " << http::ProtocolName(protocol);
    slot = std::make_unique<ConnPool>(loop_, std::move(shared), factory, thresholds_,
                                      std::move(options));
    ConnPool* pool = slot.get();
    pool->SetEmptyCallback([this, pool, id = host.id()] { ReleaseEmptyPool(id, pool); });
    // The same callback serves the pool once it drains (ReleaseEmptyPool tells).
  }
  return *slot;
}

const net::TransportFactory& Cluster::TransportFor(const Host& host) {
  // Plaintext clusters keep no entry for a transport they do not have.
  static const net::TransportFactory kPlaintext;
  if (transport_factory_ == nullptr) return kPlaintext;
  return EntryFor(host).transport;
}

Cluster::HostPools& Cluster::EntryFor(const Host& host) {
  auto [it, inserted] = pools_.try_emplace(host.id());
  HostPools& entry = it->second;
  if (inserted) {
    if (transport_factory_ != nullptr) entry.transport = (*transport_factory_)(host.tls());
  }
  return entry;
}

void Cluster::RecordResult(Host& host, resilience::HostResult result, bool probe,
                           std::optional<Duration> latency) {
  if (result == resilience::HostResult::kSuccess) {
    ++host.mutable_stats().rq_success;
  } else {
    ++host.mutable_stats().rq_error;
  }
  // Only the peak-EWMA balancer reads latencies: others keep no per-host latency state (ADR 0091).
  if (latency.has_value() && config_->lb_policy == LbPolicy::kPeakEwma) {
    host.RecordLatency(*latency, clock_.Now(), config_->lb->ewma_decay);
  }
  // The locality levels' latency EWMA, read only with a latency spill-over threshold.
  if (latency.has_value() && config_->lb->locality.enabled &&
      config_->lb->locality.max_latency.count() > 0 && host.in_set()) {
    lb_->RecordLocalityLatency(host.endpoint().locality_level, *latency, clock_.Now());
  }
  if (resilience::ConsecutiveFailureBreaker* breaker = this->breaker(); breaker != nullptr) {
    const bool success = result == resilience::HostResult::kSuccess;
    resilience::ConsecutiveFailureBreaker::Transition transition;
    if (probe && rare_->breaker_probe.has_value() && rare_->breaker_probe_host == host.id()) {
      transition = breaker->Record(*rare_->breaker_probe, success);
      rare_->breaker_probe.reset();
    } else {
      // Requests admitted while closed carry no ticket: a result counts if the breaker is still
      // in the generation it is in now (closed), and is ignored while open or half-open, where
      // only the probe decides.
      transition = breaker->Record(
          {resilience::ConsecutiveFailureBreaker::Verdict::kAdmitted, breaker->generation()},
          success);
    }
    if (transition == resilience::ConsecutiveFailureBreaker::Transition::kOpened ||
        transition == resilience::ConsecutiveFailureBreaker::Transition::kReopened) {
      ++mutable_stats().breaker_opened;
      stat_handles_.breaker_opened.Inc();
      EnableTimer(rare_->breaker_timer, &Cluster::PublishBreakerState,
                  config_->consecutive_failure_breaker->open_duration);
    }
    PublishBreakerState();
  }
  if (!host.in_set()) return;
  if (outlier_ == nullptr) {
    // Until the first failure every host is healthy with nothing counted: the detector (and its
    // timer) is made then, with every host fresh, which is where an earlier one would stand.
    if (result == resilience::HostResult::kSuccess || !config_->outlier_detection.has_value())
      return;
    StartOutlierDetection();
    SetOutlierHosts();
  }
  // Only the outlier detector's own probe settles a half-open host; a breaker probe to a healthy
  // host is an ordinary result to it.
  const bool outlier_probe =
      probe && outlier_->state(host.id()) == resilience::OutlierDetector::HostState::kHalfOpen;
  const resilience::OutlierDetector::Event event =
      outlier_->RecordResult(host.id(), result, outlier_probe);
  if (event == resilience::OutlierDetector::Event::kEjectedConsecutive5xx ||
      event == resilience::OutlierDetector::Event::kEjectedConsecutiveGatewayFailure ||
      event == resilience::OutlierDetector::Event::kProbeFailed) {
    ++mutable_stats().outlier_ejections;
    ++host.mutable_stats().outlier_ejections;
    stat_handles_.ejections_total.Inc();
  }
  SyncOutlierFlags();
  ArmOutlierTimer();
}

void Cluster::RecordOverload(Host& host, std::optional<Duration> retry_after) {
  ++mutable_stats().overload_responses;
  ++host.mutable_stats().overload_responses;
  stat_handles_.overload_responses.Inc();
  const OverloadConfig& config = config_->overload;
  if (!config.enabled || !host.in_set()) return;
  const MonotonicTime now = clock_.Now();
  host.Penalize(config.penalty, now, config.penalty_time);
  const Duration duration =
      std::min(retry_after.value_or(config.ejection_time), config.max_ejection_time);
  if (duration <= Duration::zero()) return;
  const MonotonicTime until = now + duration;
  if (host.has_health_flag(Host::kOverloadEjected)) {
    // Answers to requests sent before the ejection: the latest one decides how long it lasts.
    if (until > host.overload_until()) host.set_overload_until(until);
    return;
  }
  // Out of rotation already (outlier ejection, health checks, EDS): nothing more to do.
  if (!host.healthy()) return;
  if (!MayEjectForOverload()) {
    ++mutable_stats().overload_ejections_skipped;
    stat_handles_.overload_ejections_skipped.Inc();
    return;
  }
  host.set_overload_until(until);
  hosts_.SetHealthFlag(host, Host::kOverloadEjected, true);
  ++rare().overload_ejected;
  ++mutable_stats().overload_ejections;
  ++host.mutable_stats().overload_ejections;
  stat_handles_.overload_ejections.Inc();
  PublishOverloadEjected();
  ArmOverloadTimer(until);
}

bool Cluster::MayEjectForOverload() const {
  // As the outlier detector counts: a share of the hosts, at least one of two or more; and never
  // the last healthy host, which the host being ejected must not be.
  const size_t n = hosts_.size();
  size_t limit = n * config_->overload.max_ejection_percent / 100;
  if (limit == 0 && config_->overload.max_ejection_percent > 0 && n >= 2) limit = 1;
  return overload_ejected() < limit && hosts_.healthy_count() >= 2;
}

void Cluster::ArmOverloadTimer(MonotonicTime until) {
  Rare& rare = this->rare();
  if (rare.overload_deadline.has_value() && *rare.overload_deadline <= until) return;
  rare.overload_deadline = until;
  EnableTimer(rare.overload_timer, &Cluster::TickOverload,
              std::max(Duration(0), until - clock_.Now()));
}

void Cluster::TickOverload() {
  if (rare_ == nullptr) return;  // nothing was ever ejected
  rare_->overload_deadline.reset();
  DisableTimer(rare_->overload_timer);
  const MonotonicTime now = clock_.Now();
  std::optional<MonotonicTime> next;
  for (const HostSharedPtr& host : hosts_.hosts()) {
    if (!host->has_health_flag(Host::kOverloadEjected)) continue;
    if (now >= host->overload_until()) {
      hosts_.SetHealthFlag(*host, Host::kOverloadEjected, false);
      --rare_->overload_ejected;
    } else if (!next.has_value() || host->overload_until() < *next) {
      next = host->overload_until();
    }
  }
  PublishOverloadEjected();
  if (next.has_value()) ArmOverloadTimer(*next);
}

void Cluster::ClearOverload() {
  for (const HostSharedPtr& host : hosts_.hosts()) {
    hosts_.SetHealthFlag(*host, Host::kOverloadEjected, false);
    host->Penalize(0, MonotonicTime{}, Duration::zero());
  }
  if (rare_ != nullptr) {
    rare_->overload_ejected = 0;
    rare_->overload_deadline.reset();
    DisableTimer(rare_->overload_timer);
  }
  PublishOverloadEjected();
}

void Cluster::PublishOverloadEjected() {
  // This worker's share of the kSum gauge.
  stat_handles_.overload_ejections_active.Set(static_cast<int64_t>(overload_ejected()));
}

void Cluster::CancelProbe(Host& host) {
  if (outlier_ != nullptr) outlier_->CancelProbe(host.id());
  if (breaker() != nullptr && rare_->breaker_probe.has_value() &&
      rare_->breaker_probe_host == host.id()) {
    rare_->breaker->CancelProbe(*rare_->breaker_probe);
    rare_->breaker_probe.reset();
  }
}

bool Cluster::BreakerRejects() {
  resilience::ConsecutiveFailureBreaker* breaker = this->breaker();
  if (breaker == nullptr) return false;
  const bool reject = breaker->WouldReject();
  PublishBreakerState();
  if (reject) ++mutable_stats().breaker_rejected;
  return reject;
}

int Cluster::BreakerState() {
  resilience::ConsecutiveFailureBreaker* breaker = this->breaker();
  return breaker != nullptr ? breaker->StateGauge() : 0;
}

void Cluster::SetStatHandles(const StatHandles& handles) {
  stat_handles_ = handles;
  PublishBreakerState();
  stat_handles_.ejections_active.Set(ejections_active_published_);
  PublishOverloadEjected();
}

void Cluster::ResetBreaker() {
  if (rare_ != nullptr) {
    rare_->breaker_probe.reset();
    rare_->breaker.reset();
    DisableTimer(rare_->breaker_timer);
  }
  if (config_->consecutive_failure_breaker.has_value() &&
      config_->consecutive_failure_breaker->failure_threshold > 0) {
    rare().breaker.emplace(*config_->consecutive_failure_breaker, clock_);
  }
  PublishBreakerState();
}

void Cluster::PublishBreakerState() { stat_handles_.breaker_state.Set(BreakerState()); }

void Cluster::SetActiveHealth(Host& host, bool healthy) {
  hosts_.SetHealthFlag(host, Host::kFailedActiveHealthCheck, !healthy);
}

void Cluster::TickOutlierDetection() {
  if (outlier_ == nullptr) return;
  const resilience::OutlierDetector::TickSummary summary = outlier_->Tick();
  if (summary.ejected_success_rate > 0) {
    mutable_stats().outlier_ejections += summary.ejected_success_rate;
  }
  stat_handles_.ejections_total.Inc(summary.ejected_success_rate);
  SyncOutlierFlags();
  ArmOutlierTimer();
}

void Cluster::SyncOutlierFlags() {
  if (outlier_ == nullptr || outlier_->version() == outlier_version_seen_) return;
  outlier_version_seen_ = outlier_->version();
  // Half-open hosts stay routable: the balancer may pick them, and TryAdmit lets one probe in.
  int64_t ejected = 0;
  for (const HostSharedPtr& host : hosts_.hosts()) {
    const auto state = outlier_->state(host->id());
    const bool is_ejected = state == resilience::OutlierDetector::HostState::kEjected;
    ejected += is_ejected;
    hosts_.SetHealthFlag(*host, Host::kOutlierEjected, is_ejected);
  }
  // This worker's share of the kSum gauge.
  ejections_active_published_ = ejected;
  stat_handles_.ejections_active.Set(ejected);
}

void Cluster::ArmOutlierTimer() {
  // A detector with nothing to expire, decay, evaluate or let go (OutlierDetector::NeedsTick:
  // consecutive-failure detection with every failing host in a streak below the threshold, the
  // usual state of a cluster whose endpoints refuse) lets its timer go, the handle back to the
  // loop's spares: the next result arms a new one if it changed that.
  if (outlier_ == nullptr || !outlier_->NeedsTick()) {
    outlier_timer_.reset();
    return;
  }
  Duration wait = config_->outlier_detection->interval;
  if (std::optional<MonotonicTime> expiry = outlier_->NextExpiry(); expiry.has_value()) {
    wait = std::min(wait, std::max(Duration(0), *expiry - clock_.Now()));
  }
  EnableTimer(outlier_timer_, &Cluster::TickOutlierDetection, wait);
}

void Cluster::DrainPool(std::unique_ptr<ConnPool> pool) {
  if (pool == nullptr) return;
  ConnPool* raw = pool.get();
  rare().draining_pools.push_back(std::move(pool));
  raw->Drain();  // its empty callback (PoolFor) destroys it once its streams ended
}

void Cluster::ReleaseEmptyPool(uint64_t host_id, ConnPool* pool) {
  if (pool->draining()) {
    if (rare_ == nullptr) return;
    std::vector<std::unique_ptr<ConnPool>>& draining = rare_->draining_pools;
    auto it = std::find_if(draining.begin(), draining.end(),
                           [pool](const auto& p) { return p.get() == pool; });
    if (it == draining.end()) return;  // fired again before the deferred delete
    // Fired from inside the pool's own callbacks.
    loop_.DeferDelete(std::move(*it));
    draining.erase(it);
    return;
  }
  auto it = pools_.find(host_id);
  if (it == pools_.end()) return;
  HostPools& entry = it->second;
  std::unique_ptr<ConnPool>& slot = entry.http1.get() == pool ? entry.http1 : entry.http2;
  if (slot.get() != pool) return;
  // Fired from inside the pool's own callbacks. The entry keeps the host's transport; one with
  // nothing left to keep goes (plaintext: the next PoolFor makes it again), and so does the table
  // once empty: a cluster whose connections were refused holds nothing for its hosts.
  loop_.DeferDelete(std::move(slot));
  if (entry.http1 == nullptr && entry.http2 == nullptr && entry.transport == nullptr &&
      entry.http1_transport == nullptr) {
    pools_.erase(it);
    if (pools_.empty()) pools_ = absl::flat_hash_map<uint64_t, HostPools>();
  }
}

void Cluster::DrainAllPools() {
  absl::flat_hash_map<uint64_t, HostPools> pools = std::move(pools_);
  pools_.clear();
  for (auto& [id, host_pools] : pools) {
    DrainPool(std::move(host_pools.http1));
    DrainPool(std::move(host_pools.http2));
  }
}

size_t Cluster::pool_count() const {
  size_t n = rare_ == nullptr ? 0 : rare_->draining_pools.size();
  for (const auto& [id, pools] : pools_) n += (pools.http1 != nullptr) + (pools.http2 != nullptr);
  return n;
}

size_t Cluster::timers_held() const {
  size_t n = outlier_timer_.has_value();
  if (rare_ != nullptr) n += rare_->overload_timer.has_value() + rare_->breaker_timer.has_value();
  return n;
}

}  // namespace meshlet::sidecar::cluster

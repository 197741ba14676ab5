#include "sidecar/cluster/health_checker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/event/timer.h"
#include "common/http/client.h"
#include "common/net/connection.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::cluster {
namespace {

bool SameHealthCheck(const HealthCheckConfig& a, const HealthCheckConfig& b) {
  return a.kind == b.kind && a.interval == b.interval && a.timeout == b.timeout &&
         a.healthy_threshold == b.healthy_threshold &&
         a.unhealthy_threshold == b.unhealthy_threshold && a.http_path == b.http_path &&
         a.http_host == b.http_host && a.expected_statuses == b.expected_statuses;
}

bool SameTls(const UpstreamTlsConfig& a, const UpstreamTlsConfig& b) {
  return a.enabled == b.enabled && a.secret_name == b.secret_name && a.sni == b.sni &&
         a.alpn == b.alpn && a.expected_peer_ids == b.expected_peer_ids && a.ca_file == b.ca_file &&
         a.workload_certificate == b.workload_certificate &&
         *a.subject_alt_names == *b.subject_alt_names;
}

}  // namespace

absl::string_view HealthCheckKindName(HealthCheckConfig::Kind kind) {
  switch (kind) {
    case HealthCheckConfig::Kind::kHttp:
      return "http";
    case HealthCheckConfig::Kind::kTcp:
      return "tcp";
    case HealthCheckConfig::Kind::kNone:
      break;
  }
  return "none";
}

void AppendHealthCheckJson(std::string& out, const HealthChecker* checker) {
  if (checker == nullptr) {
    out += "\"health_check\":null";
    return;
  }
  absl::StrAppend(&out, "\"health_check\":{\"kind\":\"",
                  HealthCheckKindName(checker->config().kind), "\",\"hosts\":[");
  std::vector<HealthChecker::HostState> hosts = checker->hosts();
  std::sort(hosts.begin(), hosts.end(), [](const auto& a, const auto& b) {
    return a.address.ToString() < b.address.ToString();
  });
  bool first = true;
  for (const HealthChecker::HostState& host : hosts) {
    if (!first) out += ",";
    first = false;
    out += "{\"address\":";
    AppendJsonString(&out, host.address.ToString());
    absl::StrAppend(&out, ",\"healthy\":", host.healthy ? "true" : "false",
                    ",\"checks\":", host.checks, ",\"failures\":", host.failures,
                    ",\"consecutive_failures\":", host.consecutive_failures, ",\"last_failure\":");
    AppendJsonString(&out, host.last_failure);
    out += "}";
  }
  out += "]}";
}

// ----------------------------------------------------------------------------------------------
// SharedHostHealth

uint64_t SharedHostHealth::Subscribe(event::Loop& loop, Listener listener) {
  MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  subscribers_.emplace(id, Subscriber{&loop, std::move(listener)});
  return id;
}

void SharedHostHealth::Unsubscribe(uint64_t id) {
  MutexLock lock(&mu_);
  subscribers_.erase(id);
}

void SharedHostHealth::NotifyLocked(const std::string& cluster) {
  // Subscribers read the current results when the call runs, so a burst of changes costs at most
  // one extra pass each; the loop outlives its subscription, which is removed under mu_.
  for (const auto& [id, subscriber] : subscribers_) {
    subscriber.loop->Post([listener = subscriber.listener, cluster] { listener(cluster); });
  }
}

void SharedHostHealth::Set(const std::string& cluster, const net::Address& address, bool healthy) {
  MutexLock lock(&mu_);
  bool changed;
  if (healthy) {
    auto it = unhealthy_.find(cluster);
    changed = it != unhealthy_.end() && it->second.erase(address) > 0;
    if (it != unhealthy_.end() && it->second.empty()) unhealthy_.erase(it);
  } else {
    changed = unhealthy_[cluster].insert(address).second;
  }
  if (changed) NotifyLocked(cluster);
}

void SharedHostHealth::Clear(const std::string& cluster) {
  MutexLock lock(&mu_);
  if (unhealthy_.erase(cluster) > 0) NotifyLocked(cluster);
}

void SharedHostHealth::Retain(const std::string& cluster,
                              const absl::flat_hash_set<net::Address>& keep) {
  MutexLock lock(&mu_);
  auto it = unhealthy_.find(cluster);
  if (it == unhealthy_.end()) return;
  absl::erase_if(it->second, [&](const net::Address& a) { return !keep.contains(a); });
  // Removed hosts are gone from the workers' sets anyway: nothing to notify.
  if (it->second.empty()) unhealthy_.erase(it);
}

bool SharedHostHealth::IsUnhealthy(absl::string_view cluster, const net::Address& address) const {
  MutexLock lock(&mu_);
  auto it = unhealthy_.find(cluster);
  return it != unhealthy_.end() && it->second.contains(address);
}

absl::flat_hash_set<net::Address> SharedHostHealth::Unhealthy(absl::string_view cluster) const {
  MutexLock lock(&mu_);
  auto it = unhealthy_.find(cluster);
  if (it == unhealthy_.end()) return {};
  return it->second;
}

// ----------------------------------------------------------------------------------------------
// HealthChecker::HostCheck: one endpoint's schedule, its check in flight and its state.

namespace {

// An HTTP check is an HTTP/1.1 request: over TLS it must not let ALPN agree on h2, which the
// cluster offers when it speaks HTTP/2.
EndpointTlsConfig TlsForCheck(EndpointTlsConfig tls, const HealthCheckConfig& config) {
  return config.kind == HealthCheckConfig::Kind::kHttp ? ForHttp1(std::move(tls)) : tls;
}

// Why an HTTP check got no answer, as the admin API shows it: "timeout", "connect_failed:
// connection refused", "transport_error: <why the peer was refused>", "malformed: <the codec's
// words>".
std::string HttpCheckFailure(const http::ClientResult& result) {
  switch (result.error) {
    case http::ClientError::kTimeout:
      return "timeout";
    case http::ClientError::kConnectFailed:
    case http::ClientError::kTlsFailed:
    case http::ClientError::kClosed:
      if (result.close_reason == net::CloseReason::kEndOfStream) return result.detail;
      return absl::StrCat(net::CloseReasonName(result.close_reason), ": ", result.detail);
    default:
      return absl::StrCat(http::ClientErrorName(result.error), ": ", result.detail);
  }
}

}  // namespace

class HealthChecker::HostCheck final : public net::ConnectionCallbacks {
 public:
  HostCheck(HealthChecker& checker, const EndpointConfig& endpoint, bool healthy)
      : checker_(checker),
        tls_(endpoint.tls),
        transport_(checker.transport_factory_ != nullptr
                       ? checker.transport_factory_(TlsForCheck(tls_, checker.config_))
                       : nullptr),
        interval_timer_(checker.loop_, [this] { StartCheck(); }),
        timeout_timer_(checker.loop_, [this] { Finish(false, "timeout"); }) {
    state_.address = endpoint.address;
    state_.healthy = healthy;
    const Duration interval = checker.config_.interval;
    // The first check soon, spread over the first tenth of an interval.
    interval_timer_.Enable(Duration(checker.random_.Uniform(interval.count() / 10 + 1)));
  }

  ~HostCheck() override { CloseConnection(); }

  const HostState& state() const { return state_; }
  const EndpointTlsConfig& tls() const { return tls_; }

  // net::ConnectionCallbacks (TCP checks)
  void OnConnected() override { Finish(true, ""); }
  void OnData(net::Buffer& data, bool) override { data.Drain(data.length()); }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    closed_ = true;
    Finish(false, absl::StrCat(net::CloseReasonName(reason), detail.ok() ? "" : ": ",
                               detail.ok() ? "" : detail.message()));
  }

 private:
  void StartCheck() {
    const HealthCheckConfig& config = checker_.config_;
    closed_ = false;
    in_flight_ = true;
    if (config.kind == HealthCheckConfig::Kind::kHttp) {
      http::ClientRequest request{
          .path = config.http_path,
          .authority = config.http_host.empty() ? state_.address.ToString() : config.http_host};
      request.headers.Add("user-agent", "meshlet-health-check");
      // Only the status is judged: the check ends with the answer's head.
      fetch_ = http::HttpFetch::Start(
          checker_.loop_, {state_.address}, std::move(request),
          {.timeout = config.timeout, .read_body = false, .transport_factory = transport_},
          [this](http::ClientResult&& result) { OnAnswer(result); });
      return;
    }
    connection_ =
        net::Connection::Connect(checker_.loop_, state_.address, config.timeout, transport_);
    connection_->SetCallbacks(this);
    timeout_timer_.Enable(config.timeout);
  }

  void OnAnswer(const http::ClientResult& result) {
    if (!result.ok()) {
      Finish(false, HttpCheckFailure(result));
      return;
    }
    const std::vector<uint32_t>& expected = checker_.config_.expected_statuses;
    if (std::find(expected.begin(), expected.end(), static_cast<uint32_t>(result.status)) ==
        expected.end()) {
      Finish(false, absl::StrCat("status ", result.status));
      return;
    }
    Finish(true, "");
  }

  void Finish(bool success, absl::string_view why) {
    if (!in_flight_) return;
    in_flight_ = false;
    timeout_timer_.Disable();
    CloseConnection();
    ++state_.checks;
    checker_.stats_.checks.Inc();
    const HealthCheckConfig& config = checker_.config_;
    bool changed = false;
    if (success) {
      state_.consecutive_failures = 0;
      ++state_.consecutive_successes;
      if (!state_.healthy && state_.consecutive_successes >= config.healthy_threshold) {
        state_.healthy = true;
        changed = true;
      }
    } else {
      ++state_.failures;
      checker_.stats_.failures.Inc();
      state_.last_failure = std::string(why);
      state_.consecutive_successes = 0;
      ++state_.consecutive_failures;
      if (state_.healthy && state_.consecutive_failures >= config.unhealthy_threshold) {
        state_.healthy = false;
        changed = true;
      }
    }
    interval_timer_.Enable(checker_.NextInterval());
    if (changed) checker_.OnHostHealthChanged(*this);
  }

  void CloseConnection() {
    fetch_.reset();  // cancels it (allowed inside its own callback)
    if (connection_ == nullptr) return;
    connection_->SetCallbacks(nullptr);
    if (!closed_) connection_->Close(net::CloseMode::kNoFlush);
    // May run inside the connection's own callback.
    checker_.loop_.DeferDelete(std::move(connection_));
  }

  HealthChecker& checker_;
  const EndpointTlsConfig tls_;  // what transport_ was made for
  const net::TransportFactory transport_;
  HostState state_;
  event::Timer interval_timer_;
  event::Timer timeout_timer_;
  std::unique_ptr<net::Connection> connection_;  // a TCP check in flight
  std::unique_ptr<http::HttpFetch> fetch_;       // an HTTP check in flight
  bool in_flight_ = false;
  bool closed_ = false;
};

// ----------------------------------------------------------------------------------------------
// HealthChecker

HealthChecker::HealthChecker(event::Loop& loop, const ClusterConfig& config, Random& random,
                             const Clock& clock, SharedHostHealth& results, HealthCheckStats stats,
                             EndpointTransportFactory transport_factory)
    : loop_(loop),
      cluster_(config.name),
      config_(*config.health_check),
      random_(random),
      clock_(clock),
      results_(results),
      stats_(stats),
      transport_factory_(std::move(transport_factory)) {
  CHECK(config_.kind != HealthCheckConfig::Kind::kNone) << cluster_;
  UpdateEndpoints(config.endpoints);
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::UpdateEndpoints(const std::vector<EndpointConfig>& endpoints) {
  absl::flat_hash_set<net::Address> keep;
  for (const EndpointConfig& endpoint : endpoints) keep.insert(endpoint.address);
  absl::erase_if(hosts_, [&](const auto& entry) { return !keep.contains(entry.first); });
  results_.Retain(cluster_, keep);
  for (const EndpointConfig& endpoint : endpoints) {
    auto it = hosts_.find(endpoint.address);
    // An endpoint whose TLS settings changed is checked over its new transport from now on.
    if (it != hosts_.end() && it->second->tls() == endpoint.tls) continue;
    // A checker replaced by new settings keeps what the old one found.
    hosts_[endpoint.address] = std::make_unique<HostCheck>(
        *this, endpoint, !results_.IsUnhealthy(cluster_, endpoint.address));
  }
  PublishHealthyCount();
}

void HealthChecker::OnHostHealthChanged(HostCheck& host) {
  const HostState& state = host.state();
  stats_.transitions.Inc();
  LOG(INFO) << "cluster " << cluster_ << ": " << state.address.ToString() << " is now "
            << (state.healthy ? "healthy" : "unhealthy") << " (active health check"
            << (state.healthy ? "" : absl::StrCat(": ", state.last_failure)) << ")";
  results_.Set(cluster_, state.address, state.healthy);
  PublishHealthyCount();
}

void HealthChecker::PublishHealthyCount() {
  int64_t healthy = 0;
  for (const auto& [address, host] : hosts_) healthy += host->state().healthy;
  stats_.hosts_healthy.Set(healthy);
}

Duration HealthChecker::NextInterval() {
  const int64_t interval = config_.interval.count();
  const int64_t spread = interval / 5;  // ±10 %
  return Duration(interval - spread / 2 + static_cast<int64_t>(random_.Uniform(spread + 1)));
}

std::vector<HealthChecker::HostState> HealthChecker::hosts() const {
  std::vector<HostState> out;
  out.reserve(hosts_.size());
  for (const auto& [address, host] : hosts_) out.push_back(host->state());
  return out;
}

// ----------------------------------------------------------------------------------------------
// HealthCheckManager

HealthCheckManager::HealthCheckManager(event::Loop& loop, Random& random, const Clock& clock,
                                       StatsShard& stats, SharedHostHealth& results,
                                       TransportFactoryFor transport_factory)
    : loop_(loop),
      random_(random),
      clock_(clock),
      stats_(stats),
      results_(results),
      transport_factory_(std::move(transport_factory)) {}

HealthCheckManager::~HealthCheckManager() = default;

void HealthCheckManager::Update(const ClusterSet& clusters) {
  for (auto it = checkers_.begin(); it != checkers_.end();) {
    auto found = clusters.find(it->first);
    const ClusterConfig* config = found == clusters.end() ? nullptr : found->second.get();
    if (config == nullptr || config->health_check->kind == HealthCheckConfig::Kind::kNone) {
      results_.Clear(it->first);
      tls_seen_.erase(it->first);
      it = checkers_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, config] : clusters) {
    if (config == nullptr || config->health_check->kind == HealthCheckConfig::Kind::kNone) continue;
    UpdateChecker(name, *config);
  }
}

void HealthCheckManager::Update(const ClusterSet& clusters, absl::Span<const std::string> changed) {
  for (const std::string& name : changed) {
    auto found = clusters.find(name);
    const ClusterConfig* config = found == clusters.end() ? nullptr : found->second.get();
    if (config == nullptr || config->health_check->kind == HealthCheckConfig::Kind::kNone) {
      StopChecker(name);
    } else {
      UpdateChecker(name, *config);
    }
  }
}

void HealthCheckManager::StopChecker(const std::string& name) {
  auto it = checkers_.find(name);
  if (it == checkers_.end()) return;
  results_.Clear(it->first);
  tls_seen_.erase(it->first);
  checkers_.erase(it);
}

void HealthCheckManager::UpdateChecker(const std::string& name, const ClusterConfig& config) {
  auto it = checkers_.find(name);
  if (it != checkers_.end() && SameHealthCheck(it->second->config(), *config.health_check) &&
      (transport_factory_ == nullptr || SameTls(tls_seen_[name], config.tls))) {
    it->second->UpdateEndpoints(config.endpoints);
    return;
  }
  const LabelSet labels = {{"cluster", name}};
  HealthCheckStats stats{
      .checks = OrDiscard(stats_.RegisterCounter("meshlet_upstream_health_check_total",
                                                 "Active health checks run.", labels),
                          "meshlet_upstream_health_check_total"),
      .failures =
          OrDiscard(stats_.RegisterCounter("meshlet_upstream_health_check_failure_total",
                                           "Active health checks that failed (refused, timed out, "
                                           "unexpected status).",
                                           labels),
                    "meshlet_upstream_health_check_failure_total"),
      .hosts_healthy =
          OrDiscard(stats_.RegisterGauge("meshlet_upstream_health_check_hosts_healthy",
                                         "Endpoints passing their active health checks.", labels,
                                         GaugeMerge::kGlobal),
                    "meshlet_upstream_health_check_hosts_healthy"),
      .transitions =
          OrDiscard(stats_.RegisterCounter("meshlet_upstream_health_check_transitions_total",
                                           "Endpoints that turned healthy or unhealthy.", labels),
                    "meshlet_upstream_health_check_transitions_total"),
  };
  EndpointTransportFactory transport;
  if (transport_factory_ != nullptr) transport = transport_factory_(config);
  tls_seen_[name] = config.tls;
  checkers_[name] = nullptr;  // the old checker goes first: its hosts' results are kept
  checkers_[name] = std::make_unique<HealthChecker>(loop_, config, random_, clock_, results_, stats,
                                                    std::move(transport));
}

const HealthChecker* HealthCheckManager::Find(absl::string_view cluster) const {
  auto it = checkers_.find(cluster);
  return it == checkers_.end() ? nullptr : it->second.get();
}

}  // namespace meshlet::sidecar::cluster

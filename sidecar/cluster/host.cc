#include "sidecar/cluster/host.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/base/logging.h"

namespace meshlet::sidecar::cluster {

Host::Host(uint64_t id, const EndpointConfig* endpoint)
    : id_(id),
      health_flags_(0),
      in_set_(0),
      endpoint_(endpoint),
      session_key_(SessionKey(endpoint_->address.ToString())) {
  CHECK(id <= kMaxId);
  UpdateFrom(endpoint_);
}

void Host::UpdateFrom(const EndpointConfig* endpoint) {
  health_flags_ =
      (health_flags_ & ~uint64_t{kFailedEds | kDraining}) | EdsHealthFlags(endpoint->health);
  endpoint_ = endpoint;
}

void Host::LeaveSet(std::shared_ptr<const void> owner) {
  in_set_ = 0;
  Extra& extra = MutableExtra();
  if (extra.removed == nullptr) extra.removed = std::make_unique<Removed>();
  extra.removed->owner = std::move(owner);
}

uint32_t Host::EdsHealthFlags(EndpointHealth health) {
  switch (health) {
    case EndpointHealth::kUnhealthy:
      return kFailedEds;
    case EndpointHealth::kDraining:
      return kDraining;
    case EndpointHealth::kHealthy:
      break;
  }
  return 0;
}

const HostStats& Host::stats() const {
  static const HostStats kNone;
  return extra_ != nullptr ? extra_->stats : kNone;
}

HostStats& Host::mutable_stats() { return MutableExtra().stats; }

Host::Extra& Host::MutableExtra() {
  if (extra_ == nullptr) extra_ = std::make_unique<Extra>();
  return *extra_;
}

Host::Load& Host::MutableLoad() {
  Extra& extra = MutableExtra();
  if (extra.load == nullptr) extra.load = std::make_unique<Load>();
  return *extra.load;
}

void Host::RecordLatency(Duration latency, MonotonicTime now, Duration decay) {
  Load& load = MutableLoad();
  const double sample = static_cast<double>(std::max<int64_t>(latency.count(), 0));
  if (load.ewma_ns == 0 || sample > load.ewma_ns || decay.count() <= 0) {
    load.ewma_ns = sample;
  } else {
    // Weight of the old value shrinks with the time since the last sample, so a host that was
    // slow a long time ago is not held against it by a single fast sample.
    const double elapsed =
        static_cast<double>(std::max<int64_t>((now - load.ewma_updated).count(), 0));
    const double w = std::exp(-elapsed / static_cast<double>(decay.count()));
    load.ewma_ns = load.ewma_ns * w + sample * (1 - w);
  }
  load.ewma_updated = now;
}

void Host::Penalize(uint32_t factor, MonotonicTime now, Duration duration) {
  if (factor <= 1 || duration <= Duration::zero()) {
    if (penalized()) extra_->load->penalty_factor = 0;  // no penalty
    return;
  }
  Load& load = MutableLoad();
  load.penalty_factor = factor;
  load.penalty_until = now + duration;
  load.penalty_duration = duration;
}

HostSet::~HostSet() {
  // A host someone else still holds keeps its endpoint's configuration.
  for (const HostSharedPtr& host : hosts_) {
    if (host->refs_ > 1) {
      host->LeaveSet(owner_);
    } else {
      host->in_set_ = 0;
    }
  }
}

std::vector<HostSharedPtr> HostSet::Update(absl::Span<const EndpointConfig> endpoints,
                                           std::shared_ptr<const void> owner) {
  if (owner == nullptr) {
    auto copy =
        std::make_shared<const std::vector<EndpointConfig>>(endpoints.begin(), endpoints.end());
    endpoints = absl::MakeConstSpan(*copy);
    owner = std::move(copy);
  }
  std::shared_ptr<const void> previous_owner = std::exchange(owner_, owner);
  absl::flat_hash_map<net::Address, HostSharedPtr> existing;
  existing.reserve(hosts_.size());
  for (HostSharedPtr& host : hosts_) existing.emplace(host->address(), std::move(host));

  std::vector<HostSharedPtr> next;
  next.reserve(endpoints.size());
  absl::flat_hash_set<net::Address> seen;
  for (const EndpointConfig& endpoint : endpoints) {
    if (!seen.insert(endpoint.address).second) continue;
    auto it = existing.find(endpoint.address);
    // The host refers to the configuration's entry, which owner_ keeps alive.
    if (it != existing.end()) {
      it->second->UpdateFrom(&endpoint);
      next.push_back(std::move(it->second));
      existing.erase(it);
    } else {
      HostSharedPtr host(new Host(next_id_++, &endpoint));
      host->in_set_ = 1;
      next.push_back(std::move(host));
    }
  }
  std::vector<HostSharedPtr> removed;
  removed.reserve(existing.size());
  for (auto& [address, host] : existing) {
    host->LeaveSet(previous_owner);
    removed.push_back(std::move(host));
  }
  hosts_ = std::move(next);
  Recount();
  ++version_;
  return removed;
}

void HostSet::SetHealthFlag(Host& host, Host::HealthFlag flag, bool set) {
  const uint64_t before = host.health_flags_;
  if (set) {
    host.health_flags_ = before | flag;
  } else {
    host.health_flags_ = before & ~uint64_t{flag};
  }
  // A host removed from the set no longer moves its version.
  if (!host.in_set_ || before == host.health_flags_) return;
  if ((before == 0) != (host.health_flags_ == 0)) Recount();
  ++version_;
}

Host* HostSet::Find(const net::Address& address) const {
  for (const HostSharedPtr& host : hosts_) {
    if (host->address() == address) return host.get();
  }
  return nullptr;
}

Host* HostSet::FindBySessionKey(uint64_t key) const {
  for (const HostSharedPtr& host : hosts_) {
    if (host->session_key() == key) return host.get();
  }
  return nullptr;
}

Host* HostSet::FindById(uint64_t id) const {
  for (const HostSharedPtr& host : hosts_) {
    if (host->id() == id) return host.get();
  }
  return nullptr;
}

void HostSet::Recount() {
  healthy_count_ = static_cast<size_t>(std::count_if(
      hosts_.begin(), hosts_.end(), [](const HostSharedPtr& h) { return h->healthy(); }));
}

}  // namespace meshlet::sidecar::cluster

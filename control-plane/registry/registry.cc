#include "control-plane/registry/registry.h"

#include <algorithm>
#include <optional>

#include "absl/strings/numbers.h"

namespace meshlet::controlplane::registry {

Workload WorkloadFromNode(const xds::Node& node) {
  Workload w;
  w.id = node.id();
  w.service = node.service();
  w.namespace_ = node.namespace_().empty() ? "default" : node.namespace_();
  w.service_account = node.service_account();
  w.labels.insert(node.labels().begin(), node.labels().end());
  w.addresses.assign(node.addresses().begin(), node.addresses().end());
  w.ports.assign(node.ports().begin(), node.ports().end());
  w.sidecar_version = node.sidecar_version();
  w.locality = node.locality();
  // Listener ports of sidecars that share a host (no traffic interception) travel as labels
  // until the Node carries them.
  auto port_label = [&](const char* key) -> uint32_t {
    auto it = node.labels().find(key);
    uint32_t port = 0;
    if (it == node.labels().end() || !absl::SimpleAtoi(it->second, &port) || port > 65535) {
      return 0;
    }
    return port;
  };
  w.inbound_port = port_label(kInboundPortLabel);
  w.outbound_port = port_label(kOutboundPortLabel);
  auto cert = node.labels().find(kWorkloadCertificateLabel);
  w.workload_certificate = cert != node.labels().end() && cert->second == "true";
  auto capture = node.labels().find(kCaptureLabel);
  w.capture = capture != node.labels().end() && capture->second == kCaptureIptables;
  return w;
}

bool KubernetesServices::operator==(const KubernetesServices& other) const {
  return std::equal(services.begin(), services.end(), other.services.begin(), other.services.end(),
                    [](const auto& a, const auto& b) {
                      return a == b || (a != nullptr && b != nullptr && *a == *b);
                    });
}

const Workload* RegistrySnapshot::Find(absl::string_view id) const {
  auto it = std::lower_bound(workloads.begin(), workloads.end(), id,
                             [](const Workload& w, absl::string_view key) { return w.id < key; });
  return it != workloads.end() && it->id == id ? &*it : nullptr;
}

std::vector<const Workload*> RegistrySnapshot::ForService(absl::string_view namespace_,
                                                          absl::string_view service) const {
  std::vector<const Workload*> out;
  for (const Workload& w : workloads) {
    if (w.namespace_ == namespace_ && w.service == service) out.push_back(&w);
  }
  return out;
}

class Registry::Watcher final : public WatchHandle {
 public:
  Watcher(Registry& registry, uint64_t id) : registry_(registry), id_(id) {}
  ~Watcher() override {
    std::lock_guard<std::mutex> lock(registry_.mu_);
    registry_.watchers_.erase(id_);
  }

 private:
  Registry& registry_;
  uint64_t id_;
};

Registry::Registry(const Clock& clock, RegistryOptions options)
    : clock_(clock), options_(std::move(options)) {}

Registry::~Registry() = default;

void Registry::ExpectKubernetesServices() {
  std::unique_lock<std::mutex> lock(mu_);
  if (kubernetes_expected_) return;
  kubernetes_expected_ = true;
  NotifyLocked(lock);
}

void Registry::SetKubernetesServices(std::shared_ptr<const KubernetesServices> services) {
  std::unique_lock<std::mutex> lock(mu_);
  kubernetes_ = std::move(services);
  NotifyLocked(lock);
}

bool RemoteEndpoint::operator==(const RemoteEndpoint& other) const {
  return cluster == other.cluster && host == other.host && port == other.port &&
         locality.SerializeAsString() == other.locality.SerializeAsString() &&
         identities == other.identities && members == other.members && stale == other.stale;
}

bool SameRemote(const std::shared_ptr<const RemoteEndpoint>& a,
                const std::shared_ptr<const RemoteEndpoint>& b) {
  return a == b || (a != nullptr && b != nullptr && *a == *b);
}

bool SameRemote(const std::vector<std::shared_ptr<const RemoteEndpoint>>& a,
                const std::vector<std::shared_ptr<const RemoteEndpoint>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameRemote(a[i], b[i])) return false;
  }
  return true;
}

bool RemoteServices::operator==(const RemoteServices& other) const {
  if (services.size() != other.services.size()) return false;
  for (auto a = services.begin(), b = other.services.begin(); a != services.end(); ++a, ++b) {
    if (a->first != b->first || !SameRemote(a->second, b->second)) return false;
  }
  return true;
}

void Registry::SetRemoteServices(std::shared_ptr<const RemoteServices> services) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool empty = services == nullptr || services->services.empty();
  const bool was_empty = remote_ == nullptr || remote_->services.empty();
  if ((empty && was_empty) || (!empty && !was_empty && *services == *remote_)) return;
  remote_ = empty ? nullptr : std::move(services);
  NotifyLocked(lock);
}

void Registry::NotifyLocked(std::unique_lock<std::mutex>& lock) {
  ++version_;
  snapshot_.reset();
  const uint64_t version = version_;
  std::vector<std::shared_ptr<WatchCallback>> callbacks;
  callbacks.reserve(watchers_.size());
  for (const auto& [id, callback] : watchers_) callbacks.push_back(callback);
  lock.unlock();
  for (const auto& callback : callbacks) (*callback)(version);
}

namespace {
// Registration fields only: connection state and readiness are the registry's own.
bool SameRegistration(const Workload& a, const Workload& b) {
  return a.service == b.service && a.namespace_ == b.namespace_ &&
         a.service_account == b.service_account && a.labels == b.labels &&
         a.addresses == b.addresses && a.ports == b.ports &&
         a.sidecar_version == b.sidecar_version && a.inbound_port == b.inbound_port &&
         a.outbound_port == b.outbound_port;
}
// A new entry for `registration` registered at `now`: connected with one stream, or, given
// `expires_at`, disconnected and due for removal then.
Workload NewEntry(const Workload& registration, absl::Time now,
                  std::optional<MonotonicTime> expires_at) {
  Workload w = registration;
  if (w.namespace_.empty()) w.namespace_ = "default";
  w.connected = !expires_at.has_value();
  w.open_streams = w.connected ? 1 : 0;
  w.registered_at = now;
  w.last_heartbeat = now;
  w.disconnected_at = w.connected ? absl::InfinitePast() : now;
  w.expires_at = expires_at.value_or(MonotonicTime{});
  return w;
}
}  // namespace

bool Registry::Connect(const Workload& registration) {
  if (registration.id.empty()) return false;
  Workload workload = registration;
  if (workload.namespace_.empty()) workload.namespace_ = "default";
  std::unique_lock<std::mutex> lock(mu_);
  const absl::Time now = clock_.WallNow();
  auto it = workloads_.find(workload.id);
  workload.replica = options_.replica;
  if (it == workloads_.end()) {
    if (workloads_.size() >= options_.max_workloads) return false;
    workloads_.emplace(workload.id, NewEntry(workload, now, /*expires_at=*/std::nullopt));
    LocalChangedLocked(workload.id);
    NotifyLocked(lock);
    return true;
  }
  Workload& w = it->second;
  const bool changed = !SameRegistration(w, workload) || !w.connected;
  const bool keep_ready = w.ready;
  const int open_streams = w.open_streams;
  const absl::Time registered_at = w.connected ? w.registered_at : now;
  w = workload;
  if (w.namespace_.empty()) w.namespace_ = "default";
  w.ready = keep_ready;
  w.connected = true;
  w.open_streams = open_streams + 1;
  w.registered_at = registered_at;
  w.last_heartbeat = now;
  w.disconnected_at = absl::InfinitePast();
  w.expires_at = {};
  if (changed) {
    LocalChangedLocked(w.id);
    NotifyLocked(lock);
  } else {
    snapshot_.reset();  // stream count and heartbeat changed; translation inputs did not
  }
  return true;
}

bool Registry::Restore(const Workload& saved) {
  if (saved.id.empty()) return false;
  const absl::Time now = clock_.WallNow();
  Duration grace = options_.deregister_grace;
  const bool gone_before = !saved.connected && saved.disconnected_at > absl::UnixEpoch();
  if (gone_before) {
    // Its sidecar had left before the restart: only the rest of its grace period, so that a
    // control plane restarting again and again does not keep a gone workload for ever. (One that
    // was connected gets a whole grace period: its sidecar needs time to reconnect.)
    const Duration away =
        std::max(Duration::zero(), absl::ToChronoNanoseconds(now - saved.disconnected_at));
    if (away >= grace) return false;
    grace -= away;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (workloads_.size() >= options_.max_workloads || workloads_.count(saved.id) > 0) return false;
  auto [it, inserted] = workloads_.emplace(saved.id, NewEntry(saved, now, clock_.Now() + grace));
  it->second.replica = options_.replica;
  // Never later than now, so that a wall clock that stepped back cannot renew the grace.
  if (gone_before) it->second.disconnected_at = std::min(saved.disconnected_at, now);
  LocalChangedLocked(saved.id);
  NotifyLocked(lock);
  return true;
}

bool Registry::Heartbeat(absl::string_view id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workloads_.find(id);
  if (it == workloads_.end()) return false;
  // Snapshots keep the heartbeat time of their last change: rebuilding them for every
  // heartbeat would copy the whole registry per message at scale.
  it->second.last_heartbeat = clock_.WallNow();
  return true;
}

Registry::ReadyChange Registry::SetReady(absl::string_view id, bool ready) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = workloads_.find(id);
  if (it == workloads_.end()) return ReadyChange::kUnknownWorkload;
  it->second.last_heartbeat = clock_.WallNow();
  if (it->second.ready == ready) return ReadyChange::kUnchanged;
  it->second.ready = ready;
  LocalChangedLocked(it->first);
  NotifyLocked(lock);
  return ReadyChange::kChanged;
}

bool Registry::Disconnect(absl::string_view id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = workloads_.find(id);
  if (it == workloads_.end() || it->second.open_streams == 0) return false;
  Workload& w = it->second;
  if (--w.open_streams > 0) {
    snapshot_.reset();
    return true;
  }
  w.connected = false;
  w.disconnected_at = clock_.WallNow();
  w.expires_at = clock_.Now() + options_.deregister_grace;
  LocalChangedLocked(w.id);
  NotifyLocked(lock);
  return true;
}

size_t Registry::ExpireDisconnected() {
  std::unique_lock<std::mutex> lock(mu_);
  const MonotonicTime now = clock_.Now();
  size_t removed = 0;
  for (auto it = workloads_.begin(); it != workloads_.end();) {
    if (!it->second.connected && it->second.expires_at <= now) {
      LocalChangedLocked(it->first);
      it = workloads_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  for (auto it = peers_.begin(); it != peers_.end();) {
    std::erase_if(it->second, [&](const auto& entry) {
      const bool expired = entry.second.ghost && entry.second.workload.expires_at <= now;
      removed += expired ? 1 : 0;
      return expired;
    });
    it = it->second.empty() ? peers_.erase(it) : std::next(it);
  }
  if (removed > 0) NotifyLocked(lock);
  return removed;
}

std::optional<MonotonicTime> Registry::NextExpiry() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<MonotonicTime> next;
  for (const auto& [id, w] : workloads_) {
    if (!w.connected && (!next || w.expires_at < *next)) next = w.expires_at;
  }
  for (const auto& [id, entries] : peers_) {
    for (const auto& [owner, entry] : entries) {
      if (entry.ghost && (!next || entry.workload.expires_at < *next)) {
        next = entry.workload.expires_at;
      }
    }
  }
  return next;
}

std::shared_ptr<const RegistrySnapshot> Registry::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (snapshot_ == nullptr) {
    auto snapshot = std::make_shared<RegistrySnapshot>();
    snapshot->version = version_;
    snapshot->kubernetes = kubernetes_;
    snapshot->remote = remote_;
    snapshot->kubernetes_pending = kubernetes_expected_ && kubernetes_ == nullptr;
    snapshot->workloads = MergedLocked();
    snapshot_ = std::move(snapshot);
  }
  return snapshot_;
}

RegistrySnapshot Registry::CurrentWorkloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  RegistrySnapshot out;
  out.version = version_;
  out.workloads = MergedLocked();
  return out;
}

uint64_t Registry::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

size_t Registry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workloads_.size();
}

size_t Registry::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [id, w] : workloads_) n += w.connected ? 1 : 0;
  return n;
}

size_t Registry::peer_only() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [id, entries] : peers_) n += workloads_.count(id) == 0 ? 1 : 0;
  return n;
}

void Registry::LocalChangedLocked(const std::string& id) {
  if (options_.track_local_changes) local_changed_.insert(id);
}

std::vector<LocalChange> Registry::TakeLocalChanges() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LocalChange> out;
  out.reserve(local_changed_.size());
  for (const std::string& id : local_changed_) {
    auto it = workloads_.find(id);
    out.push_back(
        {id, it == workloads_.end() ? std::nullopt : std::optional<Workload>(it->second)});
  }
  local_changed_.clear();
  return out;
}

void Registry::ApplyPeerChanges(const std::vector<PeerChange>& changes) {
  std::unique_lock<std::mutex> lock(mu_);
  const absl::Time wall_now = clock_.WallNow();
  const MonotonicTime now = clock_.Now();
  bool changed = false;
  for (const PeerChange& change : changes) {
    if (change.id.empty() || change.owner.empty()) continue;
    if (change.workload.has_value()) {
      Workload w = *change.workload;
      w.id = change.id;
      if (w.namespace_.empty()) w.namespace_ = "default";
      w.open_streams = 0;  // streams are the other replica's
      if (!w.connected) {
        // For people: when its replica will remove it (that replica does the removing).
        const Duration away =
            std::max(Duration::zero(), absl::ToChronoNanoseconds(wall_now - w.disconnected_at));
        w.expires_at = now + std::max(Duration::zero(), options_.deregister_grace - away);
      }
      peers_[change.id][change.owner] = PeerEntry{std::move(w), /*ghost=*/false};
      changed = true;
      continue;
    }
    auto it = peers_.find(change.id);
    if (it == peers_.end()) continue;
    auto entry = it->second.find(change.owner);
    if (entry == it->second.end()) continue;
    Workload& w = entry->second.workload;
    if (w.connected && !entry->second.ghost) {
      // Its replica is gone (or lost etcd for the lease's lifetime): the sidecar is probably
      // reconnecting to another replica. Kept like a local workload whose stream closed.
      w.connected = false;
      w.disconnected_at = wall_now;
      w.expires_at = now + options_.deregister_grace;
      entry->second.ghost = true;
    } else {
      it->second.erase(entry);
      if (it->second.empty()) peers_.erase(it);
    }
    changed = true;
  }
  if (changed) NotifyLocked(lock);
}

std::vector<Workload> Registry::MergedLocked() const {
  std::vector<Workload> out;
  out.reserve(workloads_.size() + peers_.size());
  auto local = workloads_.begin();
  auto peer = peers_.begin();
  while (local != workloads_.end() || peer != peers_.end()) {
    if (peer == peers_.end() || (local != workloads_.end() && local->first < peer->first)) {
      out.push_back(local->second);
      ++local;
      continue;
    }
    const Workload* best = nullptr;
    bool best_is_local = false;
    if (local != workloads_.end() && local->first == peer->first) {
      best = &local->second;
      best_is_local = true;
      ++local;
    }
    for (const auto& [owner, entry] : peer->second) {
      const Workload& candidate = entry.workload;
      const bool better = best == nullptr ||
                          (candidate.connected != best->connected
                               ? candidate.connected
                               : !best_is_local && candidate.registered_at > best->registered_at);
      if (better) {
        best = &candidate;
        best_is_local = false;
      }
    }
    out.push_back(*best);
    ++peer;
  }
  return out;
}

std::unique_ptr<Registry::WatchHandle> Registry::Watch(WatchCallback callback) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_watch_id_++;
  watchers_.emplace(id, std::make_shared<WatchCallback>(std::move(callback)));
  return std::make_unique<Watcher>(*this, id);
}

}  // namespace meshlet::controlplane::registry

// EtcdStore's leased keys (LeasedKeys, leased_keys.h): the lease this replica holds and keeps
// alive, its own keys written under it, and the other replicas' keys reported to watchers.
// Connecting, the resources and the watch that also carries the leased keys' changes are in
// etcd_store.cc. Threading as in etcd_store.h: writes go through the store's loop thread.

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "control-plane/store/etcd.pb.h"
#include "control-plane/store/etcd_store.h"
#include "control-plane/store/etcd_store_internal.h"

namespace meshlet::controlplane {

using etcd_internal::kLeasedBatch;
using etcd_internal::kLeaseGrant;
using etcd_internal::kLeaseKeepAlive;
using etcd_internal::kTxn;
using etcd_internal::LeaseOwner;
using http::grpc::StatusCode;

class EtcdStore::LeasedWatcher final : public LeasedKeys::WatchHandle {
 public:
  LeasedWatcher(EtcdStore* store, uint64_t id) : store_(store), id_(id) {}
  ~LeasedWatcher() override {
    MutexLock lock(&store_->mu_);
    store_->leased_watchers_.erase(id_);
  }

 private:
  EtcdStore* store_;
  uint64_t id_;
};

void EtcdStore::SetLeased(std::string name, std::string value) {
  loop_.Post([this, name = std::move(name), value = std::move(value)]() mutable {
    leased_dirty_.insert(name);
    leased_desired_[std::move(name)] = std::move(value);
    WriteLeased();
  });
}

void EtcdStore::DeleteLeased(std::string name) {
  loop_.Post([this, name = std::move(name)]() mutable {
    leased_desired_.erase(name);
    leased_dirty_.insert(std::move(name));
    WriteLeased();
  });
}

void EtcdStore::LeasedRegistered::Deliver(const std::vector<LeasedKeyEvent>& events) const {
  std::vector<LeasedKeyEvent> matching;
  for (const LeasedKeyEvent& event : events) {
    if (absl::StartsWith(event.name, prefix)) matching.push_back(event);
  }
  if (!matching.empty()) callback(matching);
}

std::unique_ptr<LeasedKeys::WatchHandle> EtcdStore::WatchLeased(
    std::string prefix, LeasedKeys::WatchCallback callback) {
  auto registered = std::make_shared<LeasedRegistered>(
      LeasedRegistered{.prefix = std::move(prefix), .callback = std::move(callback)});
  uint64_t id;
  {
    MutexLock lock(&mu_);
    id = next_leased_watch_id_++;
    leased_watchers_.emplace(id, registered);
  }
  // On the store thread: everything known now, then (primed) every change after it.
  loop_.Post([this, id, registered] {
    {
      MutexLock lock(&mu_);
      if (leased_watchers_.count(id) == 0) return;  // already gone
    }
    std::vector<LeasedKeyEvent> now;
    now.reserve(leased_others_.size());
    for (const auto& [etcd_key, other] : leased_others_) now.push_back(other);
    registered->primed = true;
    registered->Deliver(now);
  });
  return std::make_unique<LeasedWatcher>(this, id);
}

uint64_t EtcdStore::leases_granted() const {
  MutexLock lock(&mu_);
  return leases_granted_;
}

int64_t EtcdStore::lease() const {
  MutexLock lock(&mu_);
  return lease_;
}

std::optional<EtcdStore::LeasedKey> EtcdStore::LeasedFrom(absl::string_view etcd_key) const {
  if (!absl::ConsumePrefix(&etcd_key, leased_prefix_)) return std::nullopt;
  const size_t slash = etcd_key.find('/');
  uint64_t lease = 0;
  if (slash != 16 || slash + 1 == etcd_key.size() ||
      !absl::SimpleHexAtoi(etcd_key.substr(0, slash), &lease) ||
      own_leases_.count(static_cast<int64_t>(lease)) > 0) {
    return std::nullopt;
  }
  return LeasedKey{std::string(etcd_key.substr(0, slash)), std::string(etcd_key.substr(slash + 1))};
}

void EtcdStore::NoteLeased(const std::string& etcd_key, std::optional<std::string> value,
                           std::vector<LeasedKeyEvent>& events) {
  if (!value.has_value()) {
    auto it = leased_others_.find(etcd_key);
    if (it == leased_others_.end()) return;
    events.push_back(
        {LeasedKeyEvent::Type::kDelete, std::move(it->second.owner), std::move(it->second.name)});
    leased_others_.erase(it);
    return;
  }
  std::optional<LeasedKey> key = LeasedFrom(etcd_key);
  if (!key.has_value()) return;
  LeasedKeyEvent& known = leased_others_[etcd_key];
  if (!known.owner.empty() && known.value == *value) return;  // no change
  known = {LeasedKeyEvent::Type::kPut, std::move(key->owner), std::move(key->name),
           *std::move(value)};
  events.push_back(known);
}

void EtcdStore::DeliverLeased(const std::vector<LeasedKeyEvent>& events) {
  if (events.empty()) return;
  std::vector<std::shared_ptr<LeasedRegistered>> watchers;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, watcher] : leased_watchers_) watchers.push_back(watcher);
  }
  for (const auto& watcher : watchers) {
    if (watcher->primed) watcher->Deliver(events);
  }
}

void EtcdStore::WriteLeased() {
  if (stopping_ || leased_busy_ || leased_dirty_.empty()) return;
  if (lease_id_ == 0) {
    GrantLease();
    return;
  }
  const std::string owner = LeaseOwner(lease_id_);
  etcd::TxnRequest txn;
  // What this transaction writes: the value, or nullopt for a delete.
  std::vector<std::pair<std::string, std::optional<std::string>>> batch;
  for (auto it = leased_dirty_.begin(); it != leased_dirty_.end() && batch.size() < kLeasedBatch;
       it = leased_dirty_.erase(it)) {
    const std::string& name = *it;
    const std::string key = absl::StrCat(leased_prefix_, owner, "/", name);
    auto want = leased_desired_.find(name);
    auto written = leased_written_.find(name);
    if (want != leased_desired_.end()) {
      if (written != leased_written_.end() && written->second == want->second) continue;
      etcd::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(want->second);
      put->set_lease(lease_id_);
      batch.emplace_back(name, want->second);
    } else if (written != leased_written_.end()) {
      txn.add_success()->mutable_request_delete_range()->set_key(key);
      batch.emplace_back(name, std::nullopt);
    }
  }
  if (batch.empty()) return;
  leased_busy_ = true;
  http::grpc::CallOptions call;
  call.timeout = options_.request_timeout;
  if (!token_.empty()) call.metadata.Add("token", token_);
  const size_t index = current_;
  channels_[index]->Unary(kTxn, txn.SerializeAsString(), std::move(call),
                          [this, batch = std::move(batch), lease = lease_id_, index](
                              StatusCode code, const std::string& message, std::string) {
                            leased_busy_ = false;
                            if (stopping_) return;
                            if (code == StatusCode::kOk) {
                              if (lease == lease_id_) {
                                for (const auto& [name, value] : batch) {
                                  if (value.has_value()) {
                                    leased_written_[name] = *value;
                                  } else {
                                    leased_written_.erase(name);
                                  }
                                }
                              }
                              leased_backoff_ = Duration::zero();
                              WriteLeased();
                              return;
                            }
                            for (const auto& [name, value] : batch) leased_dirty_.insert(name);
                            if (code == StatusCode::kNotFound && lease == lease_id_) {
                              LeaseLost(message);  // "requested lease not found": it expired
                              return;
                            }
                            LOG_EVERY_N_SEC(WARN, 10)
                                << "etcd store: writing leased keys via "
                                << options_.endpoints[index].address.ToString() << ": " << message
                                << "; trying again";
                            if (current_ == index) current_ = (index + 1) % channels_.size();
                            RetryLeased();
                          });
}

void EtcdStore::GrantLease() {
  leased_busy_ = true;
  etcd::LeaseGrantRequest grant;
  grant.set_ttl(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options_.lease_ttl).count()));
  http::grpc::CallOptions call;
  call.timeout = options_.request_timeout;
  if (!token_.empty()) call.metadata.Add("token", token_);
  const size_t index = current_;
  channels_[index]->Unary(
      kLeaseGrant, grant.SerializeAsString(), std::move(call),
      [this, index](StatusCode code, const std::string& message, std::string bytes) {
        leased_busy_ = false;
        if (stopping_) return;
        etcd::LeaseGrantResponse granted;
        if (code != StatusCode::kOk || !granted.ParseFromString(bytes) || granted.id() == 0 ||
            !granted.error().empty()) {
          LOG_EVERY_N_SEC(WARN, 10)
              << "etcd store: granting a lease via " << options_.endpoints[index].address.ToString()
              << ": "
              << (code != StatusCode::kOk ? message : absl::StrCat("bad answer ", granted.error()))
              << "; trying again";
          if (current_ == index) current_ = (index + 1) % channels_.size();
          RetryLeased();
          return;
        }
        lease_id_ = granted.id();
        own_leases_.insert(lease_id_);
        {
          MutexLock lock(&mu_);
          ++leases_granted_;
          lease_ = lease_id_;
        }
        LOG(INFO) << "etcd store: lease " << LeaseOwner(lease_id_) << " granted, time to live "
                  << granted.ttl() << " s";
        leased_backoff_ = Duration::zero();
        // Three keep-alives per time to live: one lost or late one costs nothing.
        keepalive_timer_->EnableRepeating(
            std::max<Duration>(std::chrono::seconds(std::max<int64_t>(granted.ttl(), 1)) / 3,
                               std::chrono::milliseconds(300)));
        WriteLeased();
      });
}

void EtcdStore::LeaseLost(absl::string_view why) {
  LOG(WARN) << "etcd store: lease " << LeaseOwner(lease_id_) << " lost (" << why
            << "); taking a new one and writing " << leased_desired_.size() << " key(s) again";
  lease_id_ = 0;
  {
    MutexLock lock(&mu_);
    lease_ = 0;
  }
  keepalive_timer_->Disable();
  if (keepalive_ != nullptr) {
    std::shared_ptr<http::grpc::ClientCall> call = std::move(keepalive_);
    call->Cancel();
  }
  // The lease's keys went with it.
  leased_written_.clear();
  for (const auto& [name, value] : leased_desired_) leased_dirty_.insert(name);
  WriteLeased();
}

void EtcdStore::KeepAlive() {
  if (stopping_ || lease_id_ == 0) return;
  if (keepalive_ == nullptr) {
    http::grpc::CallOptions call;
    if (!token_.empty()) call.metadata.Add("token", token_);
    const size_t index = current_;
    keepalive_ = channels_[index]->StartCall(kLeaseKeepAlive, std::move(call));
    http::grpc::ClientCall* started = keepalive_.get();
    keepalive_->OnProtoMessage<etcd::LeaseKeepAliveResponse>(
        [this](etcd::LeaseKeepAliveResponse answer) {
          NoteOutcome(absl::OkStatus());
          if (answer.id() == lease_id_ && lease_id_ != 0 && answer.ttl() <= 0) {
            LeaseLost("etcd says it expired");
          }
        });
    keepalive_->OnFinish(
        [this, started, index](StatusCode, const std::string& message, const http::HeaderMap&) {
          if (stopping_ || keepalive_.get() != started) return;
          LOG_EVERY_N_SEC(WARN, 10) << "etcd store: lease keep-alive stream to "
                                    << options_.endpoints[index].address.ToString() << " ended ("
                                    << message << "); reopening";
          keepalive_.reset();
          if (current_ == index) current_ = (index + 1) % channels_.size();
        });
  }
  etcd::LeaseKeepAliveRequest keep;
  keep.set_id(lease_id_);
  keepalive_->SendProto(keep);
}

void EtcdStore::RetryLeased() {
  leased_backoff_ = std::min<Duration>(
      leased_backoff_ == Duration::zero() ? options_.watch_retry : leased_backoff_ * 2,
      options_.watch_retry_cap);
  leased_retry_timer_->Enable(leased_backoff_);
}

}  // namespace meshlet::controlplane

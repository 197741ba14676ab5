#pragma once

// Host and HostSet: one worker's runtime view of a cluster's endpoints.
//
// A Host is one endpoint (address, weight, TLS settings) plus everything this worker learns about
// it. The endpoint itself is not copied: the Host points at its entry in the (immutable, shared by
// every worker) cluster configuration and keeps that configuration alive; what a Host holds of its
// own is only what this worker learns: health flags from four sources (EDS, active health checks,
// outlier ejection, overload ejection), the number of requests in flight to it (for least-request
// balancing), a peak-EWMA of its latency (for peak-EWMA balancing), its overload penalty
// (cluster_config.h OverloadConfig) and plain per-host counters (the sidecar maps them to stats).
// Every built cluster holds a Host per endpoint per worker, and most of them never get a request:
// a Host keeps inline only what every host needs (40 bytes, one 48-byte glibc chunk); its
// counters are made with the first count (mutable_stats()) and its latency, penalty and overload
// state with their first use (ADR 0091), so only the hosts a worker used pay for them.
//
// A HostSet is the ordered list of a cluster's hosts. Update() applies a new endpoint list and
// keeps the Host object (with its pools, counters and health state) of every endpoint whose
// address is still present, so a config push does not reset connections or ejections. version()
// changes whenever membership or any host's health changes; load balancers re-read the set then
// and keep no other view of it.
//
// Ownership: HostSet holds hosts by HostSharedPtr, a shared pointer whose count is a plain field
// of the Host (hosts never leave their worker, so the count needs no atomics, and a holder is 8
// bytes with no control block per host). A removed host stays alive for as long as someone still
// holds it (a draining connection pool, a request in flight); it no longer belongs to the set and
// its health changes no longer bump the set's version. The set keeps the configuration its hosts'
// endpoint entries belong to alive (HostSet::Update's `owner`, one reference for all of them); a
// host leaving the set takes a reference of its own (made then, with its load state), so a
// removed host still draining holds the configuration it was last updated from until it is
// destroyed.
//
// Threading: each worker owns its own HostSet; nothing here is thread-safe and nothing needs to be.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/net/address.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/cluster/session_key.h"

namespace meshlet::sidecar::cluster {

class Host;
class HostSet;

// Shared ownership of a Host (see the header comment): copies count, the last one destroys the
// host. Same-thread only, as the Host itself.
class HostSharedPtr {
 public:
  HostSharedPtr() = default;
  HostSharedPtr(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): as std::shared_ptr
  HostSharedPtr(const HostSharedPtr& other) : host_(other.host_) { Acquire(); }
  HostSharedPtr(HostSharedPtr&& other) noexcept : host_(std::exchange(other.host_, nullptr)) {}
  HostSharedPtr& operator=(HostSharedPtr other) noexcept {
    std::swap(host_, other.host_);
    return *this;
  }
  ~HostSharedPtr() { Release(); }

  Host* get() const { return host_; }
  Host& operator*() const { return *host_; }
  Host* operator->() const { return host_; }
  explicit operator bool() const { return host_ != nullptr; }
  friend bool operator==(const HostSharedPtr& a, std::nullptr_t) { return a.host_ == nullptr; }
  friend bool operator!=(const HostSharedPtr& a, std::nullptr_t) { return a.host_ != nullptr; }
  friend bool operator==(const HostSharedPtr& a, const HostSharedPtr& b) {
    return a.host_ == b.host_;
  }
  friend bool operator!=(const HostSharedPtr& a, const HostSharedPtr& b) {
    return a.host_ != b.host_;
  }

 private:
  friend class HostSet;
  // Takes the first reference to a host just made with new.
  explicit HostSharedPtr(Host* host) : host_(host) { Acquire(); }
  inline void Acquire();
  inline void Release();

  Host* host_ = nullptr;
};

// Plain per-host counters. Monotonic; the stats layer reads them.
struct HostStats {
  uint64_t rq_total = 0;            // requests that started a stream on this host
  uint64_t rq_success = 0;          // results reported as success
  uint64_t rq_error = 0;            // results reported as 5xx or gateway failure
  uint64_t cx_connect_fail = 0;     // connections that failed to connect (refused or timeout)
  uint64_t outlier_ejections = 0;   // times the outlier detector ejected the host
  uint64_t overload_responses = 0;  // 429 or gRPC RESOURCE_EXHAUSTED answers
  uint64_t overload_ejections = 0;  // times an overload response ejected the host
};

class Host {
 public:
  // Why a host is not healthy; a host is healthy when no flag is set.
  enum HealthFlag : uint32_t {
    kFailedEds = 1u << 0,  // the control plane says unhealthy
    kDraining = 1u << 1,   // the control plane is removing it: no new requests
    kFailedActiveHealthCheck = 1u << 2,
    kOutlierEjected = 1u << 3,
    kOverloadEjected = 1u << 4,  // answered 429 / RESOURCE_EXHAUSTED: out until overload_until()
  };

  // Counts one request in flight for least-request balancing while alive. Move-only.
  class RequestGuard {
   public:
    RequestGuard() = default;
    explicit RequestGuard(Host& host) : host_(&host) { ++host.active_requests_; }
    RequestGuard(RequestGuard&& other) noexcept : host_(other.host_) { other.host_ = nullptr; }
    RequestGuard& operator=(RequestGuard&& other) noexcept {
      if (this != &other) {
        Release();
        host_ = other.host_;
        other.host_ = nullptr;
      }
      return *this;
    }
    RequestGuard(const RequestGuard&) = delete;
    RequestGuard& operator=(const RequestGuard&) = delete;
    ~RequestGuard() { Release(); }

    void Release() {
      if (host_ != nullptr) --host_->active_requests_;
      host_ = nullptr;
    }
    bool holds() const { return host_ != nullptr; }

   private:
    Host* host_ = nullptr;
  };

  // The flags the control plane's view of an endpoint sets (kFailedEds, kDraining).
  static uint32_t EdsHealthFlags(EndpointHealth health);

  // `endpoint` is the host's entry in a configuration its HostSet keeps alive (HostSet::Update's
  // `owner`); never null.
  Host(uint64_t id, const EndpointConfig* endpoint);
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Unique within its HostSet, never reused; the outlier detector's key.
  uint64_t id() const { return id_; }
  // Ids are counted in 56 bits (the rest of the word holds the flags): a set would have to make
  // 7e16 hosts to run out.
  static constexpr uint64_t kMaxId = (uint64_t{1} << 56) - 1;
  // The address never changes for the host's life (the reference may move to an equal address in
  // a newer configuration after HostSet::Update: do not keep it across updates).
  const net::Address& address() const { return endpoint_->address; }
  // SessionKey(address().ToString()): what a sticky-session token names the host by.
  // (No text is kept per host: 32 bytes and often an allocation for every host of every built
  // cluster; spans format the address into their own string, ADR 0091.)
  uint64_t session_key() const { return session_key_; }
  // At least 1.
  uint32_t weight() const { return endpoint_->weight > 0 ? endpoint_->weight : 1; }
  // Plaintext or the cluster's TLS, and the identity the endpoint must present.
  // The same note as for address() applies to the reference.
  const EndpointTlsConfig& tls() const { return endpoint_->tls; }
  // The configuration's entry this host refers to: valid until the host's next update.
  const EndpointConfig& endpoint() const { return *endpoint_; }

  uint32_t health_flags() const { return static_cast<uint32_t>(health_flags_); }
  bool healthy() const { return health_flags_ == 0; }
  bool has_health_flag(HealthFlag flag) const { return (health_flags_ & flag) != 0; }

  uint32_t active_requests() const { return active_requests_; }

  // Feeds one response latency into the peak-EWMA: a sample above the current value replaces it
  // at once (react to a slowdown immediately), a lower one decays into it with time constant
  // `decay` (recover gradually). `now` comes from the worker's clock. The first sample allocates
  // the host's load state (once per host).
  void RecordLatency(Duration latency, MonotonicTime now, Duration decay);
  // Nanoseconds; 0 until the first sample.
  double ewma_latency_ns() const { return load() != nullptr ? load()->ewma_ns : 0; }

  // Overload penalty: the host counts as `factor` times as loaded right after an overload
  // response, falling linearly to 1 at `now + duration`. A later call replaces the earlier one;
  // a factor of 1 or less (or no duration) removes the penalty (and allocates nothing).
  void Penalize(uint32_t factor, MonotonicTime now, Duration duration);
  bool penalized() const { return load() != nullptr && load()->penalty_factor > 1; }
  // The load multiplier at `now` (1 when not penalized); forgets an expired penalty, so hosts
  // without one cost the balancer no clock read.
  double PenaltyAt(MonotonicTime now) {
    if (!penalized()) return 1;
    Load& load = *extra_->load;
    if (now >= load.penalty_until) {
      load.penalty_factor = 0;
      return 1;
    }
    return 1 + (load.penalty_factor - 1) * static_cast<double>((load.penalty_until - now).count()) /
                   static_cast<double>(load.penalty_duration.count());
  }
  // Until when the kOverloadEjected flag holds (meaningful while it is set); the Cluster sets both.
  MonotonicTime overload_until() const {
    return load() != nullptr ? load()->overload_until : MonotonicTime{};
  }
  void set_overload_until(MonotonicTime until) { MutableLoad().overload_until = until; }

  // The counters; all zero until the first count.
  const HostStats& stats() const;
  // For counting: makes the counters on first use (one allocation per host, never per request).
  HostStats& mutable_stats();

  // Whether the host is still a member of its set.
  bool in_set() const { return in_set_ != 0; }

 private:
  friend class HostSet;
  friend class HostSharedPtr;
  // What only hosts that balance by latency or get overload answers need.
  struct Load {
    double ewma_ns = 0;
    MonotonicTime ewma_updated{};
    MonotonicTime penalty_until{};
    Duration penalty_duration{1};
    MonotonicTime overload_until{};
    uint32_t penalty_factor = 0;
  };
  // Made when the host leaves its set (rare: an endpoint removed).
  struct Removed {
    std::shared_ptr<const void> owner;
  };
  // What a host gets once used: its counters, and its load state when that is needed too.
  // A host removed from its set keeps its configuration here (`owner`, see the header comment).
  struct Extra {
    HostStats stats;
    std::unique_ptr<Load> load;
    std::unique_ptr<Removed> removed;
  };

  void UpdateFrom(const EndpointConfig* endpoint);
  // Leaves the set, keeping `owner` (what its endpoint belongs to) alive while it lives.
  void LeaveSet(std::shared_ptr<const void> owner);
  const Load* load() const { return extra_ != nullptr ? extra_->load.get() : nullptr; }
  Extra& MutableExtra();
  Load& MutableLoad();

  // One word: the id, the HealthFlag bits and whether the host is a member of the HostSet that
  // made it.
  uint64_t id_ : 56;
  uint64_t health_flags_ : 7;
  uint64_t in_set_ : 1;
  // Shared with every worker's Host of this endpoint (the configuration's entry); never null.
  const EndpointConfig* endpoint_;
  const uint64_t session_key_;
  // Null until the host's first count or load state, or its removal.
  std::unique_ptr<Extra> extra_;
  uint32_t active_requests_ = 0;
  uint32_t refs_ = 0;  // HostSharedPtr holders
};

void HostSharedPtr::Acquire() {
  if (host_ != nullptr) ++host_->refs_;
}

void HostSharedPtr::Release() {
  if (host_ != nullptr && --host_->refs_ == 0) delete host_;
  host_ = nullptr;
}

class HostSet {
 public:
  HostSet() = default;
  ~HostSet();
  HostSet(const HostSet&) = delete;
  HostSet& operator=(const HostSet&) = delete;

  // Replaces the membership with `endpoints` (order kept). Hosts whose address remains are kept
  // with their state, taking the new weight, TLS settings and EDS health; new ones are
  // created; the others are dropped from the set. Duplicate addresses keep the first entry.
  // Returns the hosts removed, so the owner can drain what it keeps for them.
  // `endpoints` must live as long as `owner` does (typically: the endpoints of the ClusterConfig
  // `owner` points to); every host refers to its entry and keeps `owner` alive, so workers
  // sharing one configuration share its endpoints. Without an owner the endpoints are copied
  // once for this call (tests, callers that own no shared configuration).
  std::vector<HostSharedPtr> Update(absl::Span<const EndpointConfig> endpoints,
                                    std::shared_ptr<const void> owner = nullptr);

  // Sets or clears one health flag; bumps version() when the host's health changed.
  void SetHealthFlag(Host& host, Host::HealthFlag flag, bool set);

  absl::Span<const HostSharedPtr> hosts() const { return hosts_; }
  size_t size() const { return hosts_.size(); }
  size_t healthy_count() const { return healthy_count_; }
  // Null if absent.
  Host* Find(const net::Address& address) const;
  Host* FindById(uint64_t id) const;
  // The host whose session_key() is `key` (a linear scan; sticky requests only); null if none.
  Host* FindBySessionKey(uint64_t key) const;

  uint64_t version() const { return version_; }

 private:
  void Recount();

  std::vector<HostSharedPtr> hosts_;
  // What the hosts' endpoints belong to (Update's `owner`).
  std::shared_ptr<const void> owner_;
  size_t healthy_count_ = 0;
  uint64_t version_ = 1;
  uint64_t next_id_ = 1;
};

}  // namespace meshlet::sidecar::cluster

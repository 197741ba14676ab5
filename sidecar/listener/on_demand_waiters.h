#pragma once

// OnDemandWaiters: the connections (and, later, requests) of one worker that wait for a lookup of
// a destination the snapshot does not know (ADR 0086; keys of xds/protocol.h, "addr:10.96.0.5:80"
// or "host:reviews").
//
// Wait(key, waiter, timeout) parks a waiter: the first waiter of a key asks the main thread once
// (WorkerShared::request_lookup, `request` here); OnLookupAnswers, which the worker runs after
// applying the snapshot that carries the answers, wakes every waiter of each answered key. A wait
// also ends at its timeout (one event::Timer for the earliest deadline of a deadline-ordered
// list). A wait that cannot start returns an empty handle and the outcome at once: no `request`
// (kDisconnected), the key answered not found within the listener's missing_ttl (kNotFound), or
// max_waiting waits already on this worker (kOverflow).
//
// Callback timing: Waiter::OnLookupDone runs from the loop (an answer or the timer), never inside
// Wait() or a WaitHandle's destruction, once per wait; the wait has ended when it runs (its handle
// is empty), so the waiter may destroy the handle, itself, or wait again. A callback may cancel
// other waits, including ones the same answer would wake next.
//
// Ownership and threading: one per Worker, on its loop thread only; it must outlive every handle
// it gave out. A WaitHandle cancels its wait when destroyed (a connection closed while waiting).
// Stats (on the worker's shard): meshlet_on_demand_waiting (gauge),
// meshlet_on_demand_wait_seconds{kind} (histogram, kind "address" or "host"),
// meshlet_on_demand_waits_total{kind,result} (result: a LookupOutcome's name, or "cancelled").

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "sidecar/config/lookup.h"

namespace meshlet::sidecar::listener {

class OnDemandWaiters;

class Waiter {
 public:
  // The wait ended; see the header comment for when this runs.
  virtual void OnLookupDone(config::LookupOutcome outcome) = 0;

 protected:
  ~Waiter() = default;
};

// A wait in progress, or empty. Destroying (or Reset()) a non-empty handle cancels the wait: its
// waiter is not called. Movable.
class WaitHandle {
 public:
  WaitHandle() = default;
  WaitHandle(WaitHandle&& other) noexcept;
  WaitHandle& operator=(WaitHandle&& other) noexcept;
  ~WaitHandle() { Reset(); }

  bool waiting() const { return node_ != nullptr; }
  void Reset();

 private:
  friend class OnDemandWaiters;
  struct Node;
  explicit WaitHandle(Node* node);
  Node* node_ = nullptr;
};

class OnDemandWaiters {
 public:
  // Waits one worker holds at once unless told (--on-demand-max-waiting).
  static constexpr size_t kDefaultMaxWaiting = 4096;
  // Keys answered not found that a worker remembers; past it expired ones are dropped, and a new
  // answer is not remembered while none has expired.
  static constexpr size_t kMaxMissingKeys = 4096;

  struct Options {
    // Asks the main thread to look a key up (null: no lookups, every wait ends kDisconnected).
    std::function<void(std::string key)> request;
    size_t max_waiting = kDefaultMaxWaiting;  // waits open at once on this worker
    // A key answered kNotFound is answered so again without asking for this long.
    Duration missing_ttl = std::chrono::seconds(30);
  };

  OnDemandWaiters(event::Loop& loop, StatsShard& shard, Options options);
  ~OnDemandWaiters();
  OnDemandWaiters(const OnDemandWaiters&) = delete;
  OnDemandWaiters& operator=(const OnDemandWaiters&) = delete;

  struct Started {
    WaitHandle handle;  // empty: the wait did not start, `outcome` says why
    config::LookupOutcome outcome = config::LookupOutcome::kFound;
  };
  // Parks `waiter` (which must outlive the handle) until `key` is answered or `timeout` passes.
  Started Wait(absl::string_view key, Waiter& waiter, Duration timeout);

  // Wakes every waiter of each key with its outcome, in the order given and, per key, in the
  // order they began waiting. kNotFound answers are remembered for missing_ttl. Keys nobody
  // waits for are ignored (another worker asked, or the waiters timed out).
  void OnLookupAnswers(const std::vector<config::LookupAnswer>& answers);
  // The main thread asks again for these keys from now on (a missing key that expired there).
  void ForgetMissing(const std::vector<std::string>& keys);

  size_t waiting() const { return waiting_count_; }
  // Keys with at least one waiter (each was asked for once).
  size_t pending_keys() const { return keys_.size(); }

 private:
  friend class WaitHandle;
  using Node = WaitHandle::Node;
  struct Key;
  struct KindStats;

  // Unlinks `node` from its key and the deadline list and frees it; its key goes when empty and
  // not being woken.
  void Remove(Node* node);
  void Cancel(Node* node);
  void ArmTimer();
  void OnTimer();
  // Removes `node` and calls its waiter with `outcome`, counted.
  void Finish(Node* node, config::LookupOutcome outcome);
  KindStats& StatsFor(absl::string_view key);

  event::Loop& loop_;
  Options options_;
  absl::flat_hash_map<std::string, std::unique_ptr<Key>> keys_;
  Node* first_deadline_ = nullptr;  // deadline order, earliest first
  Node* last_deadline_ = nullptr;
  event::Timer timer_;
  size_t waiting_count_ = 0;
  // Key answered not found → until when that answer holds.
  absl::flat_hash_map<std::string, MonotonicTime> missing_;

  struct KindStats {
    Histogram wait_seconds;
    Counter results[8];  // by LookupOutcome, then "cancelled"
  };
  Gauge waiting_gauge_;
  KindStats address_;
  KindStats host_;
};

}  // namespace meshlet::sidecar::listener

#pragma once

// LivePolicy: the store's policy as a PolicySnapshot kept current by the store's watch. It is
// read from the store once (Load); after that each change the watch reports is parsed and
// applied to a copy of the current snapshot that shares every other resource with it
// (ApplyPolicyChange), so a policy write costs the same with 30 or 15 000 stored resources.
// Every replica on a shared store (etcd) learns the other replicas' writes the same way: the
// store's watch reports each change once, in revision order (store.h, etcd_store.h).
//
// Changes that arrive while there is no snapshot yet, or while Load lists the store, are kept
// (at most `max_pending_changes`) and applied after the listing when they are later than it.
// Past the bound they are dropped and that Load fails (Unavailable): the caller loads again.
//
// Threading: Current() and Load() may be called from any thread (Load blocks on the store: call
// it on the store worker or at start-up, one at a time). `on_change` runs on the thread that
// reported the change (the writer's with the file store, the store's with etcd) after the
// snapshot is replaced, with no lock held; it must not block.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "common/stats/stats.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane::policy {

struct LivePolicyOptions {
  // Changes kept while the store is being listed (or before the first listing).
  size_t max_pending_changes = 100000;
};

class LivePolicy {
 public:
  // Watches `store` (not owned; must outlive this) from now on. `stats` may be null.
  LivePolicy(Store& store, StatsRegistry* stats, LivePolicyOptions options,
             std::function<void()> on_change);
  ~LivePolicy();
  LivePolicy(const LivePolicy&) = delete;
  LivePolicy& operator=(const LivePolicy&) = delete;

  // Lists and parses the whole store, then applies the changes reported meanwhile. Needed once;
  // again only after it failed. Calls on_change when it succeeds.
  absl::Status Load();
  // The current snapshot; null until a Load succeeded.
  std::shared_ptr<const PolicySnapshot> Current() const;

  // Full loads that succeeded, and changes applied one at a time (for tests and benchmarks).
  uint64_t loads() const;
  uint64_t changes_applied() const;

 private:
  void OnEvent(const WatchEvent& event);

  Store& store_;
  const LivePolicyOptions options_;
  const std::function<void()> on_change_;
  Counter applied_counter_;
  Counter dropped_counter_;
  mutable std::mutex mu_;
  std::shared_ptr<const PolicySnapshot> current_ ABSL_GUARDED_BY(mu_);
  bool loading_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<PolicyChange> pending_ ABSL_GUARDED_BY(mu_);
  bool pending_dropped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t loads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t changes_applied_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: the watch ends before the fields its callback uses.
  std::unique_ptr<Store::WatchHandle> watch_;
};

}  // namespace meshlet::controlplane::policy

#include "control-plane/policy/live_policy.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::controlplane::policy {

LivePolicy::LivePolicy(Store& store, StatsRegistry* stats, LivePolicyOptions options,
                       std::function<void()> on_change)
    : store_(store), options_(options), on_change_(std::move(on_change)) {
  if (stats != nullptr) {
    auto counter = [stats](absl::string_view name, absl::string_view help) {
      absl::StatusOr<CounterId> id = stats->RegisterCounter(name, help);
      CHECK(id.ok()) << id.status().message();
      return stats->shared_shard().Get(*id);
    };
    applied_counter_ = counter("meshlet_cp_policy_changes_applied_total",
                               "Store changes applied to the policy one at a time (the changed "
                               "resource parsed, the rest shared with the previous policy).");
    dropped_counter_ = counter("meshlet_cp_policy_changes_dropped_total",
                               "Store changes dropped because more than the pending bound arrived "
                               "while the store was being listed (the policy is loaded again).");
  }
  watch_ = store_.Watch([this](const WatchEvent& event) { OnEvent(event); });
}

LivePolicy::~LivePolicy() { watch_.reset(); }

void LivePolicy::OnEvent(const WatchEvent& event) {
  // Parsed before the lock: the store reports one change at a time (store.h), so nothing
  // overtakes it meanwhile.
  std::optional<PolicyChange> change = PreparePolicyChange(event);
  if (!change.has_value()) return;  // not policy: it changes no snapshot
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (loading_ || current_ == nullptr) {
      if (pending_.size() < options_.max_pending_changes) {
        pending_.push_back(*std::move(change));
      } else {
        pending_dropped_ = true;
        dropped_counter_.Inc();
      }
      return;
    }
    if (change->revision <= current_->revision) return;  // already in it
    auto next = std::make_shared<PolicySnapshot>(*current_);
    ApplyPolicyChange(*change, *next);
    current_ = std::move(next);
    ++changes_applied_;
  }
  applied_counter_.Inc();
  if (on_change_) on_change_();
}

absl::Status LivePolicy::Load() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // What was reported before this listing is in it.
    loading_ = true;
    pending_.clear();
    pending_dropped_ = false;
  }
  absl::StatusOr<PolicySnapshot> loaded = LoadPolicySnapshot(store_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    loading_ = false;
    std::vector<PolicyChange> pending = std::move(pending_);
    pending_.clear();
    if (pending_dropped_) {
      pending_dropped_ = false;
      return absl::UnavailableError(absl::StrCat(
          "more than ", options_.max_pending_changes,
          " policy changes arrived while the store was being listed; listing it again"));
    }
    if (!loaded.ok() && current_ == nullptr) return loaded.status();
    // A failed listing leaves the current snapshot, which still takes what came meanwhile.
    auto next = std::make_shared<PolicySnapshot>(loaded.ok() ? *std::move(loaded) : *current_);
    for (const PolicyChange& change : pending) {
      if (change.revision > next->revision) ApplyPolicyChange(change, *next);
    }
    current_ = std::move(next);
    if (!loaded.ok()) return loaded.status();
    ++loads_;
  }
  if (on_change_) on_change_();
  return absl::OkStatus();
}

std::shared_ptr<const PolicySnapshot> LivePolicy::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

uint64_t LivePolicy::loads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return loads_;
}

uint64_t LivePolicy::changes_applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return changes_applied_;
}

}  // namespace meshlet::controlplane::policy

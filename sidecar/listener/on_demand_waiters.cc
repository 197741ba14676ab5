#include "sidecar/listener/on_demand_waiters.h"

#include <utility>

#include "common/base/logging.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::listener {

using config::LookupOutcome;

namespace {

constexpr LookupOutcome kOutcomes[] = {
    LookupOutcome::kFound,   LookupOutcome::kNotFound,     LookupOutcome::kRefused,
    LookupOutcome::kTimeout, LookupOutcome::kDisconnected, LookupOutcome::kOverflow,
    LookupOutcome::kLimit,
};
constexpr size_t kCancelled = std::size(kOutcomes);

}  // namespace

struct WaitHandle::Node {
  WaitHandle* handle = nullptr;
  OnDemandWaiters* owner = nullptr;
  Waiter* waiter = nullptr;
  OnDemandWaiters::Key* key = nullptr;
  OnDemandWaiters::KindStats* stats = nullptr;
  Node* key_prev = nullptr;  // the waiters of `key`, in the order they began
  Node* key_next = nullptr;
  Node* deadline_prev = nullptr;  // every wait, earliest deadline first
  Node* deadline_next = nullptr;
  MonotonicTime started{};
  MonotonicTime deadline{};
};

struct OnDemandWaiters::Key {
  std::string name;
  Node* first = nullptr;
  Node* last = nullptr;
  bool waking = false;  // OnLookupAnswers is walking it: it stays until the walk ends
};

WaitHandle::WaitHandle(Node* node) : node_(node) { node_->handle = this; }

WaitHandle::WaitHandle(WaitHandle&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {
  if (node_ != nullptr) node_->handle = this;
}

WaitHandle& WaitHandle::operator=(WaitHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    node_ = std::exchange(other.node_, nullptr);
    if (node_ != nullptr) node_->handle = this;
  }
  return *this;
}

void WaitHandle::Reset() {
  if (node_ == nullptr) return;
  Node* node = std::exchange(node_, nullptr);
  node->owner->Cancel(node);
}

OnDemandWaiters::OnDemandWaiters(event::Loop& loop, StatsShard& shard, Options options)
    : loop_(loop), options_(std::move(options)), timer_(loop, [this] { OnTimer(); }) {
  waiting_gauge_ = OrDiscard(
      shard.RegisterGauge("meshlet_on_demand_waiting",
                          "Connections and requests waiting for a lookup of their destination."),
      "meshlet_on_demand_waiting");
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  for (auto [kind, stats] : {std::pair{config::LookupKind::kAddress, &address_},
                             std::pair{config::LookupKind::kHost, &host_}}) {
    stats->wait_seconds =
        OrDiscard(shard.RegisterHistogram(
                      "meshlet_on_demand_wait_seconds",
                      "How long connections and requests waited for a lookup, by key kind.",
                      {{"kind", std::string(config::LookupKindName(kind))}}, seconds),
                  "meshlet_on_demand_wait_seconds");
    for (size_t i = 0; i <= kCancelled; ++i) {
      const std::string result = i == kCancelled
                                     ? std::string("cancelled")
                                     : std::string(config::LookupOutcomeName(kOutcomes[i]));
      stats->results[i] =
          OrDiscard(shard.RegisterCounter(
                        "meshlet_on_demand_waits_total",
                        "Waits for a lookup, by key kind and how they ended (cancelled: "
                        "the connection or request went first).",
                        {{"kind", std::string(config::LookupKindName(kind))}, {"result", result}}),
                    "meshlet_on_demand_waits_total");
    }
  }
}

OnDemandWaiters::~OnDemandWaiters() {
  // Handles outliving this are a bug (the header's contract); leave none dangling all the same.
  while (first_deadline_ != nullptr) {
    Node* node = first_deadline_;
    if (node->handle != nullptr) node->handle->node_ = nullptr;
    Remove(node);
  }
}

OnDemandWaiters::KindStats& OnDemandWaiters::StatsFor(absl::string_view key) {
  return config::LookupKindOf(key) == config::LookupKind::kHost ? host_ : address_;
}

OnDemandWaiters::Started OnDemandWaiters::Wait(absl::string_view key, Waiter& waiter,
                                               Duration timeout) {
  KindStats& stats = StatsFor(key);
  auto refuse = [&](LookupOutcome outcome) {
    stats.results[static_cast<size_t>(outcome)].Inc();
    return Started{.outcome = outcome};
  };
  if (!options_.request) return refuse(LookupOutcome::kDisconnected);
  const MonotonicTime now = loop_.Now();
  if (auto missing = missing_.find(key); missing != missing_.end()) {
    if (now < missing->second) return refuse(LookupOutcome::kNotFound);
    missing_.erase(missing);
  }
  if (waiting_count_ >= options_.max_waiting) {
    LOG_EVERY_N_SEC(WARN, 1) << "on-demand lookups: " << options_.max_waiting
                             << " connections and requests already wait on this worker; " << key
                             << " served without waiting";
    return refuse(LookupOutcome::kOverflow);
  }
  auto* node = new Node{
      .owner = this, .waiter = &waiter, .stats = &stats, .started = now, .deadline = now + timeout};
  auto [it, inserted] = keys_.try_emplace(key);
  if (inserted) {
    it->second = std::make_unique<Key>();
    it->second->name = std::string(key);
  }
  Key& entry = *it->second;
  node->key = &entry;
  node->key_prev = entry.last;
  (entry.last != nullptr ? entry.last->key_next : entry.first) = node;
  entry.last = node;
  // Deadlines mostly grow: look for the place from the latest one.
  Node* after = last_deadline_;
  while (after != nullptr && after->deadline > node->deadline) after = after->deadline_prev;
  node->deadline_prev = after;
  node->deadline_next = after != nullptr ? after->deadline_next : first_deadline_;
  (after != nullptr ? after->deadline_next : first_deadline_) = node;
  (node->deadline_next != nullptr ? node->deadline_next->deadline_prev : last_deadline_) = node;
  ++waiting_count_;
  waiting_gauge_.Inc();
  if (first_deadline_ == node) ArmTimer();
  if (inserted) options_.request(std::string(key));
  return Started{.handle = WaitHandle(node), .outcome = LookupOutcome::kFound};
}

void OnDemandWaiters::Remove(Node* node) {
  Key& key = *node->key;
  (node->key_prev != nullptr ? node->key_prev->key_next : key.first) = node->key_next;
  (node->key_next != nullptr ? node->key_next->key_prev : key.last) = node->key_prev;
  const bool was_first = first_deadline_ == node;
  (node->deadline_prev != nullptr ? node->deadline_prev->deadline_next : first_deadline_) =
      node->deadline_next;
  (node->deadline_next != nullptr ? node->deadline_next->deadline_prev : last_deadline_) =
      node->deadline_prev;
  --waiting_count_;
  waiting_gauge_.Dec();
  delete node;
  if (key.first == nullptr && !key.waking) keys_.erase(key.name);
  if (was_first) ArmTimer();
}

void OnDemandWaiters::Cancel(Node* node) {
  node->stats->results[kCancelled].Inc();
  Remove(node);
}

void OnDemandWaiters::Finish(Node* node, LookupOutcome outcome) {
  Waiter& waiter = *node->waiter;
  KindStats& stats = *node->stats;
  const Duration waited = loop_.Now() - node->started;
  if (node->handle != nullptr) node->handle->node_ = nullptr;
  Remove(node);
  stats.wait_seconds.Record(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(waited).count()));
  stats.results[static_cast<size_t>(outcome)].Inc();
  waiter.OnLookupDone(outcome);
}

void OnDemandWaiters::ArmTimer() {
  if (first_deadline_ == nullptr) {
    timer_.Disable();
    return;
  }
  const Duration left = first_deadline_->deadline - loop_.Now();
  timer_.Enable(left > Duration::zero() ? left : Duration::zero());
}

void OnDemandWaiters::OnTimer() {
  const MonotonicTime now = loop_.Now();
  // Finish() re-arms the timer whenever the earliest wait goes.
  while (first_deadline_ != nullptr && first_deadline_->deadline <= now) {
    Finish(first_deadline_, LookupOutcome::kTimeout);
  }
  ArmTimer();
}

void OnDemandWaiters::OnLookupAnswers(const std::vector<config::LookupAnswer>& answers) {
  const MonotonicTime now = loop_.Now();
  for (const config::LookupAnswer& answer : answers) {
    if (answer.outcome == LookupOutcome::kNotFound) {
      if (missing_.size() >= kMaxMissingKeys) {
        absl::erase_if(missing_, [now](const auto& entry) { return entry.second <= now; });
      }
      if (missing_.size() < kMaxMissingKeys) {
        missing_.insert_or_assign(answer.key, now + options_.missing_ttl);
      }
    } else if (answer.outcome == LookupOutcome::kFound) {
      missing_.erase(answer.key);
    }
    auto it = keys_.find(answer.key);
    if (it == keys_.end()) continue;
    // Owned here while its waiters run: a callback may cancel any of them or wait again.
    std::unique_ptr<Key> key = std::move(it->second);
    keys_.erase(it);
    key->waking = true;
    while (key->first != nullptr) Finish(key->first, answer.outcome);
  }
}

void OnDemandWaiters::ForgetMissing(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) missing_.erase(key);
}

}  // namespace meshlet::sidecar::listener

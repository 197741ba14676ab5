// OnDemandDiscovery (on_demand.h): the main thread's lookup-key table.

#include "sidecar/config/on_demand.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/must_stat.h"

namespace meshlet::sidecar::config {
namespace {

constexpr const char* kStateNames[] = {"pending", "found", "missing"};
constexpr LookupOutcome kCountedOutcomes[] = {LookupOutcome::kFound, LookupOutcome::kNotFound,
                                              LookupOutcome::kRefused, LookupOutcome::kDisconnected,
                                              LookupOutcome::kLimit};

}  // namespace

OnDemandDiscovery::OnDemandDiscovery(event::Loop& loop, const Clock& clock, OnDemandOptions options,
                                     LookupStream stream, DeliverFn deliver, ForgetFn forget,
                                     StatsShard& stats)
    : loop_(loop),
      clock_(clock),
      options_(options),
      stream_(std::move(stream)),
      deliver_(std::move(deliver)),
      forget_(std::move(forget)),
      self_(std::make_shared<OnDemandDiscovery*>(this)),
      sweep_timer_(std::make_unique<event::Timer>(loop, [this] { Sweep(); })) {
  for (size_t state = 0; state < key_gauges_.size(); ++state) {
    key_gauges_[state] = MustStat(stats.RegisterGauge(
        "meshlet_xds_client_on_demand_keys",
        "Lookup keys the sidecar holds, by state (pending: asked; found; missing: answered not "
        "found, asked again after the missing ttl).",
        {{"state", kStateNames[state]}}, GaugeMerge::kGlobal));
  }
  constexpr const char* kExpiredHelp =
      "Lookup keys the sidecar unsubscribed (found: its ServiceRoute unused for the idle time; "
      "missing: answered not found, or not answered, for the missing ttl).";
  expired_found_ = MustStat(stats.RegisterCounter("meshlet_xds_client_on_demand_expired_total",
                                                  kExpiredHelp, {{"state", "found"}}));
  expired_missing_ = MustStat(stats.RegisterCounter("meshlet_xds_client_on_demand_expired_total",
                                                    kExpiredHelp, {{"state", "missing"}}));
  for (size_t kind = 0; kind < lookups_.size(); ++kind) {
    for (LookupOutcome outcome : kCountedOutcomes) {
      lookups_[kind][static_cast<size_t>(outcome)] = MustStat(stats.RegisterCounter(
          "meshlet_on_demand_lookups_total",
          "Lookups of destinations the sidecar did not know (ADR 0086), by key kind and result.",
          {{"kind", std::string(LookupKindName(static_cast<LookupKind>(kind)))},
           {"result", std::string(LookupOutcomeName(outcome))}}));
    }
  }
}

OnDemandDiscovery::~OnDemandDiscovery() = default;

void OnDemandDiscovery::Seed(const std::map<std::string, std::string>& held) {
  for (const auto& [key, resource] : held) {
    if (keys_.size() >= options_.max_keys) break;
    Key& entry = Insert(key)->second;
    entry.resource = resource;
    entry.expires = clock_.Now() + options_.missing_ttl;
    entry.found = clock_.Now();
    if (!resource.empty()) SetState(entry, State::kFound);
    ArmSweep(resource.empty() ? entry.expires : entry.found + options_.idle_time);
  }
}

std::map<std::string, OnDemandDiscovery::Key>::iterator OnDemandDiscovery::Insert(
    const std::string& key) {
  auto [it, added] = keys_.emplace(key, Key{});
  if (added) Recount(State::kPending, +1);
  return it;
}

void OnDemandDiscovery::Erase(std::map<std::string, Key>::iterator it) {
  Recount(it->second.state, -1);
  keys_.erase(it);
}

void OnDemandDiscovery::Recount(State state, int change) {
  const auto index = static_cast<size_t>(state);
  counts_[index] += change;
  key_gauges_[index].Set(static_cast<int64_t>(counts_[index]));
}

void OnDemandDiscovery::Request(std::string key) {
  auto it = keys_.find(key);
  if (it != keys_.end()) {
    Key& entry = it->second;
    switch (entry.state) {
      case State::kPending:
        if (clock_.Now() < entry.expires) return;
        break;  // unanswered for a whole ttl: asked again below
      case State::kFound:
        return Answer({{std::move(key), LookupOutcome::kFound}});
      case State::kMissing:
        if (clock_.Now() < entry.expires)
          return Answer({{std::move(key), LookupOutcome::kNotFound}});
        break;  // asked again below
    }
  }
  if (!stream_.can_look_up || !stream_.can_look_up()) {
    return Answer({{std::move(key), LookupOutcome::kDisconnected}});
  }
  if (it == keys_.end()) {
    if (keys_.size() >= options_.max_keys && !EvictIdleFound()) {
      return Answer({{std::move(key), LookupOutcome::kLimit}});
    }
    it = Insert(key);
  } else {
    // Past its ttl: the control plane is asked afresh (a subscribed key is answered once).
    to_unsubscribe_.push_back(key);
    SetState(it->second, State::kPending);
  }
  it->second.expires = clock_.Now() + options_.missing_ttl;
  to_subscribe_.push_back(std::move(key));
  ScheduleFlush();
  ArmSweep(it->second.expires);
}

void OnDemandDiscovery::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  loop_.RunAtEndOfTurn(
      [](void* arg) {
        std::unique_ptr<std::weak_ptr<OnDemandDiscovery*>> self(
            static_cast<std::weak_ptr<OnDemandDiscovery*>*>(arg));
        if (std::shared_ptr<OnDemandDiscovery*> alive = self->lock()) (*alive)->Flush();
      },
      new std::weak_ptr<OnDemandDiscovery*>(self_));
}

void OnDemandDiscovery::Flush() {
  flush_scheduled_ = false;
  std::vector<std::string> subscribe = std::move(to_subscribe_);
  std::vector<std::string> unsubscribe = std::move(to_unsubscribe_);
  to_subscribe_.clear();
  to_unsubscribe_.clear();
  if (subscribe.empty() && unsubscribe.empty()) return;
  // A key asked again is first unsubscribed, in a request of its own: one request that both
  // drops and adds a name would leave it unsubscribed.
  std::vector<std::string> again;
  for (const std::string& key : unsubscribe) {
    if (std::find(subscribe.begin(), subscribe.end(), key) != subscribe.end()) again.push_back(key);
  }
  if (!again.empty()) {
    stream_.lookup({}, std::move(again));
    unsubscribe.erase(std::remove_if(unsubscribe.begin(), unsubscribe.end(),
                                     [&](const std::string& key) {
                                       return std::find(subscribe.begin(), subscribe.end(), key) !=
                                              subscribe.end();
                                     }),
                      unsubscribe.end());
  }
  stream_.lookup(std::move(subscribe), std::move(unsubscribe));
}

void OnDemandDiscovery::OnAnswers(std::vector<LookupAnswer> answers) {
  std::vector<LookupAnswer> delivered;
  delivered.reserve(answers.size());
  for (LookupAnswer& answer : answers) {
    auto it = keys_.find(answer.key);
    // A key dropped meanwhile: nobody here waits for it.
    if (it == keys_.end()) continue;
    Key& entry = it->second;
    switch (answer.outcome) {
      case LookupOutcome::kFound:
        entry.resource = stream_.resource_of ? stream_.resource_of(answer.key) : std::string();
        entry.found = clock_.Now();
        SetState(entry, State::kFound);
        ArmSweep(entry.found + options_.idle_time);
        break;
      case LookupOutcome::kNotFound:
        entry.resource.clear();
        entry.expires = clock_.Now() + options_.missing_ttl;
        SetState(entry, State::kMissing);
        ArmSweep(entry.expires);
        break;
      default:
        // Refused: forgotten, so the next request asks again.
        Erase(it);
        to_unsubscribe_.push_back(answer.key);
        ScheduleFlush();
        break;
    }
    delivered.push_back(std::move(answer));
  }
  if (!delivered.empty()) Answer(std::move(delivered));
}

void OnDemandDiscovery::Sweep() {
  const MonotonicTime now = clock_.Now();
  // Found keys are judged per ServiceRoute (a key without one on its own): the latest use of
  // the ServiceRoute or answer of any of its keys.
  auto group = [](const std::string& key, const Key& entry) -> const std::string& {
    return entry.resource.empty() ? key : entry.resource;
  };
  absl::flat_hash_map<std::string, MonotonicTime> last_use;
  for (const auto& [key, entry] : keys_) {
    if (entry.state != State::kFound) continue;
    auto [it, added] = last_use.emplace(group(key, entry), LastUse(entry));
    if (!added) it->second = std::max(it->second, entry.found);
  }
  std::vector<std::string> expired;
  std::vector<std::string> forgotten;
  size_t idle = 0;
  MonotonicTime next = MonotonicTime::max();
  for (auto it = keys_.begin(); it != keys_.end();) {
    const Key& entry = it->second;
    const MonotonicTime due = entry.state == State::kFound
                                  ? last_use.at(group(it->first, entry)) + options_.idle_time
                                  : entry.expires;
    if (due > now) {
      next = std::min(next, due);
      ++it;
      continue;
    }
    if (entry.state == State::kFound) {
      ++idle;
      expired_found_.Inc();
    } else {
      expired_missing_.Inc();
      if (entry.state == State::kMissing) forgotten.push_back(it->first);
    }
    expired.push_back(it->first);
    Erase(it++);
  }
  if (!expired.empty()) {
    LOG(DEBUG) << "on-demand: unsubscribing " << idle << " keys unused for "
               << std::chrono::duration_cast<std::chrono::seconds>(options_.idle_time).count()
               << "s and " << expired.size() - idle
               << " missing or unanswered for the missing ttl: asked again on next use";
    for (std::string& key : expired) to_unsubscribe_.push_back(std::move(key));
    ScheduleFlush();
  }
  if (!forgotten.empty() && forget_) forget_(std::move(forgotten));
  if (next != MonotonicTime::max()) ArmSweep(next);
}

void OnDemandDiscovery::SetTimes(Duration idle_time, Duration missing_ttl) {
  if (idle_time == options_.idle_time && missing_ttl == options_.missing_ttl) return;
  options_.idle_time = idle_time;
  options_.missing_ttl = missing_ttl;
  // Found keys may be due sooner now: the sweep works out when.
  if (counts_[static_cast<size_t>(State::kFound)] > 0) ArmSweep(clock_.Now());
}

bool OnDemandDiscovery::EvictIdleFound() {
  const MonotonicTime now = clock_.Now();
  auto oldest = keys_.end();
  MonotonicTime oldest_use = MonotonicTime::max();
  for (auto it = keys_.begin(); it != keys_.end(); ++it) {
    if (it->second.state != State::kFound) continue;
    const MonotonicTime used = LastUse(it->second);
    if (now - used >= kEvictableAfter && used < oldest_use) {
      oldest = it;
      oldest_use = used;
    }
  }
  if (oldest == keys_.end()) return false;
  LOG(DEBUG) << "on-demand: the table is full (" << options_.max_keys << " keys): unsubscribing "
             << oldest->first << ", unused the longest";
  expired_found_.Inc();
  to_unsubscribe_.push_back(oldest->first);
  ScheduleFlush();
  Erase(oldest);
  return true;
}

MonotonicTime OnDemandDiscovery::LastUse(const Key& entry) const {
  MonotonicTime last = entry.found;
  if (stream_.last_use && !entry.resource.empty()) {
    if (std::optional<MonotonicTime> used = stream_.last_use(entry.resource)) {
      last = std::max(last, *used);
    }
  }
  return last;
}

void OnDemandDiscovery::ArmSweep(MonotonicTime at) {
  const MonotonicTime now = clock_.Now();
  // At least a second apart: expiries close together are swept together.
  at = std::max(at, now + std::chrono::seconds(1));
  if (sweep_timer_->enabled() && sweep_at_ <= at) return;
  sweep_at_ = at;
  sweep_timer_->Enable(at - now);
}

void OnDemandDiscovery::SetState(Key& entry, State state) {
  Recount(entry.state, -1);
  Recount(state, +1);
  entry.state = state;
}

void OnDemandDiscovery::Answer(std::vector<LookupAnswer> answers) {
  for (const LookupAnswer& answer : answers) Count(answer.key, answer.outcome);
  if (deliver_) deliver_(std::move(answers));
}

void OnDemandDiscovery::Count(const std::string& key, LookupOutcome outcome) {
  lookups_[static_cast<size_t>(LookupKindOf(key))][static_cast<size_t>(outcome)].Inc();
}

std::string OnDemandDiscovery::Json() const {
  const MonotonicTime now = clock_.Now();
  auto seconds = [](Duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
  };
  std::string out = "{\"max_keys\":";
  absl::StrAppend(&out, options_.max_keys, ",\"idle_time_s\":", seconds(options_.idle_time),
                  ",\"missing_ttl_s\":", seconds(options_.missing_ttl), ",\"keys\":[");
  bool first = true;
  for (const auto& [key, entry] : keys_) {
    if (!first) out += ",";
    first = false;
    out += "{\"key\":";
    AppendJsonString(&out, key);
    absl::StrAppend(&out, ",\"state\":\"", kStateNames[static_cast<size_t>(entry.state)], "\"");
    if (entry.state == State::kFound) {
      out += ",\"resource\":";
      AppendJsonString(&out, entry.resource);
      absl::StrAppend(
          &out, ",\"idle_s\":",
          std::chrono::duration_cast<std::chrono::seconds>(now - LastUse(entry)).count());
    }
    out += "}";
  }
  out += "]}";
  return out;
}

}  // namespace meshlet::sidecar::config

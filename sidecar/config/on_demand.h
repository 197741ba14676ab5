#pragma once

// OnDemandDiscovery: the main thread's table of lookup keys (ADR 0086; keys of xds/protocol.h,
// "addr:..." and "host:..."), between the workers that ask for unknown destinations and the xDS
// client that subscribes the keys on the ServiceRoute type.
//
// Each key is pending (asked, no answer yet), found (the ServiceRoute answering it) or missing
// (answered not found, until `missing_ttl` passes). Request(key), posted by a worker:
//   found                      → answered found at once;
//   pending                    → nothing (the answer is on its way), unless it has been pending
//                                for `missing_ttl` (then asked again, as below);
//   missing, not expired       → answered not found at once;
//   no stream to ask on        → answered disconnected at once;
//   the table full (max_keys)  → the found key unused the longest, if unused for a minute, is
//                                unsubscribed to make room (counted expired found); else
//                                answered limit at once;
//   otherwise                  → pending, and every key that became pending in the loop turn
//                                goes in one LookupStream::lookup call at the end of the turn.
// A key missing, or pending without an answer, for `missing_ttl` is unsubscribed and forgotten
// (Sweep, run by a timer), and the workers are told to forget it (`forget`), so the next request
// asks the control plane again; a request that meets it before the sweep unsubscribes and
// subscribes it again. A found key whose ServiceRoute has not been used for `idle_time` (its
// usage cell, LookupStream::last_use; a key never used since it was answered counts from the
// answer) is unsubscribed and forgotten with every other key that ServiceRoute answers: the
// control plane then stops sending the ServiceRoute and the clusters only it needed, and the
// next use asks again. Sweep runs when the earliest of these may be due (at least a second
// apart).
//
// The times are the outbound listener's on_demand (what the control plane says), set by the
// server with SetTimes for each snapshot; OnDemandOptions (the flags) until then and while no
// listener has on_demand.
//
// Answers (from the xDS client, OnAnswers, and those produced here) go to `deliver`, which hands
// them to every worker after the snapshot that carries them: the xDS client calls OnAnswers only
// after it published that snapshot.
//
// Stats: meshlet_xds_client_on_demand_keys{state=pending|found|missing} (gauge),
// meshlet_on_demand_lookups_total{kind=address|host,result} (counted as answers are produced
// here: found, not_found, refused, disconnected, limit; the workers count the rest),
// meshlet_xds_client_on_demand_expired_total{state=found|missing} (keys unsubscribed by Sweep:
// found and idle; missing, or pending unanswered, past the missing ttl).
//
// Threading: the main loop's thread only; callbacks run on it. `deliver` and `stream` may run
// from inside Request and OnAnswers.

#include <array>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "sidecar/config/lookup.h"

namespace meshlet::sidecar::config {

struct OnDemandOptions {
  // Keys the table holds (--on-demand-max-keys); past it a new key takes the place of the found
  // key unused the longest (if unused for a minute), else is answered limit.
  size_t max_keys = 4096;
  // How long a key answered not found stays so before it is asked again.
  Duration missing_ttl = std::chrono::seconds(30);
  // How long a found key's ServiceRoute may go unused before it is unsubscribed.
  Duration idle_time = std::chrono::minutes(15);
};

// How the table reaches the control plane (XdsClient::can_look_up and XdsClient::Lookup).
struct LookupStream {
  // Whether keys can be asked now; null: never (no xDS).
  std::function<bool()> can_look_up;
  std::function<void(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe)>
      lookup;
  // The ServiceRoute answering a key found (XdsClient::lookups); null: not shown.
  std::function<std::string(const std::string& key)> resource_of;
  // When a ServiceRoute was last used (its usage cell in the running snapshot, route/
  // usage_cell.h); nullopt: never, or not in it. Null: no use is known (found keys age out
  // `idle_time` after their answer).
  std::function<std::optional<MonotonicTime>(const std::string& service_route)> last_use;
};

class OnDemandDiscovery {
 public:
  using DeliverFn = std::function<void(std::vector<LookupAnswer> answers)>;
  // Keys answered not found that are asked again from now on (Worker::ForgetMissingLookups).
  using ForgetFn = std::function<void(std::vector<std::string> keys)>;

  OnDemandDiscovery(event::Loop& loop, const Clock& clock, OnDemandOptions options,
                    LookupStream stream, DeliverFn deliver, ForgetFn forget, StatsShard& stats);
  ~OnDemandDiscovery();
  OnDemandDiscovery(const OnDemandDiscovery&) = delete;
  OnDemandDiscovery& operator=(const OnDemandDiscovery&) = delete;

  // Keys the xDS client holds already (a saved or handed-over configuration: key → the
  // ServiceRoute answering it, "" none yet): found or pending. Call before the first Request.
  void Seed(const std::map<std::string, std::string>& held);
  // A worker asks for `key` (see the top of the file).
  void Request(std::string key);
  // The xDS client's answers, after it published the snapshot that carries them.
  void OnAnswers(std::vector<LookupAnswer> answers);
  // Unsubscribes and forgets the keys missing or pending for the ttl, and the found keys of
  // the ServiceRoutes idle for idle_time (run by a timer).
  void Sweep();
  // The idle time and missing ttl from now on (the listener's on_demand); the ttl of keys
  // already missing or pending stays.
  void SetTimes(Duration idle_time, Duration missing_ttl);
  Duration idle_time() const { return options_.idle_time; }
  Duration missing_ttl() const { return options_.missing_ttl; }

  size_t size() const { return keys_.size(); }
  // For /config_dump: {"max_keys":N,"idle_time_s":N,"missing_ttl_s":N,"keys":[{"key":...,
  // "state":...,"resource":...,"idle_s":N}]} (resource and idle_s for found keys).
  std::string Json() const;

 private:
  enum class State { kPending, kFound, kMissing };
  struct Key {
    State state = State::kPending;
    std::string resource;     // kFound: the ServiceRoute answering the key
    MonotonicTime expires{};  // kMissing, kPending: when it is asked again
    MonotonicTime found{};    // kFound: when it was answered (or seeded)
  };

  // Sends the keys of the turn (at the end of the turn).
  void Flush();
  void ScheduleFlush();
  void Answer(std::vector<LookupAnswer> answers);
  void Count(const std::string& key, LookupOutcome outcome);
  // A new key (pending) or the one there; Erase drops one. Both keep the counts.
  std::map<std::string, Key>::iterator Insert(const std::string& key);
  void Erase(std::map<std::string, Key>::iterator it);
  void SetState(Key& entry, State state);
  void Recount(State state, int change);
  // The last use of a found key's ServiceRoute: its usage cell or the answer, the later.
  MonotonicTime LastUse(const Key& entry) const;
  // The table full: drops the found key unused the longest, if unused for kEvictableAfter
  // (unsubscribed, counted expired found); false when there is none.
  bool EvictIdleFound();
  static constexpr Duration kEvictableAfter = std::chrono::minutes(1);
  // Makes the sweep run no later than `at` (a second from now at the earliest).
  void ArmSweep(MonotonicTime at);

  event::Loop& loop_;
  const Clock& clock_;
  OnDemandOptions options_;
  LookupStream stream_;
  DeliverFn deliver_;
  ForgetFn forget_;
  std::map<std::string, Key> keys_;
  std::vector<std::string> to_subscribe_;
  std::vector<std::string> to_unsubscribe_;
  bool flush_scheduled_ = false;
  // Lets the end-of-turn flush find out whether this object still exists.
  std::shared_ptr<OnDemandDiscovery*> self_;
  std::unique_ptr<event::Timer> sweep_timer_;
  MonotonicTime sweep_at_{};  // when sweep_timer_ fires, while enabled

  std::array<size_t, 3> counts_{};  // keys per State
  std::array<Gauge, 3> key_gauges_;
  Counter expired_found_;
  Counter expired_missing_;
  // [LookupKind][outcome].
  std::array<std::array<Counter, 7>, kLookupKindCount> lookups_;
};

}  // namespace meshlet::sidecar::config

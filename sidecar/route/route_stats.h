#pragma once

// Route-level metrics (docs/golden-metrics.md "Route rules", docs/stats.md): every request whose
// route was made from a policy object's rule ("HTTPRoute/default/reviews" rule 1, the identity
// decision records and `meshctl explain` show) is counted once when it ends, by rule:
//
//   meshlet_route_rq_total{route,rule,service,code_class}          responses by status class
//   meshlet_route_rq_duration_seconds{route,rule,service,outcome}  duration, success or failure
//
// `service` is the destination service the rule served: its virtual host's (the Service port an
// HTTPRoute attaches to, "reviews.default.svc.cluster.local:9080"), as /api/v1/stat names services
// ("reviews.default"; ServiceOfHost). A rule of an HTTPRoute with two parent Services counts
// apart for each.
//
// Series are made lazily, on a rule's first request of each class or outcome on a worker, so
// only rules that took traffic cost anything. At most `max_rules` rules (--max-route-stats) get
// series of their own, process-wide, first come first served; the requests of any rule past the
// bound are counted in one overflow series set (route="overflow", rule="*", service="*"), and each
// rule refused is counted once in meshlet_route_stats_overflow_total.
//
// Ownership and threads: one RouteStatsLimit per process (the server's), outliving every
// worker's RouteStats; thread-safe (a mutex, taken only on a rule's first request on a worker).
// One RouteStats per worker, recording into the worker's StatsShard, used only on that worker's
// thread. Record() allocates and locks nothing once the worker has seen the rule: a lookup in a
// flat table keyed by the route's shared source name and rule.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/sync.h"
#include "common/stats/stats.h"
#include "sidecar/route/route_config.h"

namespace meshlet::sidecar::route {

// Which route rules may have series of their own: the first `max_rules` distinct (route, rule)
// pairs asked for. 0: none (every routed request counts in the overflow series; the server
// makes no RouteStats at all for --max-route-stats 0).
// The service a virtual host stands for, as /api/v1/stat names services: "reviews.default" for
// "reviews.default.svc.cluster.local:9080" (the part before ".svc", without the port); another
// name without its port as it is.
std::string ServiceOfHost(absl::string_view host);

class RouteStatsLimit {
 public:
  static constexpr size_t kDefaultMaxRules = 256;

  // Registers meshlet_route_stats_overflow_total in `registry`'s shared shard.
  RouteStatsLimit(StatsRegistry& registry, size_t max_rules);
  RouteStatsLimit(const RouteStatsLimit&) = delete;
  RouteStatsLimit& operator=(const RouteStatsLimit&) = delete;

  // Whether (route, rule, service) has series of its own: true when admitted now or before; false
  // past the bound, the rule counted as refused the first time it is asked for. Any thread.
  bool Admit(absl::string_view route, int32_t rule, absl::string_view service);

  size_t max_rules() const { return max_rules_; }
  size_t admitted() const;
  size_t refused() const;

 private:
  const size_t max_rules_;
  Counter overflow_;
  mutable Mutex mu_;
  // By a 64-bit hash of the pair (8 bytes a rule): whether it was admitted. Two pairs hashing
  // alike (odds 2^-64) share one answer.
  absl::flat_hash_map<uint64_t, bool> decided_ ABSL_GUARDED_BY(mu_);
  size_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
};

// One worker's route-rule series.
class RouteStats {
 public:
  // `shard` (the worker's) and `limit` must outlive this.
  RouteStats(StatsShard& shard, RouteStatsLimit& limit) : shard_(shard), limit_(limit) {}
  RouteStats(const RouteStats&) = delete;
  RouteStats& operator=(const RouteStats&) = delete;

  // A request routed by `route` ended: `response_code` as sent downstream (0: none), `failure`
  // as the golden metrics define it (5xx, a gRPC status other than OK, or no complete response).
  // Only routes made from a rule count ("HTTPRoute" and "GRPCRoute", Gateway API or meshlet's):
  // a route without a source (static configuration) or a rule (a Service's default route, which
  // the cluster's series already count) counts nothing.
  void Record(const RouteEntry& route, int response_code, bool failure, uint64_t duration_us) {
    if (route.source_rule < 0 || route.source.empty()) return;
    const Key key{route.source.id(), route.source_rule,
                  route.virtual_host != nullptr ? route.virtual_host->name_hash : 0};
    // The rule of the previous request first: a worker's requests mostly repeat a few rules.
    if (!(key == last_key_)) [[unlikely]] {
      auto it = index_.find(key);
      last_index_ = it != index_.end() ? it->second.index : Add(route, key);
      last_key_ = key;
    }
    Rule& rule = rules_[last_index_];
    if (response_code != 0) rule.Count(*this, StatusClass(response_code));
    rule.Time(*this, failure ? 1 : 0, duration_us);
  }

  // Rules this worker has counted, the overflow set included once used (tests, memory).
  size_t rules() const { return rules_.size(); }

 private:
  // The host by its name's hash (VirtualHostConfig::name_hash): two hosts of one rule hashing
  // alike (odds 2^-32) would share the first one's series.
  struct Key {
    const void* source;
    int32_t rule;
    uint32_t host;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.source, k.rule, k.host);
    }
  };
  // One rule's handles on this worker, each registered on its first use (bit i of `registered`:
  // by_class[i], bits 5 and 6: duration[0] and [1]).
  // A key's rule, and a copy of its source name: the key's address is not reused while it lives.
  struct Entry {
    uint32_t index;
    SourceName source;
  };
  struct Rule {
    SourceName source;  // the `route` label's value; empty for the overflow set
    int32_t rule = -1;
    std::string service;
    uint8_t registered = 0;
    std::array<Counter, 5> by_class;
    std::array<Histogram, 2> duration;

    void Count(RouteStats& stats, size_t status_class) {
      if ((registered & (1u << status_class)) == 0) [[unlikely]]
        stats.RegisterClass(*this, status_class);
      by_class[status_class].Inc();
    }
    void Time(RouteStats& stats, size_t outcome, uint64_t duration_us) {
      if ((registered & (1u << (5 + outcome))) == 0) [[unlikely]]
        stats.RegisterDuration(*this, outcome);
      duration[outcome].Record(duration_us);
    }
  };

  static size_t StatusClass(int status) {
    if (status < 200) return 0;
    if (status >= 500) return 4;
    return static_cast<size_t>(status / 100 - 1);
  }
  // The rule's first request on this worker: the index of its own entry, or of the overflow set's
  // past the bound.
  uint32_t Add(const RouteEntry& route, const Key& key);
  void RegisterClass(Rule& rule, size_t status_class);
  void RegisterDuration(Rule& rule, size_t outcome);
  LabelSet Labels(const Rule& rule) const;

  StatsShard& shard_;
  RouteStatsLimit& limit_;
  // Every key seen, to its rule in rules_ (its own, or the overflow set's).
  absl::flat_hash_map<Key, Entry> index_;
  std::vector<Rule> rules_;
  int64_t overflow_index_ = -1;  // rules_ index of the overflow set, once used
  // The previous request's key and rule (index_ holds a copy of the key's source name, so its
  // address is not reused while it is here).
  Key last_key_{nullptr, -1, 0};
  uint32_t last_index_ = 0;
};

}  // namespace meshlet::sidecar::route

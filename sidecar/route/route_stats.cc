#include "sidecar/route/route_stats.h"

#include <string>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::route {
namespace {

constexpr absl::string_view kRequests = "meshlet_route_rq_total";
constexpr absl::string_view kRequestsHelp =
    "Requests routed by a policy object's rule (route, rule), by the response's status class, "
    "counted when they end.";
constexpr absl::string_view kDuration = "meshlet_route_rq_duration_seconds";
constexpr absl::string_view kDurationHelp =
    "Duration of requests routed by a policy object's rule (route, rule), by outcome (failure: "
    "5xx, a gRPC status other than OK, or no complete response).";
constexpr absl::string_view kOverflow = "meshlet_route_stats_overflow_total";
constexpr absl::string_view kOverflowHelp =
    "Route rules refused series of their own past --max-route-stats; their requests count in the "
    "route=\"overflow\" series.";
constexpr std::array<absl::string_view, 5> kClassNames = {"1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::array<absl::string_view, 2> kOutcomeNames = {"success", "failure"};

HistogramOptions Microseconds() {
  HistogramOptions options;
  options.exposition_divisor = 1e6;
  return options;
}

}  // namespace

RouteStatsLimit::RouteStatsLimit(StatsRegistry& registry, size_t max_rules)
    : max_rules_(max_rules),
      overflow_(OrDiscard(registry.shared_shard().RegisterCounter(kOverflow, kOverflowHelp),
                          kOverflow)) {}

std::string ServiceOfHost(absl::string_view host) {
  if (const size_t colon = host.rfind(':');
      colon != absl::string_view::npos && host.find(']', colon) == absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (const size_t svc = host.find(".svc");
      svc != absl::string_view::npos && (svc + 4 == host.size() || host[svc + 4] == '.')) {
    host = host.substr(0, svc);
  }
  return std::string(host);
}

bool RouteStatsLimit::Admit(absl::string_view route, int32_t rule, absl::string_view service) {
  const uint64_t key = absl::HashOf(route, rule, service);
  MutexLock lock(&mu_);
  auto [it, inserted] = decided_.try_emplace(key, false);
  if (!inserted) return it->second;
  if (admitted_ < max_rules_) {
    ++admitted_;
    it->second = true;
  } else {
    overflow_.Inc();
  }
  return it->second;
}

size_t RouteStatsLimit::admitted() const {
  MutexLock lock(&mu_);
  return admitted_;
}

size_t RouteStatsLimit::refused() const {
  MutexLock lock(&mu_);
  return decided_.size() - admitted_;
}

uint32_t RouteStats::Add(const RouteEntry& route, const Key& key) {
  uint32_t index;
  std::string service =
      route.virtual_host != nullptr ? ServiceOfHost(route.virtual_host->name) : std::string();
  if (limit_.Admit(route.source.view(), route.source_rule, service)) {
    index = static_cast<uint32_t>(rules_.size());
    rules_.push_back(
        Rule{.source = route.source, .rule = route.source_rule, .service = std::move(service)});
  } else {
    if (overflow_index_ < 0) {
      overflow_index_ = static_cast<int64_t>(rules_.size());
      rules_.emplace_back();
    }
    index = static_cast<uint32_t>(overflow_index_);
  }
  index_.emplace(key, Entry{index, route.source});
  return index;
}

LabelSet RouteStats::Labels(const Rule& rule) const {
  if (rule.source.empty()) return {{"route", "overflow"}, {"rule", "*"}, {"service", "*"}};
  return {{"route", std::string(rule.source.view())},
          {"rule", absl::StrCat(rule.rule)},
          {"service", rule.service}};
}

void RouteStats::RegisterClass(Rule& rule, size_t status_class) {
  LabelSet labels = Labels(rule);
  labels.emplace_back("code_class", kClassNames[status_class]);
  // A refusal (the series budget, counted by the registry) leaves a handle that counts nothing,
  // and is not asked again.
  rule.by_class[status_class] =
      OrDiscard(shard_.RegisterCounter(kRequests, kRequestsHelp, labels), kRequests);
  rule.registered |= static_cast<uint8_t>(1u << status_class);
}

void RouteStats::RegisterDuration(Rule& rule, size_t outcome) {
  LabelSet labels = Labels(rule);
  labels.emplace_back("outcome", kOutcomeNames[outcome]);
  rule.duration[outcome] = OrDiscard(
      shard_.RegisterHistogram(kDuration, kDurationHelp, labels, Microseconds()), kDuration);
  rule.registered |= static_cast<uint8_t>(1u << (5 + outcome));
}

}  // namespace meshlet::sidecar::route

#include "control-plane/telemetry/golden_history.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/varint.h"
#include "common/config/yaml_proto.h"
#include "common/stats/histogram_buckets.h"
#include "control-plane/telemetry/golden_common.h"

namespace meshlet::controlplane::telemetry {

using http::ServerRequest;
using http::ServerResponse;

namespace {

// Merged latency bucket → count, ascending.
using Latency = std::vector<std::pair<uint32_t, uint64_t>>;

double MergedMidpointMs(uint32_t merged) {
  const size_t first = size_t{merged} * GoldenHistory::kMergedBuckets;
  const size_t last = std::min(first + GoldenHistory::kMergedBuckets, HistogramBuckets::kCount) - 1;
  return (static_cast<double>(HistogramBuckets::LowerBound(first)) +
          static_cast<double>(HistogramBuckets::UpperBound(last))) /
         2 / 1000.0;
}

void AddTo(Latency& latency, uint32_t merged, uint64_t count) {
  auto it = std::lower_bound(latency.begin(), latency.end(), merged,
                             [](const auto& entry, uint32_t m) { return entry.first < m; });
  if (it != latency.end() && it->first == merged) {
    it->second += count;
  } else {
    latency.insert(it, {merged, count});
  }
}

// The part of `count` that falls before fraction `f` of the interval: floor(count * f), with
// f == 1 exact, so consecutive differences add up to `count`.
uint64_t Before(uint64_t count, double f) {
  if (f >= 1) return count;
  if (f <= 0) return 0;
  return std::min(count, static_cast<uint64_t>(std::floor(static_cast<double>(count) * f)));
}

// Unix seconds ("1767225600", "1767225600.5") or RFC 3339 ("2026-01-01T00:00:00Z").
// Times and spans an answer may name: from 1970 to 2100, spans of at most ten years (so that
// nanosecond arithmetic on them cannot overflow).
constexpr int64_t kLatestUnixSeconds = 4102444800;  // 2100-01-01T00:00:00Z
constexpr absl::Duration kLongestSpan = absl::Hours(24 * 3660);

// Unix seconds ("1767225600", "1767225600.5") or RFC 3339 ("2026-01-01T00:00:00Z").
absl::StatusOr<absl::Time> ParseTime(absl::string_view name, absl::string_view text) {
  double seconds = 0;
  absl::Time t;
  std::string error;
  if (absl::SimpleAtod(text, &seconds) && std::isfinite(seconds)) {
    t = absl::FromUnixNanos(static_cast<int64_t>(
        std::clamp(seconds, -1.0, static_cast<double>(kLatestUnixSeconds) + 1) * 1e9));
  } else if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": \"", text,
                     "\" is neither Unix seconds nor an RFC 3339 time (2026-01-01T00:00:00Z)"));
  }
  if (t < absl::UnixEpoch() || t > absl::FromUnixSeconds(kLatestUnixSeconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": \"", text, "\" is not between 1970 and 2100"));
  }
  return t;
}

}  // namespace

struct GoldenHistory::OpenSlot {
  int64_t slot = 0;
  uint64_t failures = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  Latency latency;
};

struct GoldenHistory::Edge {
  std::vector<OpenSlot> open;  // ascending by slot
  // Sealed slots, ascending, each: varint slot − the previous one (the first: − sealed_base),
  // failures, tx bytes, rx bytes, the number of latency buckets, then per bucket its index −
  // the previous one's and its count.
  std::vector<char> sealed;
  int64_t sealed_base = 0;
  int64_t sealed_first = 0;  // when `sealed` is not empty
  int64_t sealed_last = 0;
};

struct GoldenHistory::Stats {
  Counter recorded, late, clock_skew, series_limit;
  Gauge series, bytes;
};

namespace {

// One sealed slot, decoded.
struct Decoded {
  int64_t slot = 0;
  uint64_t failures = 0, tx_bytes = 0, rx_bytes = 0;
  Latency latency;
};

// Reads the slot at `*p` (slot deltas chained from `*previous`), moving both on.
void DecodeSlot(const char** p, int64_t* previous, Decoded& out) {
  out.slot = *previous + static_cast<int64_t>(GetVarint(p));
  *previous = out.slot;
  out.failures = GetVarint(p);
  out.tx_bytes = GetVarint(p);
  out.rx_bytes = GetVarint(p);
  const uint64_t n = GetVarint(p);
  out.latency.clear();
  uint32_t index = 0;
  for (uint64_t i = 0; i < n; ++i) {
    index += static_cast<uint32_t>(GetVarint(p));
    out.latency.emplace_back(index, GetVarint(p));
  }
}

}  // namespace

GoldenHistory::GoldenHistory(const Clock& clock, GoldenHistoryLimits limits, StatsRegistry* stats)
    : clock_(clock),
      limits_(limits),
      resolution_nanos_(std::max<int64_t>(1, limits.resolution.count())),
      // The slot still filling and a whole retention before it.
      retention_slots_(std::max<int64_t>(1, limits.retention.count() / resolution_nanos_) + 1),
      open_slots_(std::max<int64_t>(0, limits.open_for.count() / resolution_nanos_)) {
  last_sweep_slot_ = NowSlot();
  if (stats == nullptr) return;
  stats_ = std::make_unique<Stats>();
  StatsShard& shard = stats->shared_shard();
  auto counter = [&](absl::string_view result) {
    auto c = shard.RegisterCounter(
        "meshlet_cp_golden_history_deltas_total",
        "What one report added to one edge, route rule or workload series, for the golden-metrics "
        "history, by result (recorded, "
        "late: for a slot no longer open, put in the oldest open one, clock_skew: the report's "
        "time too far from this control plane's, placed at its time, series_limit: the series was "
        "past --golden-history-max-series and the delta dropped).",
        {{"result", std::string(result)}});
    return c.ok() ? *c : Counter();
  };
  stats_->recorded = counter("recorded");
  stats_->late = counter("late");
  stats_->clock_skew = counter("clock_skew");
  stats_->series_limit = counter("series_limit");
  auto gauge = [&](absl::string_view name, absl::string_view help) {
    auto g = shard.RegisterGauge(name, help, {}, GaugeMerge::kGlobal);
    return g.ok() ? *g : Gauge();
  };
  stats_->series =
      gauge("meshlet_cp_golden_history_series", "Edges the golden-metrics history holds.");
  stats_->bytes = gauge("meshlet_cp_golden_history_bytes",
                        "Heap the golden-metrics history holds, as of its last sweep.");
}

GoldenHistory::~GoldenHistory() = default;

int64_t GoldenHistory::SlotOf(int64_t unix_nano) const {
  // Floor, also for times before 1970 (a sidecar clock gone wrong).
  return unix_nano >= 0 ? unix_nano / resolution_nanos_
                        : -((-unix_nano + resolution_nanos_ - 1) / resolution_nanos_);
}

int64_t GoldenHistory::NowSlot() const { return SlotOf(absl::ToUnixNanos(clock_.WallNow())); }

void GoldenHistory::Add(absl::string_view source, absl::string_view destination,
                        int64_t since_unix_nano, int64_t at_unix_nano, const EdgeDelta& delta) {
  // Nothing counted (a cluster reported for its requests in flight): no slot, no edge.
  if ((delta.success == nullptr || delta.success->empty()) &&
      (delta.failure == nullptr || delta.failure->empty()) && delta.tx_bytes == 0 &&
      delta.rx_bytes == 0) {
    return;
  }
  auto it = edges_.find(std::make_pair(source, destination));
  if (it == edges_.end()) {
    if (edges_.size() >= limits_.max_series) {
      if (stats_ != nullptr) stats_->series_limit.Inc();
      return;
    }
    it =
        edges_.emplace(std::make_pair(std::string(source), std::string(destination)), Edge{}).first;
  }
  Edge& edge = it->second;
  const int64_t wall = absl::ToUnixNanos(clock_.WallNow());
  const int64_t now_slot = SlotOf(wall);
  Counter* result = stats_ != nullptr ? &stats_->recorded : nullptr;
  const int64_t skew = limits_.max_clock_skew.count();
  if (at_unix_nano < wall - skew || at_unix_nano > wall + skew) {
    at_unix_nano = wall;
    since_unix_nano = 0;
    if (stats_ != nullptr) result = &stats_->clock_skew;
  }
  int64_t min_open = now_slot - open_slots_;
  if (!edge.sealed.empty()) min_open = std::max(min_open, edge.sealed_last + 1);
  int64_t at_slot = SlotOf(at_unix_nano);
  if (at_slot < min_open) {
    at_slot = min_open;
    since_unix_nano = 0;
    if (stats_ != nullptr) result = &stats_->late;
  }
  if (result != nullptr) result->Inc();
  // The pieces of (since, at]: slots first..at_slot, those before min_open folded into it, each
  // with the fraction of the interval up to its end.
  const bool spread = since_unix_nano > 0 && since_unix_nano < at_unix_nano;
  const int64_t first = spread ? std::max(SlotOf(since_unix_nano), min_open) : at_slot;
  const double span = spread ? static_cast<double>(at_unix_nano - since_unix_nano) : 1;
  double before = 0;  // the fraction up to the previous piece's end
  size_t o = 0;       // where in edge.open the slots from here on are
  for (int64_t slot = first; slot <= at_slot; ++slot) {
    const double upto =
        slot == at_slot
            ? 1.0
            : static_cast<double>((slot + 1) * resolution_nanos_ - since_unix_nano) / span;
    while (o < edge.open.size() && edge.open[o].slot < slot) ++o;
    if (o == edge.open.size() || edge.open[o].slot != slot) {
      edge.open.insert(edge.open.begin() + static_cast<std::ptrdiff_t>(o), OpenSlot{.slot = slot});
    }
    OpenSlot& open = edge.open[o];
    auto share = [&](uint64_t count) { return Before(count, upto) - Before(count, before); };
    for (const FineCounts* counts : {delta.success, delta.failure}) {
      if (counts == nullptr) continue;
      for (const auto& [index, count] : *counts) {
        const uint64_t n = share(count);
        if (n == 0) continue;
        AddTo(open.latency, index / kMergedBuckets, n);
        if (counts == delta.failure) open.failures += n;
      }
    }
    open.tx_bytes += share(delta.tx_bytes);
    open.rx_bytes += share(delta.rx_bytes);
    before = upto;
  }
  if (now_slot != last_sweep_slot_) Sweep();
}

void GoldenHistory::SealAndTrim(Edge& edge, int64_t now_slot) const {
  const int64_t oldest_kept = now_slot - retention_slots_ + 1;
  // Seal what is no longer open.
  size_t sealed = 0;
  for (; sealed < edge.open.size() && edge.open[sealed].slot < now_slot - open_slots_; ++sealed) {
    const OpenSlot& s = edge.open[sealed];
    if (s.slot < oldest_kept || (s.latency.empty() && s.tx_bytes == 0 && s.rx_bytes == 0)) {
      continue;
    }
    if (edge.sealed.empty()) {
      edge.sealed_base = s.slot;
      edge.sealed_first = s.slot;
      edge.sealed_last = s.slot;
    }
    const size_t at = edge.sealed.size();
    const size_t most = 10 * (5 + 2 * s.latency.size());
    if (at + most > edge.sealed.capacity()) {
      // Grow by an eighth, not doubling: the bytes reach their size once and then stay there
      // (an hour is ~360 slots of ~30 bytes).
      edge.sealed.reserve(at + most + std::max<size_t>(256, at / 8));
    }
    edge.sealed.resize(at + most);
    char* p = edge.sealed.data() + at;
    p = PutVarint(p, static_cast<uint64_t>(s.slot - edge.sealed_last));
    p = PutVarint(p, s.failures);
    p = PutVarint(p, s.tx_bytes);
    p = PutVarint(p, s.rx_bytes);
    p = PutVarint(p, s.latency.size());
    uint32_t previous = 0;
    for (const auto& [index, count] : s.latency) {
      p = PutVarint(p, index - previous);
      p = PutVarint(p, count);
      previous = index;
    }
    edge.sealed.resize(static_cast<size_t>(p - edge.sealed.data()));
    edge.sealed_last = s.slot;
  }
  edge.open.erase(edge.open.begin(), edge.open.begin() + static_cast<std::ptrdiff_t>(sealed));
  if (edge.open.empty() && edge.open.capacity() > 0) std::vector<OpenSlot>().swap(edge.open);
  // Drop sealed slots past the retention, an eighth of it at a time (so the bytes move rarely).
  const int64_t slack = std::max<int64_t>(1, retention_slots_ / 8);
  if (edge.sealed.empty() || edge.sealed_first >= oldest_kept - slack) return;
  if (edge.sealed_last < oldest_kept) {
    std::vector<char>().swap(edge.sealed);
    return;
  }
  const char* p = edge.sealed.data();
  int64_t previous = edge.sealed_base;
  Decoded d;
  for (;;) {
    const char* start = p;
    int64_t base = previous;
    DecodeSlot(&p, &previous, d);
    if (d.slot >= oldest_kept) {
      edge.sealed.erase(edge.sealed.begin(), edge.sealed.begin() + (start - edge.sealed.data()));
      edge.sealed_base = base;
      edge.sealed_first = d.slot;
      break;
    }
  }
  // Room for the slots of the next eighth of the retention, not a doubling's worth.
  if (edge.sealed.capacity() > edge.sealed.size() * 3 / 2 + 64) {
    std::vector<char> compact;
    compact.reserve(edge.sealed.size() * 5 / 4 + 64);
    compact.insert(compact.end(), edge.sealed.begin(), edge.sealed.end());
    edge.sealed.swap(compact);
  }
}

size_t GoldenHistory::EdgeBytes(const Edge& edge) const {
  // A map node: the key, the value and the tree's links and colour.
  size_t bytes = sizeof(std::pair<std::string, std::string>) + sizeof(Edge) + 32;
  bytes += edge.open.capacity() * sizeof(OpenSlot);
  for (const OpenSlot& s : edge.open) bytes += s.latency.capacity() * sizeof(Latency::value_type);
  bytes += edge.sealed.capacity();
  return bytes;
}

size_t GoldenHistory::memory_bytes() const {
  size_t bytes = 0;
  for (const auto& [key, edge] : edges_) {
    bytes += EdgeBytes(edge);
    // std::string holds up to 15 characters in place.
    if (key.first.capacity() > 15) bytes += key.first.capacity() + 1;
    if (key.second.capacity() > 15) bytes += key.second.capacity() + 1;
  }
  return bytes;
}

void GoldenHistory::Sweep() {
  const int64_t now_slot = NowSlot();
  last_sweep_slot_ = now_slot;
  for (auto it = edges_.begin(); it != edges_.end();) {
    SealAndTrim(it->second, now_slot);
    if (it->second.open.empty() && it->second.sealed.empty()) {
      it = edges_.erase(it);
    } else {
      ++it;
    }
  }
  if (stats_ != nullptr) {
    stats_->series.Set(static_cast<int64_t>(edges_.size()));
    stats_->bytes.Set(static_cast<int64_t>(memory_bytes()));
  }
}

namespace {

constexpr char kRouteKind = '\x01';
constexpr char kWorkloadKind = '\x02';

bool IsEdgeSource(absl::string_view source) {
  return source.empty() || (source[0] != kRouteKind && source[0] != kWorkloadKind);
}

// "HTTPRoute/default/reviews#1" of a route series' source; empty for another series.
absl::string_view RouteOfSource(absl::string_view source) {
  return !source.empty() && source[0] == kRouteKind ? source.substr(1) : absl::string_view();
}

// Whether route series `source` is rule `rule` (-1: any) of NAMESPACE/NAME `route`, of any kind.
bool RouteMatches(absl::string_view source, absl::string_view route, int32_t rule) {
  absl::string_view text = RouteOfSource(source);
  const size_t slash = text.find('/');
  const size_t hash = text.rfind('#');
  if (slash == absl::string_view::npos || hash == absl::string_view::npos || hash < slash) {
    return false;
  }
  if (text.substr(slash + 1, hash - slash - 1) != route) return false;
  return rule < 0 || text.substr(hash + 1) == absl::StrCat(rule);
}

}  // namespace

std::string RouteSeriesSource(absl::string_view route, int32_t rule) {
  return absl::StrCat(std::string(1, kRouteKind), route, "#", rule);
}

std::string WorkloadSeriesSource(absl::string_view namespace_, absl::string_view workload) {
  return absl::StrCat(std::string(1, kWorkloadKind), namespace_, "/", workload);
}

absl::StatusOr<std::vector<HistoryPoint>> GoldenHistory::Query(const HistoryQuery& query) const {
  const int64_t step = query.step.count();
  if (step <= 0 || step % resolution_nanos_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step: must be a multiple of the resolution (",
                     absl::FormatDuration(absl::FromChrono(limits_.resolution)), ")"));
  }
  if (query.from >= query.to) {
    return absl::InvalidArgumentError("from: must be before to");
  }
  auto floor_to = [step](int64_t t) {
    return t >= 0 ? t / step * step : -((-t + step - 1) / step) * step;
  };
  const int64_t from =
      query.align_to_from ? absl::ToUnixNanos(query.from) : floor_to(absl::ToUnixNanos(query.from));
  const int64_t to =
      query.align_to_from
          ? from + (absl::ToUnixNanos(query.to) - from + step - 1) / step * step
          : floor_to(absl::ToUnixNanos(query.to) - 1) + step;  // the point holding `to`
  const uint64_t points = static_cast<uint64_t>((to - from) / step);
  if (points > limits_.max_points) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step: ", points, " points from..to at this step; at most ", limits_.max_points,
        " (a step of at least ",
        absl::FormatDuration(absl::Nanoseconds(
            ((to - from) / static_cast<int64_t>(limits_.max_points) / resolution_nanos_ + 1) *
            resolution_nanos_)),
        ")"));
  }
  struct Accumulator {
    uint64_t failures = 0, tx = 0, rx = 0;
    std::map<uint32_t, uint64_t> latency;  // by merged bucket
  };
  std::vector<Accumulator> acc(points);
  const int64_t oldest_kept = NowSlot() - retention_slots_ + 1;
  auto add = [&](int64_t slot, uint64_t failures, uint64_t tx, uint64_t rx,
                 const Latency& latency) {
    const int64_t t = slot * resolution_nanos_;
    if (slot < oldest_kept || t < from || t >= to) return;
    Accumulator& a = acc[static_cast<size_t>((t - from) / step)];
    a.failures += failures;
    a.tx += tx;
    a.rx += rx;
    for (const auto& [index, count] : latency) a.latency[index] += count;
  };
  auto read = [&](const Edge& edge) {
    if (!edge.sealed.empty()) {
      const char* p = edge.sealed.data();
      const char* end = p + edge.sealed.size();
      int64_t previous = edge.sealed_base;
      Decoded d;
      while (p < end) {
        DecodeSlot(&p, &previous, d);
        add(d.slot, d.failures, d.tx_bytes, d.rx_bytes, d.latency);
      }
    }
    for (const OpenSlot& s : edge.open) add(s.slot, s.failures, s.tx_bytes, s.rx_bytes, s.latency);
  };
  if (!query.service.empty()) {
    for (const auto& [key, edge] : edges_) {
      if (key.second == query.service && IsEdgeSource(key.first)) read(edge);
    }
  } else if (!query.route.empty()) {
    for (const auto& [key, edge] : edges_) {
      if (RouteMatches(key.first, query.route, query.rule)) read(edge);
    }
  } else if (!query.workload.empty()) {
    const std::string source = absl::StrCat(std::string(1, kWorkloadKind), query.workload);
    for (auto it =
             edges_.lower_bound(std::make_pair(absl::string_view(source), absl::string_view()));
         it != edges_.end() && it->first.first == source; ++it) {
      read(it->second);
    }
  } else if (auto it = edges_.find(std::make_pair(absl::string_view(query.source),
                                                  absl::string_view(query.destination)));
             it != edges_.end()) {
    read(it->second);
  }
  std::vector<HistoryPoint> out(points);
  const double seconds = static_cast<double>(step) / 1e9;
  for (size_t i = 0; i < points; ++i) {
    const Accumulator& a = acc[i];
    HistoryPoint& p = out[i];
    p.start = absl::FromUnixNanos(from + static_cast<int64_t>(i) * step);
    for (const auto& [index, count] : a.latency) p.requests += count;
    p.failures = std::min(a.failures, p.requests);
    p.tx_bytes = a.tx;
    p.rx_bytes = a.rx;
    p.rps = static_cast<double>(p.requests) / seconds;
    p.success_rate = p.requests == 0 ? std::numeric_limits<double>::quiet_NaN()
                                     : static_cast<double>(p.requests - p.failures) / p.requests;
    p.p50_ms = NearestRankMs(a.latency, p.requests, 0.50, MergedMidpointMs);
    p.p95_ms = NearestRankMs(a.latency, p.requests, 0.95, MergedMidpointMs);
    p.p99_ms = NearestRankMs(a.latency, p.requests, 0.99, MergedMidpointMs);
  }
  return out;
}

ServerResponse GoldenHistory::HandleQuery(const ServerRequest& request) const {
  if (request.method() != "GET") {
    ServerResponse r = GoldenQueryError(405, "only GET is allowed here");
    r.headers.Add("allow", "GET");
    return r;
  }
  HistoryQuery query;
  std::optional<absl::Time> from, to;
  std::optional<absl::Duration> window, step;
  bool has_edge = false;
  bool has_rule = false;
  // NAMESPACE/NAME: two non-empty parts.
  auto two_names = [](absl::string_view value) {
    std::vector<absl::string_view> parts = absl::StrSplit(value, '/');
    return parts.size() == 2 && !parts[0].empty() && !parts[1].empty();
  };
  for (const auto& [name, value] : request.QueryParams()) {
    if (name == "route") {
      if (!two_names(value)) {
        return GoldenQueryError(400, absl::StrCat("route: \"", value,
                                                  "\" is not NAMESPACE/NAME (an HTTPRoute or "
                                                  "GRPCRoute)"));
      }
      query.route = value;
    } else if (name == "rule") {
      if (!absl::SimpleAtoi(value, &query.rule) || query.rule < 0) {
        return GoldenQueryError(
            400, absl::StrCat("rule: \"", value, "\" is not a rule index (0, 1, ...)"));
      }
      has_rule = true;
    } else if (name == "workload") {
      if (!two_names(value)) {
        return GoldenQueryError(400,
                                absl::StrCat("workload: \"", value, "\" is not NAMESPACE/POD"));
      }
      query.workload = value;
    } else if (name == "service") {
      if (value.empty())
        return GoldenQueryError(400, "service: empty; give a service, e.g. backend.default");
      query.service = value;
    } else if (name == "edge") {
      std::vector<std::string> parts = absl::StrSplit(value, ',');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return GoldenQueryError(
            400, absl::StrCat("edge: \"", value, "\" is not SOURCE,DESTINATION (two services)"));
      }
      query.source = parts[0];
      query.destination = parts[1];
      has_edge = true;
    } else if (name == "from" || name == "to") {
      absl::StatusOr<absl::Time> t = ParseTime(name, value);
      if (!t.ok()) return GoldenQueryError(400, t.status().message());
      (name == "from" ? from : to) = *t;
    } else if (name == "window" || name == "step") {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d <= absl::ZeroDuration() || *d > kLongestSpan) {
        return GoldenQueryError(
            400,
            absl::StrCat(name, ": \"", value, "\" is not a duration above 0 and at most 87840h"));
      }
      (name == "window" ? window : step) = *d;
    } else {
      return GoldenQueryError(
          400, absl::StrCat("unknown parameter \"", name,
                            "\"; known: service, edge, route, rule, workload, from, to, window, "
                            "step"));
    }
  }
  if (static_cast<int>(!query.service.empty()) + static_cast<int>(has_edge) +
          static_cast<int>(!query.route.empty()) + static_cast<int>(!query.workload.empty()) !=
      1) {
    return GoldenQueryError(400,
                            "give exactly one of service=S (its inbound traffic), edge=A,B, "
                            "route=NAMESPACE/NAME (with rule=N: one rule) and "
                            "workload=NAMESPACE/POD");
  }
  if (has_rule && query.route.empty()) {
    return GoldenQueryError(400, "rule: goes with route=NAMESPACE/NAME");
  }
  if (window.has_value() && from.has_value()) {
    return GoldenQueryError(400, "give from or window, not both");
  }
  query.to = to.value_or(clock_.WallNow());
  query.from = from.value_or(query.to - window.value_or(absl::FromChrono(limits_.retention)));
  if (step.has_value()) {
    query.step = absl::ToChronoNanoseconds(*step);
  } else {
    // The resolution, or the smallest multiple of it that keeps the points within the limit.
    const int64_t from_nanos = absl::ToUnixNanos(query.from);
    const int64_t to_nanos = absl::ToUnixNanos(query.to);
    const int64_t max_points = static_cast<int64_t>(std::max<size_t>(1, limits_.max_points));
    int64_t per = std::max<int64_t>(1, (to_nanos - from_nanos) / resolution_nanos_ / max_points);
    auto points_at = [&](int64_t step) {
      auto floor_to = [step](int64_t t) { return t >= 0 ? t / step : -((-t + step - 1) / step); };
      return floor_to(to_nanos - 1) + 1 - floor_to(from_nanos);
    };
    while (to_nanos > from_nanos && points_at(per * resolution_nanos_) > max_points) ++per;
    query.step = Duration(per * resolution_nanos_);
  }
  absl::StatusOr<std::vector<HistoryPoint>> points = Query(query);
  if (!points.ok()) return GoldenQueryError(400, points.status().message());
  const double step_seconds = std::chrono::duration<double>(query.step).count();
  std::vector<std::string> items;
  items.reserve(points->size());
  for (const HistoryPoint& p : *points) {
    items.push_back(absl::StrCat(
        R"({"time":)", absl::ToUnixSeconds(p.start), R"(,"requests":)", p.requests,
        R"(,"failures":)", p.failures, R"(,"rps":)", GoldenJsonNumber(p.rps), R"(,"successRate":)",
        GoldenJsonNumber(p.success_rate), R"(,"latencyMs":{"p50":)", GoldenJsonNumber(p.p50_ms),
        R"(,"p95":)", GoldenJsonNumber(p.p95_ms), R"(,"p99":)", GoldenJsonNumber(p.p99_ms),
        R"(},"txBytes":)", p.tx_bytes, R"(,"rxBytes":)", p.rx_bytes, R"(,"txBytesPerSecond":)",
        GoldenJsonNumber(static_cast<double>(p.tx_bytes) / step_seconds), R"(,"rxBytesPerSecond":)",
        GoldenJsonNumber(static_cast<double>(p.rx_bytes) / step_seconds), "}"));
  }
  std::string selector;
  if (!query.route.empty()) {
    selector = absl::StrCat(R"("route":)", JsonQuote(query.route),
                            query.rule >= 0 ? absl::StrCat(R"(,"rule":)", query.rule) : "");
  } else if (!query.workload.empty()) {
    selector = absl::StrCat(R"("workload":)", JsonQuote(query.workload));
  } else if (query.service.empty()) {
    selector = absl::StrCat(R"("source":)", JsonQuote(query.source), R"(,"destination":)",
                            JsonQuote(query.destination));
  } else {
    selector = absl::StrCat(R"("service":)", JsonQuote(query.service));
  }
  const int64_t first = points->empty() ? 0 : absl::ToUnixSeconds(points->front().start);
  const std::string events =
      events_source_ == nullptr
          ? "[]"
          : events_source_(query.from, query.to,
                           !query.route.empty() || !query.workload.empty()
                               ? std::vector<std::string>{}  // every change: any may matter
                           : query.service.empty()
                               ? std::vector<std::string>{query.source, query.destination}
                               : std::vector<std::string>{query.service});
  return ServerResponse::Json(
      200,
      absl::StrCat(R"({"kind":"StatHistory",)", selector, R"(,"from":)", first, R"(,"to":)",
                   first + static_cast<int64_t>(points->size()) *
                               static_cast<int64_t>(std::llround(step_seconds)),
                   R"(,"stepSeconds":)", GoldenJsonNumber(step_seconds), R"(,"resolutionSeconds":)",
                   GoldenJsonNumber(std::chrono::duration<double>(limits_.resolution).count()),
                   R"(,"retentionSeconds":)",
                   GoldenJsonNumber(std::chrono::duration<double>(limits_.retention).count()),
                   R"(,"points":[)", absl::StrJoin(items, ","), R"(],"events":)", events, "}\n"));
}

ServerResponse GoldenHistory::HandleRoutes(const ServerRequest& request) const {
  if (request.method() != "GET") {
    ServerResponse r = GoldenQueryError(405, "only GET is allowed here");
    r.headers.Add("allow", "GET");
    return r;
  }
  std::string service;
  absl::Duration window = absl::Minutes(1);
  std::string window_text = "1m";
  for (const auto& [name, value] : request.QueryParams()) {
    if (name == "service") {
      service = value;
    } else if (name == "window") {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
      if (!d.ok() || *d <= absl::ZeroDuration() || *d > absl::FromChrono(limits_.retention)) {
        return GoldenQueryError(
            400, absl::StrCat("window: \"", value, "\" is not a duration above 0 and at most ",
                              absl::FormatDuration(absl::FromChrono(limits_.retention))));
      }
      window = *d;
      window_text = value;
    } else {
      return GoldenQueryError(
          400, absl::StrCat("unknown parameter \"", name, "\"; known: service, window"));
    }
  }
  if (service.empty()) {
    return GoldenQueryError(400, "service: required; give a service, e.g. backend.default");
  }
  // One point over the window, ending with the slot now open.
  const int64_t resolution = resolution_nanos_;
  const int64_t window_nanos =
      std::max<int64_t>(1, absl::ToInt64Nanoseconds(window) / resolution) * resolution;
  const int64_t to = (NowSlot() + 1) * resolution;
  std::vector<std::string> items;
  for (const auto& [key, edge] : edges_) {
    if (key.second != service) continue;
    const absl::string_view text = RouteOfSource(key.first);
    const size_t hash = text.rfind('#');
    const size_t slash = text.find('/');
    if (hash == absl::string_view::npos || slash == absl::string_view::npos) continue;
    HistoryQuery query{.source = key.first, .destination = key.second};
    query.from = absl::FromUnixNanos(to - window_nanos);
    query.to = absl::FromUnixNanos(to);
    query.step = Duration(window_nanos);
    query.align_to_from = true;
    absl::StatusOr<std::vector<HistoryPoint>> points = Query(query);
    if (!points.ok() || points->empty() || points->front().requests == 0) continue;
    const HistoryPoint& p = points->front();
    items.push_back(absl::StrCat(
        R"({"route":)", JsonQuote(text.substr(slash + 1, hash - slash - 1)), R"(,"kind":)",
        JsonQuote(text.substr(0, slash)), R"(,"rule":)", text.substr(hash + 1), R"(,"service":)",
        JsonQuote(service), R"(,"requests":)", p.requests, R"(,"failures":)", p.failures,
        R"(,"rps":)", GoldenJsonNumber(p.rps), R"(,"successRate":)",
        GoldenJsonNumber(p.success_rate), R"(,"p50Ms":)", GoldenJsonNumber(p.p50_ms),
        R"(,"p95Ms":)", GoldenJsonNumber(p.p95_ms), R"(,"p99Ms":)", GoldenJsonNumber(p.p99_ms),
        "}"));
  }
  return ServerResponse::Json(
      200, absl::StrCat(R"({"window":)", JsonQuote(window_text), R"(,"routes":[)",
                        absl::StrJoin(items, ","), "]}\n"));
}

}  // namespace meshlet::controlplane::telemetry

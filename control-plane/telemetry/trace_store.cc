#include "control-plane/telemetry/trace_store.h"

#include <algorithm>

#include "absl/strings/match.h"

namespace meshlet::controlplane::telemetry {

absl::string_view SpanKindName(SpanKind kind) {
  switch (kind) {
    case SpanKind::kInternal:
      return "internal";
    case SpanKind::kServer:
      return "server";
    case SpanKind::kClient:
      return "client";
    case SpanKind::kProducer:
      return "producer";
    case SpanKind::kConsumer:
      return "consumer";
    case SpanKind::kUnspecified:
      break;
  }
  return "unspecified";
}

size_t SpanRecord::ApproximateBytes() const {
  // Fixed part: the record itself plus per-string and per-attribute bookkeeping.
  size_t bytes = sizeof(SpanRecord) + trace_id.size() + span_id.size() + parent_span_id.size() +
                 trace_state.size() + name.size() + service.size() + status_message.size();
  for (const auto& [key, value] : attributes) {
    bytes += sizeof(std::pair<std::string, std::string>) + key.size() + value.size();
  }
  return bytes;
}

AddResult TraceStore::Add(std::vector<SpanRecord> spans) {
  AddResult result;
  // The traces this batch adds to leave the indexes when first touched and return once, at the
  // end, with all their new spans: a batch costs the index work of the spans it adds (plus one
  // pass over each touched trace's earlier spans), not that times the trace's length.
  absl::flat_hash_set<std::string> touched;
  for (SpanRecord& span : spans) {
    const size_t bytes = span.ApproximateBytes();
    auto it = traces_.find(span.trace_id);
    if (it != traces_.end()) {
      const Trace& trace = it->second;
      if (trace.span_ids.contains(span.span_id) ||
          trace.spans.size() >= limits_.max_spans_per_trace) {
        ++result.rejected;
        continue;
      }
    }
    if (bytes > limits_.max_bytes || limits_.max_spans == 0) {
      ++result.rejected;
      continue;
    }
    while (span_count_ + 1 > limits_.max_spans || byte_count_ + bytes > limits_.max_bytes) {
      // Never evict the trace this span joins: it is the newest activity, and evicting it would
      // leave the span orphaned. If it is the only trace left, the span does not fit.
      if (traces_.size() == 1 && traces_.count(span.trace_id) == 1) break;
      EvictOldest(result, touched);
    }
    if (span_count_ + 1 > limits_.max_spans || byte_count_ + bytes > limits_.max_bytes) {
      ++result.rejected;
      continue;
    }
    it = traces_.find(span.trace_id);
    if (it == traces_.end()) {
      it = traces_.emplace(span.trace_id, Trace{}).first;
      it->second.arrival = next_arrival_++;
      it->second.start = span.start_unix_nanos;
      it->second.end = span.end_unix_nanos;
      by_arrival_.emplace(it->second.arrival, span.trace_id);
      touched.insert(span.trace_id);
    } else if (touched.insert(it->first).second) {
      Unindex(it->first, it->second);
    }
    Trace& trace = it->second;
    trace.start = std::min(trace.start, span.start_unix_nanos);
    trace.end = std::max(trace.end, span.end_unix_nanos);
    trace.bytes += bytes;
    trace.span_ids.insert(span.span_id);
    trace.spans.push_back(std::move(span));
    span_count_ += 1;
    byte_count_ += bytes;
    ++result.accepted;
  }
  for (const std::string& id : touched) {
    auto it = traces_.find(id);
    if (it != traces_.end()) Index(it->first, it->second);
  }
  return result;
}

std::vector<SpanRecord> TraceStore::Chunk(uint64_t* cursor, uint64_t end, size_t max_bytes) const {
  std::vector<SpanRecord> out;
  size_t bytes = 0;
  for (auto it = by_arrival_.lower_bound(*cursor); it != by_arrival_.end() && it->first < end;
       ++it) {
    if (!out.empty() && bytes >= max_bytes) break;
    const Trace& trace = traces_.at(it->second);
    out.insert(out.end(), trace.spans.begin(), trace.spans.end());
    bytes += trace.bytes;
    *cursor = it->first + 1;
  }
  if (out.empty()) *cursor = std::max(*cursor, end);
  return out;
}

void TraceStore::EvictOldest(AddResult& result, absl::flat_hash_set<std::string>& touched) {
  auto oldest = by_arrival_.begin();
  auto it = traces_.find(oldest->second);
  // A trace the running batch touched is out of the indexes already.
  if (touched.erase(it->first) == 0) Unindex(it->first, it->second);
  span_count_ -= it->second.spans.size();
  byte_count_ -= it->second.bytes;
  result.evicted_spans += it->second.spans.size();
  result.evicted_traces += 1;
  traces_.erase(it);
  by_arrival_.erase(oldest);
}

void TraceStore::Index(const std::string& id, const Trace& trace) {
  const TimeKey key{trace.start, id};
  by_start_.insert(key);
  for (const SpanRecord& span : trace.spans) {
    by_service_[span.service].insert(key);
    by_operation_[span.name].insert(key);
    for (const auto& [name, value] : span.attributes) {
      if (name == kRequestIdAttribute && !value.empty()) by_request_id_[value].insert(key);
    }
  }
}

void TraceStore::Unindex(const std::string& id, const Trace& trace) {
  const TimeKey key{trace.start, id};
  by_start_.erase(key);
  auto drop = [&](auto& index, const std::string& name) {
    auto it = index.find(name);
    if (it == index.end()) return;
    it->second.erase(key);
    if (it->second.empty()) index.erase(it);
  };
  for (const SpanRecord& span : trace.spans) {
    drop(by_service_, span.service);
    drop(by_operation_, span.name);
    for (const auto& [name, value] : span.attributes) {
      if (name == kRequestIdAttribute && !value.empty()) drop(by_request_id_, value);
    }
  }
}

TraceSummary TraceStore::Summarize(const std::string& id, const Trace& trace) const {
  TraceSummary summary;
  summary.trace_id = id;
  summary.start_unix_nanos = trace.start;
  summary.duration_nanos = trace.end - trace.start;
  summary.span_count = trace.spans.size();
  // The root: a span without a parent in this trace (a missing parent means it was not
  // received); the earliest such span if several.
  const SpanRecord* root = nullptr;
  std::set<absl::string_view> ids;
  for (const SpanRecord& span : trace.spans) ids.insert(span.span_id);
  std::set<std::string> services;
  for (const SpanRecord& span : trace.spans) {
    summary.error = summary.error || span.error;
    summary.unverified_spans += SourceVerified(span) ? 0 : 1;
    services.insert(span.service);
    const bool is_root = span.parent_span_id.empty() || ids.count(span.parent_span_id) == 0;
    if (is_root && (root == nullptr || span.start_unix_nanos < root->start_unix_nanos)) {
      root = &span;
    }
  }
  if (root != nullptr) {
    summary.root_service = root->service;
    summary.root_operation = root->name;
  }
  summary.services.assign(services.begin(), services.end());
  return summary;
}

bool SourceVerified(const SpanRecord& span) {
  // The collector appends its marks after the sender's attributes: look from the end.
  for (auto it = span.attributes.rbegin(); it != span.attributes.rend(); ++it) {
    if (it->first == kSourceIdentityAttribute) return true;
    if (it->first == kSourceUnverifiedAttribute) return false;
  }
  return false;
}

bool ServiceMatches(absl::string_view query, absl::string_view service) {
  if (service == query) return true;
  // "ratings" also names "ratings.default": sidecars name their service with its namespace.
  return absl::StrContains(query, '.') == false && service.size() > query.size() &&
         absl::StartsWith(service, query) && service[query.size()] == '.';
}

bool TraceStore::Matches(const Trace& trace, const TraceQuery& query) const {
  const int64_t duration = trace.end - trace.start;
  if (duration < query.min_duration_nanos) return false;
  if (query.max_duration_nanos > 0 && duration > query.max_duration_nanos) return false;
  if (query.start_unix_nanos > 0 && trace.start < query.start_unix_nanos) return false;
  if (query.end_unix_nanos > 0 && trace.start > query.end_unix_nanos) return false;
  if (query.status != TraceQuery::Status::kAny) {
    const bool error = std::any_of(trace.spans.begin(), trace.spans.end(),
                                   [](const SpanRecord& s) { return s.error; });
    if (error != (query.status == TraceQuery::Status::kError)) return false;
  }
  if (!query.request_id.empty()) {
    const bool found =
        std::any_of(trace.spans.begin(), trace.spans.end(), [&](const SpanRecord& s) {
          return std::any_of(s.attributes.begin(), s.attributes.end(), [&](const auto& kv) {
            return kv.first == kRequestIdAttribute && kv.second == query.request_id;
          });
        });
    if (!found) return false;
  }
  if (!query.service.empty() || !query.operation.empty()) {
    const bool found =
        std::any_of(trace.spans.begin(), trace.spans.end(), [&](const SpanRecord& s) {
          return (query.service.empty() || ServiceMatches(query.service, s.service)) &&
                 (query.operation.empty() || s.name == query.operation);
        });
    if (!found) return false;
  }
  return true;
}

std::vector<TraceSummary> TraceStore::Find(const TraceQuery& query) const {
  // Walk the narrowest index that applies, newest first.
  const std::set<TimeKey>* candidates = &by_start_;
  static const std::set<TimeKey> kNone;
  if (!query.request_id.empty()) {
    auto it = by_request_id_.find(query.request_id);
    candidates = it == by_request_id_.end() ? &kNone : &it->second;
  } else if (!query.operation.empty()) {
    auto it = by_operation_.find(query.operation);
    candidates = it == by_operation_.end() ? &kNone : &it->second;
  } else if (!query.service.empty()) {
    // The one service the query names, else (a name without its namespace that several
    // namespaces have) every trace, filtered by Matches.
    candidates = &kNone;
    int matched = 0;
    for (auto it = by_service_.lower_bound(query.service);
         it != by_service_.end() && absl::StartsWith(it->first, query.service); ++it) {
      if (!ServiceMatches(query.service, it->first)) continue;
      candidates = ++matched == 1 ? &it->second : &by_start_;
    }
  }
  std::vector<TraceSummary> out;
  for (auto key = candidates->rbegin(); key != candidates->rend() && out.size() < query.limit;
       ++key) {
    if (query.end_unix_nanos > 0 && key->first > query.end_unix_nanos) continue;
    if (query.start_unix_nanos > 0 && key->first < query.start_unix_nanos) break;
    const Trace& trace = traces_.at(key->second);
    if (Matches(trace, query)) out.push_back(Summarize(key->second, trace));
  }
  return out;
}

std::optional<std::vector<SpanRecord>> TraceStore::Get(absl::string_view trace_id) const {
  auto it = traces_.find(trace_id);
  if (it == traces_.end()) return std::nullopt;
  std::vector<SpanRecord> spans = it->second.spans;
  std::stable_sort(spans.begin(), spans.end(), [](const SpanRecord& a, const SpanRecord& b) {
    return a.start_unix_nanos < b.start_unix_nanos;
  });
  return spans;
}

std::vector<DependencyEdge> TraceStore::Dependencies(int64_t start_unix_nanos,
                                                     int64_t end_unix_nanos) const {
  struct Accumulated {
    uint64_t errors = 0;
    uint64_t unverified = 0;
    std::vector<int64_t> durations;
  };
  std::map<std::pair<std::string, std::string>, Accumulated> edges;
  // Only the traces of the window, through the start-time index: a dashboard asking for the last
  // minutes does not walk the whole store.
  auto first = start_unix_nanos > 0 ? by_start_.lower_bound(TimeKey{start_unix_nanos, ""})
                                    : by_start_.begin();
  for (auto key = first; key != by_start_.end(); ++key) {
    if (end_unix_nanos > 0 && key->first > end_unix_nanos) break;
    auto found = traces_.find(key->second);
    if (found == traces_.end()) continue;
    // A plain reference, not a structured binding: the lambda below captures it (clang 14 does
    // not capture structured bindings).
    const Trace& trace = found->second;
    // Most traces have a handful of spans: a linear parent search beats building a map.
    constexpr size_t kLinearSearchSpans = 32;
    absl::flat_hash_map<absl::string_view, const SpanRecord*> by_id;
    if (trace.spans.size() > kLinearSearchSpans) {
      for (const SpanRecord& span : trace.spans) by_id[span.span_id] = &span;
    }
    auto find_parent = [&](const SpanRecord& span) -> const SpanRecord* {
      if (trace.spans.size() > kLinearSearchSpans) {
        auto it = by_id.find(span.parent_span_id);
        return it == by_id.end() ? nullptr : it->second;
      }
      for (const SpanRecord& candidate : trace.spans) {
        if (candidate.span_id == span.parent_span_id) return &candidate;
      }
      return nullptr;
    };
    for (const SpanRecord& span : trace.spans) {
      if (span.parent_span_id.empty()) continue;
      const SpanRecord* parent = find_parent(span);
      if (parent == nullptr || parent->service == span.service) continue;
      Accumulated& edge = edges[{parent->service, span.service}];
      edge.errors += span.error ? 1 : 0;
      edge.unverified += SourceVerified(span) && SourceVerified(*parent) ? 0 : 1;
      edge.durations.push_back(span.duration_nanos());
    }
  }
  std::vector<DependencyEdge> out;
  for (auto& [key, accumulated] : edges) {
    std::vector<int64_t>& d = accumulated.durations;
    std::sort(d.begin(), d.end());
    auto percentile = [&](double p) {
      // Nearest rank.
      size_t rank = static_cast<size_t>(p * static_cast<double>(d.size()) + 0.999999);
      return d[std::min(d.size(), std::max<size_t>(rank, 1)) - 1];
    };
    out.push_back(DependencyEdge{key.first, key.second, d.size(), accumulated.errors,
                                 accumulated.unverified, percentile(0.5), percentile(0.99)});
  }
  return out;
}

}  // namespace meshlet::controlplane::telemetry

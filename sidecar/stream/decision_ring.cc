#include "sidecar/stream/decision_ring.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "sidecar/tracing/trace_context.h"

namespace meshlet::sidecar::stream {

DecisionRing::DecisionRing(size_t capacity, int worker_index, Counter records, Counter overwritten,
                           Counter attempts_dropped)
    : worker_index_(worker_index),
      entries_(capacity),
      records_(records),
      overwritten_(overwritten),
      attempts_dropped_(attempts_dropped) {}

void DecisionRing::Add(const StreamInfo& info, absl::string_view request_id,
                       absl::string_view direction) {
  if (entries_.empty()) return;
  Entry& entry = entries_[next_];
  next_ = (next_ + 1) % entries_.size();
  records_.Inc();
  if (entry.used) overwritten_.Inc();
  entry.used = true;
  entry.sampled = info.trace.sampled;
  entry.time_unix_nano = absl::ToUnixNanos(info.start_wall);
  entry.request_id.assign(request_id.data(), request_id.size());
  entry.trace_id.clear();
  if (info.trace.active()) {
    char hex[32];
    tracing::FormatHex64(info.trace.trace_id.high, hex);
    tracing::FormatHex64(info.trace.trace_id.low, hex + 16);
    entry.trace_id.assign(hex, sizeof(hex));
  }
  scratch_.Reset();
  FillServerSpan(info, scratch_);
  tracing::SetText(scratch_.request_id, request_id);
  scratch_.direction = direction;
  std::string& json = entry.attributes;
  json.clear();
  json.push_back('{');
  bool first = true;
  const auto key = [&](absl::string_view name) {
    if (!first) json.push_back(',');
    first = false;
    AppendJsonString(&json, name);
    json.push_back(':');
  };
  tracing::ForEachAttribute(
      scratch_,
      [&](absl::string_view name, absl::string_view value) {
        key(name);
        AppendJsonString(&json, value);
      },
      [&](absl::string_view name, int64_t value) {
        key(name);
        absl::StrAppend(&json, value);
      });
  json.push_back('}');
}

void DecisionRing::AppendJson(absl::string_view request_id, absl::string_view trace_id,
                              std::string* out, bool* first) const {
  const size_t n = entries_.size();
  for (size_t i = 1; i <= n; ++i) {
    const Entry& entry = entries_[(next_ + n - i) % n];  // newest first
    if (!entry.used) break;
    if (!request_id.empty() && entry.request_id != request_id) continue;
    if (!trace_id.empty() && entry.trace_id != trace_id) continue;
    if (!*first) out->push_back(',');
    *first = false;
    absl::StrAppend(out, "{\"worker\":", worker_index_,
                    ",\"time_unix_nano\":", entry.time_unix_nano, ",\"request_id\":");
    AppendJsonString(out, entry.request_id);
    out->append(",\"trace_id\":");
    AppendJsonString(out, entry.trace_id);
    absl::StrAppend(out, ",\"sampled\":", entry.sampled ? "true" : "false",
                    ",\"attributes\":", entry.attributes, "}");
  }
}

}  // namespace meshlet::sidecar::stream

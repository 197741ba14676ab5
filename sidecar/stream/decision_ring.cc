#include "sidecar/stream/decision_ring.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/varint.h"
#include "sidecar/tracing/trace_context.h"

namespace meshlet::sidecar::stream {

DecisionRing::DecisionRing(size_t capacity, int worker_index, Counter records, Counter overwritten,
                           Counter attempts_dropped)
    : worker_index_(worker_index),
      entries_(capacity),
      records_(records),
      overwritten_(overwritten),
      attempts_dropped_(attempts_dropped) {}

namespace {

void PutVarint(std::string& out, uint64_t value) {
  char bytes[10];
  out.append(bytes, static_cast<size_t>(meshlet::PutVarint(bytes, value) - bytes));
}

void PutText(std::string& out, absl::string_view text) {
  PutVarint(out, text.size());
  out.append(text.data(), text.size());
}

absl::string_view GetText(const char** p) {
  const size_t size = GetVarint(p);
  absl::string_view text(*p, size);
  *p += size;
  return text;
}

constexpr uint8_t kNumberBit = 0x80;

}  // namespace

uint8_t DecisionRing::NameIndex(absl::string_view name) {
  // The span hands its attributes in the same order each time: the next name is usually the one
  // after the last, found at once.
  const size_t n = names_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (next_name_ + k) % n;
    if (names_[i] == name) {
      next_name_ = i + 1;
      return static_cast<uint8_t>(i);
    }
  }
  if (n >= kInlineName) return kInlineName;
  names_.emplace_back(name);
  next_name_ = n + 1;
  return static_cast<uint8_t>(n);
}

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
  entry.traced = info.trace.active();
  entry.trace_high = info.trace.trace_id.high;
  entry.trace_low = info.trace.trace_id.low;
  scratch_.Reset();
  FillServerSpan(info, scratch_);
  tracing::SetText(scratch_.request_id, request_id);
  scratch_.direction = direction;
  pack_.clear();
  PutText(pack_, request_id);
  const auto put_name = [&](absl::string_view name, uint8_t number_bit) {
    const uint8_t index = NameIndex(name);
    pack_.push_back(static_cast<char>(index | number_bit));
    if (index == kInlineName) PutText(pack_, name);
  };
  tracing::ForEachAttribute(
      scratch_,
      [&](absl::string_view name, absl::string_view value) {
        put_name(name, 0);
        PutText(pack_, value);
      },
      [&](absl::string_view name, int64_t value) {
        put_name(name, kNumberBit);
        // Zigzag: small negative numbers (-1: unset) take one byte too.
        PutVarint(pack_, ZigZag(value));
      });
  // Exactly its size: the ring keeps hundreds of these.
  if (entry.packed_size != pack_.size()) {
    entry.packed = std::make_unique_for_overwrite<char[]>(pack_.size());
    entry.packed_size = static_cast<uint32_t>(pack_.size());
  }
  std::memcpy(entry.packed.get(), pack_.data(), pack_.size());
}

size_t DecisionRing::packed_bytes() const {
  size_t n = 0;
  for (const Entry& entry : entries_) n += entry.packed_size;
  return n;
}

void DecisionRing::AppendEntryJson(const Entry& entry, std::string* out) const {
  const char* p = entry.packed.get();
  const char* const end = p + entry.packed_size;
  const absl::string_view request_id = GetText(&p);
  absl::StrAppend(out, "{\"worker\":", worker_index_, ",\"time_unix_nano\":", entry.time_unix_nano,
                  ",\"request_id\":");
  AppendJsonString(out, request_id);
  out->append(",\"trace_id\":");
  if (entry.traced) {
    char hex[32];
    tracing::FormatHex64(entry.trace_high, hex);
    tracing::FormatHex64(entry.trace_low, hex + 16);
    AppendJsonString(out, absl::string_view(hex, sizeof(hex)));
  } else {
    out->append("\"\"");
  }
  absl::StrAppend(out, ",\"sampled\":", entry.sampled ? "true" : "false", ",\"attributes\":{");
  bool first = true;
  while (p < end) {
    const auto tag = static_cast<uint8_t>(*p++);
    const uint8_t index = tag & ~kNumberBit;
    const absl::string_view name = index == kInlineName ? GetText(&p) : names_[index];
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(out, name);
    out->push_back(':');
    if ((tag & kNumberBit) != 0) {
      absl::StrAppend(out, UnZigZag(GetVarint(&p)));
    } else {
      AppendJsonString(out, GetText(&p));
    }
  }
  out->append("}}");
}

void DecisionRing::AppendJson(absl::string_view request_id, absl::string_view trace_id,
                              std::string* out, bool* first) const {
  char hex[32];
  const size_t n = entries_.size();
  for (size_t i = 1; i <= n; ++i) {
    const Entry& entry = entries_[(next_ + n - i) % n];  // newest first
    if (!entry.used) break;
    if (!request_id.empty()) {
      const char* p = entry.packed.get();
      if (GetText(&p) != request_id) continue;
    }
    if (!trace_id.empty()) {
      if (!entry.traced) continue;
      tracing::FormatHex64(entry.trace_high, hex);
      tracing::FormatHex64(entry.trace_low, hex + 16);
      if (absl::string_view(hex, sizeof(hex)) != trace_id) continue;
    }
    if (!*first) out->push_back(',');
    *first = false;
    AppendEntryJson(entry, out);
  }
}

}  // namespace meshlet::sidecar::stream

#pragma once

// TraceRing: the trace store's optional on-disk ring (--trace-store-dir), so a restarted control
// plane still shows recent traces. Every span batch the collector accepts is appended to the
// current one of kSegments segment files; when it passes max_bytes / kSegments the oldest segment
// is emptied and becomes the current one. The directory therefore holds at most about max_bytes,
// the newest spans. At start the segments are read back oldest first into the store (whose own
// limits apply).
//
// Format: each segment starts with "MLT2" (or "MLTR", the format before spans had a tracestate and
// flags, still read) and a 64-bit generation (segments are read in generation order); then
// records of [u32 length][payload], the payload a sequence of spans whose strings are
// length-prefixed. A record cut short (a crash mid-write) ends that segment's replay.
// Writes are not fsynced: a crash may lose the last spans, which suits a cache of recent traces.
//
// Threading: the control plane's loop thread.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {

class TraceRing {
 public:
  static constexpr int kSegments = 8;

  // Creates `dir` if needed and reads back what it holds into `replay` (oldest first).
  static absl::StatusOr<std::unique_ptr<TraceRing>> Open(const std::string& dir, size_t max_bytes,
                                                         std::vector<SpanRecord>* replay);
  ~TraceRing();
  TraceRing(const TraceRing&) = delete;
  TraceRing& operator=(const TraceRing&) = delete;

  absl::Status Append(const std::vector<SpanRecord>& spans);

  size_t current_segment_bytes() const { return current_bytes_; }

 private:
  TraceRing(std::string dir, size_t segment_bytes)
      : dir_(std::move(dir)), segment_bytes_(segment_bytes) {}
  std::string SegmentPath(int index) const;
  // Empties segment `index` and makes it the current one with `generation`.
  absl::Status StartSegment(int index, uint64_t generation);

  const std::string dir_;
  const size_t segment_bytes_;
  int fd_ = -1;
  int current_ = 0;
  uint64_t generation_ = 0;
  size_t current_bytes_ = 0;
};

// The payload encoding (exposed for tests). Format 2 (segments starting "MLT2", what the ring
// writes) holds every field of SpanRecord; format 1 ("MLTR", read back from older segments) has no
// trace_state and flags.
inline constexpr int kSpanFormat = 2;
void EncodeSpans(const std::vector<SpanRecord>& spans, std::string* out, int format = kSpanFormat);
bool DecodeSpans(absl::string_view payload, std::vector<SpanRecord>* out, int format = kSpanFormat);

}  // namespace meshlet::controlplane::telemetry

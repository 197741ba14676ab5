#pragma once

// DecisionRing: the decision records (decision_record.h) of one worker's last failed and sampled
// requests, for GET /debug/decisions (docs/operations.md "Decision records"): a request the proxy
// answered itself or reset has no span unless it was sampled, and its record is how `meshctl
// explain` finds out why it failed.
//
// A fixed number of entries, allocated once; a new record overwrites the oldest, counted in
// meshlet_decision_records_overwritten_total. Each entry holds the request's ids and its server
// span's attributes (the same names and values the span exports, decision record included), read
// when the request ends and packed into one allocation of exactly their size: each attribute is
// its name's index in the ring's table of names (the span's attribute names, a few dozen) and its
// value's bytes or number; JSON is formatted only when the admin reads the ring, so a kept record
// costs its values' bytes and a few more, not its JSON text. Add() packs and allocates, so the
// connection manager calls it only for requests that failed or were sampled, never on the
// unsampled path of a request that succeeded.
//
// Ownership and threading: one per worker, owned by the worker, used only on its loop thread
// (the admin reads it by posting to that loop: AppendJson()).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/stats/stats.h"
#include "sidecar/stream/stream_info.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::stream {

class DecisionRing {
 public:
  // `capacity` 0: nothing is kept. The counters are the worker's stats shard's.
  DecisionRing(size_t capacity, int worker_index, Counter records, Counter overwritten,
               Counter attempts_dropped);
  DecisionRing(const DecisionRing&) = delete;
  DecisionRing& operator=(const DecisionRing&) = delete;

  size_t capacity() const { return entries_.size(); }
  // Heap bytes the kept records' packed text takes now (tests).
  size_t packed_bytes() const;
  // A request that ended: keeps its record (its views are read now, while they are valid).
  // `direction`: its listener's, "inbound" or "outbound" (meshlet.listener.direction).
  void Add(const StreamInfo& info, absl::string_view request_id, absl::string_view direction = {});
  // A request began more attempts than DecisionRecord keeps.
  void CountDroppedAttempt() { attempts_dropped_.Inc(); }

  // Appends the records whose request id is `request_id` and whose trace id (32 hex) is
  // `trace_id` (an empty filter takes any), newest first, as JSON objects, each preceded by ","
  // unless `*first` (which it clears).
  void AppendJson(absl::string_view request_id, absl::string_view trace_id, std::string* out,
                  bool* first) const;

 private:
  struct Entry {
    bool used = false;
    bool sampled = false;
    bool traced = false;  // trace_high/trace_low hold the trace id
    uint32_t packed_size = 0;
    int64_t time_unix_nano = 0;
    uint64_t trace_high = 0;
    uint64_t trace_low = 0;
    // The request id (a varint length and its bytes), then the attributes, each a name byte (its
    // index in names_, bit 7 set for a number; kInlineName: the name's length and bytes follow)
    // and a value (a varint length and bytes, or a zigzag varint).
    std::unique_ptr<char[]> packed;
  };
  // Attribute names past this many are kept in each record (the span has a few dozen).
  static constexpr uint8_t kInlineName = 0x7f;

  // The index of `name` in names_, adding it; kInlineName when the table is full.
  uint8_t NameIndex(absl::string_view name);
  void AppendEntryJson(const Entry& entry, std::string* out) const;

  const int worker_index_;
  std::vector<Entry> entries_;
  // The attribute names seen, in the order the span's attributes come (copied: a record outlives
  // anything the span pointed at); next_name_: where the next lookup starts.
  std::vector<std::string> names_;
  size_t next_name_ = 0;
  std::string pack_;  // the record being packed; reused, its capacity kept
  size_t next_ = 0;   // where the next record goes
  Counter records_;
  Counter overwritten_;
  Counter attempts_dropped_;
  tracing::Span scratch_;  // the attributes are read off a span filled as the server span is
};

}  // namespace meshlet::sidecar::stream

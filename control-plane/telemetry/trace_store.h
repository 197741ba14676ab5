#pragma once

// TraceStore: the collector's bounded in-memory trace store. Spans arrive from the OTLP and
// Zipkin receivers in any order and are grouped by trace id; queries select traces by service,
// operation (span name), duration, error status and time range, and derive the service
// dependency graph from parent/child spans that cross services.
//
// Bounds: total spans and approximate bytes. When an insert would exceed either, whole traces
// are evicted oldest first (by when their first span arrived), so a trace is either complete as
// received or gone, never half-evicted. A single trace larger than max_spans_per_trace keeps its
// first spans and rejects the rest (counted), so one runaway trace cannot flush the store.
//
// Threading: one thread (the control plane's loop); no locking.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::telemetry {

enum class SpanKind {
  kUnspecified = 0,
  kInternal = 1,
  kServer = 2,
  kClient = 3,
  kProducer = 4,
  kConsumer = 5
};
absl::string_view SpanKindName(SpanKind kind);  // "server", "client", ...

struct SpanRecord {
  std::string trace_id;        // 32 lowercase hex digits
  std::string span_id;         // 16 lowercase hex digits
  std::string parent_span_id;  // empty for a root span
  std::string name;            // the operation
  std::string service;         // service.name / localEndpoint.serviceName
  SpanKind kind = SpanKind::kUnspecified;
  int64_t start_unix_nanos = 0;
  int64_t end_unix_nanos = 0;
  bool error = false;
  std::string status_message;
  std::string trace_state;  // the W3C tracestate of the span's context (OTLP); may be empty
  // OTLP span flags: bits 0-7 the W3C trace flags, bit 8 "whether the parent is remote is
  // known", bit 9 "the parent is remote"; 0 when the sender did not say (Zipkin, older senders).
  uint32_t flags = 0;
  // Attributes in arrival order, values rendered as text (numbers in decimal).
  std::vector<std::pair<std::string, std::string>> attributes;

  int64_t duration_nanos() const { return end_unix_nanos - start_unix_nanos; }
  // What the span costs the store's byte budget: its strings plus fixed overhead.
  size_t ApproximateBytes() const;
};

// Where a span came from, as the collector records it in attributes of its own (a sender's
// attributes under these names are dropped, whatever it wrote):
//   meshlet.source.identity    the SPIFFE id of the workload certificate that sent it: spans of the
//                              OTLP/gRPC export on the discovery port, whose sender is
//                              authenticated
//   meshlet.source.node        the registered node that sent it (those spans too)
//   meshlet.source.unverified  on every other span: the receiver that took it from a sender it
//                              did not authenticate ("otlp", "zipkin", or "otlp_grpc" on a
//                              plaintext discovery port); its service is what the sender said.
inline constexpr absl::string_view kSourceIdentityAttribute = "meshlet.source.identity";
inline constexpr absl::string_view kSourceNodeAttribute = "meshlet.source.node";
inline constexpr absl::string_view kSourceUnverifiedAttribute = "meshlet.source.unverified";
// The attribute sidecars record the request's x-request-id under; the store indexes it.
inline constexpr absl::string_view kRequestIdAttribute = "meshlet.request_id";

// Whether the span carries the identity of an authenticated sender (spans read back from an older
// store carry neither mark: they count as unverified).
bool SourceVerified(const SpanRecord& span);

struct TraceStoreLimits {
  size_t max_spans = 100000;
  size_t max_bytes = 64 << 20;
  size_t max_spans_per_trace = 10000;
};

struct TraceSummary {
  std::string trace_id;
  std::string root_service;
  std::string root_operation;
  int64_t start_unix_nanos = 0;
  int64_t duration_nanos = 0;
  size_t span_count = 0;
  bool error = false;
  std::vector<std::string> services;  // sorted
  size_t unverified_spans = 0;        // spans whose sender was not authenticated
};

struct TraceQuery {
  // Any span of the trace from this service; empty: any. A name without a namespace also matches
  // it with one ("ratings" matches "ratings.default", as sidecars name their spans).
  std::string service;
  std::string operation;  // with `service`: a span of that service with this name; else any span
  int64_t min_duration_nanos = 0;
  int64_t max_duration_nanos = 0;  // 0: no upper bound
  enum class Status { kAny, kError, kOk } status = Status::kAny;
  int64_t start_unix_nanos = 0;  // trace start >= this (0: no bound)
  int64_t end_unix_nanos = 0;    // trace start <= this (0: no bound)
  // A span of the trace carries this meshlet.request_id (the request's x-request-id); empty: any.
  std::string request_id;
  size_t limit = 20;
};

struct DependencyEdge {
  std::string caller;
  std::string callee;
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t unverified = 0;  // calls with a span on either side whose sender was not authenticated
  int64_t p50_nanos = 0;    // of the callee's spans on this edge
  int64_t p99_nanos = 0;
};

struct AddResult {
  size_t accepted = 0;
  size_t rejected = 0;  // trace over max_spans_per_trace, or a duplicate span id
  size_t evicted_spans = 0;
  size_t evicted_traces = 0;
};

// Whether a query's service names a span's: the same, or `query` without a namespace and
// `service` with one ("ratings" and "ratings.default").
bool ServiceMatches(absl::string_view query, absl::string_view service);

class TraceStore {
 public:
  explicit TraceStore(TraceStoreLimits limits = {}) : limits_(limits) {}

  AddResult Add(std::vector<SpanRecord> spans);

  // Newest traces first (by trace start), at most query.limit.
  std::vector<TraceSummary> Find(const TraceQuery& query) const;
  // The trace's spans ordered by start time; nullopt if unknown (or evicted).
  std::optional<std::vector<SpanRecord>> Get(absl::string_view trace_id) const;
  // Edges between services, for traces starting in [start, end] (0: no bound), sorted by caller
  // then callee.
  std::vector<DependencyEdge> Dependencies(int64_t start_unix_nanos = 0,
                                           int64_t end_unix_nanos = 0) const;

  // Hands the store's contents over in chunks, oldest trace first: the spans of the traces that
  // arrived at or after `*cursor` and before `end` (an arrival number: 0 for the first trace,
  // next_arrival() for "what is here now"), whole traces until their spans pass about
  // `max_bytes` (at least one). Advances `*cursor` past them; nothing left: empty.
  std::vector<SpanRecord> Chunk(uint64_t* cursor, uint64_t end, size_t max_bytes) const;
  uint64_t next_arrival() const { return next_arrival_; }

  size_t span_count() const { return span_count_; }
  size_t byte_count() const { return byte_count_; }
  size_t trace_count() const { return traces_.size(); }
  const TraceStoreLimits& limits() const { return limits_; }

 private:
  struct Trace {
    std::vector<SpanRecord> spans;
    absl::flat_hash_set<std::string> span_ids;  // of `spans`: duplicates are refused
    uint64_t arrival = 0;                       // sequence number of the first span's arrival
    int64_t start = 0;                          // earliest span start
    int64_t end = 0;                            // latest span end
    size_t bytes = 0;
  };
  using TimeKey = std::pair<int64_t, std::string>;  // (trace start, trace id)

  TraceSummary Summarize(const std::string& id, const Trace& trace) const;
  bool Matches(const Trace& trace, const TraceQuery& query) const;
  void Index(const std::string& id, const Trace& trace);
  void Unindex(const std::string& id, const Trace& trace);
  // Evicts the oldest trace; `touched`: the traces the running Add took out of the indexes.
  void EvictOldest(AddResult& result, absl::flat_hash_set<std::string>& touched);

  const TraceStoreLimits limits_;
  absl::flat_hash_map<std::string, Trace> traces_;
  std::map<uint64_t, std::string> by_arrival_;
  std::set<TimeKey> by_start_;
  // service → traces with a span from that service, by start.
  std::map<std::string, std::set<TimeKey>, std::less<>> by_service_;
  // operation (span name) → traces with a span of that name, by start.
  std::map<std::string, std::set<TimeKey>, std::less<>> by_operation_;
  // meshlet.request_id → traces with a span carrying it, by start.
  std::map<std::string, std::set<TimeKey>, std::less<>> by_request_id_;
  uint64_t next_arrival_ = 0;
  size_t span_count_ = 0;
  size_t byte_count_ = 0;
};

}  // namespace meshlet::controlplane::telemetry

#include "control-plane/telemetry/trace_store.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

constexpr int64_t kMs = 1000000;
constexpr int64_t kBase = int64_t{1700000000} * 1000000000;

std::string TraceId(int n) { return absl::StrFormat("%032x", n); }
std::string SpanId(int n) { return absl::StrFormat("%016x", n); }

SpanRecord MakeSpan(int trace, int span, int parent, absl::string_view service,
                    absl::string_view name, int64_t start_ms, int64_t duration_ms,
                    bool error = false) {
  SpanRecord s;
  s.trace_id = TraceId(trace);
  s.span_id = SpanId(span);
  if (parent != 0) s.parent_span_id = SpanId(parent);
  s.service = std::string(service);
  s.name = std::string(name);
  s.kind = parent == 0 ? SpanKind::kServer : SpanKind::kClient;
  s.start_unix_nanos = kBase + start_ms * kMs;
  s.end_unix_nanos = s.start_unix_nanos + duration_ms * kMs;
  s.error = error;
  return s;
}

// frontend (server) → frontend (client) → backend (server), one trace.
std::vector<SpanRecord> ThreeHopTrace(int trace, int64_t start_ms, int64_t duration_ms,
                                      bool backend_error = false) {
  const int base = trace * 10;
  return {
      MakeSpan(trace, base + 1, 0, "frontend", "GET /", start_ms, duration_ms),
      MakeSpan(trace, base + 2, base + 1, "frontend", "GET /api", start_ms + 1, duration_ms - 2),
      MakeSpan(trace, base + 3, base + 2, "backend", "GET /api", start_ms + 2, duration_ms - 4,
               backend_error)};
}

TEST(TraceStoreTest, GroupsSpansByTraceAndSummarizesTheRoot) {
  TraceStore store;
  // Spans arrive out of order, child first: the root is still found.
  std::vector<SpanRecord> spans = ThreeHopTrace(1, 100, 60);
  std::reverse(spans.begin(), spans.end());
  AddResult result = store.Add(spans);
  EXPECT_EQ(result.accepted, 3u);
  EXPECT_EQ(store.trace_count(), 1u);
  EXPECT_EQ(store.span_count(), 3u);

  std::vector<TraceSummary> found = store.Find({});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].trace_id, TraceId(1));
  EXPECT_EQ(found[0].root_service, "frontend");
  EXPECT_EQ(found[0].root_operation, "GET /");
  EXPECT_EQ(found[0].start_unix_nanos, kBase + 100 * kMs);
  EXPECT_EQ(found[0].duration_nanos, 60 * kMs);
  EXPECT_EQ(found[0].span_count, 3u);
  EXPECT_FALSE(found[0].error);
  EXPECT_EQ(found[0].services, (std::vector<std::string>{"backend", "frontend"}));

  std::optional<std::vector<SpanRecord>> trace = store.Get(TraceId(1));
  ASSERT_TRUE(trace.has_value());
  ASSERT_EQ(trace->size(), 3u);
  EXPECT_EQ((*trace)[0].span_id, SpanId(11));  // ordered by start
  EXPECT_EQ((*trace)[2].parent_span_id, SpanId(12));
  EXPECT_FALSE(store.Get(TraceId(2)).has_value());
}

TEST(TraceStoreTest, RejectsDuplicateSpanIds) {
  TraceStore store;
  store.Add(ThreeHopTrace(1, 0, 10));
  AddResult again = store.Add(ThreeHopTrace(1, 0, 10));
  EXPECT_EQ(again.accepted, 0u);
  EXPECT_EQ(again.rejected, 3u);
  EXPECT_EQ(store.span_count(), 3u);
}

TEST(TraceStoreTest, QueriesByServiceOperationDurationStatusAndTime) {
  TraceStore store;
  store.Add(ThreeHopTrace(1, 0, 10));
  store.Add(ThreeHopTrace(2, 1000, 80, /*backend_error=*/true));
  store.Add(ThreeHopTrace(3, 2000, 30));
  store.Add({MakeSpan(4, 41, 0, "other", "POST /x", 3000, 5)});

  auto ids = [&](const TraceQuery& q) {
    std::vector<std::string> out;
    for (const TraceSummary& s : store.Find(q)) out.push_back(s.trace_id);
    return out;
  };
  TraceQuery q;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(4), TraceId(3), TraceId(2), TraceId(1)}));
  q.service = "backend";
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(3), TraceId(2), TraceId(1)}));
  q.limit = 2;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(3), TraceId(2)}));
  q = {};
  q.operation = "POST /x";
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(4)}));
  q = {};
  q.service = "other";
  q.operation = "GET /api";
  EXPECT_TRUE(ids(q).empty());
  q = {};
  q.min_duration_nanos = 30 * kMs;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(3), TraceId(2)}));
  q.max_duration_nanos = 50 * kMs;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(3)}));
  q = {};
  q.status = TraceQuery::Status::kError;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(2)}));
  q.status = TraceQuery::Status::kOk;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(4), TraceId(3), TraceId(1)}));
  q = {};
  q.start_unix_nanos = kBase + 1000 * kMs;
  q.end_unix_nanos = kBase + 2000 * kMs;
  EXPECT_EQ(ids(q), (std::vector<std::string>{TraceId(3), TraceId(2)}));
}

// A request id names the traces whose spans carry it as meshlet.request_id, whatever other
// filters say; a trace evicted leaves the index.
TEST(TraceStoreTest, FindsTracesByRequestId) {
  TraceStore store(TraceStoreLimits{.max_spans = 6});
  std::vector<SpanRecord> first = ThreeHopTrace(1, 100, 60);
  first[2].attributes.emplace_back("meshlet.request_id", "req-a");
  std::vector<SpanRecord> second = ThreeHopTrace(2, 200, 60);
  second[0].attributes.emplace_back("meshlet.request_id", "req-b");
  store.Add(first);
  store.Add(second);

  std::vector<TraceSummary> found = store.Find({.request_id = "req-a"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].trace_id, TraceId(1));
  found = store.Find({.request_id = "req-b"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].trace_id, TraceId(2));
  EXPECT_TRUE(store.Find({.request_id = "req-c"}).empty());
  // With another filter both must hold.
  EXPECT_TRUE(store.Find({.service = "backend", .request_id = "req-b"}).size() == 1);
  EXPECT_TRUE(store.Find({.operation = "GET /", .request_id = "req-a"}).size() == 1);
  EXPECT_TRUE(store.Find({.status = TraceQuery::Status::kError, .request_id = "req-a"}).empty());

  store.Add(ThreeHopTrace(3, 300, 60));  // evicts trace 1
  EXPECT_TRUE(store.Find({.request_id = "req-a"}).empty());
  EXPECT_EQ(store.Find({.request_id = "req-b"}).size(), 1u);
}

TEST(TraceStoreTest, AServiceWithoutItsNamespaceMatchesItInEveryNamespace) {
  EXPECT_TRUE(ServiceMatches("ratings", "ratings"));
  EXPECT_TRUE(ServiceMatches("ratings", "ratings.default"));
  EXPECT_TRUE(ServiceMatches("ratings.default", "ratings.default"));
  EXPECT_FALSE(ServiceMatches("ratings.default", "ratings.shop"));
  EXPECT_FALSE(ServiceMatches("ratings", "ratingsx.default"));
  EXPECT_FALSE(ServiceMatches("ratings.default", "ratings"));

  TraceStore store;
  store.Add({MakeSpan(1, 11, 0, "ratings.default", "GET /", 0, 5)});
  store.Add({MakeSpan(2, 21, 0, "ratings.shop", "GET /", 10, 5)});
  store.Add({MakeSpan(3, 31, 0, "ratingsx.default", "GET /", 20, 5)});
  store.Add({MakeSpan(4, 41, 0, "ratings", "GET /", 30, 5)});
  auto ids = [&](absl::string_view service) {
    TraceQuery q;
    q.service = std::string(service);
    std::vector<std::string> out;
    for (const TraceSummary& s : store.Find(q)) out.push_back(s.trace_id);
    return out;
  };
  EXPECT_EQ(ids("ratings"), (std::vector<std::string>{TraceId(4), TraceId(2), TraceId(1)}));
  EXPECT_EQ(ids("ratings.shop"), (std::vector<std::string>{TraceId(2)}));
  EXPECT_EQ(ids("ratingsx"), (std::vector<std::string>{TraceId(3)}));
  EXPECT_TRUE(ids("rating").empty());
}

TEST(TraceStoreTest, LateEarlierSpanMovesTheTraceInTheTimeIndex) {
  TraceStore store;
  store.Add({MakeSpan(1, 12, 11, "a", "child", 500, 10)});
  store.Add({MakeSpan(2, 21, 0, "b", "root", 300, 10)});
  store.Add({MakeSpan(1, 11, 0, "a", "root", 100, 500)});
  TraceQuery q;
  q.end_unix_nanos = kBase + 200 * kMs;
  std::vector<TraceSummary> found = store.Find(q);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].trace_id, TraceId(1));
  EXPECT_EQ(found[0].root_operation, "root");
  EXPECT_EQ(found[0].duration_nanos, 500 * kMs);
}

TEST(TraceStoreTest, ChunksHandTheContentsOverOldestFirstInWholeTraces) {
  TraceStore store;
  for (int t = 1; t <= 5; ++t) store.Add(ThreeHopTrace(t, t * 100, 50));
  const uint64_t end = store.next_arrival();
  store.Add(ThreeHopTrace(6, 600, 50));  // after the hand-over began: not part of it
  const size_t trace_bytes = store.byte_count() / 6;
  uint64_t cursor = 0;
  std::vector<std::vector<SpanRecord>> chunks;
  while (true) {
    std::vector<SpanRecord> chunk = store.Chunk(&cursor, end, 2 * trace_bytes);
    if (chunk.empty()) break;
    chunks.push_back(std::move(chunk));
    ASSERT_LT(chunks.size(), 10u);
  }
  ASSERT_EQ(chunks.size(), 3u);  // 2 + 2 + 1 traces
  EXPECT_EQ(chunks[0].size(), 6u);
  EXPECT_EQ(chunks[0][0].trace_id, TraceId(1));
  EXPECT_EQ(chunks[1][0].trace_id, TraceId(3));
  ASSERT_EQ(chunks[2].size(), 3u);
  EXPECT_EQ(chunks[2][0].trace_id, TraceId(5));
  EXPECT_EQ(cursor, end);
  // A chunk smaller than one trace still carries it whole.
  cursor = 0;
  EXPECT_EQ(store.Chunk(&cursor, end, 1).size(), 3u);
  // An evicted trace is skipped; a fresh store has nothing to hand over.
  TraceStore small({.max_spans = 6});
  for (int t = 1; t <= 3; ++t) small.Add(ThreeHopTrace(t, t * 100, 50));
  cursor = 0;
  std::vector<SpanRecord> rest = small.Chunk(&cursor, small.next_arrival(), 1 << 20);
  ASSERT_EQ(rest.size(), 6u);
  EXPECT_EQ(rest[0].trace_id, TraceId(2));
  cursor = 0;
  EXPECT_TRUE(TraceStore().Chunk(&cursor, 0, 1 << 20).empty());
}

TEST(TraceStoreTest, EvictsOldestTracesWholeAtTheSpanLimit) {
  TraceStoreLimits limits;
  limits.max_spans = 7;
  TraceStore store(limits);
  store.Add(ThreeHopTrace(1, 0, 10));
  store.Add(ThreeHopTrace(2, 10, 10));
  AddResult result = store.Add(ThreeHopTrace(3, 20, 10));
  EXPECT_EQ(result.accepted, 3u);
  EXPECT_EQ(result.evicted_traces, 1u);
  EXPECT_EQ(result.evicted_spans, 3u);
  EXPECT_FALSE(store.Get(TraceId(1)).has_value());
  EXPECT_TRUE(store.Get(TraceId(2)).has_value());
  EXPECT_TRUE(store.Get(TraceId(3)).has_value());
  EXPECT_EQ(store.span_count(), 6u);
  // The evicted trace is gone from every index.
  TraceQuery q;
  q.service = "backend";
  EXPECT_EQ(store.Find(q).size(), 2u);
  q = {};
  q.operation = "GET /";
  EXPECT_EQ(store.Find(q).size(), 2u);
}

TEST(TraceStoreTest, EvictsAtTheByteLimit) {
  SpanRecord probe = MakeSpan(1, 1, 0, "svc", "op", 0, 1);
  probe.attributes.emplace_back("payload", std::string(1000, 'x'));
  const size_t span_bytes = probe.ApproximateBytes();
  TraceStoreLimits limits;
  limits.max_bytes = span_bytes * 3 + span_bytes / 2;
  TraceStore store(limits);
  for (int trace = 1; trace <= 5; ++trace) {
    SpanRecord span = probe;
    span.trace_id = TraceId(trace);
    store.Add({span});
    EXPECT_LE(store.byte_count(), limits.max_bytes);
  }
  EXPECT_EQ(store.trace_count(), 3u);
  EXPECT_FALSE(store.Get(TraceId(2)).has_value());
  EXPECT_TRUE(store.Get(TraceId(3)).has_value());
  EXPECT_TRUE(store.Get(TraceId(5)).has_value());
}

TEST(TraceStoreTest, PerTraceLimitKeepsTheFirstSpans) {
  TraceStoreLimits limits;
  limits.max_spans_per_trace = 2;
  TraceStore store(limits);
  AddResult result = store.Add(ThreeHopTrace(1, 0, 10));
  EXPECT_EQ(result.accepted, 2u);
  EXPECT_EQ(result.rejected, 1u);
  EXPECT_EQ(store.Get(TraceId(1))->size(), 2u);
}

TEST(TraceStoreTest, DependencyGraphFromCrossServiceParentLinks) {
  TraceStore store;
  store.Add(ThreeHopTrace(1, 0, 10));                            // backend span 6ms
  store.Add(ThreeHopTrace(2, 100, 24, /*backend_error=*/true));  // backend span 20ms
  store.Add(ThreeHopTrace(3, 200, 104));                         // backend span 100ms
  // backend → db from a separately exported trace.
  store.Add({MakeSpan(5, 51, 0, "backend", "query", 300, 8),
             MakeSpan(5, 52, 51, "db", "SELECT", 301, 5)});
  std::vector<DependencyEdge> edges = store.Dependencies();
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].caller, "backend");
  EXPECT_EQ(edges[0].callee, "db");
  EXPECT_EQ(edges[0].calls, 1u);
  EXPECT_EQ(edges[1].caller, "frontend");
  EXPECT_EQ(edges[1].callee, "backend");
  EXPECT_EQ(edges[1].calls, 3u);
  EXPECT_EQ(edges[1].errors, 1u);
  EXPECT_EQ(edges[1].p50_nanos, 20 * kMs);
  EXPECT_EQ(edges[1].p99_nanos, 100 * kMs);
  // A time window selects traces by start.
  edges = store.Dependencies(kBase + 250 * kMs, 0);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].callee, "db");
  // Both bounds inclusive: traces 2 (start 100 ms) and 3 (200 ms) only.
  edges = store.Dependencies(kBase + 100 * kMs, kBase + 200 * kMs);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].caller, "frontend");
  EXPECT_EQ(edges[0].calls, 2u);
  EXPECT_EQ(edges[0].errors, 1u);
  EXPECT_TRUE(store.Dependencies(kBase + 400 * kMs, 0).empty());
  EXPECT_TRUE(store.Dependencies(0, kBase - 1).empty());
}

// Spans whose sender was authenticated carry its identity; the others count as unverified, in
// their trace's summary and on the dependency edges they make.
TEST(TraceStoreTest, UnverifiedSpansAreCountedInSummariesAndEdges) {
  TraceStore store;
  std::vector<SpanRecord> verified = ThreeHopTrace(1, 100, 60);
  for (SpanRecord& span : verified) {
    span.attributes.emplace_back(
        kSourceIdentityAttribute,
        absl::StrCat("spiffe://cluster.local/ns/default/sa/", span.service));
  }
  store.Add(verified);
  // The same hops, but backend's span came from a sender nobody authenticated.
  std::vector<SpanRecord> mixed = ThreeHopTrace(2, 200, 60);
  for (size_t i = 0; i < 2; ++i) mixed[i].attributes = verified[i].attributes;
  mixed[2].attributes.emplace_back(kSourceUnverifiedAttribute, "otlp");
  store.Add(mixed);
  std::vector<TraceSummary> found = store.Find({});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].trace_id, TraceId(2));  // newest first
  EXPECT_EQ(found[0].unverified_spans, 1u);
  EXPECT_EQ(found[1].unverified_spans, 0u);
  EXPECT_TRUE(SourceVerified(verified[2]));
  EXPECT_FALSE(SourceVerified(mixed[2]));
  EXPECT_FALSE(SourceVerified(MakeSpan(3, 1, 0, "old", "GET /", 0, 1)));  // no mark at all
  std::vector<DependencyEdge> edges = store.Dependencies();
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].calls, 2u);
  EXPECT_EQ(edges[0].unverified, 1u);
}

TEST(TraceStoreTest, DependencyGraphOfALargeTrace) {
  // Over the linear-search threshold: parents are found through the per-trace map.
  TraceStore store;
  std::vector<SpanRecord> spans = {MakeSpan(1, 1, 0, "gateway", "GET /", 0, 100)};
  for (int i = 0; i < 40; ++i) {
    spans.push_back(MakeSpan(1, 100 + i, 1, i % 2 == 0 ? "cart" : "gateway", "call", i, 1));
  }
  store.Add(spans);
  std::vector<DependencyEdge> edges = store.Dependencies();
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].caller, "gateway");
  EXPECT_EQ(edges[0].callee, "cart");
  EXPECT_EQ(edges[0].calls, 20u);
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

#include "control-plane/cli/trace_view.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

// As GET /api/v1/traces/{id} returns it: a server span, its client child (a retry), and the
// callee's server span.
constexpr char kTrace[] = R"({"kind":"Trace","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
 {"spanId":"0000000000000001","parentSpanId":"","name":"GET /a","service":"frontend",
  "kind":"server","start":"x","startTimeUnixNano":"1700000000000000000","durationNanos":40000000,
  "status":{"code":"UNSET","message":""},"attributes":{"http.response.status_code":"200"}},
 {"spanId":"0000000000000002","parentSpanId":"0000000000000001","name":"GET /a",
  "service":"frontend","kind":"client","start":"x","startTimeUnixNano":"1700000000020000000",
  "durationNanos":20000000,"status":{"code":"ERROR","message":"503"},
  "attributes":{"meshlet.retry_attempt":"1","meshlet.response_flags":"URX"}},
 {"spanId":"0000000000000003","parentSpanId":"0000000000000002","name":"GET /a",
  "service":"backend","kind":"server","start":"x","startTimeUnixNano":"1700000000030000000",
  "durationNanos":10000000,"status":{"code":"UNSET","message":""},
  "attributes":{"meshlet.source.identity":"spiffe://cluster.local/ns/default/sa/backend",
                "meshlet.source.node":"backend-0"}}
]})";

TEST(TraceViewTest, WaterfallIndentsChildrenAndPlacesBars) {
  absl::StatusOr<std::string> text = FormatTraceWaterfall(kTrace, 8);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n');
  ASSERT_GE(lines.size(), 9u) << *text;
  // Only the backend's span came from an authenticated sender.
  EXPECT_EQ(lines[0],
            "Trace 4bf92f3577b34da6a3ce929d0e0e4736: 3 spans, 2 services, 40.00ms; 2 spans from "
            "unverified senders (their service is what the sender said)");
  EXPECT_TRUE(absl::StartsWith(lines[2], "SPAN")) << *text;
  // Root at depth 0 spanning the whole bar; the client starts half-way; the backend a quarter
  // from the end, indented twice.
  EXPECT_TRUE(absl::StartsWith(lines[3], "GET /a ")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[3], "|========|")) << lines[3];
  EXPECT_TRUE(absl::StartsWith(lines[5], "  GET /a ")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[5], "+20.00ms")) << lines[5];
  EXPECT_TRUE(absl::StrContains(lines[5], "|    ====|")) << lines[5];
  EXPECT_TRUE(absl::StrContains(lines[6], "ERROR: 503")) << lines[6];
  EXPECT_TRUE(absl::StrContains(lines[6], "meshlet.retry_attempt=1")) << lines[6];
  EXPECT_TRUE(absl::StrContains(lines[6], "parent 0000000000000001")) << lines[6];
  EXPECT_TRUE(absl::StartsWith(lines[7], "    GET /a ")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[7], "backend")) << lines[7];
  EXPECT_TRUE(absl::StrContains(lines[7], "|      ==|")) << lines[7];
  EXPECT_TRUE(absl::StrContains(
      lines[8], "meshlet.source.identity=spiffe://cluster.local/ns/default/sa/backend"))
      << lines[8];
}

TEST(TraceViewTest, ListAsTable) {
  absl::StatusOr<std::string> text = FormatTraceList(
      R"({"kind":"TraceList","items":[{"traceId":"abc","rootService":"frontend",
      "rootOperation":"GET /a","start":"2026-01-01T00:00:00.000000000Z",
      "startTimeUnixNano":"1","durationNanos":1500000,"spanCount":3,"error":true,
      "services":["frontend"],"unverifiedSpans":1},
      {"traceId":"def","rootService":"db","rootOperation":"GET /b",
      "start":"2026-01-01T00:00:00.000000000Z","startTimeUnixNano":"1","durationNanos":1000,
      "spanCount":2,"error":false,"services":["db"],"unverifiedSpans":0},
      {"traceId":"123","rootService":"app","rootOperation":"GET /c",
      "start":"2026-01-01T00:00:00.000000000Z","startTimeUnixNano":"1","durationNanos":1000,
      "spanCount":2,"error":false,"services":["app"],"unverifiedSpans":2}]})");
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << *text;
  EXPECT_TRUE(absl::StartsWith(lines[0], "TRACE ID")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[0], "SOURCE")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[1], "frontend: GET /a")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[1], "1.50ms")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[1], "yes")) << *text;
  EXPECT_TRUE(absl::EndsWith(lines[1], "1 unverified")) << *text;
  EXPECT_TRUE(absl::EndsWith(lines[2], " verified")) << *text;
  EXPECT_FALSE(absl::StrContains(lines[2], "unverified")) << *text;
  EXPECT_TRUE(absl::EndsWith(lines[3], " unverified")) << *text;
  EXPECT_EQ(*FormatTraceList(R"({"items":[]})"), "No traces found.\n");
  EXPECT_FALSE(FormatTraceWaterfall("{not").ok());
}

constexpr char kStat[] = R"({"kind":"StatList","windowSeconds":60,"items":[
  {"source":"a","destination":"b","requests":10,"failures":1,"rps":0.167,"successRate":0.9,
   "latencyMs":{"p50":1.26,"p95":40,"p99":1500},"txBytesPerSecond":2048,"rxBytesPerSecond":10,
   "connectionsPerSecond":0.5,"activeRequests":1,"reporters":1},
  {"source":"b","destination":"c","requests":0,"failures":0,"rps":0,"successRate":null,
   "latencyMs":{"p50":null,"p95":null,"p99":null},"txBytesPerSecond":0,"rxBytesPerSecond":0,
   "connectionsPerSecond":0,"activeRequests":0,"reporters":1},
  {"source":"c","destination":"d","requests":6000,"failures":0,"rps":100,"successRate":1,
   "latencyMs":{"p50":2,"p95":3,"p99":4},"txBytesPerSecond":0,"rxBytesPerSecond":0,
   "connectionsPerSecond":0,"activeRequests":7,"reporters":2}]})";

TEST(TraceViewTest, StatTable) {
  absl::StatusOr<std::string> text = FormatStatTable(kStat);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << *text;
  EXPECT_TRUE(absl::StartsWith(lines[0], "SOURCE   DESTINATION   SUCCESS   RPS   P50")) << *text;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[1], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"a", "b", "90.00%", "0.2", "1.3ms", "40ms", "1.50s",
                                      "2.0KiB/10B", "0.5"}));
  // No requests: no success rate or latency to show.
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[2], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"b", "c", "-", "0.0", "-", "-", "-", "0B/0B", "0.0"}));
}

TEST(TraceViewTest, TopSortsByRateAndLimits) {
  absl::StatusOr<std::string> text = FormatStatTable(kStat, /*top=*/true, /*limit=*/2);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << *text;
  EXPECT_TRUE(absl::StrContains(lines[0], "ACTIVE")) << *text;
  EXPECT_TRUE(absl::StartsWith(lines[1], "c ")) << *text;  // 100 rps first
  EXPECT_TRUE(absl::StartsWith(lines[2], "a ")) << *text;
  EXPECT_TRUE(absl::StrContains(lines[1], " 7")) << *text;
  EXPECT_TRUE(absl::StrContains(*FormatStatTable(R"({"items":[]})"), "No traffic"));
  EXPECT_FALSE(FormatStatTable("{not").ok());
}

TEST(TraceViewTest, StatHistoryOneRowPerPoint) {
  constexpr char kHistory[] = R"({"kind":"StatHistory","service":"backend.default",
    "from":1767225600,"to":1767225720,"stepSeconds":60,"resolutionSeconds":10,
    "retentionSeconds":3600,"points":[
    {"time":1767225600,"requests":0,"failures":0,"rps":0,"successRate":null,
     "latencyMs":{"p50":null,"p95":null,"p99":null},"txBytes":0,"rxBytes":0,
     "txBytesPerSecond":0,"rxBytesPerSecond":0},
    {"time":1767225660,"requests":1200,"failures":3,"rps":20,"successRate":0.9975,
     "latencyMs":{"p50":3.1,"p95":8.4,"p99":21.3},"txBytes":0,"rxBytes":307200,
     "txBytesPerSecond":0,"rxBytesPerSecond":5120}],"events":[]})";
  absl::StatusOr<std::string> text = FormatStatHistory(kHistory);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << *text;
  EXPECT_EQ(lines[0], "backend.default (inbound, from every caller), every 60s");
  EXPECT_TRUE(absl::StartsWith(lines[1], "TIME (UTC)            RPS    SUCCESS   P50")) << *text;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[2], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"2026-01-01", "00:00:00", "-", "-", "-", "-", "-", "0B/0B"}));
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[3], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"2026-01-01", "00:01:00", "20.0", "99.75%", "3.1ms", "8.4ms",
                                      "21ms", "0B/5.0KiB"}));
  text = FormatStatHistory(
      R"({"source":"a","destination":"b","stepSeconds":10,"points":[],"events":[]})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "a -> b, every 10s: no points in the range.\n");
  EXPECT_FALSE(FormatStatHistory(R"({"service":"a","points":[{"time":"soon"}]})").ok());
  text = FormatStatHistory(
      R"({"route":"default/reviews","rule":1,"stepSeconds":10,"points":[],"events":[]})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "route default/reviews rule 1, every 10s: no points in the range.\n");
  text =
      FormatStatHistory(R"({"workload":"default/fe-1","stepSeconds":10,"points":[],"events":[]})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "workload default/fe-1 (outbound, to every service), every 10s: no points in the "
            "range.\n");
}

TEST(StatRoutesTest, OneRowPerRuleByRouteAndRule) {
  constexpr char kRoutes[] = R"({"window":"1m","routes":[
    {"route":"default/reviews","kind":"HTTPRoute","rule":1,"service":"reviews.default",
     "requests":60,"failures":6,"rps":1,"successRate":0.9,"p50Ms":40,"p95Ms":90,"p99Ms":null},
    {"route":"default/reviews","kind":"HTTPRoute","rule":0,"service":"reviews.default",
     "requests":600,"failures":0,"rps":10,"successRate":1,"p50Ms":2.5,"p95Ms":4,"p99Ms":6}]})";
  absl::StatusOr<std::string> text = FormatStatRoutes(kRoutes);
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << *text;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[0], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"ROUTE", "RULE", "SUCCESS", "RPS", "P50", "P95", "P99",
                                      "REQUESTS", "FAILURES"}));
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[1], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"HTTPRoute/default/reviews", "0", "100.00%", "10.0", "2.5ms",
                                      "4.0ms", "6.0ms", "600", "0"}));
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(lines[2], ' ', absl::SkipEmpty())),
            (std::vector<std::string>{"HTTPRoute/default/reviews", "1", "90.00%", "1.0", "40ms",
                                      "90ms", "-", "60", "6"}));
  text = FormatStatRoutes(R"({"window":"5m","routes":[]})");
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(absl::StartsWith(*text, "No route rule sent requests to the service in the last 5m"))
      << *text;
  EXPECT_FALSE(FormatStatRoutes(R"({"window":"1m","routes":[{"rule":"x"}]})").ok());
}

TEST(TraceViewTest, TapLines) {
  absl::StatusOr<TapLineView> event = FormatTapLine(
      R"({"kind":"TapEvent","proxy":"web-1.shop","direction":"outbound","method":"GET",)"
      R"("authority":"reviews:9080","path":"/r/1","status":503,"latencyMs":0.31,)"
      R"("caller":"spiffe://cluster.local/ns/shop/sa/web","route":"HTTPRoute/shop/r","rule":0,)"
      R"("flags":"UH","error":"web-1.shop; flag=UH; reason=no healthy upstream"})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->out,
            "outbound web-1.shop GET reviews:9080/r/1 status=503 latency=0.31ms "
            "caller=spiffe://cluster.local/ns/shop/sa/web route=HTTPRoute/shop/r#0 flags=UH "
            "error=\"web-1.shop; flag=UH; reason=no healthy upstream\"\n");
  EXPECT_EQ(event->note, "");
  absl::StatusOr<TapLineView> refused =
      FormatTapLine(R"({"kind":"TapProxy","proxy":"a","status":"refused","error":"busy"})");
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->out, "");
  EXPECT_EQ(refused->note, "proxy a refused the tap: busy\n");
  absl::StatusOr<TapLineView> replica = FormatTapLine(
      R"({"kind":"TapReplica","replica":"b","status":"started","proxies":["r-1","r-2"]})");
  ASSERT_TRUE(replica.ok());
  EXPECT_EQ(replica->note, "replica b: r-1, r-2\n");
  EXPECT_EQ(FormatTapLine(R"({"kind":"TapReplica","replica":"c","status":"none"})")->note,
            "replica c: no sidecar of the target\n");
  EXPECT_EQ(FormatTapLine(R"({"kind":"TapReplica","replica":"d","status":"unreachable",)"
                          R"("error":"UNAVAILABLE: refused"})")
                ->note,
            "replica d could not be asked: UNAVAILABLE: refused\n");
  absl::StatusOr<TapLineView> ended = FormatTapLine(
      R"({"kind":"TapEnded","reason":"duration","events":7,"dropped":{"sidecarRate":3,)"
      R"("sidecarBatchBytes":0,"tapRate":1,"controlPlaneRate":0}})");
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->note,
            "tap ended (duration): 7 requests shown; not shown: 3 over the rate at the sidecars, "
            "1 over the tap's rate, 0 over the control plane's limit, 0 over a batch's size\n");
  EXPECT_FALSE(FormatTapLine("[1]").ok());
}

}  // namespace
}  // namespace meshlet::controlplane::cli

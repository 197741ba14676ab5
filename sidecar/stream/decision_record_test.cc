#include "sidecar/stream/decision_record.h"

#include <chrono>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "sidecar/stream/decision_ring.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::stream {
namespace {

using std::chrono::milliseconds;

net::Address Addr(const char* text) { return *net::Address::Parse(text); }

TEST(DecisionRecordTest, AttemptsFormatEndpointOutcomeDurationAndNext) {
  DecisionRecord r;
  const MonotonicTime t0{};
  ASSERT_TRUE(r.BeginAttempt(Addr("10.0.0.1:8080"), t0));
  r.SetAttemptSpan(0x00f067aa0ba902b7);  // its client span, which the upstream was told
  r.EndAttempt(AttemptOutcome::kResponse, 503, t0 + milliseconds(4));
  r.SetNext(AttemptNext::kRetry, static_cast<uint8_t>(RetryCause::k5xx));
  ASSERT_TRUE(r.BeginAttempt(Addr("[fd00::2]:9090"), t0 + milliseconds(30)));  // none: untraced
  r.EndAttempt(AttemptOutcome::kTimeout, 0, t0 + milliseconds(130));
  r.SetNext(AttemptNext::kNoRetry, static_cast<uint8_t>(NoRetryCause::kBudget));
  // Set once: later calls for the same attempt change nothing.
  r.EndAttempt(AttemptOutcome::kCancelled, 0, t0 + milliseconds(500));
  r.SetNext(AttemptNext::kDone);
  std::string out;
  AppendAttempts(r, &out);
  EXPECT_EQ(out,
            "endpoint=10.0.0.1:8080 outcome=503 duration_ms=4 next=retry(5xx) "
            "span_id=00f067aa0ba902b7; endpoint=[fd00::2]:9090 outcome=timeout duration_ms=100 "
            "next=no-retry(budget)");
}

TEST(DecisionRecordTest, NoAttemptsFormatNothing) {
  DecisionRecord r;
  r.EndAttempt(AttemptOutcome::kCancelled, 0, MonotonicTime{});  // no attempt: ignored
  r.SetNext(AttemptNext::kDone);
  std::string out;
  AppendAttempts(r, &out);
  EXPECT_EQ(out, "");
}

TEST(DecisionRecordTest, AttemptsBeyondTheCapAreCountedNotKept) {
  DecisionRecord r;
  const MonotonicTime t0{};
  for (size_t i = 0; i < DecisionRecord::kMaxAttempts; ++i) {
    ASSERT_TRUE(r.BeginAttempt(Addr("10.0.0.1:80"), t0));
    r.EndAttempt(AttemptOutcome::kConnectFailure, 0, t0);
    r.SetNext(AttemptNext::kRetry, static_cast<uint8_t>(RetryCause::kConnectFailure));
  }
  EXPECT_FALSE(r.BeginAttempt(Addr("10.0.0.1:80"), t0));
  EXPECT_FALSE(r.BeginAttempt(Addr("10.0.0.1:80"), t0));
  // The kept attempts stay as they were.
  r.EndAttempt(AttemptOutcome::kResponse, 200, t0);
  EXPECT_EQ(r.attempts[DecisionRecord::kMaxAttempts - 1].outcome, AttemptOutcome::kConnectFailure);
  EXPECT_EQ(r.kept_attempts(), DecisionRecord::kMaxAttempts);
  EXPECT_EQ(r.dropped_attempts(), 2u);
  std::string out;
  AppendAttempts(r, &out);
  EXPECT_NE(out.find("next=retry(connect-failure); dropped=2"), std::string::npos) << out;
}

class DecisionRingTest : public ::testing::Test {
 protected:
  std::unique_ptr<DecisionRing> MakeRing(size_t capacity) {
    const auto counter = [this](const char* name) { return *shard_->RegisterCounter(name, "h"); };
    return std::make_unique<DecisionRing>(capacity, 3, counter("meshlet_t_records_total"),
                                          counter("meshlet_t_overwritten_total"),
                                          counter("meshlet_t_dropped_total"));
  }
  uint64_t Count(const char* name) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? 0 : series->counter;
  }

  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
};

TEST_F(DecisionRingTest, KeepsTheSpanAttributesAndDecisionOfARequest) {
  auto ring = MakeRing(4);
  StreamInfo info;
  info.response_code = 403;
  info.route_name = "reviews.rule-0";
  info.local_reply_reason = "RBAC: access denied";
  info.SetFlag(ResponseFlag::kUnauthorized);
  info.decision.policy_route = "HTTPRoute/default/reviews";
  info.decision.route_rule = 1;
  info.decision.route_match = -1;
  info.decision.authz = AuthzResult::kDeny;
  info.decision.policy_authz = "AuthorizationPolicy/default/no-admin";
  info.decision.timeout_request_ms = 2000;
  info.trace.trace_id = {0x0af7651916cd43dd, 0x8448eb211c80319c};
  ring->Add(info, "req-1", "inbound");
  std::string out;
  bool first = true;
  ring->AppendJson("", "", &out, &first);
  EXPECT_FALSE(first);
  EXPECT_NE(out.find("\"worker\":3"), std::string::npos) << out;
  EXPECT_NE(out.find("\"request_id\":\"req-1\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\""), std::string::npos)
      << out;
  for (const char* attribute :
       {"\"http.response.status_code\":403", "\"meshlet.route\":\"reviews.rule-0\"",
        "\"meshlet.response_flags\":\"AZ\"", "\"meshlet.error.reason\":\"RBAC: access denied\"",
        "\"meshlet.policy.route\":\"HTTPRoute/default/reviews\"", "\"meshlet.route.rule\":1",
        "\"meshlet.route.match\":-1", "\"meshlet.authz\":\"deny\"",
        "\"meshlet.policy.authz\":\"AuthorizationPolicy/default/no-admin\"",
        "\"meshlet.timeout.request_ms\":2000", "\"meshlet.request_id\":\"req-1\"",
        "\"meshlet.listener.direction\":\"inbound\""}) {
    EXPECT_NE(out.find(attribute), std::string::npos) << attribute << " in " << out;
  }
  EXPECT_EQ(out.find("meshlet.timeout.per_try_ms"), std::string::npos) << out;
  EXPECT_EQ(out.find("meshlet.attempts"), std::string::npos) << out;
  EXPECT_EQ(out.find("meshlet.shed"), std::string::npos) << out;
}

// The ring keeps hundreds of records per worker: each is packed (attribute names by index,
// numbers as varints, no JSON quoting) and formatted only when read, with the same JSON.
TEST_F(DecisionRingTest, KeepsARecordPackedAndFormatsItWhenRead) {
  auto ring = MakeRing(4);
  StreamInfo info;
  info.response_code = 503;
  info.route_name = "outbound|svc-1.default.svc.cluster.local:8080";
  info.local_reply_reason = "upstream \"connect\" failure\n";
  info.SetFlag(ResponseFlag::kUpstreamConnectFailure);
  info.decision.policy_route = "HTTPRoute/default/svc-1";
  info.decision.route_rule = 0;
  info.decision.route_match = -1;
  info.decision.timeout_request_ms = 15000;
  info.decision.timeout_per_try_ms = 3000000000;
  ring->Add(info, "0f5c2e7a-9d41-4b8e-a3f2-6c1d0e9b7a55", "outbound");
  std::string out;
  bool first = true;
  ring->AppendJson("", "", &out, &first);
  for (const char* attribute :
       {"\"http.response.status_code\":503",
        "\"meshlet.route\":\"outbound|svc-1.default.svc.cluster.local:8080\"",
        "\"meshlet.error.reason\":\"upstream \\\"connect\\\" failure\\n\"",
        "\"meshlet.route.rule\":0,\"meshlet.route.match\":-1",
        "\"meshlet.timeout.request_ms\":15000", "\"meshlet.timeout.per_try_ms\":3000000000",
        "\"meshlet.request_id\":\"0f5c2e7a-9d41-4b8e-a3f2-6c1d0e9b7a55\"", "\"trace_id\":\"\"",
        "\"sampled\":false"}) {
    EXPECT_NE(out.find(attribute), std::string::npos) << attribute << " in " << out;
  }
  EXPECT_EQ(out.back(), '}');
  // The record's text holds its values and a byte or two each, not its JSON (names, quotes).
  EXPECT_GT(ring->packed_bytes(), 0u);
  EXPECT_LT(ring->packed_bytes() * 2, out.size()) << ring->packed_bytes() << " " << out;

  // A second record, found by its request id: its names come from the ring's table too.
  ring->Add(info, "0f5c2e7a-9d41-4b8e-a3f2-6c1d0e9b7a56", "outbound");
  std::string again;
  first = true;
  ring->AppendJson("0f5c2e7a-9d41-4b8e-a3f2-6c1d0e9b7a56", "", &again, &first);
  EXPECT_NE(again.find("\"meshlet.timeout.per_try_ms\":3000000000"), std::string::npos) << again;
}

// A request load shedding refused: which limit, its setting and the worker's share.
TEST_F(DecisionRingTest, KeepsWhichOverloadLimitShedARequest) {
  auto ring = MakeRing(4);
  StreamInfo info;
  info.response_code = 503;
  info.local_reply_reason = "overloaded";
  info.SetFlag(ResponseFlag::kOverloaded);
  info.decision.shed = ShedReason::kActiveRequests;
  info.decision.shed_limit = 40;
  info.decision.shed_worker_limit = 20;
  ring->Add(info, "shed-1");
  StreamInfo memory;
  memory.response_code = 503;
  memory.SetFlag(ResponseFlag::kOverloaded);
  memory.decision.shed = ShedReason::kMemory;
  memory.decision.shed_limit = 512;
  ring->Add(memory, "shed-2");
  std::string out;
  bool first = true;
  ring->AppendJson("shed-1", "", &out, &first);
  for (const char* attribute : {"\"meshlet.shed.reason\":\"active_requests\"",
                                "\"meshlet.shed.limit\":40", "\"meshlet.shed.worker_limit\":20"}) {
    EXPECT_NE(out.find(attribute), std::string::npos) << attribute << " in " << out;
  }
  out.clear();
  first = true;
  ring->AppendJson("shed-2", "", &out, &first);
  EXPECT_NE(out.find("\"meshlet.shed.reason\":\"memory\",\"meshlet.shed.limit\":512"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("meshlet.shed.worker_limit"), std::string::npos) << out;
}

TEST_F(DecisionRingTest, BoundedOverwritesTheOldestAndCountsIt) {
  auto ring = MakeRing(2);
  for (const char* id : {"a", "b", "c"}) {
    StreamInfo info;
    info.response_code = 503;
    ring->Add(info, id);
  }
  std::string out;
  bool first = true;
  ring->AppendJson("", "", &out, &first);
  // Newest first, "a" overwritten.
  const size_t c = out.find("\"request_id\":\"c\"");
  const size_t b = out.find("\"request_id\":\"b\"");
  ASSERT_NE(c, std::string::npos) << out;
  ASSERT_NE(b, std::string::npos) << out;
  EXPECT_LT(c, b);
  EXPECT_EQ(out.find("\"request_id\":\"a\""), std::string::npos) << out;
  EXPECT_EQ(Count("meshlet_t_records_total"), 3u);
  EXPECT_EQ(Count("meshlet_t_overwritten_total"), 1u);

  // A request id filter keeps that request's.
  out.clear();
  first = true;
  ring->AppendJson("b", "", &out, &first);
  EXPECT_NE(out.find("\"request_id\":\"b\""), std::string::npos) << out;
  EXPECT_EQ(out.find("\"request_id\":\"c\""), std::string::npos) << out;
  out.clear();
  first = true;
  ring->AppendJson("zzz", "", &out, &first);
  EXPECT_TRUE(first);
  EXPECT_EQ(out, "");

  ring->CountDroppedAttempt();
  EXPECT_EQ(Count("meshlet_t_dropped_total"), 1u);
}

TEST_F(DecisionRingTest, CapacityZeroKeepsNothing) {
  auto ring = MakeRing(0);
  StreamInfo info;
  ring->Add(info, "a");
  std::string out;
  bool first = true;
  ring->AppendJson("", "", &out, &first);
  EXPECT_EQ(out, "");
  EXPECT_EQ(Count("meshlet_t_records_total"), 0u);
}

// Which requests the proxy failed (their spans are exported unsampled): its own reply, a reset,
// another proxy's error passed on; not a client that went away, a delay, or a per-try timeout
// retried into an answer.
TEST(StreamInfoTest, ProxyFailedIsTheProxysFailureOnly) {
  StreamInfo ok;
  EXPECT_FALSE(ok.ProxyFailed());
  for (ResponseFlag flag : {ResponseFlag::kDownstreamClosed, ResponseFlag::kDelayInjected,
                            ResponseFlag::kUpstreamPerTryTimeout}) {
    StreamInfo info;
    info.SetFlag(flag);
    EXPECT_FALSE(info.ProxyFailed()) << ResponseFlagShortName(flag);
  }
  for (ResponseFlag flag : {ResponseFlag::kUpstreamOverflow, ResponseFlag::kLocalReset,
                            ResponseFlag::kRetryLimitExceeded, ResponseFlag::kNotInRegistry}) {
    StreamInfo info;
    info.SetFlag(ResponseFlag::kDownstreamClosed);
    info.SetFlag(flag);
    EXPECT_TRUE(info.ProxyFailed()) << ResponseFlagShortName(flag);
  }
  StreamInfo replied;
  replied.local_reply_reason = "no route";
  EXPECT_TRUE(replied.ProxyFailed());
  StreamInfo passed_on;
  passed_on.upstream_error_attributed = true;
  EXPECT_TRUE(passed_on.ProxyFailed());
}

}  // namespace
}  // namespace meshlet::sidecar::stream

#include "sidecar/stream/tap.h"

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/http/header_map.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::stream {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class TapTest : public ::testing::Test {
 protected:
  TapTest() {
    request_ = http::HeaderMap{{":method", "GET"},
                               {":authority", "reviews.shop:9080"},
                               {":path", "/reviews/1?x=1"},
                               {"authorization", "Bearer secret"},
                               {"x-user", "alice"}};
    response_ = http::HeaderMap{{":status", "503"}, {"set-cookie", "s=1"}};
    info_.response_code = 503;
    info_.cluster_name = "outbound|9080||reviews.shop";
    info_.route_name = "reviews";
    info_.decision.policy_route = "HTTPRoute/shop/reviews-split";
    info_.decision.route_rule = 1;
    info_.SetFlag(ResponseFlag::kNoHealthyUpstream);
    view_.inbound = false;
    view_.info = &info_;
    view_.request_headers = &request_;
    view_.response_headers = &response_;
    view_.request_id = "id-1";
    view_.error = "node-a; flag=UH; reason=no healthy upstream";
    view_.duration_us = 1500;
    view_.wall = absl::FromUnixSeconds(1700000000);
  }

  TapSpec Spec(uint32_t rate = 100) {
    TapSpec spec;
    spec.id = "t1";
    spec.rate = rate;
    spec.end = now_ + seconds(10);
    spec.own_identity = "spiffe://cluster.local/ns/shop/sa/productpage";
    return spec;
  }

  MonotonicTime now_ = MonotonicTime() + seconds(1000);
  http::HeaderMap request_;
  http::HeaderMap response_;
  StreamInfo info_;
  TapRequestView view_;
};

TEST_F(TapTest, EventCarriesTheRequestsFieldsWithoutHeadersUnlessAsked) {
  std::string out;
  AppendTapEvent(Spec(), view_, &out);
  EXPECT_EQ(out,
            "{\"time\":\"2023-11-14T22:13:20.000Z\",\"direction\":\"outbound\",\"method\":\"GET\","
            "\"authority\":\"reviews.shop:9080\",\"path\":\"/reviews/1?x=1\",\"status\":503,"
            "\"flags\":\"UH\",\"error\":\"node-a; flag=UH; reason=no healthy upstream\","
            "\"latencyMs\":1.5,\"caller\":\"spiffe://cluster.local/ns/shop/sa/productpage\","
            "\"route\":\"HTTPRoute/shop/reviews-split\",\"rule\":1,\"routeName\":\"reviews\","
            "\"cluster\":\"outbound|9080||reviews.shop\",\"requestId\":\"id-1\"}\n");
}

TEST_F(TapTest, InboundCallerIsThePeerAndHeadersAreRedacted) {
  TapSpec spec = Spec();
  spec.headers = true;
  view_.inbound = true;
  view_.peer_identity = "spiffe://cluster.local/ns/shop/sa/web";
  std::string out;
  AppendTapEvent(spec, view_, &out);
  EXPECT_TRUE(absl::StrContains(out, "\"caller\":\"spiffe://cluster.local/ns/shop/sa/web\""));
  EXPECT_TRUE(absl::StrContains(out, "[\"x-user\",\"alice\"]")) << out;
  EXPECT_TRUE(absl::StrContains(out, "[\"authorization\",\"(redacted)\"]")) << out;
  EXPECT_TRUE(absl::StrContains(out,
                                "\"responseHeaders\":[[\":status\",\"503\"],"
                                "[\"set-cookie\",\"(redacted)\"]]"))
      << out;
  EXPECT_FALSE(absl::StrContains(out, "secret"));
}

TEST_F(TapTest, FiltersEachMustMatch) {
  TapSpec spec = Spec();
  EXPECT_TRUE(TapMatches(spec, view_));
  spec.direction = TapDirection::kInbound;
  EXPECT_FALSE(TapMatches(spec, view_));
  spec.direction = TapDirection::kOutbound;
  EXPECT_TRUE(TapMatches(spec, view_));
  spec.method = "POST";
  EXPECT_FALSE(TapMatches(spec, view_));
  spec.method = "GET";
  spec.authority = "REVIEWS.shop:9080";
  EXPECT_TRUE(TapMatches(spec, view_));
  spec.authority = "ratings.shop:9080";
  EXPECT_FALSE(TapMatches(spec, view_));
  spec.authority.clear();
  spec.path_prefix = "/reviews/";
  EXPECT_TRUE(TapMatches(spec, view_));
  spec.path_prefix = "/ratings";
  EXPECT_FALSE(TapMatches(spec, view_));
}

TEST_F(TapTest, RateHoldsOverWorkersAndDropsAreCounted) {
  auto session = std::make_shared<TapSession>(Spec(/*rate=*/5));
  WorkerTap a, b;
  a.Add(session);
  b.Add(session);
  // 100 requests within one second on two workers: the bucket's 5 (its burst) pass.
  for (int i = 0; i < 50; ++i) {
    a.Record(view_, now_ + milliseconds(i));
    b.Record(view_, now_ + milliseconds(i));
  }
  uint32_t events = 0;
  for (WorkerTap* w : {&a, &b}) {
    for (const TapBatch& batch : w->TakeBatches()) events += batch.events;
  }
  EXPECT_EQ(events, 5u);
  EXPECT_EQ(session->TakeRateDrops(), 95u);
  EXPECT_EQ(session->TakeRateDrops(), 0u);
  // A second later, five more.
  for (int i = 0; i < 20; ++i) a.Record(view_, now_ + seconds(2) + milliseconds(i));
  std::vector<TapBatch> batches = a.TakeBatches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].events, 5u);
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(batches[0].events_json, '\n', absl::SkipEmpty()))
          .size(),
      5u);
}

TEST_F(TapTest, NothingAfterTheEndAndNothingPastTheByteCap) {
  TapSpec spec = Spec(1000);
  spec.max_batch_bytes = 1000;
  auto session = std::make_shared<TapSession>(spec);
  WorkerTap w;
  w.Add(session);
  for (int i = 0; i < 10; ++i) w.Record(view_, now_);
  std::vector<TapBatch> batches = w.TakeBatches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_LE(batches[0].events_json.size(), 1000u);
  EXPECT_GT(batches[0].events, 0u);
  EXPECT_EQ(batches[0].events + batches[0].dropped_cap, 10u);
  w.Record(view_, now_ + seconds(10));  // the end
  EXPECT_TRUE(w.TakeBatches().empty());
}

TEST_F(TapTest, RemoveReturnsTheLastBatchAndEmptiesTheWorker) {
  TapSpec spec = Spec();
  spec.headers = true;
  WorkerTap w;
  w.Add(std::make_shared<TapSession>(spec));
  EXPECT_TRUE(w.wants_headers());
  w.Record(view_, now_);
  TapBatch last = w.Remove("t1");
  EXPECT_EQ(last.events, 1u);
  EXPECT_TRUE(w.empty());
  EXPECT_FALSE(w.wants_headers());
  EXPECT_EQ(w.Remove("t1").session, nullptr);
}

}  // namespace
}  // namespace meshlet::sidecar::stream

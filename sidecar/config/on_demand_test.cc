// OnDemandDiscovery (on_demand.h): one request per key and turn, answers from the table without
// the control plane, missing keys asked again after their ttl (fake time), and the answers that
// need no stream (disconnected, limit).

#include "sidecar/config/on_demand.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "sidecar/config/lookup.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::config {
namespace {

struct Sent {
  std::vector<std::string> subscribe;
  std::vector<std::string> unsubscribe;
};

class OnDemandTest : public ::testing::Test {
 protected:
  std::unique_ptr<OnDemandDiscovery> Make(OnDemandOptions options = {}) {
    LookupStream stream;
    stream.can_look_up = [this] { return connected_; };
    stream.lookup = [this](std::vector<std::string> subscribe,
                           std::vector<std::string> unsubscribe) {
      sent_.push_back(Sent{std::move(subscribe), std::move(unsubscribe)});
    };
    stream.resource_of = [this](const std::string& key) {
      auto it = resources_.find(key);
      return it == resources_.end() ? std::string("reviews.shop:80") : it->second;
    };
    stream.last_use = [this](const std::string& service_route) -> std::optional<MonotonicTime> {
      auto it = cells_.find(service_route);
      return it == cells_.end() ? std::nullopt : it->second.last_use();
    };
    return std::make_unique<OnDemandDiscovery>(
        loop_, clock_, options, std::move(stream),
        [this](std::vector<LookupAnswer> answers) {
          for (LookupAnswer& a : answers) answers_.push_back(std::move(a));
        },
        [this](std::vector<std::string> keys) {
          for (std::string& key : keys) forgotten_.push_back(std::move(key));
        },
        stats_.shared_shard());
  }

  uint64_t Expired(const std::string& state) {
    return stats_.CounterValue(*stats_.RegisterCounter("meshlet_xds_client_on_demand_expired_total",
                                                       "x", {{"state", state}}));
  }
  // Asks for `keys` and answers them found.
  void Find(OnDemandDiscovery& discovery, const std::vector<std::string>& keys) {
    for (const std::string& key : keys) discovery.Request(key);
    loop_.RunUntilIdle();
    std::vector<LookupAnswer> found;
    for (const std::string& key : keys) found.push_back({key, LookupOutcome::kFound});
    discovery.OnAnswers(std::move(found));
  }

  uint64_t Lookups(const std::string& kind, const std::string& result) {
    return stats_.CounterValue(*stats_.RegisterCounter("meshlet_on_demand_lookups_total", "x",
                                                       {{"kind", kind}, {"result", result}}));
  }
  int64_t Keys(const std::string& state) {
    return stats_.GaugeValue(*stats_.RegisterGauge("meshlet_xds_client_on_demand_keys", "x",
                                                   {{"state", state}}, GaugeMerge::kGlobal));
  }

  FakeClock clock_;
  event::Loop loop_{&clock_};
  StatsRegistry stats_;
  bool connected_ = true;
  std::vector<Sent> sent_;
  std::vector<LookupAnswer> answers_;
  std::vector<std::string> forgotten_;
  // The ServiceRoute answering a key (default reviews.shop:80), and the ServiceRoutes' cells.
  std::map<std::string, std::string> resources_;
  std::map<std::string, route::UsageCell> cells_;
};

TEST_F(OnDemandTest, PendingKeyAskedOnce) {
  auto discovery = Make();
  // Two workers ask for the same key, a third for another, in one turn: one request.
  discovery->Request("host:reviews");
  discovery->Request("host:reviews");
  discovery->Request("addr:10.0.0.7:80");
  EXPECT_TRUE(sent_.empty());  // at the end of the turn
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].subscribe, (std::vector<std::string>{"host:reviews", "addr:10.0.0.7:80"}));
  EXPECT_TRUE(sent_[0].unsubscribe.empty());
  EXPECT_EQ(Keys("pending"), 2);
  // Still pending on a later turn: nothing sent, nothing answered.
  discovery->Request("host:reviews");
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 1u);
  EXPECT_TRUE(answers_.empty());

  discovery->OnAnswers({{"host:reviews", LookupOutcome::kFound}});
  ASSERT_EQ(answers_.size(), 1u);
  EXPECT_EQ(answers_[0].outcome, LookupOutcome::kFound);
  // Found: answered from the table.
  discovery->Request("host:reviews");
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 1u);
  ASSERT_EQ(answers_.size(), 2u);
  EXPECT_EQ(answers_[1].outcome, LookupOutcome::kFound);
  EXPECT_EQ(Keys("found"), 1);
  EXPECT_EQ(Keys("pending"), 1);
  EXPECT_EQ(Lookups("host", "found"), 2u);
  EXPECT_NE(
      discovery->Json().find(
          R"({"key":"host:reviews","state":"found","resource":"reviews.shop:80","idle_s":0})"),
      std::string::npos)
      << discovery->Json();
}

TEST_F(OnDemandTest, MissingKeyAskedAgainAfterTtl) {
  auto discovery = Make({.max_keys = 10, .missing_ttl = std::chrono::seconds(30)});
  discovery->Request("host:nope");
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 1u);
  discovery->OnAnswers({{"host:nope", LookupOutcome::kNotFound}});
  EXPECT_EQ(Keys("missing"), 1);
  // Within the ttl: answered from the table.
  clock_.Advance(std::chrono::seconds(29));
  discovery->Request("host:nope");
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 1u);
  ASSERT_EQ(answers_.size(), 2u);
  EXPECT_EQ(answers_[1].outcome, LookupOutcome::kNotFound);
  EXPECT_EQ(Lookups("host", "not_found"), 2u);

  // Past it, a request asks again: unsubscribed first, then subscribed, so the control plane
  // answers afresh.
  clock_.Advance(std::chrono::seconds(2));
  discovery->Request("host:nope");
  EXPECT_EQ(answers_.size(), 2u);
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[1].unsubscribe, std::vector<std::string>{"host:nope"});
  EXPECT_TRUE(sent_[1].subscribe.empty());
  EXPECT_EQ(sent_[2].subscribe, std::vector<std::string>{"host:nope"});
  EXPECT_EQ(Keys("pending"), 1);
  EXPECT_EQ(Keys("missing"), 0);

  // Without a request, the sweep drops an expired key (unsubscribed, out of the table).
  discovery->OnAnswers({{"host:nope", LookupOutcome::kNotFound}});
  clock_.Advance(std::chrono::seconds(31));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(sent_[3].unsubscribe, std::vector<std::string>{"host:nope"});
  EXPECT_EQ(discovery->size(), 0u);
  EXPECT_EQ(Keys("missing"), 0);
  EXPECT_EQ(Expired("missing"), 1u);
  // The workers forget it too, so their next connection asks.
  EXPECT_EQ(forgotten_, std::vector<std::string>{"host:nope"});
}

TEST_F(OnDemandTest, DisconnectedAnswersAtOnce) {
  connected_ = false;
  auto discovery = Make();
  discovery->Request("addr:10.0.0.7:80");
  ASSERT_EQ(answers_.size(), 1u);
  EXPECT_EQ(answers_[0].key, "addr:10.0.0.7:80");
  EXPECT_EQ(answers_[0].outcome, LookupOutcome::kDisconnected);
  loop_.RunUntilIdle();
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(discovery->size(), 0u);
  EXPECT_EQ(Lookups("address", "disconnected"), 1u);

  // No xDS at all: the same.
  LookupStream none;
  OnDemandDiscovery without(
      loop_, clock_, {}, std::move(none),
      [this](std::vector<LookupAnswer> answers) {
        for (LookupAnswer& a : answers) answers_.push_back(std::move(a));
      },
      nullptr, stats_.shared_shard());
  without.Request("host:reviews");
  ASSERT_EQ(answers_.size(), 2u);
  EXPECT_EQ(answers_[1].outcome, LookupOutcome::kDisconnected);
}

TEST_F(OnDemandTest, TableFullAnswersLimit) {
  auto discovery = Make({.max_keys = 2});
  discovery->Request("host:a");
  discovery->Request("host:b");
  discovery->Request("host:c");
  ASSERT_EQ(answers_.size(), 1u);
  EXPECT_EQ(answers_[0].key, "host:c");
  EXPECT_EQ(answers_[0].outcome, LookupOutcome::kLimit);
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].subscribe, (std::vector<std::string>{"host:a", "host:b"}));
  EXPECT_EQ(discovery->size(), 2u);
  EXPECT_EQ(Lookups("host", "limit"), 1u);
  // A key the table holds is still served.
  discovery->OnAnswers({{"host:a", LookupOutcome::kFound}});
  discovery->Request("host:a");
  EXPECT_EQ(answers_.back().outcome, LookupOutcome::kFound);
}

// A full table makes room by dropping the found key unused the longest, once it has been unused
// for a minute; keys in use are never dropped for a new one.
TEST_F(OnDemandTest, FullTableDropsTheFoundKeyUnusedTheLongest) {
  auto discovery = Make({.max_keys = 2, .idle_time = std::chrono::minutes(15)});
  resources_ = {{"host:a", "a.shop:80"}, {"host:b", "b.shop:80"}};
  cells_["a.shop:80"];
  cells_["b.shop:80"];
  Find(*discovery, {"host:a", "host:b"});
  ASSERT_EQ(sent_.size(), 1u);

  // Both answered 30 s ago: too recent to drop.
  clock_.Advance(std::chrono::seconds(30));
  discovery->Request("host:c");
  EXPECT_EQ(answers_.back().key, "host:c");
  EXPECT_EQ(answers_.back().outcome, LookupOutcome::kLimit);

  // At 90 s, b was used 10 s ago and a never: a goes, c takes its place.
  clock_.Advance(std::chrono::seconds(50));
  cells_.at("b.shop:80").Touch(clock_.Now());
  clock_.Advance(std::chrono::seconds(10));
  discovery->Request("host:c");
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].subscribe, std::vector<std::string>{"host:c"});
  EXPECT_EQ(sent_[1].unsubscribe, std::vector<std::string>{"host:a"});
  EXPECT_EQ(discovery->size(), 2u);
  EXPECT_EQ(Expired("found"), 1u);
  EXPECT_EQ(Lookups("host", "limit"), 1u);
}

// A control plane that never answers a key (one that drops lookups) does not leave it pending
// for good: after the missing ttl it is asked again, and the sweep forgets it.
TEST_F(OnDemandTest, UnansweredKeyAskedAgainAfterTtl) {
  auto discovery = Make({.max_keys = 10, .missing_ttl = std::chrono::seconds(30)});
  discovery->Request("addr:10.0.0.7:80");
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 1u);
  clock_.Advance(std::chrono::seconds(29));
  discovery->Request("addr:10.0.0.7:80");
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 1u);
  clock_.Advance(std::chrono::seconds(2));
  discovery->Request("addr:10.0.0.7:80");
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[1].unsubscribe, std::vector<std::string>{"addr:10.0.0.7:80"});
  EXPECT_EQ(sent_[2].subscribe, std::vector<std::string>{"addr:10.0.0.7:80"});
  EXPECT_TRUE(answers_.empty());
  clock_.Advance(std::chrono::seconds(31));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(sent_[3].unsubscribe, std::vector<std::string>{"addr:10.0.0.7:80"});
  EXPECT_EQ(discovery->size(), 0u);
  EXPECT_EQ(Keys("pending"), 0);
}

TEST_F(OnDemandTest, RefusedKeyIsForgottenAndAskedAgain) {
  auto discovery = Make();
  discovery->Request("host:reviews");
  loop_.RunUntilIdle();
  discovery->OnAnswers({{"host:reviews", LookupOutcome::kRefused}});
  ASSERT_EQ(answers_.size(), 1u);
  EXPECT_EQ(answers_[0].outcome, LookupOutcome::kRefused);
  EXPECT_EQ(discovery->size(), 0u);
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].unsubscribe, std::vector<std::string>{"host:reviews"});
  discovery->Request("host:reviews");
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[2].subscribe, std::vector<std::string>{"host:reviews"});
}

// Unused destinations age out (ADR 0086): of two found Services, the one in use stays; the idle
// one is unsubscribed, and asked for again on its next use. A Service's keys go together.
TEST_F(OnDemandTest, UsedServiceKeptIdleServiceUnsubscribed) {
  auto discovery = Make({.max_keys = 10, .idle_time = std::chrono::seconds(60)});
  resources_ = {{"host:reviews", "reviews.shop:80"},
                {"addr:10.96.0.5:80", "reviews.shop:80"},
                {"host:ratings", "ratings.shop:80"}};
  cells_["reviews.shop:80"];
  cells_["ratings.shop:80"];
  Find(*discovery, {"host:reviews", "addr:10.96.0.5:80", "host:ratings"});
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(Keys("found"), 3);

  // Never used: counted from the answer, so not yet idle at 59 s.
  clock_.Advance(std::chrono::seconds(40));
  cells_.at("reviews.shop:80").Touch(clock_.Now());
  clock_.Advance(std::chrono::seconds(19));
  discovery->Sweep();
  loop_.RunUntilIdle();
  EXPECT_EQ(sent_.size(), 1u);

  // At 61 s ratings has been idle for the idle time; reviews was used 21 s ago.
  clock_.Advance(std::chrono::seconds(2));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_TRUE(sent_[1].subscribe.empty());
  EXPECT_EQ(sent_[1].unsubscribe, std::vector<std::string>{"host:ratings"});
  EXPECT_EQ(Keys("found"), 2);
  EXPECT_EQ(Expired("found"), 1u);
  EXPECT_EQ(Expired("missing"), 0u);
  EXPECT_TRUE(forgotten_.empty());  // workers hold no found keys

  // reviews' last use (at 40 s) is an idle time old at 102 s: both its keys go in one request.
  clock_.Advance(std::chrono::seconds(41));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[2].unsubscribe, (std::vector<std::string>{"addr:10.96.0.5:80", "host:reviews"}));
  EXPECT_EQ(discovery->size(), 0u);
  EXPECT_EQ(Expired("found"), 3u);

  // The next use asks the control plane again.
  const size_t answered = answers_.size();
  discovery->Request("host:ratings");
  EXPECT_EQ(answers_.size(), answered);  // pending, not answered from the table
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(sent_[3].subscribe, std::vector<std::string>{"host:ratings"});
  EXPECT_EQ(Keys("pending"), 1);
}

// The listener's idle time and missing ttl (SetTimes, what the control plane says) replace the
// flags' for what is found or missing from then on.
TEST_F(OnDemandTest, ListenerTimesReplaceTheFlags) {
  auto discovery = Make();  // the flags' defaults: 15 min idle, 30 s missing
  discovery->SetTimes(std::chrono::seconds(20), std::chrono::seconds(5));
  EXPECT_EQ(discovery->idle_time(), std::chrono::seconds(20));
  EXPECT_EQ(discovery->missing_ttl(), std::chrono::seconds(5));
  resources_ = {{"host:ratings", "ratings.shop:80"}};
  Find(*discovery, {"host:ratings"});
  discovery->Request("host:nope");
  loop_.RunUntilIdle();
  discovery->OnAnswers({{"host:nope", LookupOutcome::kNotFound}});
  clock_.Advance(std::chrono::seconds(6));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[2].unsubscribe, std::vector<std::string>{"host:nope"});
  EXPECT_EQ(forgotten_, std::vector<std::string>{"host:nope"});
  clock_.Advance(std::chrono::seconds(15));
  discovery->Sweep();
  loop_.RunUntilIdle();
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(sent_[3].unsubscribe, std::vector<std::string>{"host:ratings"});
  EXPECT_NE(discovery->Json().find(R"("idle_time_s":20,"missing_ttl_s":5)"), std::string::npos)
      << discovery->Json();
}

}  // namespace
}  // namespace meshlet::sidecar::config

#include "sidecar/listener/on_demand_waiters.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using config::LookupAnswer;
using config::LookupOutcome;
using namespace std::chrono_literals;
using ::testing::ElementsAre;

// Records how its wait ended, and when; runs `then` from the callback.
struct RecordingWaiter final : Waiter {
  explicit RecordingWaiter(std::string name = "", std::vector<std::string>* order = nullptr)
      : name(std::move(name)), order(order) {}
  void OnLookupDone(LookupOutcome outcome) override {
    outcomes.push_back(outcome);
    if (order != nullptr) order->push_back(name);
    if (then) then();
  }
  std::string name;
  std::vector<std::string>* order = nullptr;
  std::vector<LookupOutcome> outcomes;
  std::function<void()> then;
};

class OnDemandWaitersTest : public ::testing::Test {
 protected:
  std::unique_ptr<OnDemandWaiters> Make(size_t max_waiting = OnDemandWaiters::kDefaultMaxWaiting,
                                        bool lookups = true) {
    OnDemandWaiters::Options options;
    if (lookups) options.request = [this](std::string key) { requests_.push_back(key); };
    options.max_waiting = max_waiting;
    return std::make_unique<OnDemandWaiters>(loop_, *shard_, std::move(options));
  }
  uint64_t Waits(const char* kind, const char* result) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_on_demand_waits_total", {{"kind", kind}, {"result", result}});
    return series == nullptr ? 0 : series->counter;
  }
  int64_t WaitingGauge() {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find("meshlet_on_demand_waiting", {});
    return series == nullptr ? -1 : series->gauge;
  }
  uint64_t WaitSamples(const char* kind) {
    const StatsSnapshot snapshot = registry_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_on_demand_wait_seconds", {{"kind", kind}});
    return series == nullptr ? 0 : series->histogram.count();
  }

  event::Loop loop_;
  StatsRegistry registry_;
  std::unique_ptr<StatsShard> shard_ = registry_.CreateShard();
  std::vector<std::string> requests_;
};

TEST_F(OnDemandWaitersTest, OneRequestPerKeyAndTheAnswerWakesEveryWaiterOfIt) {
  auto waiters = Make();
  std::vector<std::string> order;
  RecordingWaiter a{"a", &order}, b{"b", &order}, c{"c", &order};
  auto wa = waiters->Wait("addr:10.96.0.5:80", a, 1s);
  auto wb = waiters->Wait("addr:10.96.0.5:80", b, 1s);
  auto wc = waiters->Wait("addr:10.96.0.6:80", c, 1s);
  ASSERT_TRUE(wa.handle.waiting());
  ASSERT_TRUE(wb.handle.waiting());
  ASSERT_TRUE(wc.handle.waiting());
  EXPECT_THAT(requests_, ElementsAre("addr:10.96.0.5:80", "addr:10.96.0.6:80"));
  EXPECT_EQ(waiters->waiting(), 3u);
  EXPECT_EQ(waiters->pending_keys(), 2u);
  EXPECT_EQ(WaitingGauge(), 3);

  // Answers for keys nobody here waits for are ignored.
  waiters->OnLookupAnswers(
      {{"addr:10.96.0.5:80", LookupOutcome::kFound}, {"addr:10.96.0.9:80", LookupOutcome::kFound}});
  EXPECT_THAT(order, ElementsAre("a", "b"));  // in the order they began waiting
  EXPECT_THAT(a.outcomes, ElementsAre(LookupOutcome::kFound));
  EXPECT_THAT(b.outcomes, ElementsAre(LookupOutcome::kFound));
  EXPECT_TRUE(c.outcomes.empty());
  EXPECT_FALSE(wa.handle.waiting());
  EXPECT_FALSE(wb.handle.waiting());
  EXPECT_EQ(waiters->waiting(), 1u);
  EXPECT_EQ(Waits("address", "found"), 2u);
  EXPECT_EQ(WaitSamples("address"), 2u);

  // A key whose waiters all went is asked for again by its next waiter.
  RecordingWaiter d;
  auto wd = waiters->Wait("addr:10.96.0.5:80", d, 1s);
  EXPECT_EQ(requests_.size(), 3u);
  waiters->OnLookupAnswers({{"addr:10.96.0.6:80", LookupOutcome::kDisconnected},
                            {"addr:10.96.0.5:80", LookupOutcome::kRefused}});
  EXPECT_THAT(c.outcomes, ElementsAre(LookupOutcome::kDisconnected));
  EXPECT_THAT(d.outcomes, ElementsAre(LookupOutcome::kRefused));
  EXPECT_EQ(waiters->waiting(), 0u);
  EXPECT_EQ(waiters->pending_keys(), 0u);
  EXPECT_EQ(WaitingGauge(), 0);
}

TEST_F(OnDemandWaitersTest, TimeoutsEndInDeadlineOrder) {
  auto waiters = Make();
  std::vector<std::string> order;
  RecordingWaiter slow{"slow", &order}, fast{"fast", &order}, middle{"middle", &order},
      answered{"answered", &order};
  // Begun out of deadline order, on one key and on others. The deadlines are 150 ms or more apart
  // after the first, so that a loop iteration a loaded machine delays does not end two of them in
  // one pass; `answered`, answered before its deadline, leaves the middle of the deadline order.
  auto ws = waiters->Wait("addr:10.96.0.1:80", slow, 600ms);
  auto wf = waiters->Wait("addr:10.96.0.1:80", fast, 20ms);
  auto wm = waiters->Wait("host:reviews", middle, 300ms);
  auto wa = waiters->Wait("host:ratings", answered, 450ms);
  EXPECT_TRUE(loop_.RunUntil([&] { return !fast.outcomes.empty(); }, 5s));
  EXPECT_TRUE(middle.outcomes.empty());
  waiters->OnLookupAnswers({{"host:ratings", LookupOutcome::kFound}});
  EXPECT_TRUE(loop_.RunUntil([&] { return waiters->waiting() == 0; }, 5s));
  EXPECT_THAT(order, ElementsAre("fast", "answered", "middle", "slow"));
  EXPECT_THAT(slow.outcomes, ElementsAre(LookupOutcome::kTimeout));
  EXPECT_THAT(middle.outcomes, ElementsAre(LookupOutcome::kTimeout));
  EXPECT_THAT(answered.outcomes, ElementsAre(LookupOutcome::kFound));
  EXPECT_EQ(Waits("address", "timeout"), 2u);
  EXPECT_EQ(Waits("host", "timeout"), 1u);
  EXPECT_EQ(Waits("host", "found"), 1u);
  EXPECT_EQ(waiters->pending_keys(), 0u);
  // A late answer to a key whose waiters timed out reaches nobody.
  waiters->OnLookupAnswers({{"addr:10.96.0.1:80", LookupOutcome::kFound}});
  EXPECT_THAT(slow.outcomes, ElementsAre(LookupOutcome::kTimeout));
}

TEST_F(OnDemandWaitersTest, ClosingCancelsTheWaitWithoutACallback) {
  auto waiters = Make();
  RecordingWaiter gone, stays;
  std::optional<OnDemandWaiters::Started> cancelled =
      waiters->Wait("addr:10.96.0.1:80", gone, 30ms);
  auto kept = waiters->Wait("addr:10.96.0.1:80", stays, 1s);
  cancelled.reset();  // the connection closed while waiting
  EXPECT_EQ(waiters->waiting(), 1u);
  EXPECT_EQ(Waits("address", "cancelled"), 1u);
  // Its deadline was the earliest: the timer goes on to the next one, not firing for it.
  loop_.RunUntil([] { return false; }, 80ms);
  EXPECT_TRUE(gone.outcomes.empty());
  EXPECT_TRUE(stays.outcomes.empty());
  // A moved handle still cancels, once.
  WaitHandle moved = std::move(kept.handle);
  EXPECT_FALSE(kept.handle.waiting());
  EXPECT_TRUE(moved.waiting());
  moved.Reset();
  EXPECT_EQ(waiters->waiting(), 0u);
  EXPECT_EQ(waiters->pending_keys(), 0u);
  EXPECT_EQ(Waits("address", "cancelled"), 2u);
  waiters->OnLookupAnswers({{"addr:10.96.0.1:80", LookupOutcome::kFound}});
  EXPECT_TRUE(stays.outcomes.empty());
  EXPECT_EQ(WaitingGauge(), 0);
}

TEST_F(OnDemandWaitersTest, ACallbackMayCancelTheNextWaiterOfItsKey) {
  auto waiters = Make();
  RecordingWaiter first, second;
  auto w1 = waiters->Wait("host:reviews", first, 1s);
  auto w2 = waiters->Wait("host:reviews", second, 1s);
  first.then = [&] { w2.handle.Reset(); };  // e.g. both ride one connection that closes
  waiters->OnLookupAnswers({{"host:reviews", LookupOutcome::kFound}});
  EXPECT_THAT(first.outcomes, ElementsAre(LookupOutcome::kFound));
  EXPECT_TRUE(second.outcomes.empty());
  EXPECT_EQ(waiters->waiting(), 0u);
  EXPECT_EQ(waiters->pending_keys(), 0u);
}

TEST_F(OnDemandWaitersTest, PastTheLimitWaitsDoNotStart) {
  auto waiters = Make(/*max_waiting=*/2);
  RecordingWaiter a, b, c;
  auto wa = waiters->Wait("addr:10.96.0.1:80", a, 1s);
  auto wb = waiters->Wait("addr:10.96.0.2:80", b, 1s);
  auto wc = waiters->Wait("addr:10.96.0.3:80", c, 1s);
  EXPECT_FALSE(wc.handle.waiting());
  EXPECT_EQ(wc.outcome, LookupOutcome::kOverflow);
  EXPECT_TRUE(c.outcomes.empty());  // told by the return value, never called back
  EXPECT_EQ(requests_.size(), 2u);  // nor asked for
  EXPECT_EQ(Waits("address", "overflow"), 1u);
  wa.handle.Reset();
  auto again = waiters->Wait("addr:10.96.0.3:80", c, 1s);
  EXPECT_TRUE(again.handle.waiting());
}

TEST_F(OnDemandWaitersTest, KnownMissingKeysAndNoLookupsEndAtOnce) {
  auto waiters = Make();
  RecordingWaiter a, b, c;
  auto wa = waiters->Wait("host:nowhere", a, 1s);
  waiters->OnLookupAnswers({{"host:nowhere", LookupOutcome::kNotFound}});
  EXPECT_THAT(a.outcomes, ElementsAre(LookupOutcome::kNotFound));
  auto wb = waiters->Wait("host:nowhere", b, 1s);
  EXPECT_FALSE(wb.handle.waiting());
  EXPECT_EQ(wb.outcome, LookupOutcome::kNotFound);
  EXPECT_EQ(requests_.size(), 1u);
  EXPECT_EQ(Waits("host", "not_found"), 2u);
  // The main thread asks again once its answer expired, and so do the workers.
  waiters->ForgetMissing({"host:nowhere"});
  auto wc = waiters->Wait("host:nowhere", c, 1s);
  EXPECT_TRUE(wc.handle.waiting());
  EXPECT_EQ(requests_.size(), 2u);

  auto none = Make(OnDemandWaiters::kDefaultMaxWaiting, /*lookups=*/false);
  RecordingWaiter d;
  auto wd = none->Wait("addr:10.96.0.1:80", d, 1s);
  EXPECT_FALSE(wd.handle.waiting());
  EXPECT_EQ(wd.outcome, LookupOutcome::kDisconnected);
  EXPECT_TRUE(d.outcomes.empty());
}

}  // namespace
}  // namespace meshlet::sidecar::listener

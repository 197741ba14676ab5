#include "tests/e2e/testapp/failure.h"

#include <string>

#include "common/base/fake_random.h"
#include "gtest/gtest.h"

namespace meshlet::testapp {
namespace {

// The first `n` decisions of `plan` as x (fail) and . (succeed).
std::string Decisions(FailurePlan& plan, Random& random, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += plan.NextFails(random) ? 'x' : '.';
  return out;
}

TEST(FailurePlanTest, DefaultNeverFails) {
  FakeRandom random;
  FailurePlan plan;
  EXPECT_TRUE(plan.never_fails());
  EXPECT_EQ(Decisions(plan, random, 5), ".....");
  EXPECT_EQ(plan.Describe(), "never");
}

TEST(FailurePlanTest, PatternCyclesFromTheFirstRequest) {
  FakeRandom random;
  auto plan = FailurePlan::Create("x..", 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(Decisions(*plan, random, 7), "x..x..x");
  EXPECT_EQ(plan->Describe(), "pattern x..");
}

TEST(FailurePlanTest, CountsRepeatTheNextOutcome) {
  FakeRandom random;
  auto plan = FailurePlan::Create("3x17.", 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::string first = Decisions(*plan, random, 20);
  EXPECT_EQ(first, "xxx" + std::string(17, '.'));
  EXPECT_EQ(Decisions(*plan, random, 20), first);
  auto two = FailurePlan::Create("2.1x", 0);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(Decisions(*two, random, 6), "..x..x");
}

TEST(FailurePlanTest, FractionFailsWhenTheDrawIsBelowIt) {
  FakeRandom random;
  auto plan = FailurePlan::Create("", 0.25);
  ASSERT_TRUE(plan.ok());
  random.PushDouble(0.1);
  random.PushDouble(0.5);
  random.PushDouble(0.2499);
  random.PushDouble(0.25);
  EXPECT_EQ(Decisions(*plan, random, 4), "x.x.");
  EXPECT_EQ(plan->Describe(), "fraction 0.25");
}

TEST(FailurePlanTest, PatternAndFractionBothFail) {
  FakeRandom random;
  auto plan = FailurePlan::Create(".x", 0.5);
  ASSERT_TRUE(plan.ok());
  random.PushDouble(0.9);  // request 0: pattern succeeds, draw succeeds
  random.PushDouble(0.9);  // request 1: pattern fails
  random.PushDouble(0.1);  // request 2: pattern succeeds, draw fails
  EXPECT_EQ(Decisions(*plan, random, 3), ".xx");
  EXPECT_EQ(plan->Describe(), "pattern .x, fraction 0.5");
}

TEST(FailurePlanTest, AlwaysFails) {
  FakeRandom random;
  auto plan = FailurePlan::Create("x", 0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(Decisions(*plan, random, 3), "xxx");
  auto certain = FailurePlan::Create("", 1);
  ASSERT_TRUE(certain.ok());
  random.PushDouble(0.999999);
  EXPECT_EQ(Decisions(*certain, random, 2), "xx");
}

TEST(FailurePlanTest, BadPlansAreRefusedWithTheReason) {
  auto error = [](absl::string_view pattern, double fraction) {
    auto plan = FailurePlan::Create(pattern, fraction);
    return plan.ok() ? std::string("ok") : std::string(plan.status().message());
  };
  EXPECT_EQ(error("x-x", 0),
            "failure pattern \"x-x\": unexpected '-' at 2; use x (fail), . (succeed) and counts, "
            "as in 3x17.");
  EXPECT_EQ(error("3", 0), "failure pattern \"3\" ends with a count; add x or .");
  EXPECT_EQ(error("0x", 0), "failure pattern \"0x\": a count of 0 at 2");
  EXPECT_EQ(error("100001x", 0), "failure pattern \"100001x\" is longer than 100000 requests");
  EXPECT_EQ(error("99999x2.", 0), "failure pattern \"99999x2.\" is longer than 100000 requests");
  EXPECT_EQ(error("", 1.5), "failure fraction 1.5 is not between 0 and 1");
  EXPECT_EQ(error("", -0.1), "failure fraction -0.1 is not between 0 and 1");
  EXPECT_EQ(error("100000x", 0), "ok");
}

}  // namespace
}  // namespace meshlet::testapp

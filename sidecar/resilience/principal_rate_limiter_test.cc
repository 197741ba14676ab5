#include "sidecar/resilience/principal_rate_limiter.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace meshlet::sidecar::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr absl::string_view kA = "spiffe://mesh.local/ns/default/sa/a";
constexpr absl::string_view kB = "spiffe://mesh.local/ns/default/sa/b";

int Admitted(PrincipalRateLimiter& limiter, absl::string_view principal, MonotonicTime now,
             int attempts) {
  int n = 0;
  for (int i = 0; i < attempts; ++i) n += limiter.TryTake(principal, now).admitted;
  return n;
}

TEST(PrincipalRateLimiterTest, EachPrincipalHasItsOwnBucket) {
  PrincipalRateLimiter limiter({.bucket = {.requests_per_second = 10, .burst = 5}});
  const MonotonicTime t0{seconds(100)};
  EXPECT_EQ(Admitted(limiter, kA, t0, 20), 5);
  // A spent its burst; B is untouched by that.
  EXPECT_EQ(Admitted(limiter, kB, t0, 20), 5);
  SharedTokenBucket::Result refused = limiter.TryTake(kA, t0);
  EXPECT_FALSE(refused.admitted);
  EXPECT_EQ(refused.retry_after, milliseconds(100));  // one token at 10/s
  // One second later each has earned exactly ten more.
  const MonotonicTime t1 = t0 + seconds(1);
  EXPECT_EQ(Admitted(limiter, kA, t1, 50), 5);  // the burst caps what accrued
  EXPECT_EQ(limiter.principals(), 2u);
}

TEST(PrincipalRateLimiterTest, CallersWithoutIdentityShareOneBucket) {
  PrincipalRateLimiter limiter({.bucket = {.requests_per_second = 1, .burst = 3}});
  const MonotonicTime t0{seconds(5)};
  EXPECT_EQ(Admitted(limiter, "", t0, 2), 2);
  EXPECT_EQ(Admitted(limiter, "", t0, 2), 1);
  EXPECT_EQ(Admitted(limiter, kA, t0, 4), 3);
}

TEST(PrincipalRateLimiterTest, AFloodOfIdentitiesCannotGrowMemoryPastTheBound) {
  PrincipalRateLimiter limiter(
      {.bucket = {.requests_per_second = 1, .burst = 1}, .max_principals = 100});
  const MonotonicTime t0{seconds(1)};
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(limiter.TryTake(absl::StrCat("spiffe://flood/", i), t0).admitted);
  }
  EXPECT_EQ(limiter.principals(), 100u);
  EXPECT_EQ(limiter.evictions(), 9900u);
}

TEST(PrincipalRateLimiterTest, LeastRecentlyUsedGoesFirst) {
  PrincipalRateLimiter limiter(
      {.bucket = {.requests_per_second = 1, .burst = 1}, .max_principals = 2});
  const MonotonicTime t0{seconds(1)};
  EXPECT_TRUE(limiter.TryTake(kA, t0).admitted);
  EXPECT_TRUE(limiter.TryTake(kB, t0).admitted);
  EXPECT_FALSE(limiter.TryTake(kA, t0).admitted);           // A is now the most recently used
  EXPECT_TRUE(limiter.TryTake("spiffe://c", t0).admitted);  // evicts B, not A
  EXPECT_FALSE(limiter.TryTake(kA, t0).admitted);           // A kept its spent bucket
  EXPECT_EQ(limiter.evictions(), 1u);
  // B was evicted: it comes back with a full bucket (the documented cost of the bound).
  EXPECT_TRUE(limiter.TryTake(kB, t0).admitted);
}

}  // namespace
}  // namespace meshlet::sidecar::resilience

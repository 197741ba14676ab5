#include "common/http/h2/abuse_bucket.h"

#include <chrono>

#include "gtest/gtest.h"

namespace meshlet::http::h2::codec_internal {
namespace {

const MonotonicTime kStart = MonotonicTime() + std::chrono::hours(1);

TEST(AbuseBucketTest, BurstThenEmpty) {
  AbuseBucket b;
  b.Start(/*burst=*/3, /*rate=*/1, kStart);
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_FALSE(b.Take(kStart));
}

TEST(AbuseBucketTest, RefillsWithTimeUpToTheBurst) {
  AbuseBucket b;
  b.Start(/*burst=*/2, /*rate=*/4, kStart);
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_FALSE(b.Take(kStart));
  // A quarter second at 4 a second: one token.
  const MonotonicTime later = kStart + std::chrono::milliseconds(250);
  EXPECT_TRUE(b.Take(later));
  EXPECT_FALSE(b.Take(later));
  // A long pause fills the bucket to its burst, not beyond.
  const MonotonicTime much_later = later + std::chrono::seconds(60);
  EXPECT_TRUE(b.Take(much_later));
  EXPECT_TRUE(b.Take(much_later));
  EXPECT_FALSE(b.Take(much_later));
}

TEST(AbuseBucketTest, CreditGivesATokenBackUpToTheBurst) {
  AbuseBucket b;
  b.Start(/*burst=*/1, /*rate=*/0, kStart);
  b.Credit();  // already full: stays at one
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_FALSE(b.Take(kStart));
  b.Credit();
  EXPECT_TRUE(b.Take(kStart));
  EXPECT_FALSE(b.Take(kStart));
}

TEST(AbuseBucketTest, ZeroBurstIsNoLimit) {
  AbuseBucket b;
  b.Start(/*burst=*/0, /*rate=*/0, kStart);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(b.Take(kStart));
}

}  // namespace
}  // namespace meshlet::http::h2::codec_internal

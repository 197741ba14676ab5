#include "common/base/status.h"

#include <gtest/gtest.h>

namespace meshlet {
namespace {

absl::StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return absl::InvalidArgumentError("must be > 0");
  return v;
}

absl::Status CheckBoth(int a, int b) {
  RETURN_IF_ERROR(ParsePositive(a));
  RETURN_IF_ERROR(b > 100 ? absl::OutOfRangeError("too big") : absl::OkStatus());
  return absl::OkStatus();
}

absl::StatusOr<int> Sum(int a, int b) {
  ASSIGN_OR_RETURN(int x, ParsePositive(a));
  ASSIGN_OR_RETURN(const int y, ParsePositive(b));
  return x + y;
}

TEST(StatusTest, ReturnIfErrorPassesOkAndReturnsFirstError) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(0, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckBoth(1, 200).code(), absl::StatusCode::kOutOfRange);
}

TEST(StatusTest, AssignOrReturnMovesValueOrReturnsError) {
  EXPECT_EQ(*Sum(2, 3), 5);
  absl::StatusOr<int> bad = Sum(2, -1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "must be > 0");
}

TEST(StatusTest, AssignOrReturnWorksWithMoveOnlyTypes) {
  auto make = []() -> absl::StatusOr<std::unique_ptr<int>> { return std::make_unique<int>(7); };
  auto use = [&]() -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(std::unique_ptr<int> p, make());
    return *p;
  };
  EXPECT_EQ(*use(), 7);
}

TEST(StatusTest, AnnotatePrefixesErrorsOnly) {
  EXPECT_TRUE(Annotate(absl::OkStatus(), "where").ok());
  absl::Status s = Annotate(absl::InvalidArgumentError("bad port"), "listeners[0].port");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "listeners[0].port: bad port");
}

}  // namespace
}  // namespace meshlet

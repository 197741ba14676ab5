#include "common/base/time_text.h"

#include <gtest/gtest.h>

#include <string>

namespace meshlet {
namespace {

TEST(Rfc3339TextTest, UtcWithTheFractionDigitsTheInstantHas) {
  const absl::Time t = absl::FromUnixSeconds(1795688000);  // 2026-11-26T10:13:20Z
  EXPECT_EQ(Rfc3339Text(t), "2026-11-26T10:13:20+00:00");
  EXPECT_EQ(Rfc3339Text(t + absl::Milliseconds(250)), "2026-11-26T10:13:20.25+00:00");
  EXPECT_EQ(Rfc3339Text(t + absl::Nanoseconds(1)), "2026-11-26T10:13:20.000000001+00:00");
}

TEST(Rfc3339TextTest, NeverIsEmpty) { EXPECT_EQ(Rfc3339Text(absl::InfinitePast()), ""); }

TEST(Rfc3339TextTest, ParsesBackToTheSameInstant) {
  const absl::Time t = absl::FromUnixSeconds(1795688000) + absl::Microseconds(123456);
  absl::Time parsed;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, Rfc3339Text(t), &parsed, &error)) << error;
  EXPECT_EQ(parsed, t);
}

}  // namespace
}  // namespace meshlet

#include "sidecar/router/deadline_headers.h"

#include <gtest/gtest.h>

#include <string>

#include "common/base/fake_clock.h"
#include "sidecar/resilience/deadline.h"

namespace meshlet::sidecar::router {
namespace {

using resilience::Deadline;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

Duration ParseOk(absl::string_view text) {
  absl::StatusOr<Duration> d = ParseGrpcTimeout(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  return d.ok() ? *d : Duration::min();
}

TEST(GrpcTimeoutTest, ParsesEveryUnit) {
  EXPECT_EQ(ParseOk("1H"), hours(1));
  EXPECT_EQ(ParseOk("2M"), minutes(2));
  EXPECT_EQ(ParseOk("3S"), seconds(3));
  EXPECT_EQ(ParseOk("250m"), milliseconds(250));
  EXPECT_EQ(ParseOk("7u"), microseconds(7));
  EXPECT_EQ(ParseOk("99n"), nanoseconds(99));
  EXPECT_EQ(ParseOk("99999999S"), seconds(99999999));
  EXPECT_EQ(ParseOk("00000001m"), milliseconds(1));  // leading zeros count as digits
}

TEST(GrpcTimeoutTest, ZeroMeansAlreadyExpired) {
  EXPECT_EQ(ParseOk("0n"), Duration::zero());
  EXPECT_EQ(ParseOk("0H"), Duration::zero());
}

TEST(GrpcTimeoutTest, RejectsMalformedValues) {
  for (absl::string_view bad : {"", "S", "1", "10", "1s", "1h", "1x", "1 S", " 1S", "1S ", "-1S",
                                "+1S", "1.5S", "S1", "123456789S", "0000000001m", "1e3m"}) {
    EXPECT_FALSE(ParseGrpcTimeout(bad).ok()) << "'" << bad << "'";
  }
}

TEST(GrpcTimeoutTest, OverflowSaturates) {
  // 99999999 hours is about 1.1e4 years: more than int64 nanoseconds hold.
  EXPECT_EQ(ParseOk("99999999H"), Duration::max());
  EXPECT_EQ(ParseOk("99999999M"), minutes(99999999));  // about 190 years: still fits
  // 2562047 hours fits (int64 ns covers about 2562047.8 hours); 2562048 does not.
  EXPECT_EQ(ParseOk("2562047H"), hours(2562047));
  EXPECT_EQ(ParseOk("2562048H"), Duration::max());
}

TEST(GrpcTimeoutTest, FormatsInTheFinestUnitThatFitsEightDigits) {
  EXPECT_EQ(FormatGrpcTimeout(Duration::zero()).view(), "0n");
  EXPECT_EQ(FormatGrpcTimeout(nanoseconds(-5)).view(), "0n");
  EXPECT_EQ(FormatGrpcTimeout(nanoseconds(99999999)).view(), "99999999n");
  EXPECT_EQ(FormatGrpcTimeout(nanoseconds(100000000)).view(), "100000u");
  EXPECT_EQ(FormatGrpcTimeout(seconds(15)).view(), "15000000u");
  EXPECT_EQ(FormatGrpcTimeout(seconds(100)).view(), "100000m");
  EXPECT_EQ(FormatGrpcTimeout(hours(30)).view(), "108000S");
  EXPECT_EQ(FormatGrpcTimeout(Duration::max()).view(), "2562047H");
  // Rounded down, never up: 1.9999999 s in microseconds.
  EXPECT_EQ(FormatGrpcTimeout(nanoseconds(1999999999)).view(), "1999999u");
}

TEST(GrpcTimeoutTest, RoundTripIsExactBelowTheNanosecondLimitAndNeverGrows) {
  for (int64_t ns : {int64_t{0}, int64_t{1}, int64_t{12345}, int64_t{99999999}}) {
    EXPECT_EQ(ParseOk(FormatGrpcTimeout(nanoseconds(ns)).view()), nanoseconds(ns));
  }
  for (Duration d : {Duration(nanoseconds(100000001)), Duration(milliseconds(1234567)),
                     Duration(seconds(86400 * 365)), Duration(hours(2000000)), Duration::max()}) {
    const HeaderValueText text = FormatGrpcTimeout(d);
    const Duration back = ParseOk(text.view());
    EXPECT_LE(back, d) << text.view();
    // Less than one unit is lost, and a unit is at most 1000x the finer one that did not fit.
    EXPECT_GE(back, d - d / 99999 - nanoseconds(1)) << text.view();
  }
}

TEST(MeshletDeadlineTest, ParsesMilliseconds) {
  EXPECT_EQ(*ParseMeshletDeadline("0"), Duration::zero());
  EXPECT_EQ(*ParseMeshletDeadline("1500"), milliseconds(1500));
  EXPECT_EQ(*ParseMeshletDeadline("0042"), milliseconds(42));
  EXPECT_EQ(*ParseMeshletDeadline("9999999999"), milliseconds(9999999999));
  for (absl::string_view bad : {"", "-1", "+1", "1.5", "1ms", " 1", "1 ", "12345678901", "x"}) {
    EXPECT_FALSE(ParseMeshletDeadline(bad).ok()) << "'" << bad << "'";
  }
}

TEST(MeshletDeadlineTest, FormatsWholeMillisecondsRoundedDown) {
  EXPECT_EQ(FormatMeshletDeadline(milliseconds(1500)).view(), "1500");
  EXPECT_EQ(FormatMeshletDeadline(microseconds(999)).view(), "0");
  EXPECT_EQ(FormatMeshletDeadline(nanoseconds(2999999)).view(), "2");
  EXPECT_EQ(FormatMeshletDeadline(seconds(-1)).view(), "0");
  EXPECT_EQ(FormatMeshletDeadline(Duration::max()).view(), "9999999999");
  EXPECT_EQ(*ParseMeshletDeadline(FormatMeshletDeadline(milliseconds(777)).view()),
            milliseconds(777));
}

TEST(CallerDeadlineTest, SmallerOfTheTwoHeadersWinsAndBadOnesAreFlagged) {
  CallerDeadline both = ParseCallerDeadline("2S", "1500");
  EXPECT_EQ(both.remaining, milliseconds(1500));
  EXPECT_FALSE(both.grpc_timeout_invalid);
  EXPECT_FALSE(both.meshlet_deadline_invalid);

  CallerDeadline bad_grpc = ParseCallerDeadline("2s", "1500");
  EXPECT_EQ(bad_grpc.remaining, milliseconds(1500));
  EXPECT_TRUE(bad_grpc.grpc_timeout_invalid);

  CallerDeadline bad_meshlet = ParseCallerDeadline("100m", "soon");
  EXPECT_EQ(bad_meshlet.remaining, milliseconds(100));
  EXPECT_TRUE(bad_meshlet.meshlet_deadline_invalid);

  CallerDeadline none = ParseCallerDeadline(std::nullopt, std::nullopt);
  EXPECT_FALSE(none.remaining.has_value());
}

TEST(DeadlineTest, CallerWithNoTimeLeftIsExpiredAtOnce) {
  FakeClock clock;
  Deadline d(clock, seconds(15), *ParseGrpcTimeout("0m"));
  EXPECT_TRUE(d.Expired());
  EXPECT_EQ(d.Remaining(), Duration::zero());
}

TEST(DeadlineTest, SaturatedCallerTimeoutIsNoLimit) {
  FakeClock clock;
  Deadline d(clock, std::nullopt, *ParseGrpcTimeout("99999999H"));
  EXPECT_TRUE(d.infinite());
  Deadline with_route(clock, seconds(15), Duration::max());
  EXPECT_EQ(with_route.Remaining(), seconds(15));
}

TEST(DeadlineTest, PropagatesTheRemainderToTheNextHop) {
  FakeClock clock;
  Deadline d(clock, seconds(15), *ParseMeshletDeadline("3000"));
  clock.Advance(milliseconds(1250));
  EXPECT_EQ(FormatMeshletDeadline(d.Remaining()).view(), "1750");
  EXPECT_EQ(FormatGrpcTimeout(d.Remaining()).view(), "1750000u");
  // The next hop, with no time passing on the wire, sees the same remainder.
  FakeClock next_hop;
  CallerDeadline parsed = ParseCallerDeadline(FormatGrpcTimeout(d.Remaining()).view(),
                                              FormatMeshletDeadline(d.Remaining()).view());
  Deadline next(next_hop, seconds(15), parsed.remaining);
  EXPECT_EQ(next.Remaining(), milliseconds(1750));
}

}  // namespace
}  // namespace meshlet::sidecar::router

#include "common/net/ip_prefix.h"

#include <gtest/gtest.h>

namespace meshlet::net {
namespace {

TEST(IpAddressTest, ParsesAndPrintsCanonically) {
  absl::StatusOr<IpAddress> v4 = IpAddress::Parse("240.240.0.7");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->ToString(), "240.240.0.7");
  absl::StatusOr<IpAddress> v6 = IpAddress::Parse("FD00:0:0::0001");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_FALSE(v6->is_v4());
  EXPECT_EQ(v6->ToString(), "fd00::1");
  EXPECT_EQ(*v6, *IpAddress::Parse("fd00::1"));
  EXPECT_LT(*v4, *v6);  // IPv4 first
  EXPECT_LT(*IpAddress::Parse("10.0.0.2"), *IpAddress::Parse("10.0.0.10"));
}

TEST(IpAddressTest, FromNetworkOrderBytes) {
  const uint8_t v4[4] = {10, 1, 2, 3};
  EXPECT_EQ(IpAddress::FromV4Bytes(v4), *IpAddress::Parse("10.1.2.3"));
  EXPECT_TRUE(IpAddress::FromV4Bytes(v4).is_v4());
  uint8_t v6[16] = {0xfd, 0x00, 0x02, 0x40};
  v6[15] = 1;
  EXPECT_EQ(IpAddress::FromV6Bytes(v6), *IpAddress::Parse("fd00:240::1"));
  EXPECT_FALSE(IpAddress::FromV6Bytes(v6).is_v4());
}

TEST(IpAddressTest, RefusesWhatIsNotAnAddress) {
  for (const char* text : {"", "10.0.0", "10.0.0.256", "10.0.0.1:80", "[::1]", "fe80::1%eth0",
                           "10.0.0.0/8", "host.example", "01.2.3.4", "::g"}) {
    absl::StatusOr<IpAddress> parsed = IpAddress::Parse(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.status().message().find("is not an IP address"), std::string::npos);
  }
}

TEST(IpPrefixTest, ParsesRanges) {
  absl::StatusOr<IpPrefix> range = IpPrefix::Parse("240.240.0.0/16");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->length(), 16);
  EXPECT_EQ(range->Size(), 65536u);
  EXPECT_EQ(range->ToString(), "240.240.0.0/16");
  absl::StatusOr<IpPrefix> one = IpPrefix::Parse("10.1.2.3");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->ToString(), "10.1.2.3/32");
  EXPECT_EQ(one->Size(), 1u);
  absl::StatusOr<IpPrefix> v6 = IpPrefix::Parse("fd00:10::/112");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->Size(), 65536u);
  EXPECT_EQ(IpPrefix::Parse("fd00::/48")->Size(), UINT64_MAX);
  EXPECT_EQ(IpPrefix::Parse("0.0.0.0/0")->Size(), uint64_t{1} << 32);
}

TEST(IpPrefixTest, RefusesBadRangesSayingWhy) {
  absl::StatusOr<IpPrefix> host_bits = IpPrefix::Parse("240.240.0.1/16");
  ASSERT_FALSE(host_bits.ok());
  EXPECT_EQ(host_bits.status().message(),
            "\"240.240.0.1/16\" has bits set past the prefix length; the range is 240.240.0.0/16");
  absl::StatusOr<IpPrefix> too_long = IpPrefix::Parse("10.0.0.0/33");
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().message(), "\"10.0.0.0/33\": the prefix length must be 0 to 32");
  for (const char* text : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "fd00::/129", "x/8", "/8"}) {
    EXPECT_FALSE(IpPrefix::Parse(text).ok()) << text;
  }
}

TEST(IpPrefixTest, ContainsAndOverlaps) {
  const IpPrefix range = *IpPrefix::Parse("240.240.0.0/16");
  EXPECT_TRUE(range.Contains(*IpAddress::Parse("240.240.255.255")));
  EXPECT_FALSE(range.Contains(*IpAddress::Parse("240.241.0.0")));
  EXPECT_FALSE(range.Contains(*IpAddress::Parse("::ffff:240.240.0.1")));  // another family
  EXPECT_TRUE(range.Overlaps(*IpPrefix::Parse("240.0.0.0/4")));
  EXPECT_TRUE(IpPrefix::Parse("240.0.0.0/4")->Overlaps(range));
  EXPECT_FALSE(range.Overlaps(*IpPrefix::Parse("224.0.0.0/4")));
  EXPECT_TRUE(IpPrefix::Parse("fe80::/10")->Contains(*IpAddress::Parse("febf::1")));
  EXPECT_FALSE(IpPrefix::Parse("fe80::/10")->Contains(*IpAddress::Parse("fec0::1")));
  EXPECT_TRUE(IpPrefix::Parse("0.0.0.0/0")->Contains(*IpAddress::Parse("1.2.3.4")));
}

TEST(IpPrefixTest, AtCountsFromTheNetworkAddress) {
  const IpPrefix range = *IpPrefix::Parse("240.240.0.0/16");
  EXPECT_EQ(range.At(0)->ToString(), "240.240.0.0");
  EXPECT_EQ(range.At(1)->ToString(), "240.240.0.1");
  EXPECT_EQ(range.At(256)->ToString(), "240.240.1.0");
  EXPECT_EQ(range.At(65535)->ToString(), "240.240.255.255");
  EXPECT_FALSE(range.At(65536).has_value());
  const IpPrefix v6 = *IpPrefix::Parse("fd00::/64");
  EXPECT_EQ(v6.At(0x1234)->ToString(), "fd00::1234");
  EXPECT_EQ(v6.At(UINT64_MAX - 1)->ToString(), "fd00::ffff:ffff:ffff:fffe");
  EXPECT_EQ(IpPrefix::Of(*IpAddress::Parse("10.1.2.3"), 8).ToString(), "10.0.0.0/8");
}

}  // namespace
}  // namespace meshlet::net

#include "common/net/interfaces.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace meshlet::net {
namespace {

TEST(InterfaceAddressesTest, OnlyAddressesOtherHostsCanReachIPv4First) {
  absl::StatusOr<std::vector<Address>> addresses = InterfaceAddresses();
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  bool seen_v6 = false;
  for (size_t i = 0; i < addresses->size(); ++i) {
    const Address& a = (*addresses)[i];
    SCOPED_TRACE(a.ToString());
    EXPECT_TRUE(a.is_ip());
    EXPECT_FALSE(a.IsLoopback());
    EXPECT_EQ(a.port(), 0);
    EXPECT_FALSE(absl::StartsWith(a.ip(), "169.254.")) << "link-local";
    EXPECT_FALSE(absl::StartsWith(a.ip(), "fe8")) << "link-local";
    if (a.family() == Address::Family::kIPv6) seen_v6 = true;
    if (seen_v6) {
      EXPECT_EQ(a.family(), Address::Family::kIPv6) << "IPv4 after IPv6";
    }
    for (size_t j = 0; j < i; ++j) {
      EXPECT_NE((*addresses)[j], a) << "listed twice";
    }
  }
}

}  // namespace
}  // namespace meshlet::net

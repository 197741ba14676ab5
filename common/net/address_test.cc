#include "common/net/address.h"

#include <netinet/in.h>
#include <sys/un.h>

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

TEST(AddressTest, ParsesIPv4) {
  absl::StatusOr<Address> a = Address::Parse("127.0.0.1:8080");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), Address::Family::kIPv4);
  EXPECT_EQ(a->ip(), "127.0.0.1");
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->ToString(), "127.0.0.1:8080");
  EXPECT_TRUE(a->IsLoopback());
  EXPECT_EQ(a->sockaddr_len(), sizeof(sockaddr_in));
}

TEST(AddressTest, ParsesIPv6) {
  absl::StatusOr<Address> a = Address::Parse("[::1]:443");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), Address::Family::kIPv6);
  EXPECT_EQ(a->ip(), "::1");
  EXPECT_EQ(a->port(), 443);
  EXPECT_EQ(a->ToString(), "[::1]:443");
  EXPECT_TRUE(a->IsLoopback());

  absl::StatusOr<Address> full = Address::Parse("[2001:db8::1:0]:0");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->ToString(), "[2001:db8::1:0]:0");
  EXPECT_FALSE(full->IsLoopback());

  absl::StatusOr<Address> zoned = Address::Parse("[fe80::1%1]:80");
  ASSERT_TRUE(zoned.ok()) << zoned.status();
  EXPECT_EQ(zoned->ToString(), "[fe80::1%1]:80");
}

TEST(AddressTest, ParsesUnixPath) {
  absl::StatusOr<Address> a = Address::Parse("unix:/run/meshlet.sock");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), Address::Family::kUnix);
  EXPECT_EQ(a->unix_path(), "/run/meshlet.sock");
  EXPECT_EQ(a->port(), 0);
  EXPECT_EQ(a->ToString(), "unix:/run/meshlet.sock");
  EXPECT_FALSE(a->is_ip());
}

TEST(AddressTest, RoundTrips) {
  for (const char* text :
       {"0.0.0.0:0", "10.1.2.3:65535", "255.255.255.255:65535", "192.168.100.9:443", "[::]:15001",
        "[::ffff:1.2.3.4]:80", "unix:/tmp/x"}) {
    absl::StatusOr<Address> a = Address::Parse(text);
    ASSERT_TRUE(a.ok()) << text << ": " << a.status();
    EXPECT_EQ(a->ToString(), text);
    std::string formatted = "replaced";
    a->FormatTo(formatted);
    EXPECT_EQ(formatted, text);
    absl::StatusOr<Address> b = Address::Parse(a->ToString());
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*a, *b);
  }
}

struct BadCase {
  const char* text;
  const char* expected_fragment;
};

TEST(AddressTest, RejectsBadInputWithAClearReason) {
  const BadCase cases[] = {
      {"", "empty"},
      {"127.0.0.1", "missing ':port'"},
      {"127.0.0.1:", "empty port"},
      {"127.0.0.1:http", "not a number"},
      {"127.0.0.1:-1", "not a number"},
      {"127.0.0.1:65536", "out of range"},
      {"127.0.0.1:123456", "not a number"},
      {":80", "empty host"},
      {"localhost:80", "not a numeric IPv4 address"},
      {"256.0.0.1:80", "not a numeric IPv4 address"},
      {"1.2.3:80", "not a numeric IPv4 address"},
      {"::1:443", "need brackets"},
      {"[::1]", "needs ':port'"},
      {"[::1]443", "needs ':port'"},
      {"[::1:443", "missing ']'"},
      {"[1.2.3.4]:80", "only for IPv6"},
      {"[::g]:80", "not a valid IPv6 address"},
      {"[fe80::1%]:80", "empty zone"},
      {"[fe80::1%nosuchif0]:80", "not a known interface"},
      {"unix:", "path is empty"},
      {"[]:80", "empty host"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<Address> a = Address::Parse(c.text);
    ASSERT_FALSE(a.ok()) << "'" << c.text << "' parsed as " << a->ToString();
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(a.status().message().find(c.expected_fragment), absl::string_view::npos)
        << "'" << c.text << "': " << a.status().message();
  }
  std::string long_path = "unix:/" + std::string(200, 'p');
  EXPECT_NE(Address::Parse(long_path).status().message().find("limit"), absl::string_view::npos);
  EXPECT_FALSE(Address::Parse(std::string("1.2.3.4\0:80", 10)).ok());
}

TEST(AddressTest, SockaddrRoundTrip) {
  absl::StatusOr<Address> a = Address::Parse("[::1]:9");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Address> b = Address::FromSockaddr(a->as_sockaddr(), a->sockaddr_len());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);

  absl::StatusOr<Address> u = Address::Parse("unix:/tmp/s");
  ASSERT_TRUE(u.ok());
  absl::StatusOr<Address> u2 = Address::FromSockaddr(u->as_sockaddr(), u->sockaddr_len());
  ASSERT_TRUE(u2.ok()) << u2.status();
  EXPECT_EQ(u2->unix_path(), "/tmp/s");

  sockaddr_in short_in{};
  short_in.sin_family = AF_INET;
  EXPECT_FALSE(Address::FromSockaddr(reinterpret_cast<sockaddr*>(&short_in), 4).ok());
  sockaddr other{};
  other.sa_family = AF_PACKET;
  EXPECT_NE(Address::FromSockaddr(&other, sizeof(other)).status().message().find("unsupported"),
            absl::string_view::npos);
  EXPECT_FALSE(Address::FromSockaddr(nullptr, 0).ok());
}

TEST(AddressTest, EqualityAndHashing) {
  Address a = *Address::Parse("10.0.0.1:80");
  Address b = *Address::Parse("10.0.0.1:81");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.WithPort(81), b);
  absl::flat_hash_set<Address> set = {a, b, a.WithPort(81)};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_NE(*Address::Parse("[::1]:80"), *Address::Parse("127.0.0.1:80"));
}

// Every endpoint of every cluster a sidecar holds carries an Address (the snapshot's
// EndpointConfig and each worker's Host): an IP one is held inline, without a sockaddr_storage.
TEST(AddressTest, IsSmall) {
  EXPECT_LE(sizeof(Address), 48u);
  const Address v6 = *Address::Parse("[fd00::1%1]:8443");
  const Address copy = v6;
  EXPECT_EQ(copy, v6);
  EXPECT_EQ(copy.sockaddr_len(), sizeof(sockaddr_in6));
  EXPECT_EQ(copy.in6()->sin6_scope_id, 1u);
  EXPECT_EQ(copy.in4(), nullptr);
  EXPECT_EQ(Address::Parse("10.0.0.1:80")->in4()->sin_port, htons(80));
}

// A unix address's sockaddr is shared by its copies and outlives the one it was parsed into.
TEST(AddressTest, UnixCopiesShareTheirSockaddr) {
  Address copy;
  {
    const Address original = *Address::Parse("unix:/run/meshlet/a.sock");
    copy = original;
    EXPECT_EQ(copy.as_sockaddr(), original.as_sockaddr());
  }
  EXPECT_EQ(copy.as_sockaddr()->sa_family, AF_UNIX);
  EXPECT_EQ(copy.unix_path(), "/run/meshlet/a.sock");
  EXPECT_EQ(copy, *Address::Parse("unix:/run/meshlet/a.sock"));
  EXPECT_NE(copy, *Address::Parse("unix:/run/meshlet/b.sock"));
  EXPECT_EQ(copy.in4(), nullptr);
  EXPECT_EQ(copy.in6(), nullptr);
  const std::string longest(sizeof(sockaddr_un::sun_path) - 1, 'p');
  EXPECT_TRUE(Address::FromUnixPath(longest).ok());
  EXPECT_FALSE(Address::FromUnixPath(longest + "p").ok());
}

TEST(AddressTest, FromIp) {
  EXPECT_EQ(Address::FromIp("::1", 5)->ToString(), "[::1]:5");
  EXPECT_EQ(Address::FromIp("1.2.3.4", 5)->ToString(), "1.2.3.4:5");
  EXPECT_FALSE(Address::FromIp("", 5).ok());
}

TEST(HostPortTest, SplitsNamesAndLiterals) {
  absl::StatusOr<HostPort> name = SplitHostPort("collector.mesh:4318");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->host, "collector.mesh");
  EXPECT_EQ(name->port, 4318);
  EXPECT_FALSE(name->unbracketed_ipv6());
  absl::StatusOr<HostPort> v6 = SplitHostPort("[fd00::5]:9411");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "fd00::5");
  EXPECT_TRUE(v6->bracketed);
  EXPECT_FALSE(v6->unbracketed_ipv6());
  absl::StatusOr<HostPort> bare = SplitHostPort("fd00::5:9411");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->unbracketed_ipv6());
  for (const char* bad : {"collector", ":4318", "collector:", "collector:0", "collector:65536",
                          "collector:+80", "collector:123456", "collector:http"}) {
    absl::StatusOr<HostPort> split = SplitHostPort(bad);
    ASSERT_FALSE(split.ok()) << bad;
    EXPECT_EQ(split.status().message(), absl::StrCat("\"", bad, "\" is not host:port"));
  }
}

TEST(HostPortTest, ResolvesEveryAddressOfAName) {
  absl::StatusOr<std::vector<Address>> local = ResolveAll("localhost", 8080);
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_FALSE(local->empty());
  for (const Address& address : *local) EXPECT_EQ(address.port(), 8080);
  EXPECT_FALSE(ResolveAll("collector.invalid", 80).ok());
}

}  // namespace
}  // namespace meshlet::net

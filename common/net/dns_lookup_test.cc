#include "common/net/dns_lookup.h"

#include <string>

#include "common/event/loop.h"
#include "common/net/fake_dns_server.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

// A response to one question for "a.example" (type `qtype`), with `answers` appended as given.
std::string Response(uint16_t qtype, uint16_t count, const std::string& answers) {
  std::string out("\x12\x34\x81\x80\x00\x01", 6);
  out += static_cast<char>(count >> 8);
  out += static_cast<char>(count & 0xFF);
  out += std::string(4, '\0');
  out += std::string(
      "\x01"
      "a\x07"
      "example\x00",
      11);
  out += static_cast<char>(0);
  out += static_cast<char>(qtype);
  out += std::string("\x00\x01", 2);
  return out + answers;
}

std::string Record(uint16_t type, uint32_t ttl, const std::string& rdata) {
  std::string out("\xC0\x0C", 2);
  out += static_cast<char>(type >> 8);
  out += static_cast<char>(type & 0xFF);
  out += std::string("\x00\x01", 2);
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((ttl >> shift) & 0xFF);
  out += static_cast<char>(rdata.size() >> 8);
  out += static_cast<char>(rdata.size() & 0xFF);
  return out + rdata;
}

TEST(ParseDnsAnswerTest, AddressesAndTheSmallestTtlOfTheChain) {
  const std::string cname = Record(5, 30,
                                   std::string("\x01"
                                               "b\xC0\x0E",
                                               4));
  const std::string a1 = Record(1, 300, std::string("\xC6\x12\x00\x01", 4));
  const std::string a2 = Record(1, 60, std::string("\xC6\x12\x00\x02", 4));
  absl::StatusOr<DnsAnswer> answer = ParseDnsAnswer(Response(1, 3, cname + a1 + a2), 1);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->addresses.size(), 2u);
  EXPECT_EQ(answer->addresses[0].ToString(), "198.18.0.1");
  EXPECT_EQ(answer->addresses[1].ToString(), "198.18.0.2");
  EXPECT_EQ(answer->ttl, std::chrono::seconds(30));  // the CNAME's
}

TEST(ParseDnsAnswerTest, AaaaAndOtherTypesLeftOut) {
  std::string v6(16, '\0');
  v6[0] = '\xFD';
  v6[15] = '\x01';
  const std::string aaaa = Record(28, 10, v6);
  const std::string txt = Record(16, 1, std::string("\x02hi", 3));
  absl::StatusOr<DnsAnswer> answer = ParseDnsAnswer(Response(28, 2, txt + aaaa), 28);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->addresses.size(), 1u);
  EXPECT_EQ(answer->addresses[0].ToString(), "fd00::1");
  EXPECT_EQ(answer->ttl, std::chrono::seconds(10));
  // A TTL with its top bit set counts as 0 (RFC 2181).
  absl::StatusOr<DnsAnswer> odd =
      ParseDnsAnswer(Response(1, 1, Record(1, 0x80000000u, std::string("\x01\x02\x03\x04", 4))), 1);
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_EQ(odd->ttl, Duration::zero());
}

TEST(ParseDnsAnswerTest, MalformedMessagesAreErrors) {
  const std::string good = Response(1, 1, Record(1, 5, std::string("\x01\x02\x03\x04", 4)));
  for (size_t cut : {size_t{5}, size_t{20}, good.size() - 2}) {
    EXPECT_FALSE(ParseDnsAnswer(good.substr(0, cut), 1).ok()) << cut;
  }
  // An A record of 3 bytes.
  absl::StatusOr<DnsAnswer> bad = ParseDnsAnswer(Response(1, 1, Record(1, 5, "abc")), 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("3 bytes of address"), std::string::npos);
  // An empty answer is not an error.
  absl::StatusOr<DnsAnswer> empty = ParseDnsAnswer(Response(1, 0, ""), 1);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->addresses.empty());
}

absl::StatusOr<DnsAnswer> LookUp(event::Loop& loop, const FakeDnsServer& server,
                                 const std::string& name) {
  std::optional<absl::StatusOr<DnsAnswer>> got;
  DnsLookupOptions options;
  options.server = server.address();
  options.timeout = std::chrono::seconds(1);
  options.attempts = 1;
  std::unique_ptr<DnsLookup> lookup = DnsLookup::Start(
      loop, name, options, [&](absl::StatusOr<DnsAnswer> answer) { got = std::move(answer); });
  EXPECT_FALSE(got.has_value());  // never from inside Start
  EXPECT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(10)));
  return got.value_or(absl::DeadlineExceededError("no answer"));
}

TEST(DnsLookupTest, BothFamiliesFromTheGivenServer) {
  event::Loop loop;
  FakeDnsServer server;
  server.Set("api.partner.test", {.addresses = {"198.18.0.7", "fd00::7"}, .ttl = 42});
  absl::StatusOr<DnsAnswer> answer = LookUp(loop, server, "api.partner.test");
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->addresses.size(), 2u);
  EXPECT_EQ(answer->addresses[0].ToString(), "198.18.0.7");
  EXPECT_EQ(answer->addresses[1].ToString(), "fd00::7");
  EXPECT_EQ(answer->ttl, std::chrono::seconds(42));
  EXPECT_GE(server.queries_for("api.partner.test"), 2);  // A and AAAA
}

TEST(DnsLookupTest, NoSuchNameAndNoAddressAreDifferentErrors) {
  event::Loop loop;
  FakeDnsServer server;
  server.Set("empty.partner.test", {.addresses = {}, .ttl = 5});
  absl::StatusOr<DnsAnswer> missing = LookUp(loop, server, "missing.partner.test");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("missing.partner.test: no such name"),
            std::string::npos);
  absl::StatusOr<DnsAnswer> empty = LookUp(loop, server, "empty.partner.test");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kUnavailable) << empty.status();
  EXPECT_NE(empty.status().message().find("no IPv4 or IPv6 address"), std::string::npos);
}

TEST(DnsLookupTest, DestroyedBeforeTheAnswerNeverCalls) {
  event::Loop loop;
  FakeDnsServer server;
  server.Set("api.partner.test", {.addresses = {"198.18.0.7"}, .ttl = 5});
  bool called = false;
  DnsLookupOptions options;
  options.server = server.address();
  std::unique_ptr<DnsLookup> lookup = DnsLookup::Start(
      loop, "api.partner.test", options, [&](absl::StatusOr<DnsAnswer>) { called = true; });
  lookup.reset();
  loop.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace meshlet::net

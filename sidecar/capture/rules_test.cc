#include "sidecar/capture/rules.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::capture {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

Cidr C(const char* text) {
  absl::StatusOr<Cidr> cidr = ParseCidr(text);
  EXPECT_TRUE(cidr.ok()) << text << ": " << cidr.status();
  return cidr.ok() ? *cidr : Cidr{};
}

std::vector<std::string> RulesOf(const Ruleset& set, absl::string_view chain) {
  std::vector<std::string> out;
  for (const std::string& rule : set.rules) {
    if (absl::StartsWith(rule, absl::StrCat("-A ", chain, " "))) out.push_back(rule);
  }
  return out;
}

size_t IndexOf(const std::vector<std::string>& rules, absl::string_view rule) {
  auto it = std::find(rules.begin(), rules.end(), rule);
  EXPECT_NE(it, rules.end()) << rule;
  return it - rules.begin();
}

// The defaults are the contract with the sidecar's capture listeners and docs/operations.md:
// the whole batch, line for line.
TEST(BuildRules, DefaultIpv4BatchIsTheDocumentedOne) {
  EXPECT_EQ(ApplyText(BuildRules({}, Family::kIpv4), nullptr),
            "*nat\n"
            ":MESHLET_INBOUND - [0:0]\n"
            ":MESHLET_IN_REDIRECT - [0:0]\n"
            ":MESHLET_OUTPUT - [0:0]\n"
            ":MESHLET_REDIRECT - [0:0]\n"
            "-A MESHLET_INBOUND -p tcp -m tcp --dport 15000 -j RETURN\n"
            "-A MESHLET_INBOUND -p tcp -m tcp --dport 15020 -j RETURN\n"
            "-A MESHLET_INBOUND -p tcp -m tcp --dport 15021 -j RETURN\n"
            "-A MESHLET_INBOUND -p tcp -j MESHLET_IN_REDIRECT\n"
            "-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
            "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j "
            "MESHLET_INBOUND\n"
            "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j "
            "MESHLET_INBOUND\n"
            "-A MESHLET_OUTPUT -o lo -j RETURN\n"
            "-A MESHLET_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"
            "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN\n"
            "-A MESHLET_OUTPUT -j MESHLET_REDIRECT\n"
            "-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
            "-A PREROUTING -p tcp -j MESHLET_INBOUND\n"
            "-A OUTPUT -p tcp -j MESHLET_OUTPUT\n"
            "COMMIT\n");
}

TEST(BuildRules, Ipv6DiffersOnlyInTheLoopbackAddress) {
  const Ruleset v4 = BuildRules({}, Family::kIpv4);
  const Ruleset v6 = BuildRules({}, Family::kIpv6);
  EXPECT_EQ(v6.family, Family::kIpv6);
  EXPECT_EQ(v6.chains, v4.chains);
  EXPECT_EQ(v6.jumps, v4.jumps);
  ASSERT_EQ(v6.rules.size(), v4.rules.size());
  for (size_t i = 0; i < v4.rules.size(); ++i) {
    std::string expected = v4.rules[i];
    const size_t at = expected.find("127.0.0.1/32");
    if (at != std::string::npos) expected.replace(at, 12, "::1/128");
    EXPECT_EQ(v6.rules[i], expected);
  }
  EXPECT_THAT(v6.rules, ::testing::Contains(
                            "-A MESHLET_OUTPUT ! -d ::1/128 -o lo -m owner --uid-owner 1337 -j "
                            "MESHLET_INBOUND"));
}

TEST(BuildRules, ProxyIdsAndListenerPorts) {
  const Ruleset set =
      BuildRules({.proxy_uid = 0, .proxy_gid = 4242, .outbound_port = 7001, .inbound_port = 7006},
                 Family::kIpv4);
  EXPECT_THAT(RulesOf(set, kInboundRedirectChain),
              ElementsAre("-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports 7006"));
  EXPECT_THAT(RulesOf(set, kOutboundRedirectChain),
              ElementsAre("-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports 7001"));
  const std::vector<std::string> out = RulesOf(set, kOutputChain);
  EXPECT_THAT(out, ::testing::Contains("-A MESHLET_OUTPUT -m owner --uid-owner 0 -j RETURN"));
  EXPECT_THAT(out, ::testing::Contains("-A MESHLET_OUTPUT -m owner --gid-owner 4242 -j RETURN"));
  EXPECT_THAT(absl::StrJoin(out, "\n"), Not(HasSubstr("1337")));
}

TEST(BuildRules, InboundExclusionsComeFirstAndAlwaysIncludeTheSidecarsOwnPorts) {
  const Ruleset set = BuildRules({.exclude_inbound_ports = {9090, 15020, 9090, 22}}, Family::kIpv4);
  EXPECT_THAT(RulesOf(set, kInboundChain),
              ElementsAre("-A MESHLET_INBOUND -p tcp -m tcp --dport 15000 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 22 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -j MESHLET_IN_REDIRECT"));
}

TEST(BuildRules, IncludedInboundPortsOnlyAndExclusionWins) {
  const Ruleset set =
      BuildRules({.include_inbound_ports = {.all = false, .items = {8080, 9090, 15020, 8080}},
                  .exclude_inbound_ports = {9090}},
                 Family::kIpv4);
  EXPECT_THAT(RulesOf(set, kInboundChain),
              ElementsAre("-A MESHLET_INBOUND -p tcp -m tcp --dport 15000 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j RETURN",
                          "-A MESHLET_INBOUND -p tcp -m tcp --dport 8080 -j MESHLET_IN_REDIRECT"));
}

TEST(BuildRules, NoInboundPortsMeansNothingReachesTheInboundRedirect) {
  const Ruleset set = BuildRules({.include_inbound_ports = {.all = false}}, Family::kIpv4);
  for (const std::string& rule : RulesOf(set, kInboundChain)) {
    EXPECT_THAT(rule, HasSubstr("-j RETURN"));
  }
}

TEST(BuildRules, OutboundOrderOwnerThenLoopbackThenExclusionsThenCapture) {
  const Ruleset set =
      BuildRules({.exclude_outbound_ports = {5432, 5432, 6379},
                  .exclude_outbound_cidrs = {C("10.0.0.0/8"), C("fd00::/8"), C("169.254.169.254")}},
                 Family::kIpv4);
  const std::vector<std::string> out = RulesOf(set, kOutputChain);
  EXPECT_THAT(
      out,
      ElementsAre(
          "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j MESHLET_INBOUND",
          "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j MESHLET_INBOUND",
          "-A MESHLET_OUTPUT -o lo -j RETURN",
          "-A MESHLET_OUTPUT -m owner --uid-owner 1337 -j RETURN",
          "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN",
          "-A MESHLET_OUTPUT -d 10.0.0.0/8 -j RETURN",
          "-A MESHLET_OUTPUT -d 169.254.169.254/32 -j RETURN",
          "-A MESHLET_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN",
          "-A MESHLET_OUTPUT -p tcp -m tcp --dport 6379 -j RETURN",
          "-A MESHLET_OUTPUT -j MESHLET_REDIRECT"));
  // The IPv6 table gets the IPv6 range only.
  const std::vector<std::string> out6 = RulesOf(
      BuildRules({.exclude_outbound_cidrs = {C("10.0.0.0/8"), C("fd00::/8")}}, Family::kIpv6),
      kOutputChain);
  EXPECT_THAT(out6, ::testing::Contains("-A MESHLET_OUTPUT -d fd00::/8 -j RETURN"));
  EXPECT_THAT(absl::StrJoin(out6, "\n"), Not(HasSubstr("10.0.0.0")));
}

TEST(BuildRules, IncludedOutboundRangesPerFamilyAndExclusionWins) {
  const CaptureOptions options = {
      .include_outbound_cidrs = {.all = false,
                                 .items = {C("10.96.0.0/12"), C("10.0.0.0/8"), C("0.0.0.0/0")}},
      .exclude_outbound_cidrs = {C("10.0.0.0/8")}};
  const std::vector<std::string> out = RulesOf(BuildRules(options, Family::kIpv4), kOutputChain);
  ASSERT_GE(out.size(), 3u);
  EXPECT_THAT(std::vector<std::string>(out.end() - 3, out.end()),
              ElementsAre("-A MESHLET_OUTPUT -d 10.0.0.0/8 -j RETURN",
                          "-A MESHLET_OUTPUT -d 10.96.0.0/12 -j MESHLET_REDIRECT",
                          // A /0 matches everything; iptables-save prints no -d for it.
                          "-A MESHLET_OUTPUT -j MESHLET_REDIRECT"));
  // No IPv6 range listed: the IPv6 table captures no outbound traffic.
  for (const std::string& rule : RulesOf(BuildRules(options, Family::kIpv6), kOutputChain)) {
    EXPECT_THAT(rule, Not(HasSubstr("MESHLET_REDIRECT"))) << rule;
  }
}

TEST(BuildRules, TheProxysSelfCallsGoInboundBeforeLoopbackIsLeftAlone) {
  const std::vector<std::string> out = RulesOf(BuildRules({}, Family::kIpv4), kOutputChain);
  const size_t self_call =
      IndexOf(out,
              "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j "
              "MESHLET_INBOUND");
  const size_t loopback = IndexOf(out, "-A MESHLET_OUTPUT -o lo -j RETURN");
  const size_t proxy = IndexOf(out, "-A MESHLET_OUTPUT -m owner --uid-owner 1337 -j RETURN");
  const size_t capture = IndexOf(out, "-A MESHLET_OUTPUT -j MESHLET_REDIRECT");
  EXPECT_LT(self_call, loopback);
  EXPECT_LT(loopback, proxy);
  EXPECT_LT(proxy, capture);
  EXPECT_EQ(capture, out.size() - 1);
}

TEST(BuildRules, RulesAreGroupedByChainInDeclarationOrder) {
  const Ruleset set = BuildRules({.exclude_outbound_ports = {1}}, Family::kIpv4);
  std::vector<std::string> chains_in_rule_order;
  for (const std::string& rule : set.rules) {
    std::string chain = std::vector<std::string>(absl::StrSplit(rule, ' '))[1];
    if (chains_in_rule_order.empty() || chains_in_rule_order.back() != chain) {
      chains_in_rule_order.push_back(chain);
    }
  }
  EXPECT_EQ(chains_in_rule_order, set.chains);
  EXPECT_THAT(set.jumps, ElementsAre("-A PREROUTING -p tcp -j MESHLET_INBOUND",
                                     "-A OUTPUT -p tcp -j MESHLET_OUTPUT"));
}

TEST(ApplyText, JumpsAlreadyPresentAreNotAddedTwice) {
  const Ruleset set = BuildRules({}, Family::kIpv4);
  NatTable current;
  current.chains = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "MESHLET_INBOUND"};
  current.rules = {"-A OUTPUT -p tcp -j MESHLET_OUTPUT", "-A OUTPUT -p udp -j RETURN"};
  const std::string text = ApplyText(set, &current);
  EXPECT_THAT(text, HasSubstr("-A PREROUTING -p tcp -j MESHLET_INBOUND\n"));
  EXPECT_THAT(text, Not(HasSubstr("-A OUTPUT -p tcp -j MESHLET_OUTPUT")));
  // Declaring the chains again empties them: a second run replaces, never appends.
  EXPECT_THAT(text, HasSubstr(":MESHLET_OUTPUT - [0:0]\n"));
}

TEST(CleanupText, DryRunRemovesEverything) {
  EXPECT_EQ(CleanupText(nullptr),
            "*nat\n"
            "-D PREROUTING -p tcp -j MESHLET_INBOUND\n"
            "-D OUTPUT -p tcp -j MESHLET_OUTPUT\n"
            "-F MESHLET_INBOUND\n"
            "-F MESHLET_IN_REDIRECT\n"
            "-F MESHLET_OUTPUT\n"
            "-F MESHLET_REDIRECT\n"
            "-X MESHLET_INBOUND\n"
            "-X MESHLET_IN_REDIRECT\n"
            "-X MESHLET_OUTPUT\n"
            "-X MESHLET_REDIRECT\n"
            "COMMIT\n");
}

TEST(CleanupText, RemovesOnlyWhatIsThereAndNothingElse) {
  NatTable current;
  current.chains = {"PREROUTING", "OUTPUT", "KUBE_THING", "MESHLET_OUTPUT", "MESHLET_REDIRECT"};
  current.rules = {"-A OUTPUT -p tcp -j MESHLET_OUTPUT", "-A OUTPUT -p tcp -j KUBE_THING",
                   "-A OUTPUT -p tcp -j MESHLET_OUTPUT", "-A MESHLET_OUTPUT -j MESHLET_REDIRECT"};
  EXPECT_EQ(CleanupText(&current),
            "*nat\n"
            "-D OUTPUT -p tcp -j MESHLET_OUTPUT\n"
            "-D OUTPUT -p tcp -j MESHLET_OUTPUT\n"
            "-F MESHLET_OUTPUT\n"
            "-F MESHLET_REDIRECT\n"
            "-X MESHLET_OUTPUT\n"
            "-X MESHLET_REDIRECT\n"
            "COMMIT\n");
}

TEST(CleanupText, NothingToRemoveIsEmpty) {
  NatTable current;
  current.chains = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};
  current.rules = {"-A OUTPUT -p udp -j RETURN"};
  EXPECT_EQ(CleanupText(&current), "");
}

constexpr absl::string_view kSave =
    "# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024\n"
    "*filter\n"
    ":INPUT ACCEPT [0:0]\n"
    "-A INPUT -j DROP\n"
    "COMMIT\n"
    "*nat\n"
    ":PREROUTING ACCEPT [12:720]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":MESHLET_OUTPUT - [0:0]\n"
    "-A OUTPUT -p tcp -j MESHLET_OUTPUT\n"
    "-A MESHLET_OUTPUT -o lo -j RETURN\n"
    "COMMIT\n"
    "# Completed on Mon Jan  1 00:00:00 2024\n";

TEST(ParseNatTable, ReadsTheNatSectionOnly) {
  absl::StatusOr<NatTable> table = ParseNatTable(kSave);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_THAT(table->chains, ElementsAre("PREROUTING", "OUTPUT", "MESHLET_OUTPUT"));
  EXPECT_THAT(table->rules, ElementsAre("-A OUTPUT -p tcp -j MESHLET_OUTPUT",
                                        "-A MESHLET_OUTPUT -o lo -j RETURN"));
  EXPECT_THAT(table->RulesOf("MESHLET_OUTPUT"), ElementsAre("-A MESHLET_OUTPUT -o lo -j RETURN"));
  EXPECT_TRUE(table->HasChain("OUTPUT"));
  EXPECT_FALSE(table->HasChain("INPUT"));  // the filter table's
}

TEST(ParseNatTable, NoNatSectionIsAnEmptyTableAndGarbageIsAnError) {
  absl::StatusOr<NatTable> empty = ParseNatTable("");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->chains, IsEmpty());
  absl::StatusOr<NatTable> bad = ParseNatTable("*nat\n:OUTPUT ACCEPT [0:0]\nwhat is this\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 3"));
}

NatTable Applied(const Ruleset& set) {
  NatTable table;
  table.chains = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};
  table.chains.insert(table.chains.end(), set.chains.begin(), set.chains.end());
  table.rules = set.jumps;
  table.rules.insert(table.rules.end(), set.rules.begin(), set.rules.end());
  return table;
}

TEST(CheckApplied, AcceptsTheRulesAndListsRewordedOnes) {
  const Ruleset set = BuildRules({}, Family::kIpv4);
  NatTable after = Applied(set);
  std::vector<std::string> reworded;
  EXPECT_TRUE(CheckApplied(set, after, &reworded).ok());
  EXPECT_THAT(reworded, IsEmpty());
  // Another iptables version might print a rule differently: a note, not an error.
  std::replace(after.rules.begin(), after.rules.end(),
               std::string("-A MESHLET_OUTPUT -o lo -j RETURN"),
               std::string("-A MESHLET_OUTPUT -o lo -m comment -j RETURN"));
  EXPECT_TRUE(CheckApplied(set, after, &reworded).ok());
  EXPECT_THAT(reworded,
              ElementsAre(HasSubstr("reads back as: -A MESHLET_OUTPUT -o lo -m comment")));
}

TEST(CheckApplied, MissingChainsRulesOrJumpsAreErrors) {
  const Ruleset set = BuildRules({}, Family::kIpv6);
  NatTable no_chain = Applied(set);
  no_chain.chains.pop_back();
  EXPECT_THAT(CheckApplied(set, no_chain, nullptr).message(),
              HasSubstr("IPv6 nat table does not hold the rules just applied: chain "
                        "MESHLET_REDIRECT is missing"));
  NatTable short_chain = Applied(set);
  short_chain.rules.pop_back();
  EXPECT_THAT(CheckApplied(set, short_chain, nullptr).message(),
              HasSubstr("chain MESHLET_REDIRECT has 0 rules instead of 1"));
  NatTable no_jump = Applied(set);
  no_jump.rules.erase(no_jump.rules.begin());
  EXPECT_THAT(CheckApplied(set, no_jump, nullptr).message(),
              HasSubstr("the jump \"-A PREROUTING -p tcp -j MESHLET_INBOUND\" is missing"));
}

TEST(ParseCidr, CanonicalTextAsIptablesPrintsIt) {
  EXPECT_EQ(C("10.0.0.0/8").text, "10.0.0.0/8");
  EXPECT_EQ(C("10.1.2.3/8").text, "10.0.0.0/8");
  EXPECT_EQ(C("10.1.2.3").text, "10.1.2.3/32");
  EXPECT_EQ(C(" 192.168.1.129/25 ").text, "192.168.1.128/25");
  EXPECT_EQ(C("0.0.0.0/0").prefix_length, 0);
  EXPECT_EQ(C("fd00:0:0::1/8").text, "fd00::/8");
  EXPECT_EQ(C("FD00::1").text, "fd00::1/128");
  EXPECT_EQ(C("2001:db8::/33").family, Family::kIpv6);
  EXPECT_EQ(C("10.0.0.0/8").family, Family::kIpv4);
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "fd00::/129", "host",
                          "10.0.0.0/-1", "10.0.0.0/8x"}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
}

TEST(HasGlobalIpv6Address, GlobalScopeOnAnInterfaceOtherThanLoopback) {
  constexpr absl::string_view kLoopbackAndLinkLocal =
      "00000000000000000000000000000001 01 80 10 80       lo\n"
      "fe800000000000000c6b51fffe3ab2c1 02 40 20 80    veth0\n";
  EXPECT_FALSE(HasGlobalIpv6Address(kLoopbackAndLinkLocal));
  EXPECT_FALSE(HasGlobalIpv6Address(""));
  EXPECT_TRUE(HasGlobalIpv6Address(absl::StrCat(
      kLoopbackAndLinkLocal, "fd000009000000000000000000000001 02 40 00 80    veth0\n")));
}

}  // namespace
}  // namespace meshlet::sidecar::capture

#include "sidecar/capture/init_command.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::capture {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::StatusOr<InitCommandLine> Parse(std::vector<std::string> args) {
  return ParseInitCommandLine(args);
}

std::string Error(std::vector<std::string> args) {
  absl::StatusOr<InitCommandLine> parsed = Parse(std::move(args));
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

std::vector<std::string> Texts(const std::vector<Cidr>& cidrs) {
  std::vector<std::string> out;
  for (const Cidr& cidr : cidrs) out.push_back(cidr.text);
  return out;
}

TEST(ParseInitCommandLine, DefaultsAreTheDocumentedOnes) {
  absl::StatusOr<InitCommandLine> parsed = Parse({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const CaptureOptions& o = parsed->options;
  EXPECT_EQ(o.proxy_uid, 1337u);
  EXPECT_EQ(o.proxy_gid, 1337u);
  EXPECT_EQ(o.outbound_port, 15001);
  EXPECT_EQ(o.inbound_port, 15006);
  EXPECT_TRUE(o.include_inbound_ports.all);
  EXPECT_TRUE(o.include_outbound_cidrs.all);
  EXPECT_THAT(o.exclude_inbound_ports, IsEmpty());
  EXPECT_THAT(o.exclude_outbound_ports, IsEmpty());
  EXPECT_THAT(o.exclude_outbound_cidrs, IsEmpty());
  EXPECT_EQ(o.ipv6, Ipv6Mode::kAuto);
  EXPECT_EQ(parsed->action, Action::kApply);
  EXPECT_FALSE(parsed->dry_run);
  EXPECT_EQ(parsed->lock_wait_seconds, 10);
}

TEST(ParseInitCommandLine, EveryFlag) {
  absl::StatusOr<InitCommandLine> parsed = Parse({"--proxy-uid",
                                                  "0",
                                                  "--proxy-gid=2000",
                                                  "--outbound-port",
                                                  "7001",
                                                  "--inbound-port=7006",
                                                  "--include-inbound-ports",
                                                  "8080, 9090",
                                                  "--include-inbound-ports=8443",
                                                  "--exclude-inbound-ports",
                                                  "22",
                                                  "--exclude-outbound-ports",
                                                  "5432,6379",
                                                  "--include-outbound-cidrs",
                                                  "10.96.0.0/12,fd00::/8",
                                                  "--exclude-outbound-cidrs",
                                                  "169.254.169.254",
                                                  "--exclude-outbound-cidrs",
                                                  "10.1.2.3/8",
                                                  "--ipv6=true",
                                                  "--dry-run",
                                                  "--cleanup",
                                                  "--lock_wait",
                                                  "0"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const CaptureOptions& o = parsed->options;
  EXPECT_EQ(o.proxy_uid, 0u);
  EXPECT_EQ(o.proxy_gid, 2000u);
  EXPECT_EQ(o.outbound_port, 7001);
  EXPECT_EQ(o.inbound_port, 7006);
  EXPECT_FALSE(o.include_inbound_ports.all);
  EXPECT_THAT(o.include_inbound_ports.items, ElementsAre(8080, 9090, 8443));
  EXPECT_THAT(o.exclude_inbound_ports, ElementsAre(22));
  EXPECT_THAT(o.exclude_outbound_ports, ElementsAre(5432, 6379));
  EXPECT_FALSE(o.include_outbound_cidrs.all);
  EXPECT_THAT(Texts(o.include_outbound_cidrs.items), ElementsAre("10.96.0.0/12", "fd00::/8"));
  EXPECT_THAT(Texts(o.exclude_outbound_cidrs), ElementsAre("169.254.169.254/32", "10.0.0.0/8"));
  EXPECT_EQ(o.ipv6, Ipv6Mode::kOn);
  EXPECT_TRUE(parsed->dry_run);
  EXPECT_EQ(parsed->action, Action::kCleanup);
  EXPECT_EQ(parsed->lock_wait_seconds, 0);
}

TEST(ParseInitCommandLine, StarIsEverythingAndEmptyIsNothing) {
  absl::StatusOr<InitCommandLine> none =
      Parse({"--include-inbound-ports=", "--include-outbound-cidrs", ""});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->options.include_inbound_ports.all);
  EXPECT_THAT(none->options.include_inbound_ports.items, IsEmpty());
  EXPECT_FALSE(none->options.include_outbound_cidrs.all);
  EXPECT_THAT(none->options.include_outbound_cidrs.items, IsEmpty());
  absl::StatusOr<InitCommandLine> all =
      Parse({"--include-inbound-ports=*", "--include-outbound-cidrs", "*", "--ipv6", "false"});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->options.include_inbound_ports.all);
  EXPECT_TRUE(all->options.include_outbound_cidrs.all);
  EXPECT_EQ(all->options.ipv6, Ipv6Mode::kOff);
  // An empty exclusion list (what an injector passes when the annotation is absent) is fine.
  EXPECT_TRUE(Parse({"--exclude-inbound-ports", "", "--exclude-outbound-cidrs="}).ok());
}

TEST(ParseInitCommandLine, BadValuesNameTheFlagAndTheProblem) {
  EXPECT_EQ(Error({"--exclude-inbound-ports", "80,http"}),
            "--exclude-inbound-ports=\"80,http\": \"http\" is not a port from 1 to 65535");
  EXPECT_THAT(Error({"--inbound-port", "0"}), HasSubstr("is not a port from 1 to 65535"));
  EXPECT_THAT(Error({"--outbound-port", "65536"}), HasSubstr("is not a port from 1 to 65535"));
  EXPECT_THAT(Error({"--exclude-outbound-cidrs", "10.0.0.0/33"}),
              HasSubstr("the prefix length must be 0 to 32"));
  EXPECT_THAT(Error({"--include-outbound-cidrs", "example.com"}),
              HasSubstr("is not an address range"));
  EXPECT_THAT(Error({"--ipv6", "yes"}), HasSubstr("must be auto, true or false"));
  EXPECT_THAT(Error({"--proxy-uid", "4294967295"}), HasSubstr("must be a numeric id"));
  EXPECT_THAT(Error({"--proxy-gid", "proxy"}), HasSubstr("must be a numeric id"));
  EXPECT_THAT(Error({"--include-inbound-ports=*", "--include-inbound-ports=80"}),
              HasSubstr("\"*\" was given already"));
  EXPECT_EQ(Error({"--frobnicate"}),
            "unknown flag --frobnicate for init (see sidecar init --help)");
  EXPECT_THAT(Error({"--lock-wait", "-1"}), HasSubstr("--lock-wait"));
}

TEST(ParseInitCommandLine, HelpStopsParsingAndListsEveryFlag) {
  absl::StatusOr<InitCommandLine> parsed = Parse({"--help", "--frobnicate"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->help);
  const std::string usage = InitUsageText();
  for (const char* flag :
       {"--proxy-uid UID", "--proxy-gid GID", "--outbound-port PORT", "--inbound-port PORT",
        "--include-inbound-ports PORTS", "--exclude-inbound-ports PORTS",
        "--exclude-outbound-ports PORTS", "--include-outbound-cidrs CIDRS",
        "--exclude-outbound-cidrs CIDRS", "--ipv6 auto|true|false", "--dry-run", "--cleanup",
        "--lock-wait SECONDS", "-h, --help"}) {
    EXPECT_THAT(usage, HasSubstr(flag));
  }
  EXPECT_THAT(usage, HasSubstr("Usage: sidecar init [flags]"));
}

}  // namespace
}  // namespace meshlet::sidecar::capture

#include "control-plane/xds/xds_service.h"

#include <string>
#include <vector>

#include "common/flags/flags.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ads {
namespace {

// The discovery flags of `args`, checked as the control plane's command line checks them.
absl::StatusOr<XdsServiceOptions> ParseXdsFlags(const std::vector<std::string>& args) {
  XdsServiceOptions options;
  absl::StatusOr<flags::ParsedArgs> parsed = flags::Parse(XdsFlags(options), args);
  if (!parsed.ok()) return parsed.status();
  if (absl::Status checked = CheckXdsFlags(options); !checked.ok()) return checked;
  return options;
}

TEST(XdsFlagsTest, EveryFlag) {
  std::vector<std::string> args = {"--xds-address",
                                   "127.0.0.1:15012",
                                   "--xds-tls-cert=c.pem",
                                   "--xds-tls-key",
                                   "k.pem",
                                   "--xds-max-concurrent-pushes=7",
                                   "--xds-debounce=50ms",
                                   "--xds-keepalive-interval=2s",
                                   "--xds-keepalive-timeout",
                                   "500ms",
                                   "--xds-listen-host=127.0.0.1"};
  absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags(args);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->address, "127.0.0.1:15012");
  EXPECT_EQ(options->tls_cert_file, "c.pem");
  EXPECT_EQ(options->tls_key_file, "k.pem");
  EXPECT_FALSE(options->plaintext);
  EXPECT_TRUE(options->enabled());
  EXPECT_EQ(options->ads.max_concurrent_pushes, 7u);
  EXPECT_EQ(options->ads.debounce_quiet, std::chrono::milliseconds(50));
  EXPECT_EQ(options->translate.listen_host, "127.0.0.1");
  EXPECT_EQ(options->keepalive_interval, std::chrono::seconds(2));
  EXPECT_EQ(options->keepalive_timeout, std::chrono::milliseconds(500));
}

TEST(XdsFlagsTest, DisabledUnlessTlsOrPlaintextIsAskedFor) {
  absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags({"--xds-debounce=1s"});
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->enabled());
  options = ParseXdsFlags({"--xds-plaintext"});
  ASSERT_TRUE(options.ok());
  EXPECT_TRUE(options->plaintext);
  EXPECT_TRUE(options->enabled());
  options = ParseXdsFlags({"--xds-plaintext=false"});
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->enabled());
}

TEST(XdsFlagsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--xds-address=cp:15012"}, "--xds-address=\"cp:15012\": must be IP:PORT"},
           {{"--xds-tls-cert=c.pem"}, "--xds-tls-cert and --xds-tls-key go together"},
           {{"--xds-plaintext", "--xds-tls-cert=c", "--xds-tls-key=k"}, "exclude each other"},
           {{"--xds-plaintext=maybe"}, "--xds-plaintext=\"maybe\""},
           {{"--xds-max-concurrent-pushes=0"}, "--xds-max-concurrent-pushes"},
           {{"--xds-debounce=soon"}, "--xds-debounce"},
           {{"--xds-keepalive-interval=-1s"}, "--xds-keepalive-interval"},
           {{"--xds-keepalive-timeout=0s"},
            "--xds-keepalive-timeout=\"0s\": must be a positive duration"},
           {{"--xds-colour=red"}, "unknown flag --xds-colour"},
           {{"--xds-address"}, "--xds-address needs a value"},
       }) {
    absl::StatusOr<XdsServiceOptions> options = ParseXdsFlags(c.args);
    ASSERT_FALSE(options.ok()) << c.expected;
    EXPECT_NE(options.status().message().find(c.expected), absl::string_view::npos)
        << options.status();
  }
}

}  // namespace
}  // namespace meshlet::controlplane::ads

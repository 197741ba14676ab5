#include "control-plane/xds/xds_service.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::controlplane::ads {
namespace {

TEST(XdsFlagsTest, TakesItsFlagsAndLeavesTheRest) {
  std::vector<std::string> args = {"--data-dir=/d",
                                   "--xds-address",
                                   "127.0.0.1:15012",
                                   "--xds-tls-cert=c.pem",
                                   "--xds-tls-key",
                                   "k.pem",
                                   "--api-address=127.0.0.1:1",
                                   "--xds-max-concurrent-pushes=7",
                                   "--xds-debounce=50ms",
                                   "--xds-keepalive-interval=2s",
                                   "--xds-keepalive-timeout",
                                   "500ms",
                                   "--xds-listen-host=127.0.0.1"};
  absl::StatusOr<XdsServiceOptions> options = ExtractXdsFlags(args);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(args, (std::vector<std::string>{"--data-dir=/d", "--api-address=127.0.0.1:1"}));
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
  std::vector<std::string> args = {"--data-dir=/d"};
  absl::StatusOr<XdsServiceOptions> options = ExtractXdsFlags(args);
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->enabled());
  args = {"--xds-plaintext"};
  options = ExtractXdsFlags(args);
  ASSERT_TRUE(options.ok());
  EXPECT_TRUE(options->plaintext);
  EXPECT_TRUE(options->enabled());
  EXPECT_TRUE(args.empty());
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
    std::vector<std::string> args = c.args;
    absl::StatusOr<XdsServiceOptions> options = ExtractXdsFlags(args);
    ASSERT_FALSE(options.ok()) << c.expected;
    EXPECT_NE(options.status().message().find(c.expected), absl::string_view::npos)
        << options.status();
  }
}

}  // namespace
}  // namespace meshlet::controlplane::ads
